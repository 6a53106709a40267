"""scripts/gpu_check.py and gpu_check.sh without a GPU: every step of the check, tiny, on the CPU (--quick), and the
shell script's stop on a machine without CUDA."""
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT


def load_gpu_check():
    sys.path.insert(0, str(ROOT / "scripts"))
    import gpu_check

    return gpu_check


def test_the_gpu_checks_tests_and_training_benchmark_on_the_cpu(tmp_path):
    """The fast part of the next test: the cuda-marked tests run in a fresh pytest (skipped here) and are counted,
    and the training benchmark measures its matmul peak and MFU; the report names every figure."""
    gpu_check = load_gpu_check()
    t = gpu_check.run_tests(tmp_path, quick=True)
    assert t["exit_code"] == 0 and t["skipped"] == 4 and t["failed"] == t["errors"] == t["passed"] == 0
    tb = gpu_check.train_benchmark(torch.device("cpu"), "bf16", quick=True, deadline=float("inf"))
    assert tb["matmul_peak_tflops"] > 0 and 0 < tb["runs"][0]["mfu"] < 1.5 and tb["runs"][0]["tokens_per_s"] > 0
    skipped = gpu_check.train_benchmark(torch.device("cpu"), "bf16", quick=True, deadline=0)
    assert skipped["runs"] == [{"size": "tiny", "tile": 16, "batch": 2, "skipped": "time budget"}]
    lines = gpu_check.report({"tests": t, "train_benchmark": tb, "sampling": {"error": "RuntimeError: x"}})
    assert lines[0] == "sampling: RuntimeError: x" and "4 skipped" in lines[1] and "MFU" in lines[-1]
    assert gpu_check.main(["--device", "cpu", "--out", str(tmp_path)]) == 2  # the real check wants CUDA


@pytest.mark.slow
def test_every_step_of_the_gpu_check_runs_on_the_cpu(tmp_path, monkeypatch):
    """`gpu_check.py --device cpu --quick`: about 20 s on an idle 2-core CPU."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    gpu_check = load_gpu_check()
    assert gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path)]) == 0
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert doc["ok"] and doc["quick"] and not [k for k, v in doc.items() if isinstance(v, dict) and "error" in v]
    t = doc["tests"]
    assert t["exit_code"] == 0 and t["failed"] == t["errors"] == 0 and t["passed"] + t["skipped"] >= 4
    assert all(k.startswith("tests.test_cuda::") for k in t["tests"])  # only the cuda-marked tests ran
    g = doc["agreement"]
    assert g["devices"] == ["cpu", "cpu"] and g["max_abs_diff"] == 0 and g["within_one_raw_unit"] == 1
    jobs = doc["sampling"]["jobs"]
    assert set(jobs) == {"S1RTC,DEM -> S2L2A", "S2L2A -> LULC"} and all(j["tiles_per_s"] > 0 for j in jobs.values())
    tb = doc["train_benchmark"]
    assert tb["dtype"] == "bf16" and tb["matmul_peak_tflops"] > 0
    assert [r["size"] for r in tb["runs"]] == ["tiny"] and 0 < tb["runs"][0]["mfu"] < 1.5


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the check itself")
def test_the_gpu_check_stops_at_once_without_cuda(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(tmp_path / "gc")], capture_output=True,
                       text=True, env={**os.environ, "PYTHON": sys.executable}, timeout=60)
    assert r.returncode == 2 and "sees no CUDA device" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "gc").exists()

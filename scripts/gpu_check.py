"""GPU readiness in one run, into one JSON: the CUDA tests, the training benchmark in bf16 (tokens/s, MFU against a
matmul peak measured in the same run, peak memory), sampling throughput (tiles/s) with the shipped model, and the
agreement of one seeded sample made on the CPU and on the GPU.

    bash scripts/gpu_check.sh [OUT]                                  # on a CUDA machine (under 8 minutes on an H200)
    python scripts/gpu_check.py --device cuda --out OUT              # what that runs
    python scripts/gpu_check.py --device cpu --quick --out /tmp/gc   # every step, tiny, on a CPU (the test suite)

OUT/gpu_check.json is rewritten after every section, so a run stopped by the time limit keeps what it measured.
Sections: `environment`; `tests` (`pytest -m cuda tests`: skipped without CUDA); `agreement` (the shipped model,
S1RTC + DEM -> S2L2A on shipped scene 433D_629L_3_1, one sample, seed 0, shipped settings, made on the CPU and on
--device: max and mean absolute difference and PSNR in reflectance, share of values within one raw unit);
`sampling` (the shipped model on that scene repeated side by side, from arrays, shipped settings: S2L2A from
S1RTC + DEM with one sample on 448 x 3136 px, land cover from S2L2A with 8 samples on 448 x 896 px; tiles/s and
tile-samples/s, after a warm-up call); `train_benchmark`
(scripts/benchmark.py's training step: model sizes and tiles below, six modalities, autocast in --dtype; configs
that would pass the time budget are skipped and said to be). Exit 0 when every section ran and no test failed.
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

SCENE = "433D_629L_3_1"
# (model size, tile px, batch); six modalities each
TRAIN_CONFIGS = {"full": [("small", 32, 256), ("small", 64, 64), ("base", 32, 256), ("base", 64, 64), ("large", 64, 32)],
                 "quick": [("tiny", 16, 2)]}


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "cuda_build": torch.version.cuda, "python": platform.python_version(),
           "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "device": str(device)}
    try:
        import xformers

        env["xformers"] = xformers.__version__
    except Exception:
        env["xformers"] = None
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        env.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                   bf16_supported=torch.cuda.is_bf16_supported())
    r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    env["commit"] = r.stdout.strip() or None
    return env


def run_tests(out: Path, quick: bool) -> dict:
    """`pytest -m cuda tests` in a fresh process (--quick: only tests/test_cuda.py is collected); counts from its
    JUnit XML."""
    import xml.etree.ElementTree as ET

    xml = out / "cuda_tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
           "tests/test_cuda.py" if quick else "tests"]
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    res = {"command": " ".join(cmd[1:]), "exit_code": r.returncode, "seconds": round(time.perf_counter() - t, 1)}
    if not xml.is_file():
        return {**res, "error": (r.stdout + r.stderr)[-2000:]}
    cases = ET.parse(xml).getroot().iter("testcase")
    outcome = {}
    kinds = {"failure": "failed", "error": "errors", "skipped": "skipped"}
    for c in cases:
        tag = next((k for k in c if k.tag in kinds), None)
        outcome[f"{c.get('classname')}::{c.get('name')}"] = kinds[tag.tag] if tag is not None else "passed"
        if tag is not None and tag.tag != "skipped":
            res.setdefault("failures", []).append(f"{c.get('name')}: {(tag.get('message') or '')[:300]}")
    res.update({k: sum(v == k for v in outcome.values()) for k in ("passed", "failed", "errors", "skipped")})
    res["tests"] = outcome
    return res


def agreement(device: torch.device, quick: bool) -> dict:
    """One seeded sample of the shipped model made on the CPU and on `device`."""
    from rasterio.windows import Window

    from cogen.metrics import psnr_np
    from cogen.pipeline import CogenPipeline

    d = ROOT / "data" / "terramind-examples"
    conds = {m: str(d / m / f"{SCENE}.tif") for m in ("S1RTC", "DEM")}
    kw = dict(samples=1, seed=0, progress=False, window=Window(0, 0, 32, 32) if quick else None)
    if quick:
        kw["steps"] = 2
    out, secs = {}, {}
    for dev in ("cpu", str(device)):
        pipe = CogenPipeline.from_checkpoint(None, dev)
        t = time.perf_counter()
        out[dev] = pipe(conds, ["S2L2A"], **kw)["S2L2A"].sample.astype(np.float64)  # reflectance
        secs[dev] = round(time.perf_counter() - t, 2)
    a, b = out["cpu"], out[str(device)]
    diff = np.abs(a - b)
    return {"task": f"S1RTC,DEM -> S2L2A, scene {SCENE}{' window 0,0,32,32' if quick else ''}, one sample, seed 0",
            "shape": list(a.shape), "devices": ["cpu", str(device)], "seconds": secs,
            "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
            "psnr_db": float(psnr_np(b, a, 1.0)) if diff.max() > 0 else float("inf"),
            "within_one_raw_unit": float((diff <= 1e-4 + 1e-9).mean())}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sampling(device: torch.device, quick: bool) -> dict:
    """Tiles per second of the shipped model on a scene of real pixels (the shipped scene, tiled)."""
    from cogen.io import read_raster
    from cogen.pipeline import CogenPipeline
    from cogen.tiling import anchored_starts

    d = ROOT / "data" / "terramind-examples"
    raw = {m: read_raster(d / m / f"{SCENE}.tif")[0] for m in ("S1RTC", "DEM", "S2L2A")}
    scene = lambda m, reps: raw[m][:, :32, :64] if quick else np.tile(raw[m], (1, *reps))  # reps of 224 px
    pipe = CogenPipeline.from_checkpoint(None, str(device))
    # (conditions, targets, samples): 64 px tiles of S2L2A, a row of 64 of them filling a batch of 64; 32 px tiles of
    # land cover, 8 tiles x 8 samples a batch
    jobs = {"S1RTC,DEM -> S2L2A": ({m: scene(m, (2, 14)) for m in ("S1RTC", "DEM")}, ["S2L2A"], 1),
            "S2L2A -> LULC": ({"S2L2A": scene("S2L2A", (2, 4))}, ["LULC"], 2 if quick else 8)}
    res = {"scene": SCENE, "jobs": {}}
    for name, (conds, targets, samples) in jobs.items():
        opts = pipe.options.replace(samples=samples, **({"steps": 2} if quick else {}))
        tile, ov = opts.tiling(targets, False, pipe.registry.has_image(conds))
        h, w = next(iter(conds.values())).shape[1:]
        n = len(anchored_starts(h, tile, ov)) * len(anchored_starts(w, tile, ov))
        small = {m: v[:, :tile, :tile] for m, v in conds.items()}
        pipe(small, targets, options=opts, progress=False)  # warm-up: kernels, allocator
        _sync(device)
        t = time.perf_counter()
        pipe(conds, targets, options=opts, progress=False)
        _sync(device)
        s = time.perf_counter() - t
        res["jobs"][name] = {"scene_px": [h, w], "tile": tile, "overlap": ov, "tiles": n, "samples": samples, "steps": opts.steps,
                             "batch": opts.batch, "seconds": round(s, 2), "tiles_per_s": round(n / s, 2),
                             "tile_samples_per_s": round(n * samples / s, 2)}
    return res


def train_benchmark(device: torch.device, dtype: str, quick: bool, deadline: float) -> dict:
    from benchmark import bench, matmul_peak

    dt = torch.bfloat16 if dtype == "bf16" else torch.float32
    n = 512 if quick else 8192
    peak = matmul_peak(device, dt, n=n)
    res = {"dtype": dtype, "matmul_peak_tflops": round(peak / 1e12, 2), "matmul_n": n, "modalities": 6, "runs": []}
    for size, tile, batch in TRAIN_CONFIGS["quick" if quick else "full"]:
        row = {"size": size, "tile": tile, "batch": batch}
        if time.time() > deadline:
            res["runs"].append({**row, "skipped": "time budget"})
            continue
        try:
            r = bench(size, tile, 6, batch, device, dt, steps=1 if quick else 10)
            row.update({"tokens_per_sample": r["tokens/sample"], "s_per_step": round(r["s/step"], 4),
                        "samples_per_s": round(r["samples/s"], 1), "tokens_per_s": round(r["tokens/s"]),
                        "tflops": round(r["GFLOP/s"] / 1e3, 3), "mfu": round(r["GFLOP/s"] * 1e9 / peak, 5),
                        "peak_memory_gib": round(r["peak_mem_MB"] / 1024, 2)})
        except torch.cuda.OutOfMemoryError:
            row["error"] = "out of memory"
            torch.cuda.empty_cache()
        res["runs"].append(row)
    return res


def report(doc: dict) -> list[str]:
    """The figures in a few lines (every section's error, if any)."""
    lines = [f"{k}: {v['error']}" for k, v in doc.items() if isinstance(v, dict) and "error" in v]
    t, g = doc.get("tests", {}), doc.get("agreement", {})
    if "passed" in t:
        lines.append(f"tests (-m cuda): {t['passed']} passed, {t['failed']} failed, {t['errors']} errors, "
                     f"{t['skipped']} skipped")
    if "max_abs_diff" in g:
        lines.append(f"agreement {' vs '.join(g['devices'])}: max |diff| {g['max_abs_diff']:.2e}, mean "
                     f"{g['mean_abs_diff']:.2e} reflectance, PSNR {g['psnr_db']:.1f} dB, "
                     f"{g['within_one_raw_unit']:.1%} within one raw unit")
    for name, j in doc.get("sampling", {}).get("jobs", {}).items():
        lines.append(f"sampling {name} on {j['scene_px'][0]} x {j['scene_px'][1]} px: {j['tiles']} tiles of {j['tile']} px x {j['samples']} samples in "
                     f"{j['seconds']} s: {j['tiles_per_s']} tiles/s, {j['tile_samples_per_s']} tile-samples/s")
    tb = doc.get("train_benchmark", {})
    if "runs" in tb:
        lines.append(f"training ({tb['dtype']}), matmul peak {tb['matmul_peak_tflops']} TFLOP/s:")
        for r in tb["runs"]:
            lines.append(f"  {r['size']} tile {r['tile']} batch {r['batch']}: " + (
                f"{r['tokens_per_s']} tokens/s, {r['tflops']} TFLOP/s, MFU {r['mfu']:.1%}, peak "
                f"{r['peak_memory_gib']} GiB" if "mfu" in r else r.get("skipped") or r.get("error", "")))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu (with --quick: a dry run)")
    ap.add_argument("--out", required=True, help="folder for gpu_check.json (and the tests' JUnit XML)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: every step in seconds (for the test suite)")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"], help="autocast dtype of the training benchmark")
    ap.add_argument("--budget", type=float, default=420, help="seconds after which training configs are skipped")
    a = ap.parse_args(argv)
    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print(f"error: --device {a.device}, but torch {torch.__version__} (CUDA build: {torch.version.cuda or 'none'}) "
              f"sees no CUDA device; run this on a CUDA machine with a CUDA build of torch, or pass --device cpu "
              f"--quick for a dry run", file=sys.stderr)
        return 2
    if device.type != "cuda" and not a.quick:
        print(f"error: --device {a.device} runs only with --quick (a dry run of the steps); the check itself is for "
              f"a CUDA device", file=sys.stderr)
        return 2
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    doc = {"quick": a.quick, "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    sections = [("environment", lambda: environment(device)), ("tests", lambda: run_tests(out, a.quick)),
                ("agreement", lambda: agreement(device, a.quick)), ("sampling", lambda: sampling(device, a.quick)),
                ("train_benchmark", lambda: train_benchmark(device, a.dtype, a.quick, t0 + a.budget))]
    from cogen.io import write_json

    ok = True
    for name, fn in sections:
        t = time.time()
        print(f"gpu_check: {name} ...", flush=True)
        try:
            doc[name] = fn()
        except Exception as e:
            doc[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc(limit=-6)}
        doc[name]["section_seconds"] = round(time.time() - t, 1)
        ok &= "error" not in doc[name]
        doc["seconds"] = round(time.time() - t0, 1)
        write_json(out / "gpu_check.json", doc)
    tests = doc["tests"]
    ok &= not tests.get("failed") and not tests.get("errors") and tests.get("exit_code") in (0, 5)  # 5: none collected
    doc["ok"] = bool(ok)
    write_json(out / "gpu_check.json", doc)
    for line in report(doc):
        print(line)
    print(f"gpu_check: {'ok' if ok else 'FAILED'} in {doc['seconds']:.0f} s; {out / 'gpu_check.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

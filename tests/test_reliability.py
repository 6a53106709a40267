"""Every bad-input case: exit code 2, a one-line message with the file/value and the fix, no partial output.
Plus: killing sample.py mid-run leaves nothing that looks finished."""
import os
import signal
import subprocess
import sys
import time

import pytest

import sample
from conftest import ROOT
from reliability_cases import build, result_files

_CASES = {}


@pytest.fixture(scope="module")
def cases(tmp_path_factory, tiny_bundle):
    if not _CASES:
        for c in build(tmp_path_factory.mktemp("rel"), tiny_bundle):
            _CASES[c.name] = c
    return _CASES


NAMES = ["wrong band count", "dtype that cannot be converted safely", "all-NaN input",
         "image that is zero in every band (no data)", "window outside the scene",
         "conditions on different transforms", "conditions on different CRS", "missing file", "unknown modality",
         "target that is also an input", "empty target list", "mask on another grid",
         "tile smaller than the model's patch", "truncated checkpoint", "corrupted checkpoint",
         "checkpoint for other modalities", "config with an unknown key", "config with a mistyped value",
         "config with a number out of range", "zero samples", "additive offset that is not a number",
         "additive offset for a class map", "parts finer than the scene", "joining parts of other grids",
         "output folder exists"]


def test_every_case_is_tested(cases):
    assert sorted(cases) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_case(name, cases, capsys):
    c = cases[name]
    before = sorted(p.name for p in c.out.iterdir()) if c.out and c.out.exists() else []
    if c.program == "sample.py":
        code = sample.main(c.argv)
        err = capsys.readouterr().err
    else:
        r = subprocess.run([sys.executable, str(ROOT / "train.py"), *c.argv], cwd=ROOT, capture_output=True, text=True,
                           env={**os.environ, "WANDB_MODE": "disabled"}, timeout=120)
        code, err = r.returncode, r.stderr
    assert code == c.code
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err  # one line, no traceback
    for k in c.keywords:
        assert k in lines[0], (k, lines[0])
    after = sorted(p.name for p in c.out.iterdir()) if c.out and c.out.exists() else []
    if before:  # an existing folder is left as it was
        assert after == before
    else:
        assert result_files(c.out) == []


def test_sample_killed_mid_run_leaves_nothing_finished(tmp_path, tiny_bundle):
    from test_pipeline import scene

    paths, _ = scene(tmp_path, 200, 200)
    out = tmp_path / "out"
    cmd = [sys.executable, str(ROOT / "sample.py"), "impute", "--input", f"S1RTC={paths['S1RTC']}", "--target",
           "S2L2A", "--target", "LULC", "--checkpoint", str(tiny_bundle), "--out", str(out), "--steps", "50",
           "--tile", "16", "--overlap", "4", "--batch", "4", "--quiet"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    staged = []
    while time.time() - t0 < 60 and p.poll() is None:  # wait until it is writing into its staging folder
        staged = [q for q in tmp_path.glob(".out.partial-*") if any(q.iterdir())]
        if staged:
            break
        time.sleep(0.05)
    assert p.poll() is None, "finished before it could be killed"
    time.sleep(0.5)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert staged, "never started writing"
    assert not out.exists() or result_files(out) == []
    for q in tmp_path.glob(".out.partial-*"):  # what is left is hidden and has no finished-looking result
        assert all(f.name.startswith(".") for f in q.rglob("*.tif"))

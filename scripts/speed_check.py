"""Wall-clock time of the demo and of an 8-sample segmentation, this checkout against another commit, in one run.

    python scripts/speed_check.py [--base cb9338e] [--out speed.json]

The other commit is checked out into a temporary git worktree and run with this Python (its own code, its own
shipped model); every command runs in a fresh process, one at a time, first the base and then this checkout,
so the two share the machine's state. Prints each time and the ratios base / this (above 1: this is faster).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENE = "433D_629L_3_1"
JOBS = {  # name -> sample.py arguments (run in the checkout's root)
    "demo": ["demo", "--out", "{out}/demo", "--overwrite", "--quiet"],
    "segment --samples 8": ["segment", "--input", f"S2L2A=data/terramind-examples/S2L2A/{SCENE}.tif", "--samples",
                            "8", "--out", "{out}/segment", "--overwrite", "--quiet"],
}


def timed(root: Path, args: list[str], out: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(root)}
    t = time.perf_counter()
    subprocess.run([sys.executable, "sample.py", *[a.format(out=out) for a in args]], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", default="cb9338e", help="the commit to compare with (default: before the simplification)")
    p.add_argument("--out", default=None, help="also write the figures to this JSON file")
    a = p.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base), a.base], cwd=ROOT, check=True)
        try:
            res = {}
            for name, args in JOBS.items():
                before = timed(base, args, Path(tmp) / "out_base")
                after = timed(ROOT, args, Path(tmp) / "out_head")
                res[name] = {"base_s": round(before, 1), "this_s": round(after, 1), "ratio": round(before / after, 2)}
                print(f"{name}: {a.base} {before:.1f} s, {head} {after:.1f} s, ratio {before / after:.2f}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False)
    doc = {"base": a.base, "this": head, "cpu_count": os.cpu_count(), "jobs": res}
    print(json.dumps(doc, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()

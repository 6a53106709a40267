"""Choose how cloud removal starts (from noise, or from the interpolation at some strength) on training pixels.

The test strips (columns 160-223) are never used here: the choice is made on the 64 training columns next to
them (96-159), with synthetic cloud masks drawn from another seed than the evaluation's. The model has seen
these pixels in training (as random crops, never with these masks), so this favours the model a little; it
is the only held-apart choice five scenes allow. Prints one line per option and the winner by the mean of N
samples' PSNR.

    python scripts/select_cloud_start.py --checkpoint checkpoints/demo --strength 0.3 --strength 0.5
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rasterio.fill import fillnodata

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cogen.evaluate import Split, _phys, cloud_masks  # noqa: E402
from cogen.metrics import psnr_np, sam_np  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/demo")
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--cols", default="96,160", help="training columns to use")
    p.add_argument("--strength", type=float, action="append", default=[])
    p.add_argument("--cover", type=float, default=0.3)
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--tile", type=int, default=32)
    p.add_argument("--seed", type=int, default=1, help="mask seed (the evaluation uses 0)")
    a = p.parse_args(argv)
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    c0, c1 = (int(v) for v in a.cols.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        sf = Path(tmp) / "split.yaml"
        sf.write_text(f"splits:\n  select:\n    default: {{cols: [{c0}, {c1}]}}\n")
        split = Split(a.data, pipe.registry, str(sf), "select", ["S2L2A", "S1RTC", "DEM"])
    masks = cloud_masks(split, [a.cover], a.seed)
    rows: dict[str, list] = {}
    t0 = time.time()
    for sid in split.with_all(["S2L2A", "S1RTC", "DEM"]):
        arr, mask = split.arrays[sid], masks[(sid, a.cover)]
        truth = _phys(pipe.registry, "S2L2A", arr["S2L2A"])
        fill = np.stack([fillnodata(b.astype(np.float32), mask=(~mask).astype(np.uint8), max_search_distance=200)
                         for b in truth])
        preds = {"fillnodata": fill}
        for st in [None, *a.strength]:
            res = pipe({m: arr[m] for m in ("S2L2A", "S1RTC", "DEM")}, ["S2L2A"], regenerate={"S2L2A": mask},
                       steps=a.steps, samples=a.samples, seed=0, tile=a.tile, overlap=0, progress=False,
                       start="noise" if st is None else "interpolate", strength=st or 1.0)["S2L2A"]
            preds["noise" if st is None else f"interpolate {st:g}"] = res.mean if a.samples > 1 else res.sample
        for k, v in preds.items():
            rows.setdefault(k, []).append((psnr_np(v[:, mask], truth[:, mask], 1.0), sam_np(v[:, mask], truth[:, mask])))
    print(f"columns {c0}-{c1 - 1}, cover {a.cover:.0%}, mask seed {a.seed}, mean of {a.samples} samples, "
          f"{time.time() - t0:.0f} s")
    scores = {k: np.mean(v, axis=0) for k, v in rows.items()}
    for k, (ps, sa) in scores.items():
        print(f"  {k:16s} PSNR {ps:6.2f} dB  SAM {sa:5.2f} deg")
    best = max((k for k in scores if k != "fillnodata"), key=lambda k: scores[k][0])
    print(f"best start: {best}")


if __name__ == "__main__":
    main()

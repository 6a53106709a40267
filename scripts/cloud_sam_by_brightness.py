"""Where cloud removal loses spectral angle: SAM inside the masks by brightness of the true pixel, per strip.

Runs cloud removal as the evaluation does (mean of N samples, started from the interpolation at the bundle's
strength, the bundle's sampling settings) on the training columns 96-159 with synthetic masks from another seed
than the evaluation's, and prints, for each strip, the mean spectral angle of cogen's mean and of `fillnodata`
inside the masks, by quintile of the true pixel's mean reflectance, with the absolute error per band in the
darkest fifth.

    python scripts/cloud_sam_by_brightness.py --samples 8
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cogen.evaluate import Split, _phys, cloud_masks, fillnodata_baseline  # noqa: E402
from cogen.metrics import sam_map  # noqa: E402
from cogen.pipeline import CogenPipeline, default_tiling  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/demo")
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--cols", default="96,160", help="training columns to use")
    p.add_argument("--cover", type=float, default=0.3)
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--seed", type=int, default=1, help="mask seed (the evaluation uses 0)")
    p.add_argument("--library-neighbours", type=int, default=0, metavar="K",
                   help="clear-pixel library neighbours (default 0: off, the model's own spectra)")
    a = p.parse_args(argv)
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    pipe.library_neighbours = a.library_neighbours
    sc = pipe.bundle.config.sample
    c0, c1 = (int(v) for v in a.cols.split(","))
    split = Split(a.data, pipe.registry, None, None, ["S2L2A", "S1RTC", "DEM"], cols=(c0, c1))
    masks = cloud_masks(split, [a.cover], a.seed)
    tile, overlap = default_tiling(sc, ["S2L2A"], regenerate=True)
    t0 = time.time()
    print(f"columns {c0}-{c1 - 1}, cover {a.cover:.0%}, mask seed {a.seed}, mean of {a.samples} samples from the "
          f"interpolation at strength {sc.strength}, {sc.steps} steps, tile {tile}/{overlap}, library {a.library_neighbours}")
    for sid in split.with_all(["S2L2A", "S1RTC", "DEM"]):
        arr, mask = split.arrays[sid], masks[(sid, a.cover)]
        truth = _phys(pipe.registry, "S2L2A", arr["S2L2A"])
        res = pipe({m: arr[m] for m in ("S2L2A", "S1RTC", "DEM")}, ["S2L2A"], regenerate={"S2L2A": mask},
                   samples=a.samples, seed=0, tile=tile, overlap=overlap, progress=False, start="interpolate",
                   strength=sc.strength, grid_offset=split.offsets.get(sid))["S2L2A"]
        interp = fillnodata_baseline(truth, mask)
        t = truth[:, mask]
        est = res.mean if res.mean is not None else res.sample  # one sample: no mean is kept
        ac, ai = sam_map(est[:, mask], t), sam_map(interp[:, mask], t)
        bright = t.mean(0)
        q = np.quantile(bright, np.linspace(0, 1, 6))
        print(f"{sid}: SAM cogen {ac.mean():.2f}, fillnodata {ai.mean():.2f} deg ({time.time() - t0:.0f} s)")
        for k, (lo, hi) in enumerate(zip(q[:-1], q[1:])):
            s = (bright >= lo) & (bright <= hi)
            print(f"  reflectance {lo:.3f}-{hi:.3f}: cogen {ac[s].mean():6.2f}  fillnodata {ai[s].mean():6.2f} deg")
            if k == 0:
                err = lambda x: np.abs(x[:, mask][:, s] - t[:, s]).mean(1)
                fmt = lambda v: " ".join(f"{x:.4f}" for x in v)
                print(f"    darkest fifth, mean true reflectance per band {fmt(t[:, s].mean(1))}")
                print(f"    absolute error per band: cogen {fmt(err(est))}; fillnodata {fmt(err(interp))}")


if __name__ == "__main__":
    main()

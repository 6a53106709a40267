"""Where cloud removal loses spectral angle: SAM inside the masks by brightness of the true pixel, per strip.

Runs cloud removal as the evaluation does (mean of N samples, started from the interpolation at the bundle's
strength, the bundle's sampling settings) on the training columns 96-159 with synthetic masks from another seed
than the evaluation's, and prints, for each strip, the mean spectral angle of cogen's mean and of `fillnodata`
inside the masks, by quintile of the true pixel's mean reflectance, with the absolute error per band in the
darkest fifth.

    python scripts/cloud_sam_by_brightness.py --samples 8
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cloud_probe import describe, parser, strips  # noqa: E402

from cogen.evaluate import fillnodata_baseline  # noqa: E402
from cogen.metrics import sam_map  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--library-neighbours", type=int, default=0, metavar="K",
                   help="clear-pixel library neighbours (default 0: off, the model's own spectra)")
    a = p.parse_args(argv)
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    pipe.library_neighbours = a.library_neighbours
    t0 = time.time()
    print(f"{describe(pipe, a)}, library {a.library_neighbours}")
    for sid, truth, mask, res in strips(pipe, a):
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

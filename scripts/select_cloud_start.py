"""Choose how cloud removal starts (from noise, or from the interpolation at some strength) on training pixels.

The test strips (columns 160-223) are never used here: the choice is made on the 64 training columns next to
them (96-159), with synthetic cloud masks drawn from another seed than the evaluation's. The model has seen
these pixels in training (as random crops, never with these masks), so this favours the model a little; it
is the only held-apart choice five scenes allow. Prints one line per option and the winner by the mean of N
samples' PSNR.

    python scripts/select_cloud_start.py --checkpoint checkpoints/demo --strength 0.3 --strength 0.5
    python scripts/select_cloud_start.py --strength 0.2 --library-neighbours 0 --library-neighbours 32
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cloud_probe import parser  # noqa: E402

from cogen.evaluate import Evaluator, Split, cloud_removal_eval, cloud_row  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402


def main(argv=None) -> None:
    p = parser(__doc__, samples=4)
    p.add_argument("--strength", type=float, action="append", default=[])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--tile", type=int, default=32)
    p.add_argument("--shift-ensemble", type=int, default=1, help="patch-grid offsets averaged per step")
    p.add_argument("--final-denoise", type=float, default=0.0, help="model time of a last clean-up call (0: off)")
    p.add_argument("--no-native-blocks", action="store_true", help="generated 20 m / 60 m bands at 10 m detail")
    p.add_argument("--orientations", type=int, default=1, help="sample s drawn in dihedral orientation s mod N")
    p.add_argument("--library-neighbours", type=int, action="append", default=[], metavar="K",
                   help="clear-pixel library neighbours (0 = off; repeatable: each K is a run of every start)")
    a = p.parse_args(argv)
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    pipe.shift_ensemble = a.shift_ensemble
    pipe.final_denoise = a.final_denoise
    pipe.native_blocks = pipe.native_blocks and not a.no_native_blocks
    pipe.orientations = a.orientations
    c0, c1 = (int(v) for v in a.cols.split(","))
    split = Split(a.data, pipe.registry, None, None, ["S2L2A", "S1RTC", "DEM"], cols=(c0, c1))
    sc = pipe.bundle.config.sample
    ev = Evaluator(split, pipe.registry, a.samples, a.steps, sc.sampler, a.tile, 0, 0, 16, None)
    t0 = time.time()
    pick = (lambda st: f"{cloud_row(st)}, mean of {a.samples} samples") if a.samples > 1 else cloud_row
    scores = {}
    for k in a.library_neighbours or [0]:
        pipe.library_neighbours = k
        rows = cloud_removal_eval(pipe, ev, split, [a.cover], a.seed, a.strength)[f"{int(a.cover * 100)}%"]
        scores["fillnodata"] = rows["fillnodata interpolation"]
        lib = f", library {k}" if k else ""
        scores.update({("noise" if st is None else f"interpolate {st:g}") + lib: rows[pick(st)]
                       for st in [None, *a.strength]})
    print(f"columns {c0}-{c1 - 1}, cover {a.cover:.0%}, mask seed {a.seed}, mean of {a.samples} samples, "
          f"{a.steps} steps, shift ensemble {a.shift_ensemble}, final denoise {a.final_denoise}, "
          f"native blocks {'on' if pipe.native_blocks else 'off'}, orientations {a.orientations}, "
          f"{time.time() - t0:.0f} s")
    for k, v in scores.items():
        print(f"  {k:28s} PSNR {v['PSNR']:6.2f} dB  SAM {v['SAM']:5.2f} deg")
    best = max((k for k in scores if k != "fillnodata"), key=lambda k: scores[k]["PSNR"])
    print(f"best start: {best}")


if __name__ == "__main__":
    main()

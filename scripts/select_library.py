"""Choose the clear-pixel library's neighbour count K for cloud removal, on training pixels.

Runs cloud removal once with the library off, as the evaluation does (mean of N samples from the interpolation
at the bundle's strength, the bundle's sampling settings), on the training columns 96-159 with synthetic masks
from another seed than the evaluation's, then moves the mean's generated spectra onto the mean of their K
nearest clear spectra of the strip after the fact (`cogen.library.ClearLibrary`), for each K, and prints PSNR
and SAM inside the masks, averaged over the strips, with `fillnodata` beside them. Rule: the lowest SAM among
the K whose PSNR stays within 0.05 dB of the model's own. `select_cloud_start.py --library-neighbours K` then
runs the chosen K inside the sampler (every sample moved before the native-block step).

    python scripts/select_library.py --samples 8 --k 8 --k 16 --k 32 --k 64 --k 128 [--cover 0.5]
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cloud_probe import describe, parser, strips  # noqa: E402

from cogen.evaluate import fillnodata_baseline  # noqa: E402
from cogen.library import ClearLibrary  # noqa: E402
from cogen.metrics import psnr_np, sam_np  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402


def main(argv=None) -> None:
    p = parser(__doc__)
    p.add_argument("--k", type=int, action="append", default=[], help="neighbour counts to try (repeatable)")
    a = p.parse_args(argv)
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    pipe.library_neighbours = 0
    t0 = time.time()
    scores: dict[str, list[tuple[float, float]]] = {}
    for sid, truth, mask, res in strips(pipe, a):
        est = (res.mean if res.mean is not None else res.sample)[:, mask]
        t = truth[:, mask]
        lib = ClearLibrary(torch.from_numpy(truth[:, ~mask].T.astype(np.float32)))
        cands = {"fillnodata": fillnodata_baseline(truth, mask)[:, mask], "library off": est}
        for k in a.k:
            cands[f"K = {k}"] = lib.snap(torch.from_numpy(est.T.astype(np.float32)), k).numpy().T
        for name, v in cands.items():
            scores.setdefault(name, []).append((psnr_np(v, t, 1.0), sam_np(v, t)))
        print(f"{sid} ({time.time() - t0:.0f} s)", flush=True)
    print(f"{describe(pipe, a)}; PSNR / SAM inside the masks, mean over strips (SAM per strip)")
    for name, v in scores.items():
        v = np.array(v)
        print(f"  {name:12s} PSNR {v[:, 0].mean():6.2f} dB  SAM {v[:, 1].mean():5.2f} deg  ("
              + " ".join(f"{x:.2f}" for x in v[:, 1]) + ")")
    own = np.mean([x[0] for x in scores["library off"]])
    ok = [n for n in scores if n.startswith("K =") and np.mean([x[0] for x in scores[n]]) >= own - 0.05]
    if ok:
        print(f"chosen: {min(ok, key=lambda n: np.mean([x[1] for x in scores[n]]))}")


if __name__ == "__main__":
    main()

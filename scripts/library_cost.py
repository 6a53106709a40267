"""What the clear-pixel library costs in cloud removal: wall time with the library off and on, in one run.

The shipped scene (224 x 224) mirrored into a 2 x 2 mosaic (448 x 448, so that the clear pixels outnumber the
library's 16384 and it is drawn at full size), a seeded smooth cloud mask over 35% of it, the demo model's
cloud-removal defaults; each setting is run twice and the faster run is kept (about 15 minutes on 2 cores).

    python scripts/library_cost.py [--samples 4] [--k 32]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from scipy.ndimage import gaussian_filter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cogen.pipeline import CogenPipeline  # noqa: E402


def mosaic(a: np.ndarray) -> np.ndarray:
    top = np.concatenate([a, a[..., ::-1]], axis=-1)
    return np.concatenate([top, top[..., ::-1, :]], axis=-2)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/demo")
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--scene", default="433D_629L_3_1")
    p.add_argument("--samples", type=int, default=4)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--cover", type=float, default=0.35)
    a = p.parse_args(argv)
    arrs = {}
    for m in ("S2L2A", "S1RTC", "DEM"):
        with rasterio.open(Path(a.data) / m / f"{a.scene}.tif") as r:
            arrs[m] = mosaic(r.read())
    H, W = arrs["S2L2A"].shape[-2:]
    field = gaussian_filter(np.random.default_rng(0).standard_normal((H, W)), 12)
    mask = field > np.quantile(field, 1 - a.cover)
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    times = {}
    for k in (0, a.k):
        pipe.library_neighbours = k
        best = float("inf")
        for _ in range(2):
            t = time.perf_counter()
            pipe(arrs, ["S2L2A"], regenerate={"S2L2A": mask}, samples=a.samples, seed=0, progress=False)
            best = min(best, time.perf_counter() - t)
        times[k] = best
    print(f"{H} x {W} px, {mask.mean():.0%} masked ({int(mask.sum())} px), {int((~mask).sum())} clear px, "
          f"{a.samples} samples, library size {pipe.library_size}")
    print(f"  library off: {times[0]:.1f} s   K = {a.k}: {times[a.k]:.1f} s   ratio {times[a.k] / times[0]:.2f}")


if __name__ == "__main__":
    main()

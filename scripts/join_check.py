"""Parts of a scene run one by one and joined, against the whole scene run at once.

    python scripts/join_check.py [--checkpoint CKPT] [--scene ID] [--overlap-rows 128] [--samples 1]

Imputes S2L2A from S1RTC + DEM with the shipped defaults on a shipped scene: once on the whole scene, then on
two row windows (the top and the bottom of the scene, sharing `--overlap-rows` rows: by default two of the
default 64 px tiles), which are joined (`cogen join`). The parts are run twice: as now, with tiles and noise
fixed on the map (`Grid.anchor`) and joined taking each part where it is more than a tile from its inner
edges; and as before, with tiles and noise fixed on each window (`anchor=(0, 0)`) and every overlap blended
by distance to the parts' edges (`join_parts(..., tile=0)`). Over the rows both windows hold it prints:

- the mean absolute difference of the joined scene to the whole run (reflectance), and the share of those
  rows' pixels where every band is equal to within one raw unit (1e-4);
- the joined scene's high-frequency power over the whole run's (`cogen.metrics.hf_power_ratio`): 1 = the same
  texture; below 1 where two different draws were averaged into something smoother than either.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main(argv=None) -> None:
    from rasterio.windows import Window

    from cogen.io import Grid, read_raster
    from cogen.join import join_parts
    from cogen.metrics import hf_power_ratio
    from cogen.pipeline import CogenPipeline

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--data", default=str(ROOT / "data" / "terramind-examples"))
    p.add_argument("--scene", default="433D_629L_3_1")
    p.add_argument("--overlap-rows", type=int, default=128, help="rows the two windows share")
    p.add_argument("--samples", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    data = Path(a.data)
    inputs = {m: str(data / m / f"{a.scene}.tif") for m in ("S1RTC", "DEM")}
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    with tempfile.TemporaryDirectory() as td:
        g = Grid.of(inputs["S1RTC"])
        H, W = g.height, g.width
        h = (H + a.overlap_rows + 1) // 2
        wins = {"top": Window(0, 0, W, h), "bottom": Window(0, H - h, W, h)}
        shared = slice(H - h, h)  # rows both windows hold
        kw = dict(samples=a.samples, seed=a.seed, progress=False)

        def impute(name, window=None, anchor=None):
            path = Path(td) / f"{name}.tif"
            t = time.time()
            pipe(inputs, ["S2L2A"], window=window, anchor=anchor, outputs={"S2L2A": {"sample": path}}, **kw)
            return path, time.time() - t

        whole, secs = impute("whole")
        ref = read_raster(whole)[0].astype(np.float64) / 10000
        print(f"scene {a.scene}: {H} x {W} px; windows of {h} rows share rows {shared.start}-{shared.stop - 1}; "
              f"whole run {secs:.0f} s")
        for label, before in (("now: tiles and noise fixed on the map", False),
                              ("before: fixed on each window, overlaps blended", True)):
            parts = []
            for name, win in wins.items():
                path, secs = impute(f"{name}_{before}", win, (0, 0) if before else None)
                parts.append(path)
            joined = join_parts(parts, Path(td) / f"joined_{before}.tif", tile=0 if before else None)
            got = read_raster(joined)[0].astype(np.float64) / 10000
            d = np.abs(got[:, shared] - ref[:, shared])
            same = (d.max(axis=0) < 1.5e-4).mean()  # at most one raw unit in every band
            hf = hf_power_ratio(got[:, shared], ref[:, shared])
            print(f"{label}: shared rows: mean |joined - whole| {d.mean():.5f}, pixels equal {same:.1%}, "
                  f"HF power joined / whole {hf:.3f}")


if __name__ == "__main__":
    main()

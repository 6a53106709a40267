"""Imputation of the demo scene (S1RTC + DEM -> S2L2A, one sample, seed 0) on 32 px tiles, on 64 px tiles, and on
64 px tiles with their token positions squeezed into the trained range (`--interpolate-positions`), beside the
truth: the picture of docs/SAMPLING.md, "Positions beyond the training crops".

    python scripts/positions_figure.py --out docs/figures/impute_positions.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cogen.io import read_raster
from cogen.pipeline import CogenPipeline
from cogen.quicklook import render, save_grid


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None)
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--scene", default="433D_629L_3_1")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    srcs = {m: f"{a.data}/{m}/{a.scene}.tif" for m in ("S1RTC", "DEM")}
    truth, _ = read_raster(f"{a.data}/S2L2A/{a.scene}.tif")
    panels = {"truth": truth}
    for label, tile, overlap, squeeze in (("32 px tiles (overlap 8)", 32, 8, False),
                                          ("64 px tiles (overlap 16), the default", 64, 16, False),
                                          ("64 px tiles, --interpolate-positions", 64, 16, True)):
        pipe.interpolate_positions = squeeze
        panels[label] = pipe(srcs, targets=["S2L2A"], seed=0, tile=tile, overlap=overlap, progress=False)["S2L2A"].sample
    reg = pipe.registry["S2L2A"]
    cells = [(k, render(reg, v if k == "truth" else (np.asarray(v) - reg.offset) / reg.scale))  # samples: physical
             for k, v in panels.items()]
    save_grid(a.out, [cells], dpi=80, cell=4.0)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

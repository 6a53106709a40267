"""What the internal overviews of large outputs cost: one 6144 x 6144 x 12 int16 GeoTIFF written window by window
as the pipeline writes it (random values, so compression helps little), with and without overviews.

    python scripts/overview_cost.py
"""
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from rasterio.transform import from_origin
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import cogen.io as cio  # noqa: E402
from cogen.io import RasterMeta, WindowedWriter  # noqa: E402

N, C, ROWS = 6144, 12, 256


def main() -> None:
    d = Path(tempfile.mkdtemp())
    try:
        block = np.random.default_rng(0).integers(0, 4000, size=(C, ROWS, N)).astype(np.int16)
        for name, overviews in (("plain.tif", False), ("overviews.tif", True)):
            old = cio.OVERVIEW_FROM
            cio.OVERVIEW_FROM = old if overviews else 10**9
            try:
                t = time.time()
                w = WindowedWriter(d / name, "EPSG:32633", from_origin(0, 0, 10, 10), N, N, C, "int16", None, RasterMeta())
                for r in range(0, N, ROWS):
                    w.write(block, Window(0, r, N, ROWS))
                t1 = time.time()
                w.commit()
            finally:
                cio.OVERVIEW_FROM = old
            print(f"{name}: writing {t1 - t:.1f} s, commit {time.time() - t1:.1f} s, "
                  f"{os.path.getsize(d / name) / 1e6:.0f} MB")
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    main()

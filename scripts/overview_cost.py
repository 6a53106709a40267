"""What the internal overviews of large outputs cost: one 6144 x 6144 x 12 int16 GeoTIFF written window by window
as the pipeline writes it (random values, so compression helps little), with and without overviews.

    python scripts/overview_cost.py
"""
import os
import tempfile
import time

import numpy as np
from pathlib import Path
from rasterio.transform import from_origin
from rasterio.windows import Window
import cogen.io as cio
from cogen.io import WindowedWriter, RasterMeta
N, C = 6144, 12
d = Path(tempfile.mkdtemp())
rng = np.random.default_rng(0)
block = (rng.integers(0, 4000, size=(C, 256, N))).astype(np.int16)
for name, ovr in (("plain.tif", False), ("ovr.tif", True)):
    old = cio.OVERVIEW_FROM
    if not ovr:
        cio.OVERVIEW_FROM = 10**9
    t = time.time()
    w = WindowedWriter(d / name, "EPSG:32633", from_origin(0, 0, 10, 10), N, N, C, "int16", None, RasterMeta())
    for r in range(0, N, 256):
        w.write(block, Window(0, r, N, 256))
    t1 = time.time()
    w.commit()
    cio.OVERVIEW_FROM = old
    print(name, f"write {t1 - t:.1f} s, commit {time.time() - t1:.1f} s, size {os.path.getsize(d / name) / 1e6:.0f} MB")

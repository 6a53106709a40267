"""Join outputs of parts of one scene (`--window` / `--bounds` runs) into one raster, blending where they overlap.

Each part's pixels are weighted by their distance (in pixels, plus one) to the nearest edge of the part that
lies inside the joined scene, so across an overlap the weight moves from one part to the other and no seam
is left; a part's edges on the scene's border weigh nothing. Values (continuous rasters) are the weighted mean
of the parts that hold a valid value there; class maps (rasters with a colour table, or tagged
COGEN_PRODUCT=classes) take the class of the part with the largest weight. The joined raster keeps the parts'
CRS, pixel size, nodata, band names, scale/offset, colour table and tags, and is written row block by row
block, under a temporary name, with overviews when large.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import rasterio
from rasterio.windows import Window

from .errors import UsageError
from .io import RasterMeta, WindowedWriter, open_raster

BLOCK = 256  # output rows written at a time


def _part_windows(paths: Sequence[Path]):
    """The joined grid (transform, height, width) and each part's window in it; parts must share CRS, pixel
    size, band count and dtype, and lie on one pixel grid."""
    metas = []
    for p in paths:
        with open_raster(p) as s:
            metas.append((p, s.crs, s.transform, s.height, s.width, s.count, s.dtypes[0], s.nodata, s.bounds))
    p0, crs, t0, _, _, count, dtype, nodata, _ = metas[0]
    for p, c, t, h, w, n, d, nd, _ in metas[1:]:
        what = ("CRS" if c != crs else "pixel size" if (abs(t.a - t0.a) > 1e-9 * abs(t0.a) or abs(t.e - t0.e) > 1e-9 * abs(t0.e))
                else "band count" if n != count else "data type" if d != dtype else "nodata" if nd != nodata
                and not (nd is not None and nodata is not None and np.isnan(nd) and np.isnan(nodata)) else None)
        if what:
            raise UsageError(f"{p}: its {what} differs from {p0}'s; join only parts of one run over one scene")
    if t0.b != 0 or t0.d != 0 or t0.a <= 0 or t0.e >= 0:
        raise UsageError(f"{p0}: join takes north-up rasters (no rotation); this one's transform is {tuple(t0)[:6]}")
    left, top = min(m[8].left for m in metas), max(m[8].top for m in metas)
    right, bottom = max(m[8].right for m in metas), min(m[8].bottom for m in metas)
    tr = rasterio.transform.from_origin(left, top, t0.a, -t0.e)
    W, H = int(round((right - left) / t0.a)), int(round((top - bottom) / -t0.e))
    wins = []
    for p, _, t, h, w, *_ in metas:
        col = (t.c - tr.c) / tr.a
        row = (t.f - tr.f) / tr.e
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            raise UsageError(f"{p} is not on the pixel grid of {p0} (offset by a fraction of a pixel); join only "
                             f"parts of one scene")
        wins.append(Window(int(round(col)), int(round(row)), w, h))
    return crs, tr, H, W, count, dtype, nodata, wins


def _weights(win: Window, H: int, W: int, rows: slice) -> np.ndarray:
    """(n, win.width) weights of a part for joined rows `rows` (within the part): distance + 1 to the nearest
    edge of the part that is inside the scene (edges on the scene's border do not count)."""
    r0, c0, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
    big = float(H + W)
    rr = np.arange(rows.start, rows.stop, dtype=np.float64)[:, None]
    cc = np.arange(w, dtype=np.float64)[None, :]
    d = np.full((rr.shape[0], w), big)
    if r0 > 0:
        d = np.minimum(d, rr)
    if r0 + h < H:
        d = np.minimum(d, h - 1 - rr)
    if c0 > 0:
        d = np.minimum(d, cc)
    if c0 + w < W:
        d = np.minimum(d, w - 1 - cc)
    return d + 1.0


def join_parts(paths: Sequence[str | Path], out: str | Path, overwrite: bool = False) -> Path:
    """Join part rasters (see the module) into `out`; returns its path."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise UsageError("join needs two or more part rasters")
    out = Path(out)
    if out.exists() and not overwrite:
        raise UsageError(f"{out} exists; pass --overwrite to replace it")
    crs, tr, H, W, count, dtype, nodata, wins = _part_windows(paths)
    srcs = [rasterio.open(p) for p in paths]
    try:
        first = srcs[0]
        categorical = bool(first.tags().get("COGEN_PRODUCT") == "classes")
        try:
            cmap = first.colormap(1)
            categorical = True
        except ValueError:
            cmap = None
        meta = RasterMeta(descriptions=list(first.descriptions), tags=first.tags(), categorical=categorical,
                          colormap={k: v[:3] for k, v in cmap.items()} if cmap else None,
                          scale=first.scales[0] if not categorical else None,
                          offset=first.offsets[0] if not categorical else None,
                          unit=first.units[0] if first.units and first.units[0] else None)
        writer = WindowedWriter(out, crs, tr, H, W, count, dtype, nodata, meta=meta)
        try:
            fill = nodata if nodata is not None else 0
            for top in range(0, H, BLOCK):
                n = min(BLOCK, H - top)
                acc = np.zeros((count, n, W))
                wsum = np.zeros((n, W))
                best = np.zeros((n, W))
                cls = np.full((count, n, W), fill, dtype=dtype)
                for s, win in zip(srcs, wins):
                    r0, c0 = int(win.row_off), int(win.col_off)
                    a, b = max(top, r0), min(top + n, r0 + int(win.height))
                    if b <= a:
                        continue
                    data = s.read(window=Window(0, a - r0, int(win.width), b - a))
                    ok = s.dataset_mask(window=Window(0, a - r0, int(win.width), b - a)) > 0
                    wt = _weights(win, H, W, slice(a - r0, b - r0)) * ok
                    sl = (slice(a - top, b - top), slice(c0, c0 + int(win.width)))
                    if categorical:
                        take = wt > best[sl]
                        cls[(slice(None),) + sl] = np.where(take[None], data, cls[(slice(None),) + sl])
                        best[sl] = np.maximum(best[sl], wt)
                    else:
                        acc[(slice(None),) + sl] += data.astype(np.float64) * wt[None]
                        wsum[sl] += wt
                if categorical:
                    block = cls
                else:
                    with np.errstate(invalid="ignore", divide="ignore"):
                        mean = acc / wsum[None]
                    if np.issubdtype(np.dtype(dtype), np.integer):
                        mean = np.rint(mean)
                    block = np.where(wsum[None] > 0, mean, fill).astype(dtype)
                writer.write(block, Window(0, top, W, n))
            return writer.commit()
        except BaseException:
            writer.abort()
            raise
    finally:
        for s in srcs:
            s.close()

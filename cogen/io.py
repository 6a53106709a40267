"""GeoTIFF reading and writing that keep CRS, transform, nodata and band descriptions.

Every write goes to a temporary name beside the target and is renamed into place, so an interrupted run
never leaves a file that looks finished.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import MaskFlags, Resampling
from rasterio.transform import Affine
from rasterio.windows import Window

from .errors import GridMismatchError, OutputExistsError, RasterError, UsageError, cli_exit


@dataclass(frozen=True)
class Grid:
    """Where a raster lies: CRS, affine transform and size (height, width)."""

    crs: CRS | None
    transform: Affine
    height: int
    width: int

    @classmethod
    def of(cls, path: str | Path) -> "Grid":
        with open_raster(path) as src:
            return cls(src.crs, src.transform, src.height, src.width)

    def window_transform(self, window: Window) -> Affine:
        return rasterio.windows.transform(window, self.transform)

    def crop(self, window: "Window | None", where: str) -> "Grid":
        """The grid of a pixel window of this one (None: this grid); a window that is empty or reaches beyond
        the raster is a UsageError naming `where` and the raster's size."""
        if window is None:
            return self
        r0, c0, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        if h < 1 or w < 1 or r0 < 0 or c0 < 0 or r0 + h > self.height or c0 + w > self.width:
            raise UsageError(f"--window {c0},{r0},{w},{h} (COL,ROW,WIDTH,HEIGHT) does not lie inside {where}, "
                             f"{self.width} x {self.height} px; give a window within it")
        return Grid(self.crs, self.window_transform(window), h, w)

    def anchor(self) -> tuple[int, int]:
        """(row, col) of the top-left pixel on the CRS's lattice of pixels of this size: the map coordinates of
        its corner over the pixel size, rounded down. Windows and crops of one raster, and rasters on one grid
        (neighbouring or overlapping tiles of a product), agree on it; the tiling and the noise of sampling are
        fixed on it (cogen.tiling.anchored_starts). (0, 0) for a rotated or sheared transform."""
        t = self.transform
        if t.b or t.d or not t.a or not t.e:
            return 0, 0
        return math.floor(t.f / t.e + 1e-6), math.floor(t.c / t.a + 1e-6)

    def matches(self, other: "Grid", tol_px: float = 1e-3) -> str | None:
        """None if both grids are the same (to `tol_px` of a pixel), else what differs."""
        if (self.height, self.width) != (other.height, other.width):
            return f"size {self.height}x{self.width} vs {other.height}x{other.width}"
        if self.crs != other.crs:
            return f"CRS {self.crs} vs {other.crs}"
        a, b = np.array(self.transform)[:6], np.array(other.transform)[:6]
        px = max(abs(self.transform.a), abs(self.transform.e), 1e-12)
        if not np.allclose(a, b, rtol=0, atol=tol_px * px):
            show = lambda t: "(" + ", ".join(f"{float(v):.10g}" for v in np.round(t, 6)) + ")"
            return f"transform {show(a)} vs {show(b)}"
        return None


def check_same_grid(path_a: str | Path, grid_a: Grid, path_b: str | Path, grid_b: Grid) -> None:
    diff = grid_a.matches(grid_b)
    if diff:
        raise GridMismatchError(
            f"{path_b} is not on the grid of {path_a} ({diff}); resample it first with "
            f"`cogen-reproject --src {path_b} --like {path_a} --out NEW.tif`"
        )


@contextlib.contextmanager
def open_raster(path: str | Path) -> Iterator[rasterio.io.DatasetReader]:
    path = Path(path)
    if not path.is_file():
        raise RasterError(f"{path}: file not found; check the path")
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as e:
        raise RasterError(f"{path}: not a readable raster ({str(e).splitlines()[0][:120]}); pass a GeoTIFF") from None
    with src:
        yield src


def read_raster(path: str | Path, window: Window | None = None, boundless: bool = False,
                fill_value: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read all bands (optionally a window) -> ((C,H,W) array in the file's dtype, profile dict).

    The profile holds crs, transform (of the window when one is given), nodata, descriptions, dtype.
    With `boundless`, a window beyond the raster is filled with `fill_value` (default: nodata or 0).
    """
    with open_raster(path) as src:
        if boundless:
            fv = fill_value if fill_value is not None else (src.nodata if src.nodata is not None else 0)
            arr = src.read(window=window, boundless=True, fill_value=fv)
        else:
            arr = src.read(window=window)
        tr = src.window_transform(window) if window is not None else src.transform
        prof = {
            "crs": src.crs, "transform": tr, "nodata": src.nodata, "descriptions": src.descriptions,
            "dtype": src.dtypes[0], "height": arr.shape[1], "width": arr.shape[2], "count": src.count,
        }
    return arr, prof


def has_internal_mask(src) -> bool:
    """Whether an open raster carries an internal (per-dataset) mask of no-data pixels."""
    return any(MaskFlags.per_dataset in f for f in src.mask_flag_enums)


def file_valid(path: str | Path, raw: np.ndarray, window: Window | None = None) -> np.ndarray:
    """(H, W) bool for `raw` read from `path` (the same `window`): False where the file itself says no data, by
    its nodata value in any band or by its internal (per-dataset) mask. The registry's own rules (NaN, valid
    range, nodata) are `Modality.valid_mask`'s."""
    with open_raster(path) as src:
        return dataset_valid(src, raw, window)


def dataset_valid(src, raw: np.ndarray, window: Window | None = None) -> np.ndarray:
    """`file_valid` for a raster already open (a file, or GeoTIFF bytes in a rasterio MemoryFile)."""
    ok = np.ones(raw.shape[-2:], bool)
    nod = src.nodata
    if nod is not None and not np.isnan(nod):
        ok &= ~(raw == nod).any(axis=0)
    if has_internal_mask(src):
        ok &= src.dataset_mask(window=window) > 0
    return ok


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _tmp_name(path: Path) -> Path:
    """A fresh hidden temporary file beside `path`, with the permissions a plain new file would get."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; remove it or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=str))


def geotiff_profile(crs: CRS | None, transform: Affine, height: int, width: int, count: int, dtype: str,
                    nodata: float | None) -> dict[str, Any]:
    prof: dict[str, Any] = dict(driver="GTiff", height=height, width=width, count=count, dtype=dtype, crs=crs,
                                transform=transform, nodata=nodata, compress="deflate")
    if np.issubdtype(np.dtype(dtype), np.floating):
        prof["predictor"] = 3
    elif np.dtype(dtype).itemsize > 1:
        prof["predictor"] = 2
    if height >= 256 and width >= 256:
        prof.update(tiled=True, blockxsize=256, blockysize=256)
    return prof


@dataclass
class RasterMeta:
    """What makes an output raster self-describing in GIS tools: band names, GDAL scale/offset/unit (physical =
    raw * scale + offset, in unit), a colour table for a class map, dataset tags (provenance) and per-band tags."""

    descriptions: Sequence[str | None] | None = None
    scale: float | None = None
    offset: float | None = None
    unit: str | None = None
    colormap: Mapping[int, tuple[int, int, int]] | None = None
    tags: Mapping[str, Any] | None = None
    band_tags: Sequence[Mapping[str, Any]] | None = None
    categorical: bool = False  # class ids: overviews take the most common value, not the average

    def apply(self, dst) -> None:
        for i in range(1, dst.count + 1):
            if self.band_tags and len(self.band_tags) == dst.count and self.band_tags[i - 1]:
                dst.update_tags(i, **{k: str(v) for k, v in self.band_tags[i - 1].items()})
            if self.descriptions and self.descriptions[i - 1]:
                dst.set_band_description(i, self.descriptions[i - 1])
            if self.unit:
                dst.set_band_unit(i, self.unit)
        if self.scale is not None:
            dst.scales = (self.scale,) * dst.count
            dst.offsets = (self.offset or 0.0,) * dst.count
        if self.colormap and dst.count == 1 and dst.dtypes[0] in ("uint8", "uint16"):
            dst.write_colormap(1, {k: (*rgb, 255) for k, rgb in self.colormap.items()})
        if self.tags:
            dst.update_tags(**{k: str(v) for k, v in self.tags.items()})


def write_raster(path: str | Path, arr: np.ndarray, crs: CRS | None, transform: Affine,
                 nodata: float | None = None, descriptions: Sequence[str | None] | None = None,
                 dtype: str | None = None, overwrite: bool = True) -> Path:
    """Write a (C,H,W) array as a deflate GeoTIFF atomically; returns the path."""
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    dtype = dtype or arr.dtype.name
    prof = geotiff_profile(crs, transform, arr.shape[1], arr.shape[2], arr.shape[0], dtype, nodata)
    with atomic_path(path, overwrite) as tmp:
        with rasterio.open(tmp, "w", **prof) as dst:
            dst.write(arr.astype(dtype, copy=False))
            RasterMeta(descriptions=descriptions).apply(dst)
    return Path(path)


OVERVIEW_FROM = 1024  # outputs this large or larger (either side) get internal overviews
OVERVIEW_SMALLEST = 256  # down to about this size


def overview_factors(height: int, width: int) -> list[int]:
    """Decimation factors 2, 4, 8, ... for a raster of this size, so that GIS tools open large outputs fast; []
    below `OVERVIEW_FROM`."""
    if max(height, width) < OVERVIEW_FROM:
        return []
    f, out = 2, []
    while max(height, width) // f >= OVERVIEW_SMALLEST:
        out.append(f)
        f *= 2
    return out


class WindowedWriter:
    """Write a large raster window by window into a temporary file; :meth:`commit` builds overviews for large
    rasters (average, or mode for class maps) and renames it into place."""

    def __init__(self, path: str | Path, crs: CRS | None, transform: Affine, height: int, width: int,
                 count: int, dtype: str, nodata: float | None, meta: RasterMeta | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = _tmp_name(self.path)
        prof = geotiff_profile(crs, transform, height, width, count, dtype, nodata)
        self.dst = rasterio.open(self.tmp, "w", **prof)
        self.meta = meta or RasterMeta()
        self.meta.apply(self.dst)
        self.dtype = dtype

    def write(self, arr: np.ndarray, window: Window) -> None:
        self.dst.write(np.asarray(arr).astype(self.dtype, copy=False), window=window)

    def commit(self) -> Path:
        factors = overview_factors(self.dst.height, self.dst.width)
        if factors:
            self.dst.build_overviews(factors, Resampling.mode if self.meta.categorical else Resampling.average)
        self.dst.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if not self.dst.closed:
            self.dst.close()
        if self.tmp.exists():
            self.tmp.unlink()


def reproject_like(src_path: str | Path, like_path: str | Path, out_path: str | Path,
                   resampling: str = "bilinear", overwrite: bool = False) -> Path:
    """Resample and reproject `src_path` onto the grid (CRS, transform, size) of `like_path`."""
    from rasterio.warp import reproject

    try:
        method = Resampling[resampling]
    except KeyError:
        raise RasterError(f"unknown resampling {resampling!r}; use one of nearest, bilinear, cubic, average, mode") from None
    ref = Grid.of(like_path)
    arr, prof = read_raster(src_path)
    nodata = prof["nodata"]
    dtype = prof["dtype"]
    fill = nodata if nodata is not None else (np.nan if np.issubdtype(np.dtype(dtype), np.floating) else 0)
    out = np.full((arr.shape[0], ref.height, ref.width), fill, dtype=dtype)
    reproject(arr, out, src_transform=prof["transform"], src_crs=prof["crs"], dst_transform=ref.transform,
              dst_crs=ref.crs, resampling=method, src_nodata=nodata, dst_nodata=fill)
    return write_raster(out_path, out, ref.crs, ref.transform, nodata=None if nodata is None and fill == 0 else fill,
                        descriptions=prof["descriptions"], overwrite=overwrite)


@cli_exit
def reproject_main() -> None:
    """cogen-reproject --src A.tif --like REF.tif --out B.tif [--resampling nearest|bilinear|...]"""
    p = argparse.ArgumentParser(description="Resample/reproject a raster onto a reference raster's grid.")
    p.add_argument("--src", required=True)
    p.add_argument("--like", required=True, help="reference raster whose CRS, transform and size are taken")
    p.add_argument("--out", required=True)
    p.add_argument("--resampling", default="bilinear", help="nearest for class maps, bilinear/cubic for values")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args()
    out = reproject_like(a.src, a.like, a.out, a.resampling, a.overwrite)
    print(f"wrote {out} on the grid of {a.like}")


if __name__ == "__main__":
    reproject_main()

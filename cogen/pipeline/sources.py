"""Inputs of a call: a modality's values on the scene grid, read window by window (GeoTIFFs of any size, arrays),
and cloud masks. Every source says which pixels are valid: the file's nodata and internal mask, the registry's
nodata and valid range, NaN, and a pixel whose every band is 0 in images (Sentinel-2's no data)."""
from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from ..errors import GridMismatchError, RasterError, UsageError
from ..io import Grid, check_same_grid, has_internal_mask, open_raster
from ..registry import Modality, Registry


class Source:
    """A modality's values on the scene grid; `read` is boundless (outside the scene = invalid). A source may
    hold some of its modality's bands only: `read` gives every band (the missing ones 0) and `given` says which
    are real."""

    modality: Modality
    height: int
    width: int
    anchor: tuple[int, int] = (0, 0)  # the first pixel's (row, col) on the map's pixel lattice (Grid.anchor)
    band_idx: tuple[int, ...] = ()  # the modality's bands the source holds, in its own order

    @property
    def given(self) -> np.ndarray:
        """(num_bands,) bool: the modality's bands this source holds."""
        return self.modality.band_mask(self.band_idx)

    @property
    def all_bands(self) -> bool:
        return len(self.band_idx) == self.modality.channels or self.modality.is_categorical

    def read(self, row: int, col: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class ArraySource(Source):
    def __init__(self, modality: Modality, raw: np.ndarray, valid: np.ndarray | None = None,
                 bands: Sequence[str] | None = None):
        """`bands`: the names of the array's bands when it holds some of the modality's only."""
        raw = np.asarray(raw)
        if raw.ndim == 2:
            raw = raw[None]
        self.band_idx = modality.file_bands(raw.shape[0], f"array for {modality.name}", declared=bands)
        ok = modality.valid_mask(raw)
        self.modality, self.raw = modality, modality.expand_bands(raw, self.band_idx)
        self.valid = ok if valid is None else (np.asarray(valid, bool) & ok)
        self.height, self.width = raw.shape[1:]

    def read(self, row, col, h, w):
        raw = np.zeros((self.raw.shape[0], h, w), self.raw.dtype)
        ok = np.zeros((h, w), bool)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + h, self.height), min(col + w, self.width)
        if r1 > r0 and c1 > c0:
            raw[:, r0 - row : r1 - row, c0 - col : c1 - col] = self.raw[:, r0:r1, c0:c1]
            ok[r0 - row : r1 - row, c0 - col : c1 - col] = self.valid[r0:r1, c0:c1]
        return raw, ok


class RasterSource(Source):
    """A GeoTIFF read window by window; its nodata, its internal mask if it has one (a per-dataset mask, as GDAL
    writes beside JPEG-compressed imagery) and the registry's valid range mark invalid pixels."""

    def __init__(self, modality: Modality, path: str | Path, window: Window | None = None,
                 bands: Sequence[str] | None = None):
        """`window` (pixels of the file) makes that part of the raster the scene: reads are relative to it and
        see nothing outside it, and the grid is the window's. `bands` names the file's bands (`--bands`) when
        its band descriptions do not and it holds some of the modality's bands only."""
        self.modality, self.path = modality, Path(path)
        with open_raster(path) as src:
            self.band_idx = modality.file_bands(src.count, str(path), src.descriptions, bands)
            self.full_grid = Grid(src.crs, src.transform, src.height, src.width)
            self.grid = self.full_grid.crop(window, str(path))
            self._off = (0, 0) if window is None else (int(window.row_off), int(window.col_off))
            self.nodata, self.dtype = src.nodata, src.dtypes[0]
            self._has_mask = has_internal_mask(src)
            check_dtype(modality, self.dtype, self.path)
            for w in unit_warnings(modality, src):
                print(f"warning: {path}: {w}", file=sys.stderr)
            self.declared_add_offsets = declared_add_offsets(src)
            # the product's own metadata (acquisition, processing baseline, offsets), kept on outputs that
            # regenerate part of this raster
            self.tags = src.tags()
            self.band_tags = [src.tags(b) for b in range(1, src.count + 1)]
        self.height, self.width = self.grid.height, self.grid.width
        self.anchor = self.grid.anchor()
        self._bounds = (*self._off, self._off[0] + self.height, self._off[1] + self.width)
        self._src = rasterio.open(self.path)

    def read(self, row, col, h, w):
        fill = self.nodata if self.nodata is not None else 0
        raw = read_clipped(self._src, None, row + self._off[0], col + self._off[1], h, w, fill, self._bounds)
        inside = np.zeros((h, w), bool)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + h, self.height), min(col + w, self.width)
        inside[r0 - row : r1 - row, c0 - col : c1 - col] = True
        ok = inside & self.modality.valid_mask(raw)
        if self.nodata is not None and not (isinstance(self.nodata, float) and math.isnan(self.nodata)):
            ok &= ~(raw == self.nodata).any(axis=0)
        if self._has_mask:
            ok &= read_clipped(self._src, "mask", row + self._off[0], col + self._off[1], h, w, 0, self._bounds) > 0
        return self.modality.expand_bands(raw, self.band_idx), ok

    def close(self):
        self._src.close()


ADD_OFFSET_KEYS = ("BOA_ADD_OFFSET", "RADIO_ADD_OFFSET", "COGEN_ADD_OFFSET")


def window_grid_offset(grid_offset: tuple[int, int] | None, window: Window | None) -> tuple[int, int] | None:
    """The native-block grid offset of a window's top-left pixel, from that of the file's (`grid_offset`, None =
    (0, 0)); `grid_offset` itself when there is no window."""
    if window is None:
        return grid_offset
    go = grid_offset or (0, 0)
    return go[0] + int(window.row_off), go[1] + int(window.col_off)


def declared_add_offsets(src) -> list[float]:
    """The distinct additive offsets (raw units) an open raster's dataset or band metadata declares under ESA's
    names (BOA_ADD_OFFSET for L2A, RADIO_ADD_OFFSET for L1C, optionally with a band suffix) or cogen's own
    (COGEN_ADD_OFFSET, on outputs written with an offset); [] when none."""
    found: set[float] = set()
    for tags in [src.tags()] + [src.tags(b) for b in range(1, src.count + 1)]:
        for k, v in tags.items():
            if k.upper().startswith(ADD_OFFSET_KEYS):
                try:
                    found.add(float(v))
                except ValueError:
                    pass
    return sorted(found)


class MaskSource:
    """A binary mask raster (non-zero = masked) or a class layer whose `values` are masked."""

    def __init__(self, path: str | Path, values: Sequence[int] | None = None, window: Window | None = None):
        self.path = Path(path)
        with open_raster(path) as src:
            if src.count != 1:
                raise RasterError(f"{path}: a mask has 1 band, this has {src.count}; pass a single-band mask")
            self.full_grid = Grid(src.crs, src.transform, src.height, src.width)
            self.grid = self.full_grid.crop(window, str(path))
        self._off = (0, 0) if window is None else (int(window.row_off), int(window.col_off))
        self._bounds = (*self._off, self._off[0] + self.grid.height, self._off[1] + self.grid.width)
        self.values = None if values is None else np.asarray(list(values))
        self._src = rasterio.open(self.path)

    def _read_raw(self, row, col, h, w) -> np.ndarray:
        return read_clipped(self._src, 1, row + self._off[0], col + self._off[1], h, w, 0, self._bounds)

    def _masked(self, a: np.ndarray) -> np.ndarray:
        return np.isin(a, self.values) if self.values is not None else (a != 0)

    def read(self, row, col, h, w) -> np.ndarray:
        return self._masked(self._read_raw(row, col, h, w))

    def survey(self, block: int = 1024, most: int = 16) -> tuple[float, list]:
        """(share of the pixels masked, up to `most` of the distinct values the raster holds), read in blocks."""
        H, W = self.grid.height, self.grid.width
        masked, seen = 0, set()
        for r in range(0, H, block):
            for c in range(0, W, block):
                a = self._read_raw(r, c, min(block, H - r), min(block, W - c))
                masked += int(self._masked(a).sum())
                if len(seen) < most:
                    seen.update(np.unique(a)[:most].tolist())
        return masked / max(H * W, 1), sorted(seen)[:most]


def read_clipped(src, band, row: int, col: int, h: int, w: int, fill, bounds=None) -> np.ndarray:
    """Read a window that may reach beyond the raster (or beyond `bounds`, (top, left, bottom, right) pixels of
    it), filling outside with `fill`; band None reads every band, "mask" the dataset mask (0 = no data). (rasterio's
    boundless reads build a VRT per call, which costs far more memory over thousands of tiles.)"""
    count = src.count if band is None else None
    shape = (count, h, w) if band is None else (h, w)
    out = np.full(shape, fill, dtype="uint8" if band == "mask" else src.dtypes[0])
    top, left, bottom, right = bounds or (0, 0, src.height, src.width)
    r0, c0 = max(row, top), max(col, left)
    r1, c1 = min(row + h, bottom), min(col + w, right)
    if r1 > r0 and c1 > c0:
        win = Window(c0, r0, c1 - c0, r1 - r0)
        data = (src.read(window=win) if band is None else src.dataset_mask(window=win) if band == "mask"
                else src.read(band, window=win))
        out[..., r0 - row : r1 - row, c0 - col : c1 - col] = data
    return out


def unit_warnings(mod: Modality, src, size: int = 64) -> list[str]:
    """Signs, in nine `size` px windows spread over an open raster (a few blocks read, whatever the scene's
    size), that its values are in other units than the registry's: backscatter in linear power where dB is
    expected (every band's median above 0; in dB it lies near -10 to -20), or values already scaled (e.g.
    reflectance 0-1) where raw numbers with a scale are expected (every valid value within +-2 while the scale
    is 1e-2 or finer)."""
    if mod.is_categorical:
        return []
    h, w = min(src.height, size), min(src.width, size)
    parts = []
    for fy in (1 / 6, 1 / 2, 5 / 6):
        for fx in (1 / 6, 1 / 2, 5 / 6):
            win = Window(int(fx * (src.width - w)), int(fy * (src.height - h)), w, h)
            raw = src.read(window=win).astype(np.float64)
            if src.nodata is not None and not math.isnan(src.nodata):
                raw[:, (raw == src.nodata).any(axis=0)] = np.nan
            parts.append(raw[:, mod.valid_mask(raw)])
    vals = np.concatenate(parts, axis=1)
    if vals.shape[1] < 16:
        return []
    phys = mod.to_physical(vals)
    out = []
    if mod.units == "dB" and (np.median(phys, axis=1) > 0).all():
        out.append(f"{mod.name} should be backscatter in dB, but every band's median is above 0 "
                   f"({', '.join(f'{v:.3g}' for v in np.median(phys, axis=1))}): linear power? Convert it with "
                   f"10 * log10(value) first")
    if abs(mod.scale) <= 1e-2 and np.abs(vals).max() <= 2:
        out.append(f"{mod.name} values are read as raw numbers x {mod.scale:g} ({mod.units}), but every value lies "
                   f"within +-2 (largest {np.abs(vals).max():.3g}): already scaled? Store raw values "
                   f"(e.g. reflectance x {1 / mod.scale:g})")
    return out


def check_dtype(mod: Modality, dtype: str, path: Path) -> None:
    dt = np.dtype(dtype)
    if mod.is_categorical and not np.issubdtype(dt, np.integer):
        raise RasterError(f"{path}: {mod.name} is a class map and needs integer class ids, not {dtype}; "
                          f"convert the file to an integer type")
    if dt.kind in "cSUOVb":
        raise RasterError(f"{path}: dtype {dtype} cannot be read as {mod.name} values; convert to int or float")




def read_mask(mask, row: int, col: int, h: int, w: int) -> np.ndarray:
    """(h, w) bool: the masked pixels of a window of a `MaskSource` or a (H, W) bool array (False beyond it)."""
    if isinstance(mask, MaskSource):
        return mask.read(row, col, h, w)
    m = np.asarray(mask, bool)
    out = np.zeros((h, w), bool)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(row + h, m.shape[0]), min(col + w, m.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - row : r1 - row, c0 - col : c1 - col] = m[r0:r1, c0:c1]
    return out


def any_valid(s: Source, block: int = 1024) -> bool:
    """Whether a source holds any valid pixel, read in blocks."""
    for r in range(0, s.height, block):
        for c in range(0, s.width, block):
            if s.read(r, c, min(block, s.height - r), min(block, s.width - c))[1].any():
                return True
    return False


def make_sources(registry: Registry, conditions: Mapping[str, Any], window: Window | None = None,
                 add_offsets: Mapping[str, float] | None = None,
                 bands: Mapping[str, Sequence[str]] | None = None) -> dict[str, Source]:
    """Sources of the conditions ({modality: GeoTIFF path, (C, H, W) raw array or tensor, or a Source}); GeoTIFFs
    are read on their `window` (pixels) only when one is given. Files must share one grid, arrays one size.
    `bands` ({modality: band names}) names the bands of an input that holds some of its modality's only."""
    add_offsets, bands = add_offsets or {}, dict(bands or {})
    stray = [m for m in bands if m not in conditions]
    if stray:
        raise UsageError(f"--bands {stray[0]}=...: {stray[0]} is not an input; name the bands of a given modality")
    sources: dict[str, Source] = {}
    first_path, first_grid = None, None
    for m, v in conditions.items():
        if m not in registry:
            raise UsageError(f"unknown modality {m!r}; known: {', '.join(registry)}")
        mod = registry[m]
        if isinstance(v, Source):
            s = v
        elif isinstance(v, (str, Path)):
            s = RasterSource(mod, v, window, bands.get(m))
            used = add_offsets.get(m, 0.0)
            if s.declared_add_offsets and s.declared_add_offsets != [used]:
                declared = s.declared_add_offsets
                print(f"warning: {v} declares an additive offset of {', '.join(f'{d:g}' for d in declared)} in its "
                      f"metadata ({'/'.join(ADD_OFFSET_KEYS[:2])}), but {used:g} is applied; pass --add-offset "
                      f"{m}={declared[0]:g} (Python: add_offsets=...) if the values carry it", file=sys.stderr)
            if first_grid is None:
                first_path, first_grid = v, s.grid
            else:
                check_same_grid(first_path, first_grid, v, s.grid)
        else:
            s = ArraySource(mod, v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v), bands=bands.get(m))
        sources[m] = s
    sizes = {(s.height, s.width) for s in sources.values()}
    if len(sizes) > 1:
        raise GridMismatchError(f"conditions have different sizes {sorted(sizes)}; resample them onto one grid with "
                                f"`cogen-reproject`")
    return sources

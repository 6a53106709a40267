"""The user-facing pipeline: conditions in, targets out, any scene size, georeferenced.

    from cogen.pipeline import CogenPipeline
    pipe = CogenPipeline.from_checkpoint()              # the shipped demo model
    out = pipe({"S1RTC": "s1.tif", "DEM": "dem.tif"}, targets=["S2L2A"], samples=4, seed=0)
    out["S2L2A"].mean                                   # (C, H, W) physical units (reflectance)

Scenes larger than the model's tile are cut into overlapping tiles processed in batches, row band by row
band: inputs are read and outputs written window by window, so memory follows the tile batch and one band
of tiles, not the scene. Tiles are blended with weights that sum to one; every tile draws its initial noise
from one noise field fixed by (seed, sample, pixel position), so overlapping tiles agree and seams vanish.
Tiles and noise are fixed on the map (the scene's place on its CRS's pixel lattice, `Grid.anchor`), so windows
of one file, neighbouring crops and overlapping granules generate the same values where they cut the same tiles.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import rasterio
import torch
from rasterio.windows import Window
from tqdm.auto import tqdm

from . import __version__
from .checkpoint import Bundle, load_bundle
from .data.dataset import dihedral, to_model_space
from .diffusion.sampling import denoise
from .errors import ConfigError, GridMismatchError, RasterError, UsageError
from .io import Grid, RasterMeta, WindowedWriter, check_same_grid, has_internal_mask, open_raster
from .library import ClearLibrary
from .native import block_project, detect_block_offset
from .registry import Modality
from .tiling import anchored_starts, blend_weight
from .votes import VoteSmoother

NOISE_BLOCK = 32  # latent cells per side of one block of the global noise field
GDAL_CACHE_MB = 64


# ---- inputs ----------------------------------------------------------------------------------------------
class Source:
    """A modality's values on the scene grid; `read` is boundless (outside the scene = invalid)."""

    modality: Modality
    height: int
    width: int
    anchor: tuple[int, int] = (0, 0)  # the first pixel's (row, col) on the map's pixel lattice (Grid.anchor)

    def read(self, row: int, col: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError


class ArraySource(Source):
    def __init__(self, modality: Modality, raw: np.ndarray, valid: np.ndarray | None = None):
        raw = np.asarray(raw)
        if raw.ndim == 2:
            raw = raw[None]
        modality.check_bands(raw.shape[0], f"array for {modality.name}")
        self.modality, self.raw = modality, raw
        self.valid = modality.valid_mask(raw) if valid is None else (np.asarray(valid, bool) & modality.valid_mask(raw))
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

    def __init__(self, modality: Modality, path: str | Path, window: Window | None = None):
        """`window` (pixels of the file) makes that part of the raster the scene: reads are relative to it and
        see nothing outside it, and the grid is the window's."""
        self.modality, self.path = modality, Path(path)
        with open_raster(path) as src:
            modality.check_bands(src.count, str(path))
            self.full_grid = Grid(src.crs, src.transform, src.height, src.width)
            self.grid = self.full_grid.crop(window, str(path))
            self._off = (0, 0) if window is None else (int(window.row_off), int(window.col_off))
            self.nodata, self.dtype = src.nodata, src.dtypes[0]
            self._has_mask = has_internal_mask(src)
            _check_dtype(modality, self.dtype, self.path)
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
        raw = _read_clipped(self._src, None, row + self._off[0], col + self._off[1], h, w, fill, self._bounds)
        inside = np.zeros((h, w), bool)
        r0, c0 = max(row, 0), max(col, 0)
        r1, c1 = min(row + h, self.height), min(col + w, self.width)
        inside[r0 - row : r1 - row, c0 - col : c1 - col] = True
        ok = inside & self.modality.valid_mask(raw)
        if self.nodata is not None and not (isinstance(self.nodata, float) and math.isnan(self.nodata)):
            ok &= ~(raw == self.nodata).any(axis=0)
        if self._has_mask:
            ok &= _read_clipped(self._src, "mask", row + self._off[0], col + self._off[1], h, w, 0, self._bounds) > 0
        return raw, ok

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
        return _read_clipped(self._src, 1, row + self._off[0], col + self._off[1], h, w, 0, self._bounds)

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


def _read_clipped(src, band, row: int, col: int, h: int, w: int, fill, bounds=None) -> np.ndarray:
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


def _check_dtype(mod: Modality, dtype: str, path: Path) -> None:
    dt = np.dtype(dtype)
    if mod.is_categorical and not np.issubdtype(dt, np.integer):
        raise RasterError(f"{path}: {mod.name} is a class map and needs integer class ids, not {dtype}; "
                          f"convert the file to an integer type")
    if dt.kind in "cSUOVb":
        raise RasterError(f"{path}: dtype {dtype} cannot be read as {mod.name} values; convert to int or float")


# ---- outputs ---------------------------------------------------------------------------------------------
@dataclass
class TargetResult:
    """What the pipeline produces for one target, in physical units (continuous) or class ids."""

    modality: str
    sample: np.ndarray | None = None  # (C,H,W) first sample (continuous) / class ids (1,H,W)
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    classes: np.ndarray | None = None  # (H,W) majority class ids
    confidence: np.ndarray | None = None  # (H,W) fraction of samples agreeing
    files: dict[str, str] = field(default_factory=dict)


class _MemorySink:
    def __init__(self, count: int, height: int, width: int, dtype: str):
        self.arr = np.zeros((count, height, width), dtype)
        self.dtype = dtype

    def write(self, arr: np.ndarray, window: Window) -> None:
        r, c, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        self.arr[:, r : r + h, c : c + w] = arr

    def commit(self):
        return self.arr

    def abort(self):
        pass


def _raw_out(mod: Modality, phys: np.ndarray, dtype: str, nodata: float | None, info: np.ndarray) -> np.ndarray:
    raw = (phys - mod.offset) / mod.scale
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        lim = np.iinfo(dt)
        raw = np.clip(np.round(raw), lim.min, lim.max)
        if nodata is not None and not math.isnan(nodata):
            raw = np.where(raw == nodata, nodata + (1 if nodata < lim.max else -1), raw)  # never fake nodata
    if nodata is not None:
        raw = np.where(info[None], raw, nodata)
    return raw.astype(dt)


def output_nodata(mod: Modality) -> float | None:
    if mod.nodata is not None:
        return mod.nodata
    return float("nan") if np.issubdtype(np.dtype(mod.dtype), np.floating) else None


# ---- the pipeline ----------------------------------------------------------------------------------------
INTERP_DISTANCE = 200  # px: fillnodata's search distance for start="interpolate"
INTERP_BLOCK = 256  # rows interpolated at a time (plus INTERP_DISTANCE above and below)


class InterpolatedStart:
    """The masked pixels of a target filled from its kept ones (`rasterio.fill.fillnodata`, model space),
    computed block of rows by block of rows with INTERP_DISTANCE rows of context on each side (all that
    fillnodata's search can reach), so memory stays bounded on large scenes; two blocks are kept. Pixels out
    of reach of any kept pixel get the band mean of the kept pixels in the block's context (0, the
    normalised mean, when there are none)."""

    def __init__(self, source: Source, mask, H: int, W: int, block: int = INTERP_BLOCK,
                 distance: int = INTERP_DISTANCE):
        self.src, self.mask, self.H, self.W = source, mask, H, W
        self.block, self.distance = block, distance
        self.cache: dict[int, np.ndarray] = {}

    def _compute(self, k: int) -> np.ndarray:
        from rasterio.fill import fillnodata

        r0, r1 = k * self.block, min((k + 1) * self.block, self.H)
        a, b = max(0, r0 - self.distance), min(self.H, r1 + self.distance)
        raw, ok = self.src.read(a, 0, b - a, self.W)
        ok = ok & ~CogenPipeline._mask_rows(self.mask, a, b - a, self.W)
        x, v = to_model_space(self.src.modality, raw, ok)
        x, v = x.numpy(), v.numpy()
        if not v.any():
            return np.zeros((x.shape[0], r1 - r0, self.W), np.float32)
        keep = v.astype(np.uint8)
        filled = np.stack([fillnodata(band.copy(), mask=keep, max_search_distance=self.distance) for band in x])
        reached = fillnodata(v.astype(np.float32), mask=keep, max_search_distance=self.distance) > 0
        means = np.array([band[v].mean() for band in x], np.float32)[:, None, None]
        out = np.where((reached | v)[None], filled, means).astype(np.float32)
        return out[:, r0 - a : r1 - a]

    def rows(self, k: int) -> np.ndarray:
        if k not in self.cache:
            if len(self.cache) >= 2:
                self.cache.pop(min(self.cache))
            self.cache[k] = self._compute(k)
        return self.cache[k]

    def window(self, r: int, c: int, tile: int) -> np.ndarray:
        """(C, tile, tile) at (r, c); zeros beyond the scene."""
        out = np.zeros((self.src.modality.num_bands, tile, tile), np.float32)
        parts, row = [], r
        end = min(r + tile, self.H)
        if row >= end:
            return out
        while row < end:
            k = row // self.block
            blk = self.rows(k)
            stop = min(end, (k + 1) * self.block)
            parts.append(blk[:, row - k * self.block : stop - k * self.block, c : c + tile])
            row = stop
        got = np.concatenate(parts, axis=1)
        out[:, : got.shape[1], : got.shape[2]] = got
        return out


class CogenPipeline:
    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu"):
        self.bundle = bundle.to(device)
        self.device = torch.device(device)
        self.model = bundle.model.eval()
        self.registry = bundle.registry
        self.add_offsets: dict[str, float] = {}  # set_add_offsets
        self.diffusion = bundle.diffusion
        self.grid_shift = bool(bundle.config.sample.grid_shift)  # see cogen.diffusion.sampling
        self.shift_ensemble = bundle.config.sample.shift_ensemble
        self.final_denoise = bundle.config.sample.final_denoise
        self.native_blocks = bool(bundle.config.sample.native_blocks)
        self.orientations = bundle.config.sample.orientations
        self.orientations_regenerate = bundle.config.sample.orientations_regenerate
        self._call_orientations = self.orientations  # those of the call running now (see `run`)
        self.co_targets = bundle.config.sample.co_targets
        self.library_neighbours = bundle.config.sample.library_neighbours
        self.library_size = bundle.config.sample.library_size
        self.vote_sigma = bundle.config.sample.vote_sigma
        self.interpolate_positions = bool(bundle.config.sample.interpolate_positions)
        self._libraries: dict[str, ClearLibrary] = {}  # per regenerated target, while a call runs
        self._blocks: dict[str, list[tuple[int, int, int, int]]] = {}  # per target: (band, k, row, col) of a call
        self._anchor: tuple[int, int] = (0, 0)  # the call's scene on the map's pixel lattice (Grid.anchor)

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str = "cpu", modalities=None) -> "CogenPipeline":
        return cls(load_bundle(path, modalities, device), device)

    @property
    def unit(self) -> int:
        """Tiles and overlaps are multiples of this (tokenizer downsampling x patch size)."""
        u = 1
        for m in self.model.names:
            u = math.lcm(u, self.bundle.tokenizers[m].downsample * self.model.patch_size(m))
        return u

    # ---- API ---------------------------------------------------------------------------------------------
    @property
    def interpolate_positions(self) -> bool:
        """Whether tiles larger than the training crops (`data.crop`) have their token positions squeezed into
        the trained range (`sincos_2d`) instead of extended beyond it."""
        return bool(self.model.position_span)

    @interpolate_positions.setter
    def interpolate_positions(self, on: bool) -> None:
        crop = self.bundle.config.data.crop
        self.model.position_span = {m: crop // (self.bundle.tokenizers[m].downsample * self.model.patch_size(m))
                                    for m in self.model.names} if on else {}

    @property
    def shift_ensemble(self) -> int:
        """Patch-grid offsets each denoising step is averaged over (cogen.diffusion.sampling.denoise)."""
        return self._shift_ensemble

    @shift_ensemble.setter
    def shift_ensemble(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
            raise UsageError(f"shift ensemble {n!r} must be a whole number from 1 to 64 (e.g. 4)")
        self._shift_ensemble = n

    @property
    def orientations(self) -> int:
        """Sample s of a call is drawn in orientation s mod this (1: all upright; 8: the 4 rotations x 2 flips)."""
        return self._orientations

    @orientations.setter
    def orientations(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 8:
            raise UsageError(f"orientations {n!r} must be a whole number from 1 (off) to 8 (4 rotations x 2 flips)")
        self._orientations = n

    @property
    def orientations_regenerate(self) -> int:
        """`orientations` for calls that regenerate part of a target (cloud removal); 0 = as `orientations`."""
        return self._orientations_regenerate

    @orientations_regenerate.setter
    def orientations_regenerate(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 8:
            raise UsageError(f"orientations for regenerated targets {n!r} must be a whole number from 0 (as "
                             f"orientations) to 8 (4 rotations x 2 flips)")
        self._orientations_regenerate = n

    def orientations_for(self, regenerate: bool) -> int:
        """The orientations of a call: `orientations_regenerate` (when set) if it regenerates part of a target."""
        return self.orientations_regenerate if regenerate and self.orientations_regenerate else self.orientations

    @property
    def co_targets(self) -> list[dict[str, Any]]:
        """Rules {"target": T, "given": [...], "add": [...]} of modalities generated beside a target and dropped
        ([] = off; see `co_generated`)."""
        return self._co_targets

    @co_targets.setter
    def co_targets(self, rules) -> None:
        known = list(self.bundle.config.data.modalities)
        eg = "e.g. [{target: LULC, given: [S2L2A], add: [S1RTC, DEM]}]"
        out = []
        for r in rules or []:
            if (not isinstance(r, Mapping) or "target" not in r or "add" not in r
                    or set(r) - {"target", "given", "exact", "add"} or not isinstance(r.get("exact", False), bool)):
                raise ConfigError(f"sample.co_targets rule {r!r}: expected keys target, add and optionally given "
                                  f"and exact (true: only when the inputs are exactly `given`), {eg}")
            rule = {"target": r["target"], "given": list(r.get("given") or []), "exact": r.get("exact", False),
                    "add": list(r["add"])}
            for m in [rule["target"], *rule["given"], *rule["add"]]:
                if m not in known:
                    raise ConfigError(f"sample.co_targets names {m!r}, which this checkpoint was not trained on "
                                      f"({', '.join(known)}); {eg}")
            out.append(rule)
        self._co_targets = out

    @property
    def final_denoise(self) -> float:
        """Model time of the extra clean-up call after the last step; 0 = off (cogen.diffusion.sampling.denoise)."""
        return self._final_denoise

    @final_denoise.setter
    def final_denoise(self, t: float) -> None:
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < 1:
            raise UsageError(f"final denoise {t!r} must be a model time from 0 (off) to below 1 (e.g. 0.05)")
        self._final_denoise = float(t)

    @property
    def library_neighbours(self) -> int:
        """Cloud removal: generated pixels become the mean of this many nearest clear spectra of the scene
        (cogen.library); 0 = off."""
        return self._library_neighbours

    @library_neighbours.setter
    def library_neighbours(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= 1024:
            raise UsageError(f"library neighbours {k!r} must be a whole number from 0 (off) to 1024 (e.g. 32)")
        self._library_neighbours = k

    @property
    def library_size(self) -> int:
        """At most this many clear pixels, drawn at random with the call's seed, form the library."""
        return self._library_size

    @library_size.setter
    def library_size(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise UsageError(f"library size {n!r} must be a whole number of pixels of at least 1 (e.g. 16384)")
        self._library_size = n

    @property
    def vote_sigma(self) -> float:
        """Class maps: sigma in pixels of the spatial smoothing of the votes before the majority (cogen.votes);
        0 = off."""
        return self._vote_sigma

    @vote_sigma.setter
    def vote_sigma(self, s: float) -> None:
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not 0 <= s <= 16:
            raise UsageError(f"vote sigma {s!r} must be a number of pixels from 0 (off) to 16 (e.g. 1)")
        self._vote_sigma = float(s)

    def __call__(self, conditions: Mapping[str, Any], targets: Sequence[str], *, steps: int | None = None,
                 sampler: str | None = None, guidance: float | None = None, samples: int = 1, seed: int = 0,
                 tile: int | None = None, overlap: int | None = None, regenerate: Mapping[str, Any] | None = None,
                 batch: int = 16, progress: bool = True, outputs: Mapping[str, Mapping[str, Any]] | None = None,
                 start: str | None = None, strength: float | None = None,
                 grid_offset: tuple[int, int] | None = None, window: Window | None = None,
                 anchor: tuple[int, int] | None = None) -> dict[str, TargetResult]:
        """Generate `targets` from `conditions` ({modality: GeoTIFF path or (C,H,W) raw array}).

        regenerate: {modality: mask} for a target that is also given (cloud removal): masked pixels are
            generated, the others kept exactly. A mask is a bool array, a binary mask GeoTIFF's path (non-zero =
            masked) or a :class:`MaskSource`.
        outputs: optional {target: {"sample"|"mean"|"std"|"classes"|"confidence": path}} to stream GeoTIFFs
            to instead of returning arrays.
        start: "noise", or "interpolate" (with `regenerate`): the masked pixels start from an interpolation of
            the kept ones (`rasterio.fill.fillnodata`) noised to level `strength` (1 = pure noise), and only
            the last `strength` share of the steps runs (SDEdit). Default: the checkpoint's `sample.start`
            and `sample.strength` for cloud removal (regenerated targets), noise otherwise.
        grid_offset: (row, col) of the inputs' top-left pixel on the grid of native-resolution blocks of a
            generated band (cogen.native), for targets that are not given; default (0, 0), blocks counted from
            the top-left pixel. A given target (cloud removal) shows its own blocks; they are found in it.
        window: a rasterio `Window` (pixels of the GeoTIFFs): only that part of the inputs is the scene, and
            the results cover it (a mask path in `regenerate` is read on it too; `grid_offset` stays that of
            the files' top-left pixel).
        anchor: (row, col) of the scene's top-left pixel on a lattice of pixels fixed on the map, on which the
            tiles and the initial noise are laid; default: the GeoTIFF inputs' own (`Grid.anchor`), (0, 0) for
            arrays. Scenes that share a lattice generate the same values wherever they cut the same tiles, so
            parts of a scene run one per process join without seams (`cogen join`).

        The checkpoint's `sample.co_targets` rules may add modalities that are generated beside a target in the
        same joint sample and dropped (`co_generated`); set `pipe.co_targets = []` to generate targets alone.
        """
        sources = self.make_sources(conditions, window)
        regenerate = {m: MaskSource(mk, window=window) if isinstance(mk, (str, Path)) else mk
                      for m, mk in (regenerate or {}).items()}
        grid_offset = window_grid_offset(grid_offset, window)
        return self.run(sources, targets, steps=steps, sampler=sampler, guidance=guidance, samples=samples,
                        seed=seed, tile=tile, overlap=overlap, regenerate=regenerate, batch=batch,
                        progress=progress, outputs=outputs, start=start, strength=strength, grid_offset=grid_offset,
                        anchor=anchor)

    def set_add_offsets(self, offsets: Mapping[str, float]) -> "CogenPipeline":
        """Read and write these continuous modalities with an additive offset in raw units, as their products
        state it: `pipe.set_add_offsets({"S2L2A": -1000})` for Sentinel-2 of processing baseline 04.00 or later
        (reflectance = (raw - 1000) / 10000). Outputs of those modalities carry the same offset as the inputs,
        so cloud removal's clear pixels stay bit-identical. Replaces earlier offsets."""
        self.registry = self.bundle.registry.with_add_offsets(offsets)
        self.add_offsets = {m: float(v) for m, v in offsets.items()}
        return self

    def make_sources(self, conditions: Mapping[str, Any], window: Window | None = None) -> dict[str, Source]:
        """Sources of the conditions: GeoTIFF paths (only their `window`, in pixels, when one is given; the
        outputs then cover that window), arrays in raw units, or Source objects."""
        sources: dict[str, Source] = {}
        first_path, first_grid = None, None
        for m, v in conditions.items():
            mod = self.registry[m] if m in self.registry else self._unknown(m)
            if isinstance(v, (str, Path)):
                s = RasterSource(mod, v, window)
                declared = s.declared_add_offsets
                if declared and declared != [self.add_offsets.get(m, 0.0)]:
                    used = self.add_offsets.get(m, 0.0)
                    print(f"warning: {v} declares an additive offset of {', '.join(f'{d:g}' for d in declared)} in "
                          f"its metadata ({'/'.join(ADD_OFFSET_KEYS[:2])}), but {used:g} is applied; pass "
                          f"--add-offset {m}={declared[0]:g} (Python: pipe.set_add_offsets) if the values carry "
                          f"it", file=sys.stderr)
                if first_grid is None:
                    first_path, first_grid = v, s.grid
                else:
                    check_same_grid(first_path, first_grid, v, s.grid)
            elif isinstance(v, Source):
                s = v
            else:
                arr = v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)
                s = ArraySource(mod, arr)
            sources[m] = s
        sizes = {(s.height, s.width) for s in sources.values()}
        if len(sizes) > 1:
            raise GridMismatchError(f"conditions have different sizes {sorted(sizes)}; resample them onto one grid "
                                    f"with `cogen-reproject`")
        return sources

    def _unknown(self, m: str):
        raise UsageError(f"this checkpoint knows {', '.join(self.model.names)}; it cannot use {m!r}")

    def run(self, sources: Mapping[str, Source], targets: Sequence[str], *, steps=None, sampler=None, guidance=None,
            samples: int = 1, seed: int = 0, tile=None, overlap=None, regenerate=None, batch: int = 16,
            progress: bool = True, outputs=None, size: tuple[int, int] | None = None, start: str | None = None,
            strength: float | None = None, grid_offset: tuple[int, int] | None = None,
            anchor: tuple[int, int] | None = None) -> dict[str, TargetResult]:
        sc = self.bundle.config.sample
        steps, sampler = sc.steps if steps is None else steps, sampler or sc.sampler
        guidance = sc.guidance if guidance is None else guidance
        targets = list(targets)
        regenerate = dict(regenerate or {})
        part = bool(set(targets) & set(regenerate))  # part of a target is regenerated (cloud removal)
        t0, o0 = default_tiling(sc, targets, regenerate=part, image_given=self.registry.has_image(sources))
        self._call_orientations = self.orientations_for(part)
        tile, overlap = t0 if tile is None else tile, o0 if overlap is None else overlap
        if start is None:  # the checkpoint's choice for cloud removal; generation from nothing starts from noise
            start = sc.start if regenerate and set(targets) <= set(regenerate) else "noise"
        strength = sc.strength if strength is None else strength
        self._check_request(sources, targets, regenerate, tile, overlap, samples, steps, batch)
        if sources:
            H, W = next(iter(sources.values())).height, next(iter(sources.values())).width
        elif size is not None:
            H, W = size
        else:
            raise UsageError("no conditions and no size: give inputs, or a size for unconditional generation")
        for m, mk in regenerate.items():
            if isinstance(mk, MaskSource):
                src = sources[m]
                if isinstance(src, RasterSource):
                    check_same_grid(src.path, src.grid, mk.path, mk.grid)
            elif np.asarray(mk).shape != (H, W):
                raise GridMismatchError(f"mask for {m} has shape {np.asarray(mk).shape}, the scene is {H}x{W}")
        self._anchor = tuple(anchor) if anchor is not None else next(
            (s.anchor for s in sources.values() if isinstance(s, RasterSource)), (0, 0))
        starts = self._starts(sources, targets, regenerate, start, strength, H, W)
        extra = self.co_generated(sources, targets) if not starts else []  # an interpolated start covers targets only
        self._blocks = self._native_blocks(sources, targets + extra, regenerate, grid_offset)
        self._libraries = self._clear_libraries(sources, targets, regenerate, H, W, seed)
        tags = {"COGEN_VERSION": __version__, "COGEN_CHECKPOINT_SHA256": self.bundle.digest or "",
                "COGEN_INPUTS": ",".join(sources) or "none", "COGEN_SAMPLES": samples, "COGEN_SEED": seed,
                "COGEN_STEPS": f"{steps} {sampler}", "COGEN_TILE": f"{tile} {overlap}"}
        writers = self._make_writers(targets, H, W, samples, outputs, sources, tags)
        try:
            # a small GDAL block cache: windows are read and written once, caching the scene would only cost memory
            with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
                self._stream(sources, targets + extra, regenerate, writers, H, W, steps, sampler, guidance, samples,
                             seed, tile, overlap, batch, progress, starts)
        except BaseException:
            for ws in writers.values():
                for w in ws.values():
                    w.abort()
            raise
        results = {}
        for m in targets:
            r = TargetResult(m)
            for kind, w in writers[m].items():
                val = w.commit()
                if isinstance(val, Path):
                    r.files[kind] = str(val)
                else:
                    setattr(r, kind, self._to_physical(m, kind, val))
            results[m] = r
        return results

    def co_generated(self, sources: Mapping[str, Any], targets: Sequence[str]) -> list[str]:
        """The modalities the `co_targets` rules add to a call: for each rule whose target is asked for and whose
        `given` modalities are all given (with `exact`, are the only ones given), its `add` modalities that the
        loaded model knows and that are neither given nor asked for. They are sampled jointly with the targets
        and never written."""
        extra: list[str] = []
        inputs = set(sources) - set(targets)  # a target given in part (cloud removal) is not an input
        for r in self.co_targets:
            if r["target"] in targets and (inputs == set(r["given"]) if r["exact"] else set(r["given"]) <= inputs):
                extra += [m for m in r["add"] if m in self.model.names and m not in sources and m not in targets
                          and m not in extra]
        return extra

    def _clear_libraries(self, sources, targets, regenerate, H, W, seed) -> dict[str, ClearLibrary]:
        """{m: the library of m's clear pixels} for each regenerated continuous target (cogen.library), when
        `library_neighbours` is on and the scene has clear pixels of m."""
        if not self.library_neighbours:
            return {}
        out = {}
        for m in targets:
            if m in regenerate and m in sources and not self.registry[m].is_categorical:
                lib = ClearLibrary.from_source(sources[m], lambda top, n, mk=regenerate[m]: self._mask_rows(mk, top, n, W),
                                               H, W, self.library_size, seed)
                if lib is not None:
                    out[m] = lib
        return out

    def _starts(self, sources, targets, regenerate, start, strength, H, W) -> dict:
        """{"arrays": {m: InterpolatedStart}, "strength": s} for start="interpolate", else {}."""
        if start == "noise":
            return {}
        if start != "interpolate":
            raise UsageError(f"start={start!r}: use noise or interpolate")
        if not 0 < strength <= 1:
            raise UsageError(f"strength={strength}: use a value in (0, 1] (1 = start from pure noise)")
        bad = [m for m in targets if m not in regenerate or self.registry[m].is_categorical]
        if bad:
            raise UsageError(f"start=interpolate fills the masked pixels of given continuous targets (cloud "
                             f"removal); {', '.join(bad)} cannot start from an interpolation; use start=noise")
        arrays = {m: InterpolatedStart(sources[m], regenerate[m], H, W) for m in targets}
        return {"arrays": arrays, "strength": float(strength)}

    def _native_blocks(self, sources, targets, regenerate, grid_offset) -> dict[str, list[tuple[int, int, int, int]]]:
        """Per continuous target: (band, k, row, col) for each band stored in k x k blocks whose grid offset
        is known: found in the target's own input when given (bands that show no blocks there are left
        alone), else `grid_offset`."""
        out: dict[str, list[tuple[int, int, int, int]]] = {}
        if not self.native_blocks:
            return out
        for m in targets:
            mod = self.registry[m]
            if mod.is_categorical or not mod.native_blocks:
                continue
            src = sources.get(m)
            raw, ok = (None, None)
            if src is not None:
                raw, ok = src.read(0, 0, min(src.height, 512), min(src.width, 512))
                if m in regenerate:
                    ok = ok & ~self._mask_rows_window(regenerate[m], 0, 0, 512)[: ok.shape[0], : ok.shape[1]]
            rows, given = [], tuple(grid_offset or (0, 0))
            for b, k in mod.native_blocks.items():
                if k <= 1:
                    continue
                i = mod.band_index(b)
                off = detect_block_offset(raw[i], ok, k) if raw is not None else given
                if off is not None:
                    rows.append((i, int(k), int(off[0]), int(off[1])))
            out[m] = rows
        return out

    def _project_blocks(self, m, x, idx, positions, S, vals, oks) -> torch.Tensor:
        """Generated (n*S, C, tile, tile) model-space values of target m -> one value per native block."""
        rows = self._blocks.get(m)
        if not rows:
            return x
        x = x.clone()
        known = vals.get(m)
        for j, tj in enumerate(idx):
            r, c = positions[tj]
            sl = slice(j * S, (j + 1) * S)
            for b, k, ro, co in rows:
                kv = known[tj, b][None].expand(S, -1, -1) if known is not None else None
                ko = oks[m][tj][None].expand(S, -1, -1) if known is not None else None
                x[sl, b] = block_project(x[sl, b], k, r + ro, c + co, kv, ko)
        return x

    def _to_physical(self, m: str, kind: str, raw: np.ndarray) -> np.ndarray:
        mod = self.registry[m]
        if mod.is_categorical or kind in ("classes", "confidence"):
            return raw[0] if kind in ("classes", "confidence") else raw
        out = raw.astype(np.float64) * mod.scale + (0 if kind == "std" else mod.offset)
        return out.astype(np.float32)

    def _check_request(self, sources, targets, regenerate, tile, overlap, samples, steps, batch) -> None:
        if not targets:
            raise UsageError("no targets: name at least one modality to generate (--target MOD)")
        for m in list(targets) + list(sources):
            if m not in self.model.names:
                raise UsageError(f"this checkpoint knows {', '.join(self.model.names)}; it cannot use {m!r}")
        both = [m for m in targets if m in sources and m not in regenerate]
        if both:
            raise UsageError(f"{', '.join(both)} is both an input and a target; drop it from one side "
                             f"(use cloud-removal to fill only masked pixels)")
        if len(set(targets)) != len(targets):
            raise UsageError(f"targets repeat a modality: {targets}")
        u = self.unit
        if tile < u or tile % u or overlap % u:
            raise UsageError(f"tile {tile} / overlap {overlap}: both must be multiples of {u} (the model's patch) "
                             f"and the tile at least {u}; e.g. --tile {max(u, (tile // u) * u or u)}")
        if overlap >= tile:
            raise UsageError(f"overlap {overlap} must be smaller than tile {tile}")
        if samples < 1:
            raise UsageError(f"samples must be >= 1, got {samples}")
        for name, v, example in (("steps", steps, self.bundle.config.sample.steps), ("batch", batch, 16)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise UsageError(f"{name} must be a whole number >= 1, got {v!r} (e.g. --{name} {example})")
        for m, s in sources.items():
            _, ok = s.read(0, 0, min(s.height, 512), min(s.width, 512))
            if not ok.any() and not self._any_valid(s):
                where = getattr(s, "path", m)
                zero = (f", or {s.modality.nodata_all_bands:g} in every band (no data)"
                        if s.modality.nodata_all_bands is not None and s.modality.num_bands > 1 else "")
                raise RasterError(f"{where}: no valid pixel in {m} (all nodata, NaN or out of range "
                                  f"{s.modality.valid_range}{zero}); check the file and its nodata value")

    @staticmethod
    def _any_valid(s: Source, block: int = 1024) -> bool:
        for r in range(0, s.height, block):
            for c in range(0, s.width, block):
                if s.read(r, c, min(block, s.height - r), min(block, s.width - c))[1].any():
                    return True
        return False

    def _make_writers(self, targets, H, W, samples, outputs, sources, tags=None):
        ref = next((s for s in sources.values() if isinstance(s, RasterSource)), None)
        writers: dict[str, dict[str, Any]] = {}
        for m in targets:
            mod = self.registry[m]
            kinds = ["classes", "confidence"] if mod.is_categorical else (["sample", "mean", "std"] if samples > 1 else ["sample"])
            writers[m] = {}
            for k in kinds:
                dtype, count = self._out_type(m, k, sources)
                path = (outputs or {}).get(m, {}).get(k)
                if path is not None:
                    nod = self._out_nodata(m, k, sources)
                    writers[m][k] = WindowedWriter(
                        path, ref.grid.crs if ref else None, ref.grid.transform if ref else rasterio.transform.Affine.identity(),
                        H, W, count, dtype, nod, meta=self._out_meta(m, k, tags, sources.get(m)))
                else:
                    writers[m][k] = _MemorySink(count, H, W, dtype)
        return writers

    def _out_meta(self, m, kind, tags=None, source=None) -> RasterMeta:
        """Band names, GDAL scale/offset/unit (physical = raw * scale + offset), the class colours and the
        provenance tags of an output raster. An output that regenerates part of an input raster (cloud removal)
        is the same product: its sample, mean and classes keep that raster's own dataset and band tags
        (acquisition, processing baseline, BOA_ADD_OFFSET, ...) under cogen's. Values written with an additive
        offset say so (COGEN_ADD_OFFSET), so reading them back without it is warned about."""
        mod = self.registry[m]
        same_product = isinstance(source, RasterSource) and kind in ("sample", "mean", "classes")
        t = dict(source.tags) if same_product else {}
        t.update({**(tags or {}), "COGEN_MODALITY": m, "COGEN_PRODUCT": kind})
        if kind in ("sample", "mean") and self.add_offsets.get(m):
            t["COGEN_ADD_OFFSET"] = f"{self.add_offsets[m]:g}"
        band_tags = source.band_tags if same_product else None
        if kind == "confidence":
            return RasterMeta(descriptions=["agreement of the samples"], unit="fraction", tags=t)
        if kind == "classes":
            t.update({f"CLASS_{c.id}": c.name for c in mod.classes})
            colours = {c.id: tuple(int(round(v * 255)) for v in c.rgb) for c in mod.classes}
            return RasterMeta(descriptions=[mod.name], colormap=colours, tags=t, band_tags=band_tags, categorical=True)
        if kind == "std":  # a spread: physical = raw * |scale|
            return RasterMeta(descriptions=list(mod.bands), scale=abs(mod.scale), offset=0.0, unit=mod.units, tags=t)
        return RasterMeta(descriptions=list(mod.bands), scale=mod.scale, offset=mod.offset, unit=mod.units, tags=t,
                          band_tags=band_tags)

    def _out_type(self, m, kind, sources) -> tuple[str, int]:
        mod = self.registry[m]
        if kind == "confidence":
            return "float32", 1
        if kind == "classes":
            return mod.dtype, 1
        if kind == "sample":
            src = sources.get(m)
            return (src.dtype if isinstance(src, RasterSource) else mod.dtype), mod.num_bands
        return "float32", mod.num_bands

    def _out_nodata(self, m, kind, sources):
        src = sources.get(m)
        if isinstance(src, RasterSource) and kind == "sample":
            return src.nodata  # cloud removal: the input's own nodata
        mod = self.registry[m]
        if kind == "confidence":
            return float("nan")
        if kind in ("mean", "std"):
            return float("nan")
        return output_nodata(mod)

    # ---- tiles -------------------------------------------------------------------------------------------
    def _stream(self, sources, targets, regenerate, writers, H, W, steps, sampler, guidance, samples, seed, tile,
                overlap, batch, progress, starts=None):
        rows = anchored_starts(H, tile, overlap, self._anchor[0])  # tiles on the map's lattice (cogen.tiling)
        cols = anchored_starts(W, tile, overlap, self._anchor[1])
        Wp = max(W, tile)
        wt = blend_weight(tile, overlap).astype(np.float32)
        chans = {m: self._acc_channels(m, samples) for m in targets}
        acc = {m: np.zeros((c, tile, Wp), np.float32) for m, c in chans.items()}
        wsum = np.zeros((tile, Wp), np.float32)
        info = np.zeros((tile, Wp), np.float32)
        top = 0
        smoothers = {m: VoteSmoother(self.vote_sigma, H) for m in targets
                     if self.vote_sigma > 0 and m in writers and self.registry[m].is_categorical}
        per_fwd = max(1, batch // samples)
        bar = tqdm(total=len(rows) * len(cols), desc="tiles", disable=not progress, dynamic_ncols=True)
        for ri, r in enumerate(rows):
            for i in range(0, len(cols), per_fwd):
                cs = cols[i : i + per_fwd]
                res, inf = self._sample_tiles(sources, targets, regenerate, [(r, c) for c in cs], tile, steps, sampler,
                                              guidance, samples, seed, starts)
                for j, c in enumerate(cs):
                    rr = r - top
                    wsum[rr : rr + tile, c : c + tile] += wt
                    info[rr : rr + tile, c : c + tile] += wt * inf[j]
                    for m in targets:
                        acc[m][:, rr : rr + tile, c : c + tile] += res[m][j] * wt
                bar.update(len(cs))
            nxt = rows[ri + 1] if ri + 1 < len(rows) else H
            n = min(nxt, H) - top  # rows [top, nxt) are final
            if n > 0:
                self._flush(sources, targets, regenerate, writers, acc, wsum, info, top, n, W, samples, smoothers)
            shift = nxt - top
            for a in list(acc.values()) + [wsum, info]:
                a[..., : tile - shift, :] = a[..., shift:, :] if shift < tile else 0
                a[..., max(tile - shift, 0) :, :] = 0
            top = nxt
        bar.close()

    def _acc_channels(self, m: str, samples: int) -> int:
        mod = self.registry[m]
        return mod.num_classes if mod.is_categorical else 3 * mod.num_bands  # sample0, sum, sum of squares

    def _flush(self, sources, targets, regenerate, writers, acc, wsum, info, top, n, W, samples, smoothers=None):
        """Write rows [top, top + n), final now; a class map with a `VoteSmoother` in `smoothers` writes the
        rows its smoother releases instead (it holds back the rows whose neighbours below are not in yet)."""
        win = Window(0, top, W, n)
        w = wsum[:n, :W]
        has_info = (info[:n, :W] / w) > 1e-6 if sources else np.ones((n, W), bool)
        for m in targets:
            if m not in writers:  # generated beside the targets only (co_targets)
                continue
            mod = self.registry[m]
            a = acc[m][:, :n, :W] / w[None]
            ws = writers[m]
            if mod.is_categorical:
                cwin, has = win, has_info
                if m in (smoothers or {}):
                    r0, a, has = smoothers[m].push(top, a, has_info)
                    if not has.shape[0]:
                        continue
                    cwin = Window(0, r0, W, has.shape[0])
                idx = a.argmax(axis=0)
                ids = np.asarray(mod.class_ids)[idx]
                nod = mod.nodata if mod.nodata is not None else 0
                ids = np.where(has, ids, nod)
                ws["classes"].write(ids[None].astype(ws["classes"].dtype), cwin)
                conf = np.where(has, a.max(axis=0), np.nan).astype(np.float32)
                ws["confidence"].write(conf[None], cwin)
                continue
            C = mod.num_bands
            s0, mean, sq = a[:C], a[C : 2 * C], a[2 * C :]
            std = np.sqrt(np.maximum(sq - mean**2, 0.0))
            src = sources.get(m)
            dtype = ws["sample"].dtype
            nod = self._out_nodata(m, "sample", sources)
            if m in regenerate and src is not None:
                raw_in, ok = src.read(top, 0, n, W)
                keep = ok & ~self._mask_rows(regenerate[m], top, n, W)
                out = _raw_out(mod, s0, dtype, nod, has_info)
                out = np.where(keep[None], raw_in.astype(out.dtype), out)  # clear pixels: the input, bit for bit
                ws["sample"].write(out, win)
            else:
                ws["sample"].write(_raw_out(mod, s0, dtype, nod, has_info), win)
            if "mean" in ws:
                ws["mean"].write(np.where(has_info[None], (mean - mod.offset) / mod.scale, np.nan).astype(np.float32), win)
                ws["std"].write(np.where(has_info[None], std / abs(mod.scale), np.nan).astype(np.float32), win)

    @staticmethod
    def _mask_rows(mask, top, n, W) -> np.ndarray:
        if isinstance(mask, MaskSource):
            return mask.read(top, 0, n, W)
        return np.asarray(mask, bool)[top : top + n, :W]

    # ---- one batch of tiles ----------------------------------------------------------------------------
    @torch.no_grad()
    def _sample_tiles(self, sources, targets, regenerate, positions, tile, steps, sampler, guidance, samples, seed,
                      starts=None):
        """-> ({m: (n_tiles, acc_channels, tile, tile) physical}, (n_tiles, tile, tile) info)"""
        starts = starts or {}
        init = {}
        for m, st in starts.get("arrays", {}).items():
            init[m] = torch.from_numpy(np.stack([st.window(r, c, tile) for (r, c) in positions]))
        nt = len(positions)
        vals: dict[str, torch.Tensor] = {}
        oks: dict[str, torch.Tensor] = {}
        info = np.zeros((nt, tile, tile), np.float32)
        for m, s in sources.items():
            xs, ms = [], []
            for (r, c) in positions:
                raw, ok = s.read(r, c, tile, tile)
                if m in regenerate:
                    ok = ok & ~self._mask_rows_window(regenerate[m], r, c, tile)
                x, v = to_model_space(s.modality, raw, ok)
                xs.append(x); ms.append(v)
            vals[m], oks[m] = torch.stack(xs), torch.stack(ms)
            info += oks[m].numpy().astype(np.float32)
        info = (info > 0).astype(np.float32)
        if init:  # an SDEdit start: an input given in part starts from its own valid pixels where it is generated
            for m in sources:
                if m not in init and m not in targets and not bool(oks[m].all()):
                    init[m] = nearest_fill(vals[m], oks[m])
        # roles per group of tiles sharing which conditions are complete / partial / empty
        sig = []
        for j in range(nt):
            sig.append(tuple((m, int(oks[m][j].all()) + int(oks[m][j].any())) for m in sources if m not in targets))
        out = {m: np.zeros((nt, self._acc_channels(m, samples), tile, tile), np.float32) for m in targets}
        for g in sorted(set(sig)):
            idx = [j for j in range(nt) if sig[j] == g]
            status = dict(g)
            self._sample_group(idx, positions, vals, oks, status, targets, regenerate, tile, steps, sampler, guidance,
                               samples, seed, out, init, starts.get("strength", 1.0))
        return out, info

    @staticmethod
    def _mask_rows_window(mask, r, c, tile) -> np.ndarray:
        if isinstance(mask, MaskSource):
            return mask.read(r, c, tile, tile)
        m = np.asarray(mask, bool)
        outm = np.zeros((tile, tile), bool)
        h, w = m.shape
        r1, c1 = min(r + tile, h), min(c + tile, w)
        outm[: r1 - r, : c1 - c] = m[r:r1, c:c1]
        return outm

    def _sample_group(self, idx, positions, vals, oks, status, targets, regenerate, tile, steps, sampler, guidance,
                      samples, seed, out, init=None, strength=1.0):
        toks = self.bundle.tokenizers
        dev = self.device
        S = samples
        ks = [s % self._call_orientations for s in range(S)] * len(idx)  # the orientation of each (tile, sample)
        turn = lambda t: orient(t, ks)  # draw sample s in its orientation; undone after decoding
        rep = lambda t: turn(t[idx].repeat_interleave(S, dim=0))  # (n*S, ...): sample s of tile j at j*S + s
        conditions, tspec, noise = {}, {}, {}
        order = {m: i for i, m in enumerate(self.model.names)}
        for m, st in status.items():
            if st == 2:  # complete: a clean condition
                conditions[m] = toks[m].encode(rep(vals[m]).to(dev))
            elif st == 1:  # partly valid: generated where invalid, its valid pixels known
                z = toks[m].encode(rep(vals[m]).to(dev))
                tspec[m] = (tuple(z.shape), z, toks[m].latent_valid(rep(oks[m]).to(dev)))
            # st == 0: nothing valid in these tiles: absent
        for m in targets:
            c, h, w = toks[m].latent_shape(tile, tile)
            shape = (len(idx) * S, c, h, w)
            if m in regenerate and m in vals:
                z = toks[m].encode(rep(vals[m]).to(dev))
                tspec[m] = (shape, z, toks[m].latent_valid(rep(oks[m]).to(dev)))
            else:
                tspec[m] = (shape, None, None)
        a0, a1 = self._anchor  # noise is cut at the tile's place on the map, so other scenes' tiles there share it
        for m, (shape, _, _) in tspec.items():
            d = toks[m].downsample
            noise[m] = turn(torch.stack([  # turned with its sample, so overlapping tiles still share it
                global_noise(seed, s, order[m], (a0 + positions[j][0]) // d, (a1 + positions[j][1]) // d, shape[1],
                             shape[2], shape[3])
                for j in idx for s in range(S)]))
        r0, c0 = a0 + positions[idx[0]][0], a1 + positions[idx[0]][1]
        gen = torch.Generator().manual_seed((seed * 7919 + r0 * 104729 + c0) & 0x7FFFFFFFFFFFFFFF)
        if self.bundle.config.train.objective == "regression":
            z = self._regress(conditions, tspec)
        else:
            unit = max(self.model.patch_size(m) for m in self.model.names) if self.grid_shift else 0
            partial = self.bundle.config.roles.p_partial > 0  # trained to take known tokens clean
            z0 = {m: toks[m].encode(rep(v).to(dev)) for m, v in (init or {}).items() if m in tspec}
            z = denoise(self.model, self.diffusion, conditions, tspec, steps, sampler, guidance, noise, gen, unit,
                        partial, z0 or None, strength, self.shift_ensemble, self.final_denoise)
        for m in targets:
            mod = self.registry[m]
            x = orient(toks[m].decode(z[m]).cpu(), ks, undo=True)
            if mod.is_categorical and self.bundle.config.train.objective == "regression":
                probs = orient(torch.softmax(z[m].float(), dim=1).cpu(), ks, undo=True)  # one pass: class probabilities as votes
                out[m][idx] = probs.view(len(idx), S, mod.num_classes, tile, tile).mean(dim=1).numpy()
            elif mod.is_categorical:  # votes: fraction of samples per class
                onehot = torch.nn.functional.one_hot(x.long(), mod.num_classes).permute(0, 3, 1, 2).float()
                votes = onehot.view(len(idx), S, mod.num_classes, tile, tile).mean(dim=1)
                out[m][idx] = votes.numpy()
            else:
                if m in self._libraries:  # cloud removal: generated spectra onto the scene's measured ones
                    gen = ~oks[m][idx].repeat_interleave(S, dim=0)
                    x = self._libraries[m].snap_tiles(x, gen, mod, self.library_neighbours)
                x = self._project_blocks(m, x, idx, positions, S, vals, oks)
                phys = mod.denormalize(x)
                if mod.valid_range is not None:  # outside it a value would read back as invalid
                    lo, hi = sorted(mod.to_physical(v) for v in mod.valid_range)
                    phys = phys.clamp(lo, hi)
                phys = phys.view(len(idx), S, mod.num_bands, tile, tile)
                out[m][idx] = torch.cat([phys[:, 0], phys.mean(dim=1), (phys**2).mean(dim=1)], dim=1).numpy()


    @torch.no_grad()
    def _regress(self, conditions, tspec):
        """The deterministic baseline: targets as zeros at t = 1, one forward pass, known cells kept."""
        dev = self.device
        x = {m: torch.zeros(shape, device=dev) for m, (shape, _, _) in tspec.items()}
        B = next(iter(x.values())).shape[0]
        t = {**{m: torch.zeros(B, device=dev) for m in conditions}, **{m: torch.ones(B, device=dev) for m in x}}
        out = self.model({**conditions, **x}, t)
        res = {}
        for m, (shape, known, km) in tspec.items():
            res[m] = out[m] if known is None else torch.where(km[:, None], known, out[m])
        return res


def nearest_fill(x: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """x (n, C, h, w) or (n, h, w) with every invalid pixel (ok False) set to its nearest valid pixel's
    value, tile by tile; a tile without valid pixels is left as it is."""
    from scipy.ndimage import distance_transform_edt

    out = x.clone()
    for j in range(x.shape[0]):
        o = ok[j].numpy()
        if o.all() or not o.any():
            continue
        r, c = distance_transform_edt(~o, return_distances=False, return_indices=True)
        out[j] = x[j][..., torch.from_numpy(r), torch.from_numpy(c)]
    return out


def orient(x: torch.Tensor, ks: Sequence[int], undo: bool = False) -> torch.Tensor:
    """Element i of a (B, ..., H, W) batch turned by dihedral element ks[i] (0-3: that many quarter turns; 4-7:
    the same, then a left-right flip), or turned back with `undo`. Tiles are square, so shapes are kept."""
    if not any(ks):
        return x
    if undo:  # flip back first, then turn back
        return torch.stack([dihedral(torch.flip(xi, dims=(-1,)) if k >= 4 else xi, -(k % 4), False)
                            for xi, k in zip(x, ks)])
    return torch.stack([dihedral(xi, k % 4, k >= 4) for xi, k in zip(x, ks)])


def default_tiling(sc, targets: Sequence[str], regenerate: bool = False, image_given: bool = True) -> tuple[int, int]:
    """(tile, overlap) for these targets: `sc.tile_regenerate` when part of a target is regenerated and it is
    set; else `sc.tile_by_target`'s entry when every target has the same one, unless that entry's tile is
    larger than `sc.tile` and no image is given (`image_given` False: the inputs are elevation, a layout, or
    nothing); else `sc.tile`, `sc.overlap`. A tile beyond the model's training crops places texture by the
    input images; without one it comes out in diagonal stripes (docs/SAMPLING.md, "Default tile sizes")."""
    if regenerate and sc.tile_regenerate:
        tile, overlap = sc.tile_regenerate
        return int(tile), int(overlap)
    per = {tuple(sc.tile_by_target[m]) if m in sc.tile_by_target else None for m in targets}
    if len(per) == 1 and None not in per:
        tile, overlap = per.pop()
        if image_given or int(tile) <= sc.tile:
            return int(tile), int(overlap)
    return sc.tile, sc.overlap


def global_noise(seed: int, sample: int, mod_index: int, row: int, col: int, c: int, h: int, w: int) -> torch.Tensor:
    """(c, h, w) cut at latent (row, col) from a noise field fixed by (seed, sample, modality): built from
    NOISE_BLOCK-sized blocks, each drawn from its own seeded generator, so any tiling sees the same noise."""
    B = NOISE_BLOCK
    out = torch.empty(c, h, w)
    for by in range(row // B, (row + h - 1) // B + 1):
        for bx in range(col // B, (col + w - 1) // B + 1):
            g = torch.Generator().manual_seed(hash((seed, sample, mod_index, by, bx)) & 0x7FFFFFFFFFFFFFFF)
            blk = torch.randn(c, B, B, generator=g)
            r0, r1 = max(row, by * B), min(row + h, (by + 1) * B)
            c0, c1 = max(col, bx * B), min(col + w, (bx + 1) * B)
            out[:, r0 - row : r1 - row, c0 - col : c1 - col] = blk[:, r0 - by * B : r1 - by * B, c0 - bx * B : c1 - bx * B]
    return out

"""Scenes of co-registered GeoTIFFs as `{modality: Tensor}` items.

Layout: `<root>/<MODALITY>/<scene_id>.tif`, or an explicit manifest `{scene_id: {modality: path}}` (JSON or
YAML) for files that live elsewhere. A scene may lack modalities. Every scene is checked for co-registration
and band counts when the dataset is built, so bad files fail before training starts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import yaml
from rasterio.windows import Window
from torch.utils.data import Dataset

from ..errors import ConfigError, DatasetError
from ..io import Grid, check_same_grid, file_valid, open_raster, read_raster
from ..registry import Modality, Registry, default_registry


@dataclass(frozen=True)
class Region:
    """Half-open pixel ranges [r0, r1) x [c0, c1) of a scene; None means the whole extent."""

    rows: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None

    def window(self, height: int, width: int) -> Window:
        r0, r1 = self.rows or (0, height)
        c0, c1 = self.cols or (0, width)
        r1, c1 = min(r1, height), min(c1, width)
        if r1 <= r0 or c1 <= c0:
            raise ConfigError(f"region rows={self.rows} cols={self.cols} is empty for a {height}x{width} scene")
        return Window(c0, r0, c1 - c0, r1 - r0)


def load_split(path: str | Path, name: str) -> tuple[Region, dict[str, Region]]:
    """Read a split file -> (default region, {scene_id: region}) for split `name`."""
    d = yaml.safe_load(Path(path).read_text()) or {}
    splits = d.get("splits") or {}
    if name not in splits:
        raise ConfigError(f"{path}: no split {name!r}; splits are {', '.join(splits) or 'none'}")
    s = splits[name] or {}

    def region(r: Mapping[str, Any] | None) -> Region:
        r = r or {}
        return Region(tuple(r["rows"]) if r.get("rows") else None, tuple(r["cols"]) if r.get("cols") else None)

    return region(s.get("default")), {k: region(v) for k, v in (s.get("scenes") or {}).items()}


def discover(root: str | Path, registry: Registry, modalities: Iterable[str] | None = None) -> dict[str, dict[str, Path]]:
    """`<root>/<MODALITY>/<scene>.tif` -> {scene_id: {modality: path}}; unregistered folders are ignored."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found; expected <root>/<MODALITY>/<scene_id>.tif")
    wanted = None if modalities is None else set(registry.check(modalities))
    scenes: dict[str, dict[str, Path]] = {}
    for mdir in sorted(p for p in root.iterdir() if p.is_dir()):
        if mdir.name not in registry or (wanted is not None and mdir.name not in wanted):
            continue
        for f in sorted(mdir.glob("*.tif")) + sorted(mdir.glob("*.tiff")):
            scenes.setdefault(f.stem, {})[mdir.name] = f
    if not scenes:
        raise DatasetError(
            f"{root}: no scenes found; expected <root>/<MODALITY>/<scene_id>.tif with MODALITY among "
            f"{', '.join(registry)}"
        )
    return scenes


def read_manifest(path: str | Path, registry: Registry) -> dict[str, dict[str, Path]]:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: manifest not found")
    d = json.loads(path.read_text()) if path.suffix == ".json" else yaml.safe_load(path.read_text())
    d = d.get("scenes", d) if isinstance(d, dict) else d
    if not isinstance(d, dict):
        raise DatasetError(f"{path}: a manifest maps scene id -> {{modality: path}}")
    out = {}
    for sid, mods in d.items():
        registry.check(mods)
        out[str(sid)] = {m: (path.parent / p if not Path(p).is_absolute() else Path(p)) for m, p in mods.items()}
    return out


class SceneDataset(Dataset):
    """Aligned crops of co-registered scenes.

    Item: `{"scene": id, "window": (row, col, h, w), "values": {m: Tensor}, "valid": {m: Tensor(H,W) bool},
    "bands": {m: Tensor(C,) bool}}`. Continuous values are in model space `(C,H,W)` float32, invalid pixels set
    to 0; categorical maps are 0-based class indices `(H,W)` long with -1 where invalid. A file may hold some of
    its modality's bands only (named by its band descriptions, `Modality.file_bands`): "bands" says which, and
    the missing ones are 0.

    mode="random": `length` crops at seeded random positions (crop i depends on `seed` and i only).
    mode="grid": every non-overlapping crop of the regions, in order (validation, evaluation).
    """

    def __init__(self, root: str | Path | None = None, manifest: str | Path | None = None,
                 registry: Registry | None = None, modalities: Sequence[str] | None = None,
                 crop: int | None = None, region: Region | None = None, regions: Mapping[str, Region] | None = None,
                 mode: str = "random", length: int = 1000, seed: int = 0, augment: bool = False,
                 cache: bool = True):
        self.registry = registry or default_registry()
        if (root is None) == (manifest is None):
            raise DatasetError("give either a dataset root folder or a manifest")
        files = discover(root, self.registry, modalities) if root is not None else read_manifest(manifest, self.registry)
        if modalities is not None:
            files = {s: {m: p for m, p in mods.items() if m in modalities} for s, mods in files.items()}
            files = {s: mods for s, mods in files.items() if mods}
        self.modalities = list(modalities) if modalities is not None else sorted({m for v in files.values() for m in v})
        self.files = files
        self.scene_ids = sorted(files)
        self.grids: dict[str, Grid] = {}
        self.band_idx: dict[tuple[str, str], tuple[int, ...]] = {}
        for sid in self.scene_ids:
            self.grids[sid] = self._check_scene(sid)
        region = region or Region()
        regions = regions or {}
        self.windows = {sid: regions.get(sid, region).window(g.height, g.width) for sid, g in self.grids.items()}
        self.crop = crop
        for sid, w in self.windows.items():
            if crop is not None and (w.height < crop or w.width < crop):
                raise DatasetError(f"scene {sid}: region {int(w.height)}x{int(w.width)} is smaller than crop {crop}")
        if mode not in ("random", "grid"):
            raise ConfigError(f"mode must be 'random' or 'grid', got {mode!r}")
        self.mode, self.length, self.seed, self.augment, self.cache = mode, length, seed, augment, cache
        self._cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
        self._grid_items = self._grid_positions() if mode == "grid" else []

    # ---- checks ---------------------------------------------------------------------------------------
    def _check_scene(self, sid: str) -> Grid:
        ref_path, ref = None, None
        for m, p in self.files[sid].items():
            mod = self.registry[m]
            with open_raster(p) as src:
                self.band_idx[sid, m] = mod.file_bands(src.count, str(p), src.descriptions)
                g = Grid(src.crs, src.transform, src.height, src.width)
            if ref is None:
                ref_path, ref = p, g
            else:
                check_same_grid(ref_path, ref, p, g)
        assert ref is not None
        return ref

    def _grid_positions(self) -> list[tuple[str, int, int]]:
        out = []
        for sid in self.scene_ids:
            w = self.windows[sid]
            c = self.crop or int(min(w.height, w.width))
            for r in range(0, int(w.height) - c + 1, c):
                for q in range(0, int(w.width) - c + 1, c):
                    out.append((sid, int(w.row_off) + r, int(w.col_off) + q))
        return out

    # ---- reading --------------------------------------------------------------------------------------
    def _region_arrays(self, sid: str, m: str) -> tuple[np.ndarray, np.ndarray]:
        key = (sid, m)
        if key not in self._cache:
            raw, _ = read_raster(self.files[sid][m], window=self.windows[sid])
            mod = self.registry[m]
            ok = mod.valid_mask(raw) & file_valid(self.files[sid][m], raw, self.windows[sid])
            arr = (mod.expand_bands(raw, self.band_idx[sid, m]), ok)
            if not self.cache:
                return arr
            self._cache[key] = arr
        return self._cache[key]

    def raw_crop(self, sid: str, m: str, row: int, col: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw values (C,h,w) and valid mask (h,w) of modality `m` of scene `sid` at absolute pixel (row, col)."""
        win = self.windows[sid]
        raw, ok = self._region_arrays(sid, m)
        r, c = row - int(win.row_off), col - int(win.col_off)
        return raw[:, r : r + h, c : c + w], ok[r : r + h, c : c + w]

    def load(self, sid: str, m: str, row: int, col: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Model-space values and valid mask of modality `m` of scene `sid` at absolute pixel (row, col)."""
        mod = self.registry[m]
        return to_model_space(mod, *self.raw_crop(sid, m, row, col, h, w),
                              None if mod.is_categorical else self.given(sid, m))

    def given(self, sid: str, m: str) -> np.ndarray:
        """(C,) bool: the bands of modality `m` that scene `sid`'s file holds."""
        return self.registry[m].band_mask(self.band_idx[sid, m])

    def class_counts(self, m: str) -> np.ndarray:
        """(K,) valid pixel counts per class of categorical modality `m` over the dataset's regions."""
        mod = self.registry[m]
        counts = np.zeros(mod.num_classes, np.int64)
        for sid in self.scene_ids:
            if m not in self.files[sid]:
                continue
            raw, ok = self._region_arrays(sid, m)
            for i, cid in enumerate(mod.class_ids):
                counts[i] += int(((raw[0] == cid) & ok).sum())
        return counts

    def __len__(self) -> int:
        return len(self._grid_items) if self.mode == "grid" else self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, 0, i))  # the 0 keeps the crops of runs trained before
        if self.mode == "grid":
            sid, row, col = self._grid_items[i]
            win = self.windows[sid]
            c = self.crop or int(min(win.height, win.width))
            h = w = c
        else:
            sid = self.scene_ids[int(rng.integers(len(self.scene_ids)))]
            row, col, h, w = random_window(rng, self.windows[sid], self.crop)
        raw = {m: self.raw_crop(sid, m, row, col, h, w) for m in self.files[sid]}
        bands = {m: self.given(sid, m) for m in self.files[sid] if not self.registry[m].is_categorical}
        return make_item(self.registry, sid, (row, col, h, w), raw, rng if self.augment else None, bands)


def random_window(rng: np.random.Generator, win: Window, crop: int | None) -> tuple[int, int, int, int]:
    """(row, col, h, w) of a `crop` px square (the region's short side when None) at a uniformly random position
    inside the region `win`, in absolute pixels; draws two integers from `rng`."""
    h = w = crop or int(min(win.height, win.width))
    row = int(win.row_off) + int(rng.integers(int(win.height) - h + 1))
    col = int(win.col_off) + int(rng.integers(int(win.width) - w + 1))
    return row, col, h, w


def make_item(registry: Registry, sid: str, window: tuple[int, int, int, int],
              raw: Mapping[str, tuple[np.ndarray, np.ndarray]], rng: np.random.Generator | None = None,
              bands: Mapping[str, np.ndarray] | None = None) -> dict[str, Any]:
    """The training item of a crop, whatever stores it (a folder, Parquet shards): `raw` holds {m: (raw values
    (C,h,w), valid mask (h,w))} at `window` (row, col, h, w) of scene `sid`, every band of the modality; `bands`
    {m: (C,) bool} the ones the store holds (all where not said). With `rng`, one dihedral augmentation (quarter
    turns, then a flip; two integers drawn) is applied to every modality alike."""
    values, valid, given = {}, {}, {}
    for m, (x, ok) in raw.items():
        mod = registry[m]
        g = None if mod.is_categorical else (bands or {}).get(m)
        values[m], valid[m] = to_model_space(mod, x, ok, g)
        if not mod.is_categorical:
            given[m] = torch.from_numpy(np.ones(mod.num_bands, bool) if g is None else np.asarray(g, bool))
    if rng is not None:
        k, flip = int(rng.integers(4)), bool(rng.integers(2))
        for d in (values, valid):
            for m in d:
                d[m] = dihedral(d[m], k, flip)
    return {"scene": sid, "window": window, "values": values, "valid": valid, "bands": given}


def to_model_space(mod: Modality, raw: np.ndarray, ok: np.ndarray,
                   given: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw (C,H,W) array + valid mask -> (model-space tensor, bool mask); invalid pixels never carry values, nor
    do bands that are not `given` ((C,) bool; None = all)."""
    valid = torch.from_numpy(np.ascontiguousarray(ok))
    if mod.is_categorical:
        idx = mod.class_index(torch.from_numpy(np.where(ok, raw[0], 0).astype(np.int64)))
        return torch.where(valid, idx, torch.full_like(idx, -1)), valid
    x = torch.from_numpy(np.where(ok[None], raw, 0).astype(np.float32))
    x = mod.normalize(x)
    keep = valid[None] if given is None else valid[None] & torch.from_numpy(np.asarray(given, bool))[:, None, None]
    return torch.where(keep, x, torch.zeros_like(x)), valid


def dihedral(x: torch.Tensor, k: int, flip: bool) -> torch.Tensor:
    """x (..., H, W) turned by k quarter turns, then flipped left-right if `flip` (the training augmentation)."""
    x = torch.rot90(x, k, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if flip else x


def collate_scenes(items: list[dict[str, Any]], modalities: Sequence[str] | None = None,
                   registry: Registry | None = None) -> dict[str, Any]:
    """Stack items whose modality sets differ: a modality missing from a sample is zeros with present=False.
    "bands" {m: (B, C) bool} holds every continuous modality's given bands (all, where an item says nothing)."""
    registry = registry or default_registry()
    mods = list(modalities) if modalities is not None else sorted({m for it in items for m in it["values"]})
    values, valid, present, bands = {}, {}, {}, {}
    for m in mods:
        ref = next((it for it in items if m in it["values"]), None)
        if ref is None:
            continue
        vals, oks, pres = [], [], []
        for it in items:
            if m in it["values"]:
                vals.append(it["values"][m]); oks.append(it["valid"][m]); pres.append(True)
            else:
                filler = torch.full_like(ref["values"][m], -1) if registry[m].is_categorical else torch.zeros_like(ref["values"][m])
                vals.append(filler); oks.append(torch.zeros_like(ref["valid"][m])); pres.append(False)
        values[m], valid[m], present[m] = torch.stack(vals), torch.stack(oks), torch.tensor(pres)
        if not registry[m].is_categorical:
            full = torch.ones(registry[m].num_bands, dtype=torch.bool)
            bands[m] = torch.stack([it.get("bands", {}).get(m, full) for it in items])
    return {"scene": [it["scene"] for it in items], "window": [it["window"] for it in items],
            "values": values, "valid": valid, "present": present, "bands": bands}

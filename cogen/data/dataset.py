"""Scenes of co-registered GeoTIFFs as `{modality: Tensor}` items.

Layout: `<root>/<MODALITY>/<scene_id>.tif` (one root or several), or an explicit manifest
`{scene_id: {modality: path}}` (JSON or YAML) for files that live elsewhere. A scene may lack modalities. Every
scene is checked for co-registration and band counts when the dataset is built, so bad files fail before
training starts.

Time series: scenes on one grid (same CRS, transform and size) whose files carry different dates (tags
ACQUISITION_DATE, SCENE_DATE or TIFFTAG_DATETIME, `scene_date`) are the dates of one place. Random crops draw a
place, then a date of it (the target date); with `max_dates` > 0 they also hold up to that many other dates of the
place, at the same window, as slots `M@1`, `M@2`, ... (in date order; timeless modalities such as DEM only at the
target date), and every slot's date relative to the target (`"dates"`: [offset days, day of year, known]).
"""
from __future__ import annotations

import datetime as dt
import fnmatch
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
from ..registry import Modality, Registry, base_modality, default_registry, slot_key, slot_order

DATE_TAGS = ("ACQUISITION_DATE", "SCENE_DATE", "TIFFTAG_DATETIME")


def parse_date(text: str) -> dt.date:
    """`2021-06-08`, `2021-06-08T10:20:00Z`, `2021:06:08 10:20:00` (TIFF) or `20210608` -> a date; ValueError else."""
    t = str(text).strip()
    for cut, fmt in ((10, "%Y-%m-%d"), (10, "%Y:%m:%d"), (8, "%Y%m%d")):
        try:
            return dt.datetime.strptime(t[:cut], fmt).date()
        except ValueError:
            continue
    raise ValueError(f"{text!r} is not a date (use YYYY-MM-DD)")


def scene_date(tags: Mapping[str, str]) -> dt.date | None:
    """The date a raster's tags state (the first of DATE_TAGS that parses), None when none does."""
    for k in DATE_TAGS:
        if k in tags:
            try:
                return parse_date(tags[k])
            except ValueError:
                continue
    return None


def date_vector(date: dt.date | None, target: dt.date | None) -> torch.Tensor:
    """(3,) [offset in days from the target date, day of year, known]: the model's date input of a slot
    (zeros when either date is unknown: at the target date, day unknown)."""
    if date is None or target is None:
        return torch.zeros(3)
    return torch.tensor([float((date - target).days), float(date.timetuple().tm_yday), 1.0])


@dataclass(frozen=True)
class Region:
    """Half-open pixel ranges [r0, r1) x [c0, c1) of a scene; None means the whole extent. `exclude`: the scene
    is not in the split at all (a place held out)."""

    rows: tuple[int, int] | None = None
    cols: tuple[int, int] | None = None
    exclude: bool = False

    def window(self, height: int, width: int) -> Window:
        if self.exclude:
            raise ConfigError("an excluded region has no window; leave the scene out (Regions.excluded)")
        r0, r1 = self.rows or (0, height)
        c0, c1 = self.cols or (0, width)
        r1, c1 = min(r1, height), min(c1, width)
        if r1 <= r0 or c1 <= c0:
            raise ConfigError(f"region rows={self.rows} cols={self.cols} is empty for a {height}x{width} scene")
        return Window(c0, r0, c1 - c0, r1 - r0)


class Regions(dict):
    """{scene id or glob pattern (`belgium_*`): Region}; `get` takes the exact id first, then the first pattern
    that matches it, so a place's dates share one entry."""

    def get(self, sid, default=None):
        if sid in self:
            return self[sid]
        for pat, r in self.items():
            if any(ch in pat for ch in "*?[") and fnmatch.fnmatchcase(sid, pat):
                return r
        return default

    def excluded(self, sid: str, default: Region | None = None) -> bool:
        r = self.get(sid, default)
        return bool(r is not None and r.exclude)


def load_split(path: str | Path, name: str) -> tuple[Region, Regions]:
    """Read a split file -> (default region, {scene id or pattern: region}) for split `name`."""
    d = yaml.safe_load(Path(path).read_text()) or {}
    splits = d.get("splits") or {}
    if name not in splits:
        raise ConfigError(f"{path}: no split {name!r}; splits are {', '.join(splits) or 'none'}")
    s = splits[name] or {}

    def region(r: Mapping[str, Any] | None) -> Region:
        r = r or {}
        return Region(tuple(r["rows"]) if r.get("rows") else None, tuple(r["cols"]) if r.get("cols") else None,
                      bool(r.get("exclude", False)))

    return region(s.get("default")), Regions({k: region(v) for k, v in (s.get("scenes") or {}).items()})


def discover(root: str | Path | Sequence[str | Path], registry: Registry,
             modalities: Iterable[str] | None = None) -> dict[str, dict[str, Path]]:
    """`<root>/<MODALITY>/<scene>.tif` -> {scene_id: {modality: path}}; unregistered folders are ignored. Several
    roots are merged; a scene id in two of them is an error."""
    if isinstance(root, (list, tuple)):
        out: dict[str, dict[str, Path]] = {}
        for r in root:
            part = discover(r, registry, modalities)
            twice = sorted(set(part) & set(out))
            if twice:
                raise DatasetError(f"{r}: scene ids {twice[:3]} are in another data root too; rename one")
            out.update(part)
        return out
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

    def __init__(self, root: str | Path | Sequence[str | Path] | None = None, manifest: str | Path | None = None,
                 registry: Registry | None = None, modalities: Sequence[str] | None = None,
                 crop: int | None = None, region: Region | None = None, regions: Mapping[str, Region] | None = None,
                 mode: str = "random", length: int = 1000, seed: int = 0, augment: bool = False,
                 cache: bool = True, max_dates: int = 0):
        self.registry = registry or default_registry()
        if (root is None) == (manifest is None):
            raise DatasetError("give either a dataset root folder or a manifest")
        files = discover(root, self.registry, modalities) if root is not None else read_manifest(manifest, self.registry)
        if modalities is not None:
            files = {s: {m: p for m, p in mods.items() if m in modalities} for s, mods in files.items()}
            files = {s: mods for s, mods in files.items() if mods}
        region = region or Region()
        regions = Regions(regions or {})
        files = {s: mods for s, mods in files.items() if not regions.excluded(s, region)}
        if not files:
            raise DatasetError("no scenes left: the split excludes every scene of the data")
        self.modalities = list(modalities) if modalities is not None else sorted({m for v in files.values() for m in v})
        self.files = files
        self.scene_ids = sorted(files)
        self.grids: dict[str, Grid] = {}
        self.band_idx: dict[tuple[str, str], tuple[int, ...]] = {}
        self.dates: dict[str, dt.date | None] = {}
        for sid in self.scene_ids:
            self.grids[sid] = self._check_scene(sid)
        self.windows = {sid: regions.get(sid, region).window(g.height, g.width) for sid, g in self.grids.items()}
        self.places = self._places()
        self.place_of = {sid: tuple(p) for p in self.places for sid in p}
        if max_dates < 0:
            raise ConfigError(f"max_dates={max_dates}: use 0 (one date a sample) or more")
        self.max_dates = max_dates
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
        dates = []
        for m, p in self.files[sid].items():
            mod = self.registry[m]
            with open_raster(p) as src:
                self.band_idx[sid, m] = mod.file_bands(src.count, str(p), src.descriptions)
                g = Grid(src.crs, src.transform, src.height, src.width)
                d = scene_date(src.tags())
                if d is not None:
                    dates.append((mod.timeless, d))
            if ref is None:
                ref_path, ref = p, g
            else:
                check_same_grid(ref_path, ref, p, g)
        assert ref is not None
        measured = [d for timeless, d in dates if not timeless]  # a measured layer's date wins over SCENE_DATE
        self.dates[sid] = (measured or [d for _, d in dates] or [None])[0]
        return ref

    def _places(self) -> list[list[str]]:
        """Scene ids grouped by place: dated scenes on one grid and region are the dates of one place (in date
        order); any other scene is a place of its own."""
        groups: dict[Any, list[str]] = {}
        for sid in self.scene_ids:
            g, w = self.grids[sid], self.windows[sid]
            key = (str(g.crs), tuple(g.transform), g.height, g.width, tuple(w.flatten())) if self.dates[sid] else sid
            groups.setdefault(key, []).append(sid)
        out = []
        for ids in groups.values():
            days = [self.dates[s] for s in ids]
            if len(set(days)) < len(days):  # one place, the same date twice: keep them apart, as single scenes
                out += [[s] for s in ids]
            else:
                out.append(sorted(ids, key=lambda s: self.dates[s]))
        return sorted(out, key=lambda p: p[0])

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
            others = self.other_dates(sid, rng)
        else:  # a place, then a date of it: a place of many dates weighs as much as a scene of one
            place = self.places[int(rng.integers(len(self.places)))]
            sid = place[int(rng.integers(len(place)))] if len(place) > 1 else place[0]
            row, col, h, w = random_window(rng, self.windows[sid], self.crop)
            others = self.other_dates(sid, rng)
        raw, bands, dates = {}, {}, {}
        target = self.dates[sid]
        for k, s in enumerate([sid, *others]):
            for m in self.files[s]:
                if k and self.registry[m].timeless:
                    continue
                key = slot_key(m, k)
                raw[key] = self.raw_crop(s, m, row, col, h, w)
                if not self.registry[m].is_categorical:
                    bands[key] = self.given(s, m)
                if self.max_dates:
                    dates[key] = date_vector(self.dates[s], target)
        item = make_item(self.registry, sid, (row, col, h, w), raw, rng if self.augment else None, bands)
        if self.max_dates:
            item["dates"] = dates
        return item

    def other_dates(self, sid: str, rng: np.random.Generator) -> list[str]:
        """Up to `max_dates` other dates of scene `sid`'s place, a random number of them (0 too) at random, in date
        order (none without max_dates: no draw, so crops stay those of runs trained before)."""
        place = self.place_of[sid]
        if not self.max_dates or len(place) < 2:
            return []
        rest = [s for s in place if s != sid]
        k = int(rng.integers(min(self.max_dates, len(rest)) + 1))
        pick = sorted(int(i) for i in rng.choice(len(rest), size=k, replace=False)) if k else []
        return [rest[i] for i in pick]


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
    Slots of other dates (`M@k`) of the `modalities` are kept too, after their modality.
    "bands" {m: (B, C) bool} holds every continuous modality's given bands (all, where an item says nothing);
    "dates" {m: (B, 3)} each slot's date vector (zeros where an item has none), when an item has dates."""
    registry = registry or default_registry()
    keys = sorted({m for it in items for m in it["values"]}, key=lambda m: (base_modality(m), slot_order(m)))
    if modalities is not None:
        order = {m: i for i, m in enumerate(modalities)}
        keys = sorted((m for m in keys if base_modality(m) in order), key=lambda m: (order[base_modality(m)], slot_order(m)))
    values, valid, present, bands, dates = {}, {}, {}, {}, {}
    dated = any("dates" in it for it in items)
    for m in keys:
        ref = next(it for it in items if m in it["values"])
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
        if dated:
            dates[m] = torch.stack([it.get("dates", {}).get(m, torch.zeros(3)) for it in items]).float()
    out = {"scene": [it["scene"] for it in items], "window": [it["window"] for it in items],
           "values": values, "valid": valid, "present": present, "bands": bands}
    if dated:
        out["dates"] = dates
    return out


def split_quadrants(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch of B crops of H x W px -> a batch of 4B crops of H/2 x W/2 px, each crop's four quadrants in turn
    (top-left, top-right, bottom-left, bottom-right); presence, bands and dates follow their crop."""
    def cut(x: torch.Tensor) -> torch.Tensor:  # (B, ..., H, W) -> (4B, ..., H/2, W/2)
        H, W = x.shape[-2:]
        h, w = H // 2, W // 2
        parts = [x[..., :h, :w], x[..., :h, w:2 * w], x[..., h:2 * h, :w], x[..., h:2 * h, w:2 * w]]
        return torch.stack(parts, dim=1).flatten(0, 1)

    rep = lambda t: t.repeat_interleave(4, dim=0)
    out = dict(batch)
    out["values"] = {m: cut(v) for m, v in batch["values"].items()}
    out["valid"] = {m: cut(v) for m, v in batch["valid"].items()}
    out["present"] = {m: rep(v) for m, v in batch["present"].items()}
    out["bands"] = {m: rep(v) for m, v in batch["bands"].items()}
    if "dates" in batch:
        out["dates"] = {m: rep(v) for m, v in batch["dates"].items()}
    out["scene"] = [s for s in batch["scene"] for _ in range(4)]
    out["window"] = [quadrant_window(w, q) for w in batch["window"] for q in range(4)]
    return out


def quadrant_window(window: Sequence[int], q: int) -> tuple[int, ...]:
    """(row, col, h, w) of a crop -> that of its quadrant q (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)."""
    r, c, h, w = (int(v) for v in window)
    return (r + (q // 2) * (h // 2), c + (q % 2) * (w // 2), h // 2, w // 2)

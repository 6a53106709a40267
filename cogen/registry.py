"""The modality registry: what each modality is, declared in YAML, frozen at run time.

A :class:`Modality` knows its bands, units, the exact value transform between raw raster values and the
model's space, nodata and valid range, class list (categorical maps) and tokenizer choice. Nothing else in
cogen hard-codes bands, statistics or classes.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
import yaml

from .errors import ConfigError, RasterError, UnknownModalityError, UsageError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_REGISTRY = CONFIG_DIR / "modalities.yaml"
DEFAULT_STATS = CONFIG_DIR / "stats.yaml"

_ENTRY_KEYS = {
    "kind", "description", "bands", "units", "transform", "nodata", "valid_range", "dtype", "rgb",
    "display_range", "spectral", "tokenizer", "classes", "mean", "std", "data_range", "native_blocks",
    "nodata_all_bands", "timeless",
}


@dataclass(frozen=True)
class ClassInfo:
    id: int
    name: str
    color: str

    @property
    def rgb(self) -> tuple[float, float, float]:
        h = self.color.lstrip("#")
        return tuple(int(h[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]


@dataclass(frozen=True)
class Modality:
    """One registry entry. Frozen: build a new registry to change it."""

    name: str
    kind: str  # "continuous" | "categorical"
    bands: tuple[str, ...]
    units: str = ""
    description: str = ""
    scale: float = 1.0
    offset: float = 0.0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    nodata: float | None = None
    # a pixel whose every band holds this value is no data (ESA's NODATA = 0 of Sentinel-2, the zero fill of
    # most imagery outside its swath) though one band alone may hold it; images default to 0, others to None
    nodata_all_bands: float | None = None
    valid_range: tuple[float, float] | None = None
    dtype: str = "float32"
    rgb: tuple[str, ...] = ()
    display_range: tuple[float, float] | None = None
    spectral: bool = False
    data_range: float | None = None  # PSNR's data range in physical units (None: the truth's range)
    tokenizer: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({"type": "patch"}))
    classes: tuple[ClassInfo, ...] = ()
    # band -> k: the band is stored upsampled from a k-times coarser native resolution, each value repeated
    # over an aligned k x k block (cogen.native); generated bands are given the same structure
    native_blocks: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # the same at every date (elevation): a sample holds it once, at the target date, never at other dates
    timeless: bool = False

    # ---- facts ---------------------------------------------------------------------------------------
    @property
    def is_categorical(self) -> bool:
        return self.kind == "categorical"

    @property
    def num_bands(self) -> int:
        return len(self.bands)

    @property
    def is_image(self) -> bool:
        """A sensor image: continuous with two or more bands (radar, multispectral), so it carries texture at
        the pixel scale, unlike a class map or a single smooth layer such as elevation."""
        return self.kind == "continuous" and len(self.bands) >= 2

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def channels(self) -> int:
        """Channels in the model's pixel space: bands, or one channel per class for class maps."""
        return self.num_classes if self.is_categorical else self.num_bands

    @property
    def class_ids(self) -> tuple[int, ...]:
        return tuple(c.id for c in self.classes)

    def band_index(self, band: str) -> int:
        if band not in self.bands:
            raise ConfigError(f"{self.name}: unknown band {band!r}; bands are {', '.join(self.bands)}")
        return self.bands.index(band)

    # ---- values --------------------------------------------------------------------------------------
    def valid_mask(self, raw: np.ndarray) -> np.ndarray:
        """(C,H,W) raw values -> (H,W) bool, False where any band is NaN, nodata or out of range."""
        raw = np.asarray(raw)
        ok = np.ones(raw.shape[-2:], dtype=bool)
        if np.issubdtype(raw.dtype, np.floating):
            ok &= np.isfinite(raw).all(axis=0)
        if self.nodata is not None and not np.isnan(self.nodata):  # NaN nodata is caught by isfinite
            ok &= ~(raw == self.nodata).any(axis=0)
        if self.nodata_all_bands is not None and raw.shape[0] > 1:
            ok &= ~(raw == self.nodata_all_bands).all(axis=0)
        if self.is_categorical:
            ok &= np.isin(raw[0], np.asarray(self.class_ids))
        elif self.valid_range is not None:
            lo, hi = self.valid_range
            with np.errstate(invalid="ignore"):
                ok &= ((raw >= lo) & (raw <= hi)).all(axis=0)
        return ok

    def to_physical(self, raw: torch.Tensor) -> torch.Tensor:
        return raw * self.scale + self.offset

    def from_physical(self, phys: torch.Tensor) -> torch.Tensor:
        return (phys - self.offset) / self.scale

    def spread_to_physical(self, raw: torch.Tensor) -> torch.Tensor:
        """A spread (standard deviation) in raw units -> physical units: no offset, the scale's size."""
        return raw * abs(self.scale)

    def spread_from_physical(self, phys: torch.Tensor) -> torch.Tensor:
        return phys / abs(self.scale)

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shape = (-1,) + (1,) * 2
        if len(self.mean) != self.num_bands or len(self.std) != self.num_bands:
            raise ConfigError(
                f"{self.name}: no per-band mean/std in the registry; run `python -m cogen.stats --data DIR "
                f"--out configs/stats.yaml` over your training data"
            )
        m = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(shape)
        s = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(shape)
        return m, s

    def normalize(self, raw: torch.Tensor) -> torch.Tensor:
        """Continuous (..., C, H, W) raw values -> model space (float32)."""
        raw = raw.float()
        m, s = self._stats(raw)
        return (self.to_physical(raw) - m) / s

    def denormalize(self, x: torch.Tensor, physical: bool = True) -> torch.Tensor:
        """Model space -> physical units (default) or raw units; the exact inverse of :meth:`normalize`."""
        m, s = self._stats(x)
        phys = x * s + m
        return phys if physical else self.from_physical(phys)

    def class_index(self, ids: torch.Tensor) -> torch.Tensor:
        """(..., H, W) class ids -> 0-based class index (-1 where not a class)."""
        lut = torch.full((max(max(self.class_ids), int(ids.max().item()) if ids.numel() else 0) + 1,), -1,
                         dtype=torch.long)
        for i, cid in enumerate(self.class_ids):
            lut[cid] = i
        return lut[ids.long().clamp(min=0)]

    def file_bands(self, count: int, source: str, descriptions: Sequence[str | None] = (),
                   declared: Sequence[str] | None = None) -> tuple[int, ...]:
        """Which of this modality's bands a file of `count` bands holds, in file order, as indices into
        `bands`: the `declared` names (`--bands MOD=B02,B03`), else the file's band descriptions when every
        one names a band of the modality (case-insensitive; `B2` = `B02`), else every band in registry order
        when the count is complete. A file whose bands cannot be named is refused in one line."""
        how = (f"name them in the file's band descriptions or pass --bands {self.name}="
               f"{','.join(self.bands[:3])},...")
        if self.is_categorical:
            self.check_bands(count, source)
            return (0,)
        names = list(declared) if declared is not None else list(descriptions or ())
        if declared is None and (len(names) != count or not all(_band_key(n) in self._band_keys for n in names if n)
                                 or not all(names)):
            names = []  # descriptions absent or not band names of this modality
        if names:
            if len(names) != count:
                raise RasterError(f"{source}: has {count} band(s) but {len(names)} band name(s) were given "
                                  f"({', '.join(names)}); give one name per band of the file")
            idx = []
            for n in names:
                k = _band_key(n)
                if k not in self._band_keys:
                    raise RasterError(f"{source}: {n!r} is not a band of {self.name} "
                                      f"({', '.join(self.bands)}); {how}")
                idx.append(self._band_keys[k])
            if len(set(idx)) != len(idx):
                raise RasterError(f"{source}: band names {', '.join(names)} repeat a band; {how}")
            return tuple(idx)
        if count == self.num_bands:
            return tuple(range(count))
        raise RasterError(f"{source}: has {count} band(s) but {self.name} has {self.num_bands} "
                          f"({', '.join(self.bands)}), and its bands are not named; {how}")

    def expand_bands(self, raw: np.ndarray, idx: Sequence[int]) -> np.ndarray:
        """A file's (len(idx), H, W) raw bands -> (num_bands, H, W), the missing bands 0 (see `file_bands`)."""
        if tuple(idx) == tuple(range(self.num_bands)):
            return raw
        out = np.zeros((self.num_bands, *raw.shape[1:]), raw.dtype)
        out[list(idx)] = raw
        return out

    def band_mask(self, idx: Sequence[int]) -> np.ndarray:
        """(num_bands,) bool: True for the bands `idx` a file holds."""
        given = np.zeros(self.num_bands, bool)
        given[list(idx)] = True
        return given

    @property
    def _band_keys(self) -> dict[str, int]:
        return {_band_key(b): i for i, b in enumerate(self.bands)}

    def check_bands(self, count: int, source: str) -> None:
        if count != self.num_bands:
            raise RasterError(
                f"{source}: has {count} band(s) but {self.name} needs {self.num_bands} "
                f"({', '.join(self.bands)}); pass the right file or declare a new modality in configs/modalities.yaml"
            )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind, "description": self.description, "bands": list(self.bands), "units": self.units,
            "nodata": self.nodata, "dtype": self.dtype, "tokenizer": dict(self.tokenizer),
        }
        if self.is_categorical:
            d["classes"] = [{"id": c.id, "name": c.name, "color": c.color} for c in self.classes]
        else:
            d["transform"] = {"scale": self.scale, "offset": self.offset}
            d["mean"], d["std"] = list(self.mean), list(self.std)
            d["valid_range"] = list(self.valid_range) if self.valid_range else None
            d["nodata_all_bands"] = self.nodata_all_bands
            d["spectral"] = self.spectral
            d["data_range"] = self.data_range
            if self.native_blocks:
                d["native_blocks"] = dict(self.native_blocks)
        if self.timeless:
            d["timeless"] = True
        if self.rgb:
            d["rgb"] = list(self.rgb)
        if self.display_range:
            d["display_range"] = list(self.display_range)
        return d


def slot_key(modality: str, k: int) -> str:
    """The key of a modality at the k-th other date of a sample: `S2L2A` at the target date (k = 0), `S2L2A@1`,
    `S2L2A@2`, ... at the others. Every mapping the model, the losses and the roles take is keyed by these slots,
    so a date is one more slot of its modality's tokens, not a code path of its own."""
    return modality if k == 0 else f"{modality}@{int(k)}"


def base_modality(key: str) -> str:
    """`S2L2A@2` -> `S2L2A`: the registry modality of a slot key (a modality name is its own)."""
    return key.split("@", 1)[0]


def slot_order(key: str) -> int:
    """`S2L2A` -> 0, `S2L2A@2` -> 2: a slot's place among the dates of its modality."""
    return int(key.split("@", 1)[1]) if "@" in key else 0


def _band_key(name: str) -> str:
    """A band name compared loosely: upper case, and Sentinel-2's `B2` the same as `B02`."""
    s = str(name).strip().upper()
    m = re.fullmatch(r"B0*(\d{1,2})(A?)", s)
    return f"B{int(m.group(1)):02d}{m.group(2)}" if m else s


def _entry(name: str, d: Mapping[str, Any]) -> Modality:
    unknown = set(d) - _ENTRY_KEYS
    if unknown:
        raise ConfigError(f"modality {name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(_ENTRY_KEYS)}")
    kind = d.get("kind")
    if kind not in ("continuous", "categorical"):
        raise ConfigError(f"modality {name}: kind must be 'continuous' or 'categorical', got {kind!r}")
    bands = tuple(d.get("bands") or ())
    if not bands:
        raise ConfigError(f"modality {name}: needs a non-empty 'bands' list")
    tr = d.get("transform") or {}
    classes = tuple(ClassInfo(int(c["id"]), str(c["name"]), str(c.get("color", "#808080"))) for c in d.get("classes") or ())
    if kind == "categorical" and not classes:
        raise ConfigError(f"modality {name}: a categorical modality needs a 'classes' list")
    if tr.get("scale", 1.0) == 0:
        raise ConfigError(f"modality {name}: transform.scale must not be 0 (the transform must be invertible)")
    mean, std = tuple(float(v) for v in d.get("mean") or ()), tuple(float(v) for v in d.get("std") or ())
    if std and min(std) <= 0:
        raise ConfigError(f"modality {name}: std must be positive, got {std}")
    rgb = tuple(d.get("rgb") or ())
    for b in rgb:
        if b not in bands:
            raise ConfigError(f"modality {name}: rgb band {b!r} is not one of its bands {bands}")
    vr = d.get("valid_range")
    dr = d.get("display_range")
    blocks = dict(d.get("native_blocks") or {})
    for b, k in blocks.items():
        if b not in bands:
            raise ConfigError(f"modality {name}: native_blocks band {b!r} is not one of its bands {bands}")
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigError(f"modality {name}: native_blocks {b}: {k!r} must be a whole number >= 1 (e.g. 2 "
                              f"for a 20 m band on a 10 m grid)")
    if "nodata_all_bands" in d:  # null turns the rule off
        nab = None if d["nodata_all_bands"] is None else float(d["nodata_all_bands"])
    else:  # images (continuous, two or more bands): an all-zero pixel is fill, as in Sentinel-2 products
        nab = 0.0 if kind == "continuous" and len(bands) >= 2 else None
    return Modality(
        name=name, kind=kind, bands=bands, nodata_all_bands=nab, units=str(d.get("units", "")), description=str(d.get("description", "")),
        scale=float(tr.get("scale", 1.0)), offset=float(tr.get("offset", 0.0)), mean=mean, std=std,
        nodata=None if d.get("nodata") is None else float(d["nodata"]),
        valid_range=None if vr is None else (float(vr[0]), float(vr[1])), dtype=str(d.get("dtype", "float32")),
        rgb=rgb, display_range=None if dr is None else (float(dr[0]), float(dr[1])),
        spectral=bool(d.get("spectral", False)),
        data_range=None if d.get("data_range") is None else float(d["data_range"]),
        tokenizer=MappingProxyType(dict(d.get("tokenizer") or {"type": "patch"})), classes=classes,
        native_blocks=MappingProxyType(blocks), timeless=bool(d.get("timeless", False)),
    )


class Registry(Mapping[str, Modality]):
    """Read-only mapping name -> :class:`Modality`; unknown names raise an error listing the known ones."""

    def __init__(self, entries: Mapping[str, Mapping[str, Any]]):
        self._m = {name: _entry(name, d) for name, d in entries.items()}

    def __getitem__(self, name: str) -> Modality:
        """A modality by name, or by a slot key of it (`S2L2A@1`, :func:`slot_key`)."""
        try:
            return self._m[base_modality(name)]
        except KeyError:
            raise UnknownModalityError(
                f"unknown modality {name!r}; known modalities: {', '.join(self._m)} "
                f"(add an entry to configs/modalities.yaml for a new sensor)"
            ) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and base_modality(name) in self._m

    def __iter__(self):
        return iter(self._m)

    def __len__(self) -> int:
        return len(self._m)

    def check(self, names: Iterable[str]) -> list[str]:
        """Return `names` as a list after checking every one is registered."""
        return [self[n].name for n in names]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {n: m.to_dict() for n, m in self._m.items()}

    def has_image(self, names: Iterable[str]) -> bool:
        """Whether any of these (registered) modalities is an image (`Modality.is_image`); others are ignored."""
        return any(n in self and self[n].is_image for n in names)

    def with_add_offsets(self, offsets: Mapping[str, float]) -> "Registry":
        """A copy whose named continuous modalities read and write raw values with an additive offset `dn` in
        raw units, as a product's metadata states it (Sentinel-2 from processing baseline 04.00 on:
        BOA_ADD_OFFSET / RADIO_ADD_OFFSET = -1000, reflectance = (raw + dn) * scale): physical =
        (raw + dn) * scale + offset. Statistics, valid ranges and everything else are unchanged."""
        out = Registry({})
        out._m = dict(self._m)
        for name, dn in offsets.items():
            mod = self[name]
            if mod.is_categorical:
                raise UsageError(f"--add-offset {name}={dn:g}: {name} is a class map and has no additive offset; "
                                 f"give it for continuous modalities only, e.g. --add-offset S2L2A=-1000")
            out._m[name] = replace(mod, offset=mod.offset + float(dn) * mod.scale)
        return out

    @classmethod
    def from_yaml(cls, path: str | Path = DEFAULT_REGISTRY, stats: str | Path | None = DEFAULT_STATS) -> "Registry":
        """Load a registry file, overlaying per-band mean/std from a stats file (as written by cogen.stats)."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: registry file not found; pass an existing modalities YAML")
        entries = copy.deepcopy((yaml.safe_load(path.read_text()) or {}).get("modalities") or {})
        if stats is not None and Path(stats).is_file():
            for name, st in ((yaml.safe_load(Path(stats).read_text()) or {}).get("modalities") or {}).items():
                if name in entries:
                    entries[name].update({k: st[k] for k in ("mean", "std") if k in st})
        return cls(entries)


_DEFAULT: Registry | None = None


def default_registry() -> Registry:
    """The registry shipped in configs/ (modalities.yaml + stats.yaml), loaded once."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Registry.from_yaml()
    return _DEFAULT

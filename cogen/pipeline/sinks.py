"""Outputs of a call: per target, the first sample (continuous) or the majority class, the mean and spread of
several samples, and the agreement of the samples (class maps), each streamed window by window into a
self-describing GeoTIFF (`WindowedWriter`) or into memory. Values are stored in the registry's raw units, as
the inputs are (`Modality.from_physical`); a GeoTIFF's scale and offset say how to read them physically."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import rasterio
from rasterio.windows import Window

from ..io import RasterMeta, WindowedWriter
from ..registry import Modality, Registry
from .sources import RasterSource, Source

KINDS_CONTINUOUS = ("sample", "mean", "std")
KINDS_CLASSES = ("classes", "confidence")


@dataclass
class TargetResult:
    """What the pipeline produces for one target, in physical units (continuous) or class ids."""

    modality: str
    sample: np.ndarray | None = None  # (C, H, W) the first sample
    mean: np.ndarray | None = None  # (C, H, W) mean of the samples (samples > 1)
    std: np.ndarray | None = None  # (C, H, W) their standard deviation
    classes: np.ndarray | None = None  # (H, W) majority class ids
    confidence: np.ndarray | None = None  # (H, W) fraction of the samples that agree with the majority
    files: dict[str, str] = field(default_factory=dict)


class MemorySink:
    """A writer's interface over an array in memory (results returned instead of written)."""

    def __init__(self, count: int, height: int, width: int, dtype: str):
        self.arr = np.zeros((count, height, width), dtype)
        self.dtype = dtype

    def write(self, arr: np.ndarray, window: Window) -> None:
        r, c, h, w = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
        self.arr[:, r : r + h, c : c + w] = arr

    def commit(self) -> np.ndarray:
        return self.arr

    def abort(self) -> None:
        pass


def encode_raw(mod: Modality, phys: np.ndarray, dtype: str, nodata: float | None, has_info: np.ndarray) -> np.ndarray:
    """(C, h, w) physical values -> raw values of `dtype` (rounded and clipped for integers, never equal to the
    nodata value), nodata where no input says anything (`has_info` False)."""
    raw = mod.from_physical(phys)
    dt = np.dtype(dtype)
    if np.issubdtype(dt, np.integer):
        lim = np.iinfo(dt)
        raw = np.clip(np.round(raw), lim.min, lim.max)
        if nodata is not None and not math.isnan(nodata):
            raw = np.where(raw == nodata, nodata + (1 if nodata < lim.max else -1), raw)
    if nodata is not None:
        raw = np.where(has_info[None], raw, nodata)
    return raw.astype(dt)


def output_nodata(mod: Modality) -> float | None:
    if mod.nodata is not None:
        return mod.nodata
    return float("nan") if np.issubdtype(np.dtype(mod.dtype), np.floating) else None


def out_type(mod: Modality, kind: str, source: Source | None) -> tuple[str, int, float | None]:
    """(dtype, band count, nodata) of one output. A regenerated input (cloud removal) keeps its own dtype and
    nodata; a mean, spread or agreement is float32 with NaN for no data."""
    if kind in ("confidence", "mean", "std"):
        return "float32", 1 if kind == "confidence" else mod.num_bands, float("nan")
    if kind == "classes":
        return mod.dtype, 1, output_nodata(mod)
    if isinstance(source, RasterSource):
        return source.dtype, mod.num_bands, source.nodata
    return mod.dtype, mod.num_bands, output_nodata(mod)


def out_meta(mod: Modality, kind: str, tags: Mapping[str, Any], source: Source | None,
             add_offset: float = 0.0) -> RasterMeta:
    """Band names, GDAL scale/offset/unit (physical = raw * scale + offset), the class colours and the provenance
    tags of an output raster. An output that regenerates part of an input raster (cloud removal) is the same
    product: its sample, mean and classes keep that raster's own dataset and band tags (acquisition, processing
    baseline, BOA_ADD_OFFSET, ...) under cogen's. Values written with an additive offset say so
    (COGEN_ADD_OFFSET), so reading them back without it is warned about."""
    same_product = isinstance(source, RasterSource) and kind in ("sample", "mean", "classes")
    t = dict(source.tags) if same_product else {}
    t.update({**tags, "COGEN_MODALITY": mod.name, "COGEN_PRODUCT": kind})
    if kind in ("sample", "mean") and add_offset:
        t["COGEN_ADD_OFFSET"] = f"{add_offset:g}"
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


def output_grid(sources: Mapping[str, Source]) -> tuple[Any, Any]:
    """(CRS, transform) of a call's outputs: the first raster input's grid; none and the identity for arrays."""
    ref = next((s for s in sources.values() if isinstance(s, RasterSource)), None)
    return (ref.grid.crs, ref.grid.transform) if ref else (None, rasterio.transform.Affine.identity())


def make_writers(registry: Registry, targets: list[str], H: int, W: int, samples: int,
                 outputs: Mapping[str, Mapping[str, Any]] | None, sources: Mapping[str, Source],
                 tags: Mapping[str, Any], add_offsets: Mapping[str, float]) -> dict[str, dict[str, Any]]:
    """{target: {kind: writer}}: a GeoTIFF on the first raster input's grid where `outputs` names a path for that
    kind, else memory. Continuous targets get a sample, and a mean and spread with several samples; class maps
    the majority and the agreement."""
    crs, transform = output_grid(sources)
    writers: dict[str, dict[str, Any]] = {}
    for m in targets:
        mod = registry[m]
        kinds = KINDS_CLASSES if mod.is_categorical else KINDS_CONTINUOUS if samples > 1 else ("sample",)
        writers[m] = {}
        for k in kinds:
            dtype, count, nodata = out_type(mod, k, sources.get(m))
            path = (outputs or {}).get(m, {}).get(k)
            if path is None:
                writers[m][k] = MemorySink(count, H, W, dtype)
            else:
                meta = out_meta(mod, k, tags, sources.get(m), add_offsets.get(m, 0.0))
                writers[m][k] = WindowedWriter(path, crs, transform, H, W, count, dtype, nodata, meta=meta)
    return writers


def collect(registry: Registry, writers: dict[str, dict[str, Any]]) -> dict[str, TargetResult]:
    """Commit every writer: files are renamed into place, arrays in memory become physical values / class ids."""
    results = {}
    for m, ws in writers.items():
        mod, r = registry[m], TargetResult(m)
        for kind, w in ws.items():
            val = w.commit()
            if isinstance(val, Path):
                r.files[kind] = str(val)
            elif kind in KINDS_CLASSES:
                setattr(r, kind, val[0])
            elif kind == "std":
                setattr(r, kind, mod.spread_to_physical(val).astype(np.float32))
            else:
                setattr(r, kind, mod.to_physical(val.astype(np.float64)).astype(np.float32))
        results[m] = r
    return results


def abort(writers: dict[str, dict[str, Any]]) -> None:
    for ws in writers.values():
        for w in ws.values():
            w.abort()

"""The user-facing pipeline: conditions in, targets out, any scene size, georeferenced.

    from cogen.pipeline import CogenPipeline
    pipe = CogenPipeline.from_checkpoint()              # the shipped demo model
    out = pipe({"S1RTC": "s1.tif", "DEM": "dem.tif"}, ["S2L2A"], samples=4, seed=0)
    out["S2L2A"].mean                                   # (C, H, W) physical units (reflectance)

A call is validated and laid out once (`request`), its inputs read window by window (`sources`), its tiles sampled
(`tiles`, post-processed by `post`) and blended row band by row band (`stream`) into GeoTIFFs or arrays (`sinks`).
The pipeline holds only the loaded model; everything about a call lives in that call, so one pipeline serves
several threads at once.
"""
from __future__ import annotations

import math
from functools import cached_property, partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from .. import __version__
from ..checkpoint import Bundle, load_bundle
from ..errors import UsageError
from ..io import RasterMeta, WindowedWriter
from ..novelty import Calibration, Novelty, scene_novelty
from ..options import SampleOptions
from . import post
from .dates import split_key
from .request import Call, plan_call
from .sinks import TargetResult, abort, collect, make_writers, output_grid
from .sources import (ArraySource, MaskSource, RasterSource, Source, declared_add_offsets, make_sources,
                      unit_warnings, window_grid_offset)
from .stream import interpolated_starts, stream
from .tiles import global_noise, sample_tiles

GDAL_CACHE_MB = 64  # windows are read and written once: caching the scene would only cost memory

__all__ = ["ArraySource", "Call", "CogenPipeline", "MaskSource", "RasterSource", "SampleOptions", "Source",
           "TargetResult", "declared_add_offsets", "global_noise", "make_sources", "unit_warnings",
           "window_grid_offset"]


class CogenPipeline:
    def __init__(self, bundle: Bundle, device: str | torch.device = "cpu"):
        self.bundle = bundle.to(device)
        self.device = torch.device(device)
        self.model = self.bundle.model.eval()

    @classmethod
    def from_checkpoint(cls, path: str | Path | None = None, device: str = "cpu", modalities=None) -> "CogenPipeline":
        return cls(load_bundle(path, modalities, device), device)

    @property
    def registry(self):
        return self.bundle.registry

    @property
    def options(self) -> SampleOptions:
        """The checkpoint's sampling defaults (its config's `sample` section)."""
        return self.bundle.config.sample

    @property
    def unit(self) -> int:
        """Tiles and overlaps are multiples of this (tokenizer downsampling x patch size)."""
        u = 1
        for m in self.model.names:
            u = math.lcm(u, self.bundle.tokenizers[m].downsample * self.model.patch_size(m))
        return u

    def __call__(self, conditions: Mapping[str, Any], targets: Sequence[str], options: SampleOptions | None = None,
                 *, regenerate: Mapping[str, Any] | None = None,
                 outputs: Mapping[str, Mapping[str, Any]] | None = None, window: Window | None = None,
                 anchor: tuple[int, int] | None = None, size: tuple[int, int] | None = None,
                 add_offsets: Mapping[str, float] | None = None, grid_offset: tuple[int, int] | None = None,
                 bands: Mapping[str, Sequence[str]] | None = None, novelty: Novelty | None = None,
                 progress: bool = True, **overrides: Any) -> dict[str, TargetResult]:
        """Generate `targets` from `conditions` ({modality: GeoTIFF path, (C, H, W) raw array, or Source}).

        options: the sampling settings (default: the checkpoint's, `self.options`); `**overrides` change single
            fields of them for this call, e.g. `samples=8, seed=1` (cogen.options.SampleOptions).
        regenerate: {modality: mask} for a target that is also given (cloud removal): masked pixels (and the
            input's invalid ones) are generated, the others kept exactly. A mask is a bool array, a binary mask
            GeoTIFF's path (non-zero = masked) or a `MaskSource`.
        outputs: {target: {"sample"|"mean"|"std"|"classes"|"confidence": path}}: GeoTIFFs streamed to, instead of
            arrays returned.
        window: a rasterio `Window` (pixels of the GeoTIFFs): only that part of the inputs is the scene.
        anchor: (row, col) of the scene's top-left pixel on a lattice fixed on the map, on which tiles and noise
            are laid; default: the GeoTIFF inputs' own (`Grid.anchor`), (0, 0) for arrays.
        size: (H, W) of a scene generated from nothing.
        add_offsets: {modality: DN} additive offsets in raw units that the inputs' products state (Sentinel-2 of
            processing baseline 04.00 or later: -1000); outputs of that modality carry the same offset.
        grid_offset: (row, col) of the inputs' top-left pixel on the grid of native-resolution blocks (20 m / 60 m
            Sentinel-2 bands) for targets that are not given; default (0, 0). A given target shows its own.
        bands: {modality: band names} of an input that holds some of its modality's bands only (a 9-band L2A
            product), when its band descriptions do not name them; named or complete inputs need nothing. The
            missing bands are absent for the model, not zeros; generated modalities hold every band.
        novelty: the scene's `self.novelty(...)`: a class map's confidence is multiplied by the pixel's familiarity
            (1 up to the calibration's 95th percentile, halving for each unit of novelty above it).
        """
        call = plan_call(self.registry, self.model.names, self.unit, self.options, conditions, targets, options,
                         overrides, regenerate, window, anchor, size, add_offsets, grid_offset, bands,
                         self.bundle.tokenizers)
        if novelty is not None:
            if novelty.map.shape != (call.height, call.width):
                raise UsageError(f"novelty map {novelty.map.shape} is not the scene's {(call.height, call.width)}; "
                                 f"compute it with the same inputs and window")
            call.novelty = novelty
        post.prepare(call)
        call.starts = interpolated_starts(call)
        writers = make_writers(call.registry, call.targets, call.height, call.width, call.options.samples, outputs,
                               call.sources, self._tags(call), call.add_offsets)
        try:
            with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
                stream(call, partial(sample_tiles, self.bundle, self.device, call), writers, progress)
        except BaseException:
            abort(writers)
            raise
        return collect(call.registry, writers)

    @cached_property
    def calibration(self) -> Calibration | None:
        """The checkpoint's novelty calibration (novelty.json), None if it has none; read once."""
        return Calibration.load(self.bundle.path)

    def novelty(self, conditions: Mapping[str, Any], *, window: Window | None = None,
                add_offsets: Mapping[str, float] | None = None, bands: Mapping[str, Sequence[str]] | None = None,
                masks: Mapping[str, Any] | None = None, out: str | Path | None = None) -> Novelty | None:
        """How unlike what the model learned the inputs are (cogen.novelty): the per-pixel map, the scene score,
        the checkpoint's threshold and whether the scene is unfamiliar; None for a checkpoint without a novelty
        calibration. masks: {modality: mask} pixels to leave out (cloud removal's clouds). out: novelty.tif,
        float32 on the inputs' grid (the outputs'), NaN where no input is valid."""
        cal = self.calibration
        if cal is None:
            return None
        registry = self.registry.with_add_offsets(add_offsets) if add_offsets else self.registry
        at_target = {k: v for k, v in conditions.items() if split_key(k)[1] is None}  # inputs named with a date: not scored
        named = {m: b for m, b in (bands or {}).items() if split_key(m)[0] in cal.tokens}
        sources = make_sources(registry, {m: v for m, v in at_target.items() if m in cal.tokens}, window,
                               add_offsets, {split_key(m)[0]: b for m, b in named.items()})
        if not sources:
            return None
        masks = {m: MaskSource(v, window=window) if isinstance(v, (str, Path)) else v for m, v in (masks or {}).items()}
        writer = None
        if out is not None:
            first = next(iter(sources.values()))
            crs, tr = output_grid(sources)
            meta = RasterMeta(descriptions=["novelty"], unit="score, 1 = the 95th percentile of familiar tokens",
                              tags={"COGEN_PRODUCT": "novelty", "COGEN_NOVELTY_THRESHOLD": f"{cal.threshold:.4f}"})
            writer = WindowedWriter(out, crs, tr, first.height, first.width, 1, "float32", float("nan"), meta=meta)
        try:
            nov = scene_novelty(self.bundle, self.device, sources, cal, masks, writer, self.options.batch)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        if writer is not None:
            writer.commit()
        return nov

    def map_fit(self, conditions: Mapping[str, Any], target: str, classes: Any, agreement: Any = None, *,
                window: Window | None = None, add_offsets: Mapping[str, float] | None = None,
                bands: Mapping[str, Sequence[str]] | None = None) -> dict[str, Any] | None:
        """How well a class map of `target` (an (H, W) array of class ids or its GeoTIFF) fits the inputs it was
        generated from (cogen.mapfit): {"u": (H, W) float32 per 32 px tile (1 = the worst 5% of held-out tiles),
        "scene_score": the mean over tiles, "inputs": the input set whose confidence weights apply, "weights":
        those weights, and with `agreement` (the samples' agreement, (H, W) or its GeoTIFF) "confidence": the chance
        that each pixel's class is right}; None for a checkpoint without a map-fit calibration or without an input
        it knows. Conditions, window, add_offsets and bands as the call that made the map."""
        from ..io import read_raster
        from ..mapfit import scene_fit

        cal = self.calibration
        fit = None if cal is None else cal.map_fit
        if fit is None:
            return None
        registry = self.registry.with_add_offsets(add_offsets) if add_offsets else self.registry
        at_target = {k: v for k, v in conditions.items() if split_key(k)[1] is None and k in fit.spread}
        named = {m: b for m, b in (bands or {}).items() if m in at_target}
        sources = make_sources(registry, at_target, window, add_offsets, named)
        if not sources:
            return None
        read = lambda a: read_raster(a)[0][0] if isinstance(a, (str, Path)) else np.asarray(a)
        cl = read(classes)
        u, score = scene_fit(self.bundle, self.device, sources, target, cl, fit, registry[target].nodata)
        given = [split_key(k)[0] for k in conditions if split_key(k)[1] is None]
        out = {"u": u, "scene_score": score, "inputs": given, "weights": fit.weights_for(given)}
        if agreement is not None:
            a = read(agreement).astype(np.float64)
            out["confidence"] = np.where(np.isfinite(a), fit.confidence(np.nan_to_num(a, nan=1.0), u, given), np.nan)
        return out

    def _tags(self, call: Call) -> dict[str, Any]:
        o = call.options
        dates = {}
        if call.dates is not None and call.dates.target_date is not None:
            dates = {"ACQUISITION_DATE": call.dates.target_date.isoformat(),
                     "COGEN_INPUT_DATES": ",".join(f"{call.dates.names[s]}={d}" for s, d in call.dates.dates.items())}
        return {**dates, "COGEN_VERSION": __version__, "COGEN_CHECKPOINT_SHA256": self.bundle.digest or "",
                "COGEN_INPUTS": ",".join(call.sources) or "none", "COGEN_SAMPLES": o.samples, "COGEN_SEED": o.seed,
                "COGEN_STEPS": f"{o.steps} {o.sampler}", "COGEN_TILE": f"{call.tile} {call.overlap}"}

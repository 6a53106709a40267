"""One call, validated in one place: what is given, what is wanted, on which grid, with which options.

`plan_call` turns the arguments of `CogenPipeline.__call__` into a `Call` or raises a `CogenError` that names the
bad value and the fix. Everything a call needs while it runs lives on its `Call` (never on the pipeline), so one
pipeline serves several calls at once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from rasterio.windows import Window

from ..errors import GridMismatchError, RasterError, UsageError
from ..io import check_same_grid
from ..options import SampleOptions
from ..registry import Registry, base_modality, default_registry
from .dates import Dates, resolve_dates
from .sources import MaskSource, RasterSource, Source, any_valid, make_sources, window_grid_offset


@dataclass
class Call:
    registry: Registry  # the checkpoint's, with the call's additive offsets
    sources: dict[str, Source]  # the given modalities by slot (`S2L2A`, `S2L2A@1` at another date; a regenerated target among them)
    targets: list[str]
    regenerate: dict[str, Any]  # {target: MaskSource or (H, W) bool array}: masked pixels are generated
    options: SampleOptions
    height: int
    width: int
    tile: int
    overlap: int
    anchor: tuple[int, int]  # the scene's top-left pixel on the map's pixel lattice (Grid.anchor)
    grid_offset: tuple[int, int]  # the top-left pixel on the grid of native-resolution blocks (cogen.native)
    add_offsets: dict[str, float] = field(default_factory=dict)
    dates: Dates | None = None  # every input's slot and date (cogen.pipeline.dates)
    # filled by `cogen.pipeline.post.prepare` before sampling:
    blocks: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    libraries: dict[str, Any] = field(default_factory=dict)
    starts: dict[str, Any] = field(default_factory=dict)
    # the scene's novelty (cogen.novelty), when given: class-map confidence falls where it is high
    novelty: Any = None


def plan_call(registry: Registry, known: Sequence[str], unit: int, defaults: SampleOptions,
              conditions: Mapping[str, Any], targets: Sequence[str], options: SampleOptions | None,
              overrides: Mapping[str, Any], regenerate: Mapping[str, Any] | None, window: Window | None,
              anchor: tuple[int, int] | None, size: tuple[int, int] | None,
              add_offsets: Mapping[str, float] | None, grid_offset: tuple[int, int] | None,
              bands: Mapping[str, Sequence[str]] | None = None, tokenizers: Mapping[str, Any] | None = None) -> Call:
    """Validate a request and lay it out (see `CogenPipeline.__call__` for the arguments). `known`: the modalities
    the model was trained on; `unit`: tiles and overlaps are multiples of it; `tokenizers`: the checkpoint's, to
    check that an input with some of its bands has a pixel tokenizer."""
    opts = (options or defaults).replace(**overrides)
    if not list(targets):
        raise UsageError("no targets: name at least one modality to generate (--target MOD)")
    dates = resolve_dates(registry, conditions, targets, regenerate)
    conditions, targets = dates.conditions, dates.targets
    bands = {s: bands[dates.names[s]] if dates.names[s] in bands else bands[base_modality(s)]
             for s in conditions if dates.names[s] in bands or base_modality(s) in bands} if bands else None
    for m in [*targets, *conditions, *(add_offsets or {})]:
        if base_modality(m) not in known:
            default_registry().check([m])  # a name that is no modality at all: the known ones are listed
            raise UsageError(f"this checkpoint was trained for {', '.join(known)}, not {m}; pass a checkpoint "
                             f"trained with {m}")
    registry = registry.with_add_offsets(add_offsets) if add_offsets else registry
    regenerate = dict(regenerate or {})
    for m in regenerate:
        if m not in targets or m not in conditions:
            raise UsageError(f"a mask for {m}: only a target that is also given (cloud removal) can be regenerated "
                             f"in part; give {m} as an input and a target")
    both = [m for m in targets if m in conditions and m not in regenerate]
    if both:
        raise UsageError(f"{', '.join(both)} is both an input and a target; drop it from one side (cloud-removal "
                         f"fills only masked pixels)")
    sources = make_sources(registry, conditions, window, add_offsets, bands)
    for m, s in sources.items():
        if s.all_bands:
            continue
        have = ", ".join(s.modality.bands[i] for i in s.band_idx)
        if m in regenerate:
            raise UsageError(f"{m} holds {have} only: cloud removal keeps the given pixels, so it needs every band "
                             f"({', '.join(s.modality.bands)}); impute the missing bands first or give a full file")
        if tokenizers is not None and getattr(tokenizers.get(base_modality(m)), "kind", "patch") != "patch":
            raise UsageError(f"{m} holds {have} only, and this checkpoint's {m} tokenizer needs every band; give "
                             f"a full file or use a checkpoint with pixel tokenizers")
    if sources:
        first = next(iter(sources.values()))
        H, W = first.height, first.width
    elif size is not None:
        H, W = size
    else:
        raise UsageError("no conditions and no size: give inputs, or a size for unconditional generation")
    for m, s in sources.items():
        _, ok = s.read(0, 0, min(s.height, 512), min(s.width, 512))
        if not ok.any() and not any_valid(s):
            zero = (f", or {s.modality.nodata_all_bands:g} in every band (no data)"
                    if s.modality.nodata_all_bands is not None and s.modality.num_bands > 1 else "")
            raise RasterError(f"{getattr(s, 'path', m)}: no valid pixel in {m} (all nodata, NaN or out of range "
                              f"{s.modality.valid_range}{zero}); check the file and its nodata value")
    for m, mk in list(regenerate.items()):
        if isinstance(mk, (str, Path)):
            mk = regenerate[m] = MaskSource(mk, window=window)
        if isinstance(mk, MaskSource):
            if isinstance(sources[m], RasterSource):
                check_same_grid(sources[m].path, sources[m].grid, mk.path, mk.grid)
        elif np.asarray(mk).shape != (H, W):
            raise GridMismatchError(f"mask for {m} has shape {np.asarray(mk).shape}, the scene is {H}x{W}")
    partial = bool(set(targets) & set(regenerate))
    tile, overlap = opts.tiling(targets, partial, registry.has_image(m for m in sources if m not in targets))
    if tile < unit or tile % unit or overlap % unit:
        raise UsageError(f"tile {tile} / overlap {overlap}: both must be multiples of {unit} (the model's patch) and "
                         f"the tile at least {unit}; e.g. --tile {max(unit, tile // unit * unit)}")
    if overlap >= tile:
        raise UsageError(f"overlap {overlap} must be smaller than tile {tile}")
    if anchor is None:
        anchor = next((s.anchor for s in sources.values() if isinstance(s, RasterSource)), (0, 0))
    return Call(registry, sources, targets, regenerate, opts, H, W, tile, overlap, tuple(anchor),
                tuple(window_grid_offset(grid_offset, window) or (0, 0)), dict(add_offsets or {}), dates=dates)

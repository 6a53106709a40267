"""What is done to generated tiles after decoding, before they are blended: facts of the data, and the scene's
own measurements.

- Native blocks: Sentinel-2 bands measured at 20 m or 60 m are stored one value per 2x2 / 6x6 block of the 10 m
  grid; generated bands get the same structure (cogen.native), the blocks' phase found in the given target
  itself (cloud removal) or counted from the call's `grid_offset`.
- The clear-pixel library (cloud removal): each generated spectrum moves onto the mean of its K nearest clear
  spectra of the scene (cogen.library), `SampleOptions.library_neighbours`.
- The valid range: generated values are clipped into it (outside it a value would read back as invalid).
"""
from __future__ import annotations

import torch

from ..library import ClearLibrary
from ..native import block_project, detect_block_offset
from ..registry import Modality
from .request import Call
from .sources import read_mask

BLOCK_PROBE = 512  # px of a given target read to find where its native blocks start


def prepare(call: Call) -> None:
    """Fill in the call's native-block plan and clear-pixel libraries."""
    call.blocks = native_block_plan(call)
    call.libraries = clear_libraries(call)


def native_block_plan(call: Call) -> dict[str, list[tuple[int, int, int, int]]]:
    """Per continuous target: (band, k, row, col) for each band stored in k x k blocks whose phase is known: found
    in the target's own input when it is given (a band that shows no blocks there is left alone), else the call's
    `grid_offset`."""
    out: dict[str, list[tuple[int, int, int, int]]] = {}
    for m in call.targets:
        mod = call.registry[m]
        if mod.is_categorical or not mod.native_blocks:
            continue
        src = call.sources.get(m)
        raw = ok = None
        if src is not None:
            h, w = min(src.height, BLOCK_PROBE), min(src.width, BLOCK_PROBE)
            raw, ok = src.read(0, 0, h, w)
            if m in call.regenerate:
                ok = ok & ~read_mask(call.regenerate[m], 0, 0, h, w)
        rows = []
        for b, k in mod.native_blocks.items():
            if k <= 1:
                continue
            i = mod.band_index(b)
            off = detect_block_offset(raw[i], ok, k) if raw is not None else call.grid_offset
            if off is not None:
                rows.append((i, int(k), int(off[0]), int(off[1])))
        out[m] = rows
    return out


def clear_libraries(call: Call) -> dict[str, ClearLibrary]:
    """{m: the library of m's clear pixels} for each regenerated continuous target, when the options ask for the
    library and the scene has clear pixels of m."""
    o = call.options
    if not o.library_neighbours:
        return {}
    out = {}
    for m in call.targets:
        if m in call.regenerate and not call.registry[m].is_categorical:
            masked = lambda top, n, mk=call.regenerate[m]: read_mask(mk, top, 0, n, call.width)
            lib = ClearLibrary.from_source(call.sources[m], masked, call.height, call.width, o.library_size, o.seed)
            if lib is not None:
                out[m] = lib
    return out


def finish_tiles(call: Call, m: str, x: torch.Tensor, positions: list[tuple[int, int]], S: int,
                 known: torch.Tensor | None, known_ok: torch.Tensor | None) -> torch.Tensor:
    """Decoded model-space tiles x (n*S, C, tile, tile) of continuous target m (sample s of tile j at j*S + s) ->
    physical values: snapped onto the scene's clear spectra where generated (library), one value per native block,
    clipped to the valid range. `known` (n, C, tile, tile) / `known_ok` (n, tile, tile): the target's own valid
    pixels where it is given in part."""
    mod = call.registry[m]
    if m in call.libraries and known_ok is not None:
        gen = ~known_ok.repeat_interleave(S, dim=0)
        x = call.libraries[m].snap_tiles(x, gen, mod, call.options.library_neighbours)
    x = project_blocks(call.blocks.get(m), x, positions, S, known, known_ok)
    return clamp_valid(mod, mod.denormalize(x))


def project_blocks(rows, x: torch.Tensor, positions, S: int, known, known_ok) -> torch.Tensor:
    """One value per native block for each band in `rows` ((band, k, row, col), `native_block_plan`)."""
    if not rows:
        return x
    x = x.clone()
    for j, (r, c) in enumerate(positions):
        sl = slice(j * S, (j + 1) * S)
        for b, k, ro, co in rows:
            kv = known[j, b][None].expand(S, -1, -1) if known is not None else None
            ko = known_ok[j][None].expand(S, -1, -1) if known is not None else None
            x[sl, b] = block_project(x[sl, b], k, r + ro, c + co, kv, ko)
    return x


def clamp_valid(mod: Modality, phys: torch.Tensor) -> torch.Tensor:
    if mod.valid_range is None:
        return phys
    lo, hi = sorted(mod.to_physical(v) for v in mod.valid_range)
    return phys.clamp(lo, hi)

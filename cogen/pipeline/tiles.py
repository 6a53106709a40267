"""The sampling loop of one batch of tiles: read the inputs, encode them, denoise the targets, decode.

Every modality of a tile is one of: a clean condition (all its pixels valid), a partial one (generated where
invalid, its valid pixels known: cloud removal's target, an input with nodata holes) or absent (no valid pixel).
Tiles are grouped by that status so each group is one batch through the model. Initial noise is cut from a
field fixed by (seed, sample, modality, position on the map), so overlapping tiles and neighbouring scenes on
the same lattice draw the same noise and agree.
"""
from __future__ import annotations

import numpy as np
import torch

from ..checkpoint import Bundle
from ..data.dataset import to_model_space
from ..diffusion.sampling import denoise
from ..registry import base_modality, slot_order
from .post import finish_tiles
from .request import Call
from .sources import read_mask

NOISE_BLOCK = 32  # latent cells per side of one block of the global noise field


def acc_channels(call: Call, m: str) -> int:
    """Channels a tile of target m carries to the blender: class votes, or (first sample, mean, mean square)."""
    mod = call.registry[m]
    return mod.num_classes if mod.is_categorical else 3 * mod.num_bands


@torch.no_grad()
def sample_tiles(bundle: Bundle, device: torch.device, call: Call,
                 positions: list[tuple[int, int]]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Tiles at `positions` ((row, col) of their top-left pixels) -> ({target: (n, acc_channels, tile, tile)},
    (n, tile, tile) 1 where some input holds a valid pixel)."""
    tile, n = call.tile, len(positions)
    vals: dict[str, torch.Tensor] = {}
    oks: dict[str, torch.Tensor] = {}
    for m, s in call.sources.items():
        xs, ms = [], []
        for r, c in positions:
            raw, ok = s.read(r, c, tile, tile)
            if m in call.regenerate:
                ok = ok & ~read_mask(call.regenerate[m], r, c, tile, tile)
            x, v = to_model_space(s.modality, raw, ok)
            xs.append(x)
            ms.append(v)
        vals[m], oks[m] = torch.stack(xs), torch.stack(ms)
    info = np.zeros((n, tile, tile), np.float32)
    for v in oks.values():
        info = np.maximum(info, v.numpy().astype(np.float32))
    init = {m: torch.from_numpy(np.stack([st.window(r, c, tile) for r, c in positions]))
            for m, st in call.starts.items()}
    if init:  # an SDEdit start: an input given in part starts from its own valid pixels where it is generated
        for m in call.sources:
            if m not in init and m not in call.targets and not bool(oks[m].all()):
                init[m] = nearest_fill(vals[m], oks[m])
    # 2 = every pixel valid, 1 = some, 0 = none; tiles of one status per input are one batch
    status = [tuple((m, int(oks[m][j].all()) + int(oks[m][j].any())) for m in call.sources if m not in call.targets)
              for j in range(n)]
    out = {m: np.zeros((n, acc_channels(call, m), tile, tile), np.float32) for m in call.targets}
    for group in sorted(set(status)):
        idx = [j for j in range(n) if status[j] == group]
        res = _sample_group(bundle, device, call, dict(group), [positions[j] for j in idx],
                            {m: v[idx] for m, v in vals.items()}, {m: v[idx] for m, v in oks.items()},
                            {m: v[idx] for m, v in init.items()})
        for m in call.targets:
            out[m][idx] = res[m]
    return out, info


def _sample_group(bundle: Bundle, device: torch.device, call: Call, status: dict[str, int],
                  positions: list[tuple[int, int]], vals: dict[str, torch.Tensor], oks: dict[str, torch.Tensor],
                  init: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """One batch: n tiles x S samples through the model (sample s of tile j at j*S + s)."""
    model, o = bundle.model, call.options
    toks = {m: bundle.tokenizers[base_modality(m)] for m in (*call.sources, *call.targets)}  # by slot
    S, n, tile = o.samples, len(positions), call.tile
    rep = lambda t: t.repeat_interleave(S, dim=0).to(device)  # (n*S, ...)
    conditions, spec = {}, {}
    for m, st in status.items():
        if st == 2:  # complete: a clean condition
            conditions[m] = toks[m].encode(rep(vals[m]))
        elif st == 1:  # partly valid: generated where invalid, its valid pixels known
            z = toks[m].encode(rep(vals[m]))
            spec[m] = (tuple(z.shape), z, toks[m].latent_valid(rep(oks[m])))
        # 0: nothing valid in these tiles: absent
    bands = {m: torch.from_numpy(call.sources[m].given).expand(n * S, -1).to(device)
             for m in (*conditions, *spec) if m in call.sources and not call.sources[m].all_bands}
    for m in call.targets:
        shape = (n * S, *toks[m].latent_shape(tile, tile))
        if m in call.regenerate:
            spec[m] = (shape, toks[m].encode(rep(vals[m])), toks[m].latent_valid(rep(oks[m])))
        else:
            spec[m] = (shape, None, None)
    a0, a1 = call.anchor  # noise is cut at the tile's place on the map
    order = {m: i for i, m in enumerate(model.names)}
    noise = {}
    for m, (shape, _, _) in spec.items():
        d = toks[m].downsample
        k = order[base_modality(m)] + len(order) * slot_order(m)  # each date of a modality its own field
        noise[m] = torch.stack([global_noise(o.seed, s, k, (a0 + r) // d, (a1 + c) // d, *shape[1:])
                                for r, c in positions for s in range(S)])
    dates = call.dates.vectors(n * S, device) if call.dates is not None and call.dates.target_date else None
    if bundle.config.train.objective == "regression":
        z = regress(model, device, conditions, spec, bands, dates)
    else:
        r0, c0 = a0 + positions[0][0], a1 + positions[0][1]
        gen = torch.Generator().manual_seed((o.seed * 7919 + r0 * 104729 + c0) & 0x7FFFFFFFFFFFFFFF)
        unit = max(model.patch_size(m) for m in model.names)
        z0 = {m: toks[m].encode(rep(v)) for m, v in init.items() if m in spec}
        z = denoise(model, bundle.diffusion, conditions, spec, o.steps, o.sampler, noise, gen, unit,
                    partial=bundle.config.roles.p_partial > 0, init=z0 or None, strength=o.strength if z0 else 1.0,
                    final_denoise=o.final_denoise, bands=bands or None, dates=dates)
    out = {}
    for m in call.targets:
        mod = call.registry[m]
        if mod.is_categorical:  # votes: the fraction of samples (or the class probabilities) per class
            if bundle.config.train.objective == "regression":
                votes = torch.softmax(z[m].float(), dim=1).cpu()
            else:
                x = toks[m].decode(z[m]).cpu()
                votes = torch.nn.functional.one_hot(x.long(), mod.num_classes).permute(0, 3, 1, 2).float()
            out[m] = votes.view(n, S, mod.num_classes, tile, tile).mean(dim=1).numpy()
            continue
        x = toks[m].decode(z[m]).cpu()
        given = m in call.regenerate
        phys = finish_tiles(call, m, x, positions, S, vals[m] if given else None, oks[m] if given else None)
        phys = phys.view(n, S, mod.num_bands, tile, tile)
        out[m] = torch.cat([phys[:, 0], phys.mean(dim=1), (phys**2).mean(dim=1)], dim=1).numpy()
    return out


@torch.no_grad()
def regress(model, device, conditions, spec, bands=None, dates=None):
    """The deterministic baseline: targets as zeros at t = 1, one forward pass, known cells kept."""
    x = {m: torch.zeros(shape, device=device) for m, (shape, _, _) in spec.items()}
    B = next(iter(x.values())).shape[0]
    t = {**{m: torch.zeros(B, device=device) for m in conditions}, **{m: torch.ones(B, device=device) for m in x}}
    out = model({**conditions, **x}, t, bands=bands or None, **({"dates": dates} if dates else {}))
    return {m: out[m] if known is None else torch.where(km[:, None], known, out[m])
            for m, (shape, known, km) in spec.items()}


def nearest_fill(x: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """x (n, C, h, w) or (n, h, w) with every invalid pixel (ok False) set to its nearest valid pixel's value,
    tile by tile; a tile without valid pixels is left as it is."""
    from scipy.ndimage import distance_transform_edt

    out = x.clone()
    for j in range(x.shape[0]):
        o = ok[j].numpy()
        if o.all() or not o.any():
            continue
        r, c = distance_transform_edt(~o, return_distances=False, return_indices=True)
        out[j] = x[j][..., torch.from_numpy(r), torch.from_numpy(c)]
    return out


def global_noise(seed: int, sample: int, mod_index: int, row: int, col: int, c: int, h: int, w: int) -> torch.Tensor:
    """(c, h, w) cut at latent (row, col) from a noise field fixed by (seed, sample, modality): built from
    NOISE_BLOCK-sized blocks, each drawn from its own seeded generator, so any tiling sees the same noise."""
    B = NOISE_BLOCK
    out = torch.empty(c, h, w)
    for by in range(row // B, (row + h - 1) // B + 1):
        for bx in range(col // B, (col + w - 1) // B + 1):
            key = np.random.SeedSequence([seed, sample, mod_index, by % 2**32, bx % 2**32]).generate_state(2)
            g = torch.Generator().manual_seed(int(key[0]) << 31 ^ int(key[1]))
            blk = torch.randn(c, B, B, generator=g)
            r0, r1 = max(row, by * B), min(row + h, (by + 1) * B)
            c0, c1 = max(col, bx * B), min(col + w, (bx + 1) * B)
            out[:, r0 - row : r1 - row, c0 - col : c1 - col] = blk[:, r0 - by * B : r1 - by * B, c0 - bx * B : c1 - bx * B]
    return out

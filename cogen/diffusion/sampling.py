"""The denoising loop: any subset of modalities in, any subset out, with inpainting.

Given modalities enter clean at t = 0. Wanted modalities start from noise and follow a diffusers
scheduler (one instance per target, all on the same timesteps). A target may have *known* cells (cloud
removal: the clear pixels; a condition with nodata holes): after every step they are replaced by the known
values noised to the next step's level, and by the exact known values at the end, so the generated cells
are conditioned on them inside the loop. A model trained with partial targets (`roles.p_partial` > 0) is
called with `partial=True`: tokens whose cells are all known then enter clean, as conditions (see
`CogenTransformer.forward`), so the generated part sees the known part exactly from the first step instead
of through noise. A target may also start from an estimate (`init`, e.g. an interpolation of the known
cells into the gaps) noised to the level `strength` (1 = pure noise) instead of from pure noise; the
sampler then runs only the last `strength` share of its steps (SDEdit). An optional clean-up call after
the last step (`final_denoise`) treats the result as slightly noised and keeps the model's clean estimate of
it, removing noise the last step left behind. The model's patch grid moves at every step (`grid_offset`),
so no step's patch edges fall where the last one's did.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from ..models.transformer import clean_tokens
from .schedule import Diffusion


def _noise_to(sched, diffusion: Diffusion, x0: torch.Tensor, noise: torch.Tensor, timestep) -> torch.Tensor:
    """x0 noised to the level of scheduler `timestep` in the scheduler's own sample space."""
    ts = torch.as_tensor([timestep] * x0.shape[0], device=x0.device) if not torch.is_tensor(timestep) or timestep.ndim == 0 else timestep
    if hasattr(sched, "scale_noise"):  # flow-matching Euler
        return sched.scale_noise(x0, ts[:1].to(x0.device), noise)
    return sched.add_noise(x0, noise, ts.to(x0.device))


def _model_input(sched, x: torch.Tensor, timestep) -> torch.Tensor:
    """The scheduler's scaling of the network input (Euler's 1 / sqrt(sigma^2 + 1)); flow schedulers have none."""
    return sched.scale_model_input(x, timestep) if hasattr(sched, "scale_model_input") else x


def grid_offset(step: int, unit: int) -> tuple[int, int]:
    """The (dy, dx) patch-grid offset of denoising step `step` (0 at the first step)."""
    if unit <= 1 or step == 0:
        return 0, 0
    g = torch.Generator().manual_seed(1_000_003 * step + unit)
    dy, dx = torch.randint(0, unit, (2,), generator=g).tolist()
    return dy, dx


def clean_cells(known: torch.Tensor, p: int) -> torch.Tensor:
    """(B, 1, h, w) bool known cells -> the same mask reduced to whole p x p tokens (all cells known), as the
    model reduces it (`clean_tokens`)."""
    B, _, h, w = known.shape
    tok = clean_tokens(known[:, 0], p).view(B, 1, h // p, w // p)
    return tok.repeat_interleave(p, dim=-2).repeat_interleave(p, dim=-1)


def shifted_call(model, x: Mapping[str, torch.Tensor], t: Mapping[str, torch.Tensor], offset: tuple[int, int],
                 unit: int, known: Mapping[str, tuple] | None = None,
                 bands: Mapping[str, torch.Tensor] | None = None,
                 dates: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """model(x, t) with the patch grid moved by `offset` (see the module docstring); outputs at x's size.

    known: optional {m: (clean values (B,c,h,w), known cells (B,1,h,w) bool)}: on the moved grid, the tokens
    of m whose cells are all known get their clean values and enter the model as clean tokens.
    bands: optional {m: (B, c) bool} channels given (an input holding some of its bands).
    dates: optional {slot: (B, 3)} the slots' date vectors (`CogenTransformer.forward`)."""
    dy, dx = offset
    pad = (dx, unit - dx, dy, unit - dy) if (dy or dx) else None

    def move(v: torch.Tensor) -> torch.Tensor:
        if pad is None:
            return v
        return F.pad(v, pad, mode="reflect" if min(v.shape[-2:]) > unit else "replicate")

    xs = {m: move(v) for m, v in x.items()}
    clean = {}
    for m, (k, km) in (known or {}).items():
        cells = clean_cells(move(km.float()) > 0.5, model.patch_size(m))
        xs[m] = torch.where(cells, move(k), xs[m])
        clean[m] = cells[:, 0]
    kw = {**({"bands": bands} if bands else {}), **({"dates": dates} if dates else {})}
    out = model(xs, t, None, clean, **kw) if clean else model(xs, t, **kw)
    if pad is None:
        return out
    return {m: o[..., dy : dy + x[m].shape[-2], dx : dx + x[m].shape[-1]] for m, o in out.items()}


@torch.no_grad()
def denoise(model, diffusion: Diffusion, conditions: Mapping[str, torch.Tensor], targets: Mapping[str, tuple],
            steps: int = 20, sampler: str = "ddim", noise: Mapping[str, torch.Tensor] | None = None,
            generator: torch.Generator | None = None, grid_shift: int = 0, partial: bool = False,
            init: Mapping[str, torch.Tensor] | None = None, strength: float = 1.0,
            final_denoise: float = 0.0, bands: Mapping[str, torch.Tensor] | None = None,
            dates: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """Sample target latents.

    conditions: {m: (B, c, h, w) clean latents}.
    targets: {m: (shape, known, known_mask)}: shape (B, c, h, w); known (same shape) or None; known_mask
        (B, h, w) bool or None.
    noise: {m: (B, c, h, w)} initial noise (drawn from `generator` if not given).
    grid_shift: the model's largest patch size to move the patch grid at every step (0: off).
    partial: the model was trained with partial targets: fully known tokens enter clean (module docstring).
    init: {m: (B, c, h, w) clean latent estimate} for every target, to start from at level `strength`.
    final_denoise: 0 (off) or a model time in (0, 1): after the last step, the result is treated as noised
        to that level and replaced by the model's clean estimate from it (one more call), which removes noise
        the last step left behind.
    bands: {m: (B, c) bool} channels given, for a condition that holds some of its bands only.
    dates: {slot: (B, 3)} every slot's date vector, for inputs at several dates (`CogenTransformer.forward`).
    Returns {m: (B, c, h, w)} clean latents of the targets.
    """
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    scheds = {m: diffusion.scheduler(sampler) for m in targets}
    for s in scheds.values():
        s.set_timesteps(steps, device=dev)
    timesteps = next(iter(scheds.values())).timesteps
    if init:
        if set(init) != set(targets):
            raise ValueError(f"init must cover every target ({sorted(targets)}), got {sorted(init)}")
        if not 0 < strength <= 1:
            raise ValueError(f"strength must be in (0, 1], got {strength}")
        n_run = max(1, int(round(len(timesteps) * strength)))
        timesteps = timesteps[len(timesteps) - n_run :]
        for s in scheds.values():
            if hasattr(s, "set_begin_index"):
                s.set_begin_index(len(s.timesteps) - n_run)
    eps = {m: (noise[m] if noise is not None and m in noise else torch.randn(shape, generator=generator)).to(dev, dtype)
           for m, (shape, _, _) in targets.items()}
    x = {m: eps[m] * getattr(scheds[m], "init_noise_sigma", 1.0) for m in targets}  # flow schedulers: 1
    if init:
        x = {m: _noise_to(scheds[m], diffusion, init[m].to(dev, dtype), eps[m], timesteps[0]) for m in targets}
    cond = {m: v.to(dev, dtype) for m, v in conditions.items()}
    B = next(iter(eps.values())).shape[0]
    zeros = torch.zeros(B, device=dev)
    known = {m: (k.to(dev, dtype), km.to(dev)[:, None]) for m, (_, k, km) in targets.items() if k is not None}
    for m, (k, km) in known.items():  # start the known cells on the trajectory of their own values
        x[m] = torch.where(km, _noise_to(scheds[m], diffusion, k, eps[m], timesteps[0]), x[m])
    kn = known if partial else None

    def predict(inp, tm, i):
        times = {m: torch.full((B,), tm, device=dev) for m in targets}
        off = grid_offset(i, grid_shift)
        return shifted_call(model, {**cond, **inp}, {**{m: zeros for m in cond}, **times}, off, grid_shift, kn, bands,
                            dates)

    for i, ts in enumerate(timesteps):
        out = predict({m: _model_input(scheds[m], x[m], ts) for m in targets}, diffusion.model_time(ts), i)
        nxt = timesteps[i + 1] if i + 1 < len(timesteps) else None
        for m in targets:
            x[m] = scheds[m].step(out[m], ts, x[m], generator=generator).prev_sample
            if m in known:
                k, km = known[m]
                ref = k if nxt is None else _noise_to(scheds[m], diffusion, k, eps[m], nxt)
                x[m] = torch.where(km, ref, x[m])
    if final_denoise > 0:
        tf = torch.full((B,), float(final_denoise), device=dev)
        out = predict(x, float(final_denoise), len(timesteps))
        for m in targets:
            x0 = diffusion.predict_x0(x[m], out[m], tf).to(x[m].dtype)
            x[m] = torch.where(known[m][1], known[m][0], x0) if m in known else x0
    return x

"""The denoising loop: any subset of modalities in, any subset out, with inpainting and guidance.

Given modalities enter clean at t = 0. Wanted modalities start from noise and follow a diffusers
scheduler (one instance per target, all on the same timesteps). A target may have *known* cells (cloud
removal: the clear pixels; a condition with nodata holes): after every step they are replaced by the known
values noised to the next step's level, and by the exact known values at the end, so the generated cells
are conditioned on them inside the loop. Guidance contrasts the prediction with the one where the
conditions are absent: out = uncond + g * (cond - uncond).
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from .schedule import Diffusion


def _noise_to(sched, diffusion: Diffusion, x0: torch.Tensor, noise: torch.Tensor, timestep) -> torch.Tensor:
    """x0 noised to the level of scheduler `timestep` in the scheduler's own sample space."""
    ts = torch.as_tensor([timestep] * x0.shape[0], device=x0.device) if not torch.is_tensor(timestep) or timestep.ndim == 0 else timestep
    if hasattr(sched, "scale_noise"):  # flow-matching Euler
        return sched.scale_noise(x0, ts[:1].to(x0.device), noise)
    return sched.add_noise(x0, noise, ts.to(x0.device))


@torch.no_grad()
def denoise(model, diffusion: Diffusion, conditions: Mapping[str, torch.Tensor], targets: Mapping[str, tuple],
            steps: int = 20, sampler: str = "ddim", guidance: float = 1.0,
            noise: Mapping[str, torch.Tensor] | None = None, generator: torch.Generator | None = None,
            ) -> dict[str, torch.Tensor]:
    """Sample target latents.

    conditions: {m: (B, c, h, w) clean latents}.
    targets: {m: (shape, known, known_mask)}: shape (B, c, h, w); known (same shape) or None; known_mask
        (B, h, w) bool or None.
    noise: {m: (B, c, h, w)} initial noise (drawn from `generator` if not given).
    Returns {m: (B, c, h, w)} clean latents of the targets.
    """
    dev = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    scheds = {m: diffusion.scheduler(sampler) for m in targets}
    for s in scheds.values():
        s.set_timesteps(steps, device=dev)
    timesteps = next(iter(scheds.values())).timesteps
    eps = {m: (noise[m] if noise is not None and m in noise else torch.randn(shape, generator=generator)).to(dev, dtype)
           for m, (shape, _, _) in targets.items()}
    x = {m: eps[m] * scheds[m].init_noise_sigma for m in targets}
    cond = {m: v.to(dev, dtype) for m, v in conditions.items()}
    B = next(iter(eps.values())).shape[0]
    zeros = torch.zeros(B, device=dev)
    known = {m: (k.to(dev, dtype), km.to(dev)[:, None]) for m, (_, k, km) in targets.items() if k is not None}
    for m, (k, km) in known.items():  # start the known cells on the trajectory of their own values
        x[m] = torch.where(km, _noise_to(scheds[m], diffusion, k, eps[m], timesteps[0]), x[m])
    for i, ts in enumerate(timesteps):
        tm = diffusion.model_time(ts)
        inp = {m: scheds[m].scale_model_input(x[m], ts) for m in targets}
        times = {m: torch.full((B,), tm, device=dev) for m in targets}
        out = model({**cond, **inp}, {**{m: zeros for m in cond}, **times})
        if guidance != 1.0 and cond:
            out_u = model(inp, times)
            out = {m: out_u[m] + guidance * (out[m] - out_u[m]) for m in targets}
        nxt = timesteps[i + 1] if i + 1 < len(timesteps) else None
        for m in targets:
            x[m] = scheds[m].step(out[m], ts, x[m], generator=generator).prev_sample
            if m in known:
                k, km = known[m]
                ref = k if nxt is None else _noise_to(scheds[m], diffusion, k, eps[m], nxt)
                x[m] = torch.where(km, ref, x[m])
    return x

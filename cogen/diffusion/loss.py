"""The training step's math: encode, draw roles and times, noise the targets, masked loss on targets only."""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..errors import DatasetError
from ..registry import base_modality
from .roles import ABSENT, TARGET, RoleConfig, known_regions, sample_band_masks, sample_roles, sample_times
from .schedule import Diffusion


def encode_batch(batch: Mapping[str, Any], tokenizers: Mapping[str, Any]) -> tuple[dict, dict, dict]:
    """Batch from `collate_scenes` -> ({m: latent}, {m: (B,h,w) latent valid}, {m: (B,) present}); slots of other
    dates (`M@k`) take their modality's tokenizer."""
    z, ok, present = {}, {}, {}
    for m, x in batch["values"].items():
        if base_modality(m) not in tokenizers:
            continue
        tok = tokenizers[base_modality(m)]
        with torch.no_grad():
            z[m] = tok.encode(x)
        ok[m] = tok.latent_valid(batch["valid"][m]) & batch["present"][m][:, None, None]
        present[m] = batch["present"][m]
    return z, ok, present


def latent_bands(batch: Mapping[str, Any], tokenizers: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The batch's given bands {m: (B, C) bool} as latent channels: those of pixel tokenizers (a channel per band);
    a learned tokenizer mixes bands into its latent, so it needs every band."""
    out = {}
    for m, b in (batch.get("bands") or {}).items():
        if base_modality(m) not in tokenizers:
            continue
        if getattr(tokenizers[base_modality(m)], "kind", None) == "patch":
            out[m] = b
        elif not bool(b.all()):
            raise DatasetError(f"{m}: a scene of the batch ({batch['scene'][int((~b.all(dim=1)).nonzero()[0])]}) holds "
                               f"some of its bands only, and the {m} tokenizer needs every band; drop the scene or "
                               f"use the pixel tokenizer (tokenizer: {{type: patch}})")
    return out


def _band_kwargs(given: Mapping[str, torch.Tensor], x_in: Mapping[str, torch.Tensor],
                 dates: Mapping[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """The model's `bands` keyword for the inputs that miss a band in some sample, and its `dates` keyword for
    the inputs' slots when the batch has dates ({} when neither, so that a model called without them sees nothing
    new)."""
    kw: dict[str, Any] = {}
    bands = {m: g.to(x_in[m].device) for m, g in given.items() if m in x_in and not bool(g.all())}
    if bands:
        kw["bands"] = bands
    if dates:
        kw["dates"] = {m: d.to(x_in[m].device) for m, d in dates.items() if m in x_in}
    return kw


def masked_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
               weight: torch.Tensor | None = None, channels: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample mean squared error over valid cells (B,); (B,C,h,w) tensors, (B,h,w) mask; optional (B,h,w)
    cell weights (mean 1 over the training data), summed over valid cells and divided by their number;
    optional (B,C) bool channels that count (a sample's missing bands take no loss)."""
    sq = (pred.float() - target.float()) ** 2
    if channels is None:
        err = sq.mean(dim=1)  # (B, h, w)
    else:
        ch = channels.to(sq.device).float()
        err = (sq * ch[:, :, None, None]).sum(dim=1) / ch.sum(dim=1).clamp(min=1.0)[:, None, None]
    w = valid.float()
    num = err * w if weight is None else err * w * weight.float()
    return num.sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp(min=1.0)


def class_weight_map(code: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B,K,h,w) one-hot class code -> (B,h,w) the weight of each cell's class (`weights`: (K,))."""
    return weights.to(code.device)[code.argmax(dim=1)]


def balanced_class_weights(counts, power: float, cap: float = 10.0) -> torch.Tensor:
    """(K,) training pixel counts -> weights freq^-power, capped at `cap` times the smallest, with mean 1 over
    the training pixels (so the loss keeps its scale); classes never seen get weight 0 (they take no loss)."""
    c = torch.as_tensor(counts, dtype=torch.float64)
    seen = c > 0
    w = torch.zeros_like(c)
    w[seen] = (c[seen] / c.sum()) ** -power
    w[seen] = torch.minimum(w[seen], w[seen].min() * cap)
    w = w / ((w * c).sum() / c.sum())
    return w.float()


def reference_brightness(mean) -> float:
    """The RMS over bands of the training data's mean spectrum (the registry's per-band means, physical units):
    the length, per band, of a typical pixel's spectrum."""
    m = torch.as_tensor(mean, dtype=torch.float64)
    return float((m ** 2).mean().sqrt())


def dark_weight_map(phys: torch.Tensor, valid: torch.Tensor, b_ref: float, cap: float) -> torch.Tensor:
    """(B,C,H,W) physical spectra, (B,H,W) valid -> (B,H,W) loss weights (b_ref / b)^2 clipped to [1, cap], b the
    pixel's RMS over bands; normalised to mean 1 over the valid pixels of the batch (1 everywhere if none).

    A squared error e^2 on a spectrum of length b turns it by about e / b radians, so weighting by 1 / b^2 makes
    the loss follow the spectral angle; the clip keeps bright pixels at weight 1 and near-black ones bounded."""
    b = phys.float().pow(2).mean(dim=1).sqrt()
    w = (b_ref / b.clamp(min=1e-6)).pow(2).clamp(1.0, cap)
    v = valid.float()
    n = v.sum()
    if n <= 0:
        return torch.ones_like(w)
    return w / ((w * v).sum() / n)


def diffusion_loss(model, z: Mapping[str, torch.Tensor], valid: Mapping[str, torch.Tensor],
                   present: Mapping[str, torch.Tensor], diffusion: Diffusion, roles_cfg: RoleConfig,
                   generator: torch.Generator, roles: Mapping[str, torch.Tensor] | None = None,
                   patch_sizes: Mapping[str, int] | None = None,
                   class_weights: Mapping[str, torch.Tensor] | None = None,
                   pixel_weights: Mapping[str, torch.Tensor] | None = None,
                   bands: Mapping[str, torch.Tensor] | None = None,
                   dates: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """One batch's loss: mean over (sample, target modality) pairs of the masked MSE of the prediction.

    Conditions enter clean at t = 0 and never get loss; absent modalities are masked out of attention (or
    left out of the sequence when absent for the whole batch). With `roles_cfg.p_partial` > 0 a target may
    be given in part: its known tokens (`known_regions`, aligned to `patch_sizes[m]`) enter clean and are
    left out of its loss. class_weights: {m: (K,)} for class maps: each cell's loss is weighted by its true
    class's weight (`balanced_class_weights`). pixel_weights: {m: (B,h,w)} cell weights at latent resolution
    (`dark_weight_map`), multiplied into the loss of target m. bands: {m: (B, C) bool} the bands each sample
    holds (`collate_scenes`); conditions may be given fewer (`roles_cfg.p_band_subset`), and a target's
    missing bands take no loss. dates: {m: (B, 3)} each slot's date vector (`collate_scenes`); every mapping is
    keyed by slot (a modality, or `M@k` at another date), and the lookups by modality take the slot's."""
    roles = dict(roles) if roles is not None else sample_roles(present, roles_cfg, generator)
    t = sample_times(roles, diffusion.sample_t, roles_cfg, generator)
    given = sample_band_masks(roles, {m: b for m, b in (bands or {}).items() if m in z}, roles_cfg, generator)
    x_in, tgt, inputs_present, clean = {}, {}, {}, {}
    for m, z0 in z.items():
        keep = roles[m] != ABSENT
        if not bool(keep.any()):
            continue  # absent for every sample: not in the sequence at all
        noise = torch.randn(z0.shape, generator=generator).to(z0.device, z0.dtype)
        is_t = (roles[m] == TARGET).to(z0.device)
        xt = diffusion.add_noise(z0, noise, t[m].to(z0.device))
        x_in[m] = torch.where(is_t.view(-1, 1, 1, 1), xt, z0)
        if roles_cfg.p_partial > 0:
            B, _, h, w = z0.shape
            p = (patch_sizes or {}).get(base_modality(m), 1)
            part = (torch.rand(B, generator=generator) < roles_cfg.p_partial) & is_t.cpu()
            known = known_regions(B, h, w, p, (roles_cfg.partial_min, roles_cfg.partial_max), generator) & part[:, None, None]
            if bool(known.any()):
                clean[m] = known.to(z0.device)
                x_in[m] = torch.where(clean[m][:, None], z0, x_in[m])
        tgt[m] = diffusion.target(z0, noise, t[m].to(z0.device))
        inputs_present[m] = keep.to(z0.device)
    times = {m: t[m].to(x_in[m].device) for m in x_in}
    kw = _band_kwargs(given, x_in, dates)
    out = model(x_in, times, inputs_present, clean, **kw) if clean else model(x_in, times, inputs_present, **kw)
    total, count, per_mod = 0.0, 0.0, {}
    for m in x_in:
        is_t = (roles[m] == TARGET).to(out[m].device).float()
        v = valid[m] & ~clean[m] if m in clean else valid[m]
        b = base_modality(m)
        cw = class_weight_map(z[m], class_weights[b]) if class_weights and b in class_weights else None
        if pixel_weights and m in pixel_weights:
            pw = pixel_weights[m].to(out[m].device)
            cw = pw if cw is None else cw * pw
        per_sample = masked_mse(out[m], tgt[m], v, cw, given.get(m)) * diffusion.loss_weight(t[m]).to(out[m].device)
        total = total + (per_sample * is_t).sum()
        count = count + is_t.sum()
        if is_t.sum() > 0:
            per_mod[m] = float((per_sample.detach() * is_t).sum() / is_t.sum())
    loss = total / max(float(count), 1.0)
    return loss, {"per_modality": per_mod, "roles": roles, "t": t}


def regression_loss(model, z: Mapping[str, torch.Tensor], valid: Mapping[str, torch.Tensor],
                    present: Mapping[str, torch.Tensor], roles_cfg: RoleConfig, generator: torch.Generator,
                    categorical: Mapping[str, bool], roles: Mapping[str, torch.Tensor] | None = None,
                    class_weights: Mapping[str, torch.Tensor] | None = None,
                    bands: Mapping[str, torch.Tensor] | None = None,
                    dates: Mapping[str, torch.Tensor] | None = None) -> tuple[torch.Tensor, dict[str, Any]]:
    """The deterministic baseline on the same backbone: targets enter as zeros at t = 1 and the network
    predicts them in one pass; MSE for continuous targets, cross-entropy (logits = output channels) for
    class maps. Roles and band subsets are drawn exactly as for diffusion training."""
    roles = dict(roles) if roles is not None else sample_roles(present, roles_cfg, generator)
    given = sample_band_masks(roles, {m: b for m, b in (bands or {}).items() if m in z}, roles_cfg, generator)
    x_in, times, keep_d = {}, {}, {}
    for m, z0 in z.items():
        keep = roles[m] != ABSENT
        if not bool(keep.any()):
            continue
        is_t = (roles[m] == TARGET).to(z0.device)
        x_in[m] = torch.where(is_t.view(-1, 1, 1, 1), torch.zeros_like(z0), z0)
        times[m] = is_t.float()
        keep_d[m] = keep.to(z0.device)
    out = model(x_in, times, keep_d, **_band_kwargs(given, x_in, dates))
    total, count, per_mod = 0.0, 0.0, {}
    for m in x_in:
        is_t = (roles[m] == TARGET).to(out[m].device).float()
        if categorical.get(base_modality(m)):
            target_idx = z[m].argmax(dim=1)  # the one-hot code back to class indices
            ce = torch.nn.functional.cross_entropy(out[m].float(), target_idx, reduction="none")  # (B,h,w)
            w = valid[m].float()
            if class_weights and base_modality(m) in class_weights:
                ce = ce * class_weight_map(z[m], class_weights[base_modality(m)])
            per_sample = (ce * w).sum(dim=(1, 2)) / w.sum(dim=(1, 2)).clamp(min=1.0)
        else:
            per_sample = masked_mse(out[m], z[m], valid[m], channels=given.get(m))
        total = total + (per_sample * is_t).sum()
        count = count + is_t.sum()
        if is_t.sum() > 0:
            per_mod[m] = float((per_sample.detach() * is_t).sum() / is_t.sum())
    return total / max(float(count), 1.0), {"per_modality": per_mod, "roles": roles}

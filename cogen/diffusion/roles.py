"""Per-sample roles of the modalities during training: condition, target or absent.

A modality missing from a sample's data is always absent. Among the present ones, a sample is either a
*joint* sample (every present modality is a target at one shared time) or a *conditional* one (each present
modality draws condition / target / absent with the configured weights, at least one target). With
probability `p_uncond` the conditions of a sample are dropped (made absent) so the model also learns the
unconditional prediction that classifier-free guidance contrasts with.

With probability `p_single` a conditional sample keeps one of its conditions only (a random one; the others
become absent): users often hold a single sensor (radar alone, one image), and as modalities and dates are
added the independent draw above gives such samples ever less often (0.45 x 0.55^(M-1) for one given
modality of M).

With probability `p_band_subset` a condition of several bands is given with some of its bands only (each band
kept with a probability drawn in [`band_keep_min`, 1], at least one kept), as a 9-band L2A product or L1C
without B10 are: the model learns that a missing band is absent, not 0. Bands a file lacks are missing
whatever the role; a target's missing bands take no loss.

With probability `p_partial` a target of a sample is given in part: a blob-shaped region of its tokens (like
the clear sky between clouds) enters clean and takes no loss, so the model learns to fill the rest from
the known part and the other modalities (cloud removal, nodata holes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

CONDITION, TARGET, ABSENT = 0, 1, 2


@dataclass
class RoleConfig:
    p_joint: float = 0.1
    w_condition: float = 0.45
    w_target: float = 0.35
    w_absent: float = 0.2
    p_uncond: float = 0.1
    p_shared_t: float = 0.5  # conditional samples: all targets share one time with this probability
    p_partial: float = 0.0  # a target is given in part (a blob-shaped known region of its tokens)
    partial_min: float = 0.2  # share of a partial target's tokens that is known: uniform in [min, max]
    partial_max: float = 0.8
    p_band_subset: float = 0.0  # a condition of several bands is given with some of its bands only
    band_keep_min: float = 0.25  # each band of such a condition is kept with a probability in [this, 1]
    p_single: float = 0.0  # a conditional sample keeps one random condition only, the others absent


def sample_roles(present: Mapping[str, torch.Tensor], cfg: RoleConfig,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """present: {m: (B,) bool} -> {m: (B,) long in {CONDITION, TARGET, ABSENT}}."""
    names = list(present)
    P = torch.stack([present[m].bool() for m in names], dim=1)  # (B, M)
    B, M = P.shape
    w = torch.tensor([cfg.w_condition, cfg.w_target, cfg.w_absent], dtype=torch.float)
    roles = torch.multinomial(w.expand(B * M, 3), 1, generator=generator).view(B, M)
    joint = torch.rand(B, generator=generator) < cfg.p_joint
    roles[joint] = TARGET
    roles[~P] = ABSENT
    # at least one target per sample with data: promote a random present modality
    no_target = ~(roles == TARGET).any(dim=1) & P.any(dim=1)
    if no_target.any():
        score = torch.rand(B, M, generator=generator) + P.float() * 2  # present ones first
        pick = score.argmax(dim=1)
        roles[no_target, pick[no_target]] = TARGET
    uncond = torch.rand(B, generator=generator) < cfg.p_uncond
    roles[uncond[:, None] & (roles == CONDITION)] = ABSENT
    if cfg.p_single > 0:  # drawn only when on, so that runs without it keep their random stream
        cond = roles == CONDITION
        single = (torch.rand(B, generator=generator) < cfg.p_single) & (cond.sum(dim=1) > 1)
        keep = (torch.rand(B, M, generator=generator) + cond.float() * 2).argmax(dim=1)  # a random condition
        drop = single[:, None] & cond & (torch.arange(M)[None, :] != keep[:, None])
        roles[drop] = ABSENT
    return {m: roles[:, i] for i, m in enumerate(names)}


def sample_times(roles: Mapping[str, torch.Tensor], draw, cfg: RoleConfig,
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Times per modality (B,): 0 for conditions and absents; targets drawn by `draw(n, generator)`,
    shared across the targets of a sample for joint samples or with probability `p_shared_t`."""
    names = list(roles)
    R = torch.stack([roles[m] for m in names], dim=1)  # (B, M)
    B, M = R.shape
    own = torch.stack([draw(B, generator) for _ in names], dim=1)  # (B, M)
    shared = draw(B, generator)[:, None].expand(B, M)
    all_target = (R != CONDITION).all(dim=1)  # joint samples (or no conditions): one shared time
    use_shared = (torch.rand(B, generator=generator) < cfg.p_shared_t) | all_target
    t = torch.where(use_shared[:, None], shared, own)
    t = torch.where(R == TARGET, t, torch.zeros_like(t))
    return {m: t[:, i] for i, m in enumerate(names)}


def known_regions(batch: int, h: int, w: int, p: int, share: tuple[float, float],
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, h, w) bool latent-cell masks, constant on p x p tokens: True over blob-shaped regions covering
    a uniform share in `share` of the tokens (a smooth random field at token resolution, thresholded at that
    quantile; the field's scale is drawn per mask, from a few tokens to the whole grid)."""
    gh, gw = h // p, w // p
    out = torch.zeros(batch, gh, gw, dtype=torch.bool)
    for b in range(batch):
        k = int(torch.randint(2, 5, (1,), generator=generator))
        coarse = torch.randn(1, 1, k, k, generator=generator)
        field = torch.nn.functional.interpolate(coarse, size=(gh, gw), mode="bicubic", align_corners=True)[0, 0]
        field = field + 0.15 * torch.randn(gh, gw, generator=generator)
        lo, hi = share
        q = lo + (hi - lo) * float(torch.rand(1, generator=generator))
        n_known = int(round(q * gh * gw))
        if n_known > 0:
            idx = field.flatten().argsort(descending=True)[:n_known]
            out[b].view(-1)[idx] = True
    return out.repeat_interleave(p, dim=1).repeat_interleave(p, dim=2)


def sample_band_masks(roles: Mapping[str, torch.Tensor], data_bands: Mapping[str, torch.Tensor], cfg: RoleConfig,
                      generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """{m: (B, C) bool} the bands each sample holds (the data's own) -> the bands the model is given: for a
    condition, with probability `p_band_subset`, a random subset of them (at least one)."""
    out = {}
    for m, have in data_bands.items():
        have = have.bool().cpu()
        B, C = have.shape
        if cfg.p_band_subset <= 0 or C < 2 or m not in roles:
            out[m] = have
            continue
        pick = (torch.rand(B, generator=generator) < cfg.p_band_subset) & (roles[m] == CONDITION)
        rate = cfg.band_keep_min + (1 - cfg.band_keep_min) * torch.rand(B, 1, generator=generator)
        keep = (torch.rand(B, C, generator=generator) < rate) & have
        one = torch.zeros(B, C, dtype=torch.bool)  # at least one band: a random one the sample holds
        score = torch.rand(B, C, generator=generator) + have.float() * 2
        one[torch.arange(B), score.argmax(dim=1)] = True
        keep = keep | (one & have)
        out[m] = torch.where(pick[:, None], keep, have)
    return out

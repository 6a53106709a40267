"""One diffusion transformer over the tokens of every modality of a scene, a diffusion time per modality.

Tokens of modality m: its latent (B, c_m, h, w) cut into p_m x p_m patches, projected to width D, plus a
learned modality embedding and a fixed 2D sin-cos position embedding (any grid size works). The time t_m of
modality m is embedded and added to the modality embedding; each block turns that vector into adaLN-Zero
shift/scale/gate for *every token of that modality*. A modality may also be given in part (cloud removal,
nodata holes): tokens marked clean take the modality's t = 0 vector instead, so known regions enter clean
while the rest of the modality is denoised. A modality may be given with some of its bands (a 9-band L2A
product, L1C without B10): its missing bands enter as zeros and a learned embedding of *which* bands are
missing (zero when none is) is added to its tokens and to its conditioning vector, so a missing band is
absent, not a band of value 0; the model still predicts every band. A sample may hold a modality at several
dates: each date is a slot of that modality's tokens (`S2L2A`, `S2L2A@1`, ..., `cogen.registry.slot_key`) with
the modality's own patch embedding, and an embedding of the slot's date (its offset in days from the target
date and its day of year) added to its tokens and its conditioning vector; every slot has its own diffusion
time like any modality, so any date may be given, wanted or absent. Modalities that are absent are not in the sequence;
within a batch where a modality is present for some samples only, the others' tokens are masked out of
attention, so they have no influence.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from einops import rearrange
from torch import nn

from ..errors import ConfigError
from ..registry import base_modality, slot_order

MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": dict(hidden_size=32, depth=2, num_heads=2),
    "mini": dict(hidden_size=128, depth=4, num_heads=4),
    "small": dict(hidden_size=256, depth=8, num_heads=4),
    "base": dict(hidden_size=512, depth=12, num_heads=8),
    "large": dict(hidden_size=768, depth=24, num_heads=12),
}

try:  # optional memory-efficient attention on CUDA
    import xformers.ops as xops  # type: ignore
except Exception:  # pragma: no cover - CPU machines
    xops = None


def sincos_2d(h: int, w: int, dim: int, device=None) -> torch.Tensor:
    """Fixed 2D sin-cos position embedding (h*w, dim), half for rows and half for columns."""
    quarter = dim // 4
    omega = 1.0 / (10000 ** (torch.arange(quarter, device=device, dtype=torch.float32) / max(quarter, 1)))
    ys, xs = torch.meshgrid(torch.arange(h, device=device, dtype=torch.float32),
                            torch.arange(w, device=device, dtype=torch.float32), indexing="ij")
    out = [torch.sin(ys.reshape(-1, 1) * omega), torch.cos(ys.reshape(-1, 1) * omega),
           torch.sin(xs.reshape(-1, 1) * omega), torch.cos(xs.reshape(-1, 1) * omega)]
    emb = torch.cat(out, dim=1)
    return F.pad(emb, (0, dim - emb.shape[1]))


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """t in [0, 1] (B,) -> (B, dim) sinusoidal features (t is scaled by 1000 like integer timesteps)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, backend: str = "auto"):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.backend = backend

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.qkv(x).view(B, N, 3, self.heads, D // self.heads)
        use_xf = xops is not None and x.is_cuda and keep is None and self.backend in ("auto", "xformers")
        if use_xf:  # (B, N, H, d) layout
            q, k, v = qkv.unbind(2)
            out = xops.memory_efficient_attention(q, k, v).reshape(B, N, D)
        else:
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, N, d)
            mask = None if keep is None else keep[:, None, None, :]  # (B, 1, 1, N): True = attend
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
            out = out.transpose(1, 2).reshape(B, N, D)
        return self.proj(out)


DATE_PERIODS = (4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)  # days: the offset's sin-cos periods
DATE_FEATURES = 2 * len(DATE_PERIODS) + 3


def date_features(d: torch.Tensor) -> torch.Tensor:
    """(B, 3) [offset in days from the target date, day of year, 1 if the date is known else 0] -> (B, F):
    sin-cos of the offset at periods of 4 days to about 3 years, and of the day of year on the year's circle
    (zero when the date is unknown), and the known flag."""
    off, doy, known = d.float().unbind(-1)
    w = 2 * math.pi / torch.tensor(DATE_PERIODS, device=d.device)
    a = off[:, None] * w[None]
    yr = 2 * math.pi * doy / 365.25
    season = torch.stack([torch.sin(yr), torch.cos(yr)], dim=-1) * known[:, None]
    return torch.cat([torch.sin(a), torch.cos(a), season, known[:, None]], dim=-1)


def per_token(v: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
    """(B, K, E) vectors -> (B, N, E) by slot index seg, (N,) shared by the batch or (B, N) per sample."""
    if seg.ndim == 1:
        return v[:, seg]
    return torch.gather(v, 1, seg[..., None].expand(-1, -1, v.shape[-1]))


def clean_tokens(cells: torch.Tensor, p: int) -> torch.Tensor:
    """(B, H, W) bool cell mask -> (B, H/p * W/p) bool: a token is clean when all of its p x p cells are."""
    return rearrange(cells.bool(), "b (h p) (w q) -> b (h w) (p q)", p=p, q=p).all(dim=-1)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Block(nn.Module):
    """Pre-norm transformer block with adaLN-Zero modulation given per token."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, backend: str):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads, backend)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x: torch.Tensor, c: torch.Tensor, seg: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
        # c: (B, K, D) conditioning vectors; seg: (N,) or (B, N) the vector slot of each token
        mod = per_token(self.ada(c), seg)  # (B, N, 6D)
        s1, g1, a1, s2, g2, a2 = mod.chunk(6, dim=-1)
        x = x + a1 * self.attn(modulate(self.norm1(x), s1, g1), keep)
        x = x + a2 * self.mlp(modulate(self.norm2(x), s2, g2))
        return x


# weights added after bundles were first written: a bundle without them loads with their initial values
ADDED_WEIGHTS = ("missing_band_emb.", "date_mlp.")


class CogenTransformer(ModelMixin, ConfigMixin):
    """Per-modality-time diffusion transformer.

    Args:
        modalities: {name: {"channels": latent channels, "patch_size": p}} for every modality it knows.
        hidden_size, depth, num_heads, mlp_ratio: the backbone (see :data:`MODEL_SIZES`).
    """

    @register_to_config
    def __init__(self, modalities: Mapping[str, Mapping[str, int]], hidden_size: int = 256, depth: int = 8,
                 num_heads: int = 4, mlp_ratio: float = 4.0, attention: str = "auto"):
        super().__init__()
        if hidden_size % num_heads or hidden_size % 4:
            raise ConfigError(f"hidden_size {hidden_size} must be divisible by num_heads {num_heads} and by 4")
        self.names = list(modalities)
        D = hidden_size
        self.embed = nn.ModuleDict({m: nn.Linear(s["channels"] * s["patch_size"] ** 2, D) for m, s in modalities.items()})
        self.unembed = nn.ModuleDict({m: nn.Linear(D, s["channels"] * s["patch_size"] ** 2) for m, s in modalities.items()})
        self.modality_emb = nn.ParameterDict({m: nn.Parameter(torch.randn(D) * 0.02) for m in modalities})
        # one vector per (modality, band): the sum over a sample's missing bands is added to that modality's
        # tokens and conditioning vector; zero at the start, so every band given is the model without it
        self.missing_band_emb = nn.ParameterDict({m: nn.Parameter(torch.zeros(s["channels"], D))
                                                  for m, s in modalities.items()})
        self.t_mlp = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        # a slot's date (offset from the target date, day of year) -> a vector added to its tokens and conditioning
        # vector; its last layer starts at zero, so a model trained without dates is unchanged by it
        self.date_mlp = nn.Sequential(nn.Linear(DATE_FEATURES, D), nn.SiLU(), nn.Linear(D, D))
        self.blocks = nn.ModuleList([Block(D, num_heads, mlp_ratio, attention) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Sequential(nn.SiLU(), nn.Linear(D, 2 * D))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        for mod in self.modules():
            if isinstance(mod, nn.Linear):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.zeros_(mod.bias)
        for blk in self.blocks:  # adaLN-Zero: every block starts as the identity
            nn.init.zeros_(blk.ada[-1].weight); nn.init.zeros_(blk.ada[-1].bias)
        nn.init.zeros_(self.final_ada[-1].weight); nn.init.zeros_(self.final_ada[-1].bias)
        for lin in self.unembed.values():
            nn.init.zeros_(lin.weight); nn.init.zeros_(lin.bias)
        nn.init.zeros_(self.date_mlp[-1].weight); nn.init.zeros_(self.date_mlp[-1].bias)
        nn.init.normal_(self.t_mlp[0].weight, std=0.02); nn.init.normal_(self.t_mlp[2].weight, std=0.02)

    @torch.no_grad()
    def init_added_weights(self, missing: Sequence[str]) -> None:
        """The initial values of the weights added after bundles were first written (ADDED_WEIGHTS) that a bundle
        lacks (`missing`: state-dict keys): a bundle without them is the same model with them (their output is
        zero). Those it holds are left as they are."""
        if any(k.startswith("missing_band_emb.") for k in missing):
            for p in self.missing_band_emb.values():
                p.zero_()
        if any(k.startswith("date_mlp.") for k in missing):
            g = torch.Generator().manual_seed(0)  # the same values at every load
            w = self.date_mlp[0].weight
            w.copy_(nn.init.xavier_uniform_(torch.empty(w.shape), generator=g))
            nn.init.zeros_(self.date_mlp[0].bias)
            nn.init.zeros_(self.date_mlp[-1].weight); nn.init.zeros_(self.date_mlp[-1].bias)

    def patch_size(self, m: str) -> int:
        return int(self.config.modalities[base_modality(m)]["patch_size"])

    def forward(self, x: Mapping[str, torch.Tensor], t: Mapping[str, torch.Tensor],
                present: Mapping[str, torch.Tensor] | None = None,
                clean: Mapping[str, torch.Tensor] | None = None,
                bands: Mapping[str, torch.Tensor] | None = None,
                dates: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        """Every mapping is keyed by slot: a modality (at the target date) or a slot key `M@k` of it at another
        date (:func:`cogen.registry.slot_key`).
        x: {m: (B, c_m, h, w) latents}, t: {m: (B,) time in [0, 1], 0 = clean condition},
        present: optional {m: (B,) bool}; False masks that modality's tokens out for that sample.
        clean: optional {m: (B, h, w) bool latent cells}; a token whose cells are all True is a clean
            condition (the t = 0 vector of its modality) whatever t[m] is; its values in x must be clean.
        bands: optional {m: (B, c_m) bool} latent channels given; False channels are missing for that sample
            (their values in x are ignored). Absent from the mapping = every channel given.
        dates: optional {m: (B, 3)} [offset in days from the target date, day of year, known 0/1] of each slot
            (:func:`date_features`); a slot absent from it is at the target date, its day unknown.
        Returns {m: (B, c_m, h, w)} predictions for every modality in x."""
        unknown = {m for m in x if base_modality(m) not in self.names}
        if unknown:
            raise ConfigError(f"the model does not know modalities {sorted(unknown)}; it knows {self.names}")
        names = sorted(x, key=lambda m: (self.names.index(base_modality(m)), slot_order(m)))
        D = self.config.hidden_size
        toks, conds, segs, keeps, grids, flags, misses = [], [], [], [], {}, [], {}
        partial = clean is not None and any(m in clean for m in names)
        for i, m in enumerate(names):
            p, b = self.patch_size(m), base_modality(m)
            B, C, H, W = x[m].shape
            if H % p or W % p:
                raise ConfigError(f"{m}: latent size {H}x{W} is not a multiple of its patch size {p}; pad the tile")
            grids[m] = (H // p, W // p)
            xm = x[m]
            if bands is not None and m in bands:
                given = bands[m].to(device=xm.device, dtype=torch.bool)
                if given.shape != (B, C):
                    raise ConfigError(f"{m}: band mask of shape {tuple(given.shape)}, expected {(B, C)}")
                xm = xm * given[:, :, None, None].to(xm.dtype)
            else:
                given = torch.ones(B, C, dtype=torch.bool, device=xm.device)
            # (B, D), zero when every band is given; always computed, so that the embedding is in every graph
            # (DDP wants each parameter used by each step)
            miss = (~given).to(xm.dtype) @ self.missing_band_emb[b].to(xm.dtype)
            d = dates[m].to(xm.device) if dates is not None and m in dates else torch.zeros(B, 3, device=xm.device)
            miss = miss + self.date_mlp(date_features(d).to(xm.dtype))  # (B, D), likewise always computed
            tok = rearrange(xm, "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=p)
            pos = sincos_2d(H // p, W // p, D, xm.device)
            tok = self.embed[b](tok) + pos.to(tok.dtype) + self.modality_emb[b]
            cond = self.t_mlp(timestep_embedding(t[m], D).to(tok.dtype)) + self.modality_emb[b]  # (B, D)
            tok, cond, misses[i] = tok + miss[:, None], cond + miss, miss
            toks.append(tok)  # (B, N_m, D)
            conds.append(cond)
            segs.append(torch.full((tok.shape[1],), i, dtype=torch.long, device=tok.device))
            if partial:
                flags.append(clean_tokens(clean[m].to(tok.device), p) if m in clean
                             else torch.zeros(tok.shape[:2], dtype=torch.bool, device=tok.device))
            if present is not None and m in present:
                keeps.append(present[m].to(torch.bool)[:, None].expand(-1, tok.shape[1]))
            else:
                keeps.append(torch.ones(tok.shape[:2], dtype=torch.bool, device=tok.device))
        h = torch.cat(toks, dim=1)  # (B, N, D), N = sum of tokens of the present modalities
        c = torch.stack(conds, dim=1)  # (B, M, D)
        seg = torch.cat(segs)  # (N,)
        if partial:  # slots M..2M-1: each modality's t = 0 vector, for its clean tokens
            t0 = self.t_mlp(timestep_embedding(torch.zeros(1, device=h.device), D).to(h.dtype))
            c0 = t0[:, None] + torch.stack([self.modality_emb[base_modality(m)] for m in names])[None].to(h.dtype)
            c0 = c0.expand(c.shape[0], -1, -1).clone()
            for i, miss in misses.items():
                c0[:, i] = c0[:, i] + miss
            c = torch.cat([c, c0], dim=1)  # (B, 2M, D)
            seg = seg[None] + len(names) * torch.cat(flags, dim=1).long()  # (B, N)
        keep = torch.cat(keeps, dim=1)  # (B, N)
        keep = None if bool(keep.all()) else keep | ~keep.any(dim=1, keepdim=True)
        for blk in self.blocks:
            h = blk(h, c, seg, keep)
        shift, scale = per_token(self.final_ada(c), seg).chunk(2, dim=-1)
        h = modulate(self.final_norm(h), shift, scale)
        out, start = {}, 0
        for m in names:
            gh, gw = grids[m]
            n = gh * gw
            p = self.patch_size(m)
            y = self.unembed[base_modality(m)](h[:, start : start + n])
            out[m] = rearrange(y, "b (h w) (c p q) -> b c (h p) (w q)", h=gh, w=gw, p=p, q=p)
            start += n
        return out

    def flops_per_sample(self, tokens: int, in_out_dims: int) -> float:
        """Forward matmul FLOPs for one sample of `tokens` tokens (2 * MACs), for MFU figures."""
        D, L, r = self.config.hidden_size, self.config.depth, self.config.mlp_ratio
        per_block = 2 * tokens * (3 * D * D + D * D + 2 * r * D * D) + 2 * 2 * tokens * tokens * D
        return L * per_block + 2 * tokens * D * in_out_dims * 2


def build_model(size: str, modalities: Mapping[str, Mapping[str, int]], **overrides) -> CogenTransformer:
    if size not in MODEL_SIZES:
        raise ConfigError(f"unknown model size {size!r}; sizes are {', '.join(MODEL_SIZES)}")
    kw = {**MODEL_SIZES[size], **{k: v for k, v in overrides.items() if v is not None}}
    return CogenTransformer(modalities=dict(modalities), **kw)

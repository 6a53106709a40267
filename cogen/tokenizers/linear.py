"""Block PCA: the best linear code of a latent grid's shape. Each non-overlapping f x f block of all bands
(f*f*C values) is stored as its first k principal components, fit on training arrays (model space).

It is the reference a learned tokenizer must beat, and the linear path of a VAE tokenizer (`linear: true`),
which then learns only what the linear code misses."""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F


def blocks(x: torch.Tensor, f: int) -> torch.Tensor:
    """(C,H,W) -> (C*f*f, n) whole f x f blocks as columns (a ragged right/bottom edge is left out)."""
    H, W = x.shape[-2] // f * f, x.shape[-1] // f * f
    return F.pixel_unshuffle(x[None, :, :H, :W], f)[0].reshape(x.shape[0] * f * f, -1)


def fit_block_pca(arrays: Iterable[torch.Tensor], f: int, k: int,
                  masks: Iterable[torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (C*f*f,) and orthonormal basis (C*f*f, k) of the blocks of `arrays` ((C,H,W) each). With `masks`
    ((H,W) bool each), only blocks whose pixels are all valid are used."""
    arrays = list(arrays)
    masks = list(masks) if masks is not None else [None] * len(arrays)
    cols = []
    for x, ok in zip(arrays, masks):
        b = blocks(x.double(), f)
        if ok is not None:
            b = b[:, blocks(ok[None].double(), f).min(dim=0).values > 0.5]
        cols.append(b)
    X = torch.cat(cols, dim=1)
    if X.shape[1] < k:
        raise ValueError(f"block PCA needs at least {k} whole {f}x{f} blocks of valid pixels, got {X.shape[1]}")
    mean = X.mean(dim=1)
    U, _, _ = torch.linalg.svd(X - mean[:, None], full_matrices=False)
    return mean, U[:, :k]


def pca_encode(x: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor, f: int) -> torch.Tensor:
    """(B,C,H,W) with H, W multiples of f -> (B,k,H/f,W/f) block coefficients."""
    u = F.pixel_unshuffle(x, f) - mean.to(x.dtype)[None, :, None, None]
    return torch.einsum("bchw,ck->bkhw", u, basis.to(x.dtype))


def pca_decode(z: torch.Tensor, mean: torch.Tensor, basis: torch.Tensor, f: int) -> torch.Tensor:
    """(B,k,h,w) -> (B,C,h*f,w*f)."""
    u = torch.einsum("bkhw,ck->bchw", z, basis.to(z.dtype)) + mean.to(z.dtype)[None, :, None, None]
    return F.pixel_shuffle(u, f)


class BlockPCA:
    """Block PCA fit on training arrays, with a round trip for evaluation."""

    def __init__(self, arrays, factor: int, k: int):
        self.f, self.k = factor, k
        self.mean, self.basis = fit_block_pca(arrays, factor, k)

    def round_trip(self, x: torch.Tensor) -> torch.Tensor:
        """(C,H,W) -> (C,H,W); a ragged right/bottom edge (narrower than a block) is copied through."""
        f, (_, H, W) = self.f, x.shape
        Hc, Wc = H // f * f, W // f * f
        xd = x.double()[None, :, :Hc, :Wc]
        out = x.double().clone()
        out[:, :Hc, :Wc] = pca_decode(pca_encode(xd, self.mean, self.basis, f), self.mean, self.basis, f)[0]
        return out.to(x.dtype)

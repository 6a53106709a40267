"""Bands stored finer than they were measured.

Sentinel-2 measures B01/B09/B10 at 60 m and B05-B07/B8A/B11/B12 at 20 m; products stacked on a 10 m grid
repeat each measured value over an aligned 6x6 or 2x2 block of pixels (nearest-neighbour upsampling). The
registry lists those blocks per band (`native_blocks`). A generated band should have the same structure:
:func:`block_project` replaces every block of a generated band by one value, the mean of the block's known
pixels when it has any (cloud removal: a block cut by the mask edge is measured already), else the mean of
its generated pixels. :func:`detect_block_offset` finds where the blocks start in a given raster, and tells
rasters that were resampled another way (bilinear, cubic: no repeated blocks) so they are left alone.

The pipeline projects each tile's samples before tiles are blended. Where tiles overlap, a block gets the
blend of two tiles' block values with weights that ramp across the overlap, so it is close to, not exactly,
one value; blocks that lie in one tile only are one value exactly.
"""
from __future__ import annotations

import numpy as np
import torch

BLOCKY = 0.95  # share of equal neighbours inside blocks for a band to count as block-upsampled


def _equal_share(a: np.ndarray, ok: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Per phase j in [0, k): the share of equal valid neighbour pairs (i, i+1) with i = j mod k."""
    d = np.diff(a, axis=axis) == 0
    v = ok[:, 1:] & ok[:, :-1] if axis == 1 else ok[1:] & ok[:-1]
    out = np.ones(k)
    for j in range(k):
        sl = (slice(None), slice(j, None, k)) if axis == 1 else (slice(j, None, k), slice(None))
        n = v[sl].sum()
        if n:
            out[j] = (d[sl] & v[sl]).sum() / n
    return out


def detect_block_offset(band: np.ndarray, ok: np.ndarray, k: int) -> tuple[int, int] | None:
    """(row, col) offset of a (H,W) raw band's k x k blocks: pixel (i, j) lies in block ((i + row) // k,
    (j + col) // k). None when the band is not made of such blocks (resampled some other way), or when too
    few valid pixels show it."""
    if k <= 1:
        return 0, 0
    if ok.sum() < 4 * k * k:
        return None
    off = []
    for axis in (0, 1):
        share = _equal_share(band, ok, k, axis)
        j = int(np.argmin(share))  # the pairs that straddle a block edge differ; all others are equal
        rest = np.delete(share, j)
        if rest.min() < BLOCKY:
            return None
        off.append((-(j + 1)) % k)  # a block starts at pixel j + 1
    return off[0], off[1]


def block_project(x: torch.Tensor, k: int, row0: int, col0: int, known: torch.Tensor | None = None,
                  known_ok: torch.Tensor | None = None) -> torch.Tensor:
    """One value per k x k block for a batch of (N,H,W) windows of one band whose top-left pixel sits at
    (row0, col0) of the block grid (blocks start at multiples of k). A block with known pixels (`known_ok`,
    values in `known`) takes their mean; any other block the mean of `x` over the part of it in the window.
    Known pixels keep their values."""
    if k <= 1:
        return x
    N, H, W = x.shape
    pt, pl = row0 % k, col0 % k
    Hp, Wp = -(-(pt + H) // k) * k, -(-(pl + W) // k) * k

    def pooled(v: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        vp = x.new_zeros(N, Hp, Wp)
        wp = x.new_zeros(N, Hp, Wp)
        vp[:, pt : pt + H, pl : pl + W] = v * w
        wp[:, pt : pt + H, pl : pl + W] = w
        s = vp.view(N, Hp // k, k, Wp // k, k).sum(dim=(2, 4))
        n = wp.view(N, Hp // k, k, Wp // k, k).sum(dim=(2, 4))
        return s, n

    s, n = pooled(x, torch.ones_like(x))
    val = s / n.clamp(min=1)
    if known is not None and known_ok is not None:
        kw = known_ok.to(x.dtype)
        ks, kn = pooled(known.to(x.dtype), kw)
        val = torch.where(kn > 0, ks / kn.clamp(min=1), val)
    full = val.repeat_interleave(k, dim=1).repeat_interleave(k, dim=2)[:, pt : pt + H, pl : pl + W]
    if known is not None and known_ok is not None:
        return torch.where(known_ok, known.to(x.dtype), full)
    return full

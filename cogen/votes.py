"""Spatial smoothing of class votes before the majority is taken.

A class map from N samples is a per-pixel vote: the fraction of samples that chose each class (or, for the
deterministic model, its class probabilities). Each pixel's vote is noisy on its own, while land cover comes in
patches many pixels wide, so the votes of a pixel's neighbours are evidence for it too. `smooth_votes` replaces
each pixel's vote by a Gaussian-weighted mean of the votes around it (sigma in pixels) before the majority and
the confidence are read off: the standard majority-filter clean-up of a classified image, done on the votes so
that ties between classes are settled by how strongly the neighbourhood holds each class. Pixels without
information (nodata) take no part: the mean is over valid pixels only (normalised convolution), so neither
nodata nor the scene's edge pulls a vote towards zero.

`VoteSmoother` does the same while a scene streams through the sampler in bands of rows: it holds back the
last `radius` rows of each band until the rows below them have come in, so the result is the same as
smoothing the whole scene at once.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

TRUNCATE = 3.0  # the kernel reaches this many sigmas


def radius(sigma: float) -> int:
    return int(math.ceil(TRUNCATE * sigma)) if sigma > 0 else 0


def _kernel(sigma: float) -> torch.Tensor:
    r = radius(sigma)
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).float()


def smooth_votes(votes: np.ndarray, ok: np.ndarray, sigma: float) -> np.ndarray:
    """votes (C, H, W), ok (H, W) bool -> (C, H, W) Gaussian-weighted mean of the valid votes around each
    pixel; invalid pixels come back as they were. sigma 0 returns the votes unchanged."""
    if sigma <= 0:
        return votes
    if sigma > 64:
        raise ValueError(f"vote smoothing sigma {sigma} px is larger than 64 px; use a few pixels (e.g. 1)")
    C, H, W = votes.shape
    k = _kernel(sigma)
    r = k.numel() // 2
    w = torch.from_numpy(np.ascontiguousarray(ok, dtype=np.float32))[None, None]
    x = torch.from_numpy(np.ascontiguousarray(votes, dtype=np.float32))[:, None] * w  # (C, 1, H, W)
    both = torch.cat([x, w])  # the mask goes through the same kernel: the weights to divide by
    both = F.conv2d(F.pad(both, (r, r, 0, 0)), k.view(1, 1, 1, -1))
    both = F.conv2d(F.pad(both, (0, 0, r, r)), k.view(1, 1, -1, 1))
    num, den = both[:C, 0], both[C, 0]
    # a valid pixel carries at least its own weight (k[r]^2 > 1e-5 for sigma <= 64); invalid ones are put back
    out = (num / den.clamp_min(1e-12)).numpy()
    return np.where(ok[None], out, votes).astype(votes.dtype, copy=False)


class VoteSmoother:
    """Smooths the votes of a scene that arrives in consecutive bands of rows ([top, top + n), top rising from
    0 to H). `push` returns (first row, votes) of the rows that are final now (possibly none); each row comes
    out once and the last band releases everything left. The result equals `smooth_votes` on the whole scene."""

    def __init__(self, sigma: float, H: int):
        self.sigma, self.H, self.r = sigma, H, radius(sigma)
        self.votes: np.ndarray | None = None  # buffered rows [self.top, self.top + len)
        self.ok: np.ndarray | None = None
        self.top = 0
        self.done = 0  # rows before this have been returned

    def push(self, top: int, votes: np.ndarray, ok: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        if self.votes is None:
            self.votes, self.ok, self.top = votes, ok, top
        else:
            if top != self.top + self.votes.shape[1]:
                raise ValueError(f"bands must be consecutive: expected row {self.top + self.votes.shape[1]}, got {top}")
            self.votes = np.concatenate([self.votes, votes], axis=1)
            self.ok = np.concatenate([self.ok, ok], axis=0)
        end_in = self.top + self.votes.shape[1]  # rows received so far
        end = self.H if end_in >= self.H else max(self.done, end_in - self.r)  # rows [done, end) are final now
        s = smooth_votes(self.votes, self.ok, self.sigma)
        a, b = self.done - self.top, end - self.top
        out = (self.done, s[:, a:b], self.ok[a:b])
        self.done = end
        keep = max(0, end - self.r - self.top)  # later rows need `r` rows above them
        self.votes, self.ok, self.top = self.votes[:, keep:], self.ok[keep:], self.top + keep
        return out

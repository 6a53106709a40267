"""The clear-pixel library of cloud removal: generated spectra moved onto spectra measured in the same scene.

When part of a continuous target is regenerated (cloud removal), its clear pixels are measurements of the
very scene being filled. After decoding, each generated pixel's spectrum is replaced by the mean of the K
clear pixels whose spectra lie nearest to it (Euclidean distance in physical units): cogen's sample decides
what kind of surface a hidden pixel is, the scene's own measurements give its spectrum. This is the
"similar pixel" step of classical gap filling, with the generated sample in the place of the reference image
of another date. Over dark surfaces (water), where an error of a few thousandths of reflectance turns a
spectrum far, it takes the spectral angle back to that of the measured water (docs/SAMPLING.md). A generated
spectrum with no clear spectrum near it (relative to its own length, `REACH`) keeps its own.

The library is a uniform random subsample (seeded) of at most `size` clear pixels of the whole scene, drawn
in one pass over blocks of rows, so memory stays bounded on large scenes.
"""
from __future__ import annotations

import numpy as np
import torch

REACH = 0.5  # a generated spectrum whose K-th nearest clear spectrum lies further than this x its length keeps its own
LIBRARY_BLOCK = 512  # rows read at a time while the library is drawn
QUERY_CHUNK = 1024  # generated pixels matched at a time (a chunk x library distance matrix is held)


class ClearLibrary:
    """(N, C) clear spectra in physical units; `snap` maps generated spectra onto the mean of their K nearest."""

    def __init__(self, spectra: torch.Tensor):
        if spectra.ndim != 2 or spectra.shape[0] == 0:
            raise ValueError(f"a clear-pixel library needs (N > 0, C) spectra, got shape {tuple(spectra.shape)}")
        self.spectra = spectra.float().contiguous()

    def __len__(self) -> int:
        return self.spectra.shape[0]

    @classmethod
    def from_source(cls, source, masked, H: int, W: int, size: int, seed: int,
                    block: int = LIBRARY_BLOCK) -> "ClearLibrary | None":
        """Draw up to `size` of the pixels of `source` that are valid and not masked (`masked(top, n)` -> (n, W)
        bool), uniformly at random: each pixel gets a seeded random key and the `size` smallest keys are kept,
        block by block. None when the scene has no clear pixel."""
        mod = source.modality
        keep_x = torch.empty(0, mod.num_bands)
        keep_k = torch.empty(0)
        for b, top in enumerate(range(0, H, block)):
            n = min(block, H - top)
            raw, ok = source.read(top, 0, n, W)
            ok = ok & ~masked(top, n)
            if not ok.any():
                continue
            g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, b]).generate_state(1)[0]))
            keys = torch.rand(int(ok.sum()), generator=g)
            rows, cols = np.nonzero(ok)
            if keys.numel() > size:  # only this block's `size` smallest keys can be among the scene's smallest
                pick = keys.topk(size, largest=False).indices.numpy()
                keys, rows, cols = keys[pick], rows[pick], cols[pick]
            x = mod.to_physical(torch.from_numpy(np.asarray(raw[:, rows, cols], np.float32).T.copy()))
            keep_x, keep_k = torch.cat([keep_x, x]), torch.cat([keep_k, keys])
            if keep_k.numel() > size:
                idx = keep_k.topk(size, largest=False).indices
                keep_x, keep_k = keep_x[idx], keep_k[idx]
        return cls(keep_x) if keep_x.shape[0] else None

    def snap(self, x: torch.Tensor, k: int, reach: float | None = None) -> torch.Tensor:
        """(n, C) physical spectra -> the mean of each one's `k` nearest library spectra (k capped at the
        library's size). A spectrum whose k-th nearest library spectrum lies further from it than `reach` times
        its own length (default `REACH`) is kept as it is: the scene measured no such surface in its clear
        pixels (a lake wholly under cloud), and the nearest measured one would be another surface."""
        k = min(k, len(self))
        reach = REACH if reach is None else reach
        out = torch.empty_like(x, dtype=self.spectra.dtype)
        for i in range(0, x.shape[0], QUERY_CHUNK):
            q = x[i : i + QUERY_CHUNK].float()
            dist, idx = torch.cdist(q, self.spectra).topk(k, dim=1, largest=False)
            far = dist[:, -1] > reach * q.norm(dim=1)
            out[i : i + QUERY_CHUNK] = torch.where(far[:, None], q, self.spectra[idx].mean(dim=1))
        return out.to(x.dtype)

    def snap_tiles(self, x: torch.Tensor, generated: torch.Tensor, mod, k: int) -> torch.Tensor:
        """Model-space tiles x (B, C, h, w): the pixels where `generated` (B, h, w) is True snapped (in physical
        units), the others returned as they are."""
        if not bool(generated.any()):
            return x
        phys = mod.denormalize(x).permute(0, 2, 3, 1).contiguous()  # (B, h, w, C): pixels as spectra
        phys[generated] = self.snap(phys[generated], k)
        out = mod.normalize(mod.from_physical(phys.permute(0, 3, 1, 2)))
        return torch.where(generated[:, None], out, x)

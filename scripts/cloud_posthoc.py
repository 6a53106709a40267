"""After-the-fact corrections of cloud removal, scored on training columns 96-159 (never the test strips).

Cloud removal is sampled once, as the results page samples it (mean of N from the interpolation at the
bundle's strength, the clear-pixel library, tiles 32 px without overlap by default), then each correction is
applied to the mean of N and scored inside the masks (PSNR, SAM; mean of the five strips):

- seam: the offset between each clear pixel and the generated pixel beside it, spread harmonically into
  the mask (Poisson blending with the generated field as the guide), so no step is left at the mask edge;
- feather tau: generated pixels at distance d (px) from the nearest clear pixel moved towards the
  interpolation (`fillnodata`) with weight exp(-(d - 1) / tau): trust the measurements next to the gap;
- blend a: a * generated + (1 - a) * interpolation everywhere in the mask.

It also prints where the error of the mean of N lies against the interpolation's: in the masked pixels of 4 x 4
blocks (one token of the model at grid offset 0) that also hold clear pixels, and in wholly masked blocks.

    python scripts/cloud_posthoc.py --cover 0.3 --tiling 32,0
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spl
from scipy.ndimage import distance_transform_edt

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cloud_probe import describe, parser, strips  # noqa: E402

from cogen.evaluate import fillnodata_baseline  # noqa: E402
from cogen.metrics import psnr_np, sam_np  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402

STEPS4 = ((1, 0), (-1, 0), (0, 1), (0, -1))


def seam(truth: np.ndarray, gen: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """gen + h inside the mask, h harmonic there; each (masked p, clear q) neighbour pair pulls h_p towards
    truth_q - gen_p (the step at the mask edge), image borders are free (no pull)."""
    C, H, W = gen.shape
    P = np.argwhere(mask)
    idx = -np.ones((H, W), int)
    idx[mask] = np.arange(len(P))
    rows, cols = [], []
    deg = np.zeros(len(P))
    rhs = np.zeros((len(P), C))
    for dr, dc in STEPS4:
        r, c = P[:, 0] + dr, P[:, 1] + dc
        inside = (r >= 0) & (r < H) & (c >= 0) & (c < W)
        i, r, c = np.nonzero(inside)[0], r[inside], c[inside]
        deg[i] += 1
        masked = mask[r, c]
        rows.append(i[masked]); cols.append(idx[r[masked], c[masked]])
        j = i[~masked]
        rhs[j] += (truth[:, r[~masked], c[~masked]] - gen[:, P[j, 0], P[j, 1]]).T
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    A = sp.csc_matrix((-np.ones(len(rows)), (rows, cols)), shape=(len(P), len(P))) + sp.diags(deg, format="csc")
    out = gen.copy()
    out[:, mask] += spl.splu(A).solve(rhs).T.astype(gen.dtype)
    return out


def feather(truth: np.ndarray, gen: np.ndarray, mask: np.ndarray, tau: float, fill: np.ndarray) -> np.ndarray:
    w = np.exp(-(distance_transform_edt(mask) - 1) / tau)
    return np.where(mask[None], w * fill + (1 - w) * gen, gen).astype(gen.dtype)


def block_split(mask: np.ndarray, p: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """(masked pixels of p x p blocks that also hold clear pixels, masked pixels of wholly masked blocks)."""
    H, W = mask.shape
    h, w = H // p * p, W // p * p
    some_clear = np.zeros_like(mask)
    some_clear[:h, :w] = np.repeat(np.repeat((~mask[:h, :w]).reshape(h // p, p, w // p, p).any(axis=(1, 3)), p, 0), p, 1)
    some_clear[h:, :] = some_clear[:, w:] = True  # a ragged edge counts as mixed
    return mask & some_clear, mask & ~some_clear


def main(argv=None) -> None:
    p = parser(__doc__)
    a = p.parse_args(argv)
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    t0 = time.time()
    methods = {"model (mean of N)": lambda t, g, m, f: g, "fillnodata": lambda t, g, m, f: f,
               "seam": lambda t, g, m, f: seam(t, g, m)}
    for tau in (1, 2, 4):
        methods[f"feather {tau}"] = lambda t, g, m, f, tau=tau: feather(t, g, m, tau, f)
    for w in (0.9, 0.8, 0.7):
        methods[f"blend {w}"] = lambda t, g, m, f, w=w: w * g + (1 - w) * f
    scores: dict[str, list[tuple[float, float]]] = {k: [] for k in methods}
    sq = {"mixed": np.zeros(3), "masked": np.zeros(3)}  # squared error of the mean, of fillnodata, pixel count
    for sid, truth, mask, res in strips(pipe, a):
        fill = fillnodata_baseline(truth, mask)
        gen = res.mean.astype(np.float32)
        for k, sel in zip(sq, block_split(mask)):
            sq[k] += (((gen[:, sel] - truth[:, sel]) ** 2).sum(), ((fill[:, sel] - truth[:, sel]) ** 2).sum(), sel.sum())
        for k, f in methods.items():
            o = f(truth, gen, mask, fill)
            scores[k].append((psnr_np(o[:, mask], truth[:, mask], 1.0), sam_np(o[:, mask], truth[:, mask])))
    print(f"{describe(pipe, a)}, {time.time() - t0:.0f} s")
    print("| correction | PSNR | SAM | SAM per strip |\n|---|---|---|---|")
    for k, v in scores.items():
        ps, ss = zip(*v)
        print(f"| {k} | {np.mean(ps):.2f} dB | {np.mean(ss):.2f}° | {' '.join(f'{s:.2f}' for s in ss)} |")
    n = sum(v[2] for v in sq.values())
    for k, (g, f, c) in sq.items():
        print(f"{'blocks with clear pixels' if k == 'mixed' else 'wholly masked blocks'}: {c / n:.0%} of the masked "
              f"pixels, squared error of the mean of {a.samples} / fillnodata's = {g / f:.2f}")


if __name__ == "__main__":
    main()

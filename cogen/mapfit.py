"""Does a generated class map fit the inputs it came from? A class map's confidence as the chance it is right.

The samples of a segmentation can agree and all be wrong: on a forest it never saw, the demo model labels every
pixel "crops" and its samples agree everywhere. Agreement alone therefore overstates how often the map is right,
in place as well (the held-out strips: agreement 0.86-0.99 where 54-73% of pixels are right). The model itself
can say more: a map that fits the image helps the model denoise that image, one that does not fit hurts. For
each 32 px tile (the training crop) and each continuous input m:

    c_m = log err(m noised to t = 0.6 | the generated map, clean) - log err(m noised to t = 0.6, alone)

over the tile's valid tokens and given bands; u = the largest over the inputs of (c_m - median_m) / (q95_m -
median_m), the median and 95th percentile of c_m on held-out parts of the training places (u = 1: as badly as
the worst 5% fitted there). The confidence of a pixel is then a logistic function of the samples' agreement a
and the tile's u,

    p = sigmoid(w0 + w1 logit(a) + w2 u),

fitted by maximum likelihood on the pixels of labelled held-out regions of the training places (the model's
own maps there, from several input subsets): the probability that the pixel's class is right. It ships in the
checkpoint's novelty.json (`"map_fit"`), made by `python -m cogen.novelty`; a checkpoint without it keeps the
agreement. Novelty's familiarity factor applies on top (cogen.novelty).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from .tiling import anchored_starts

LEVEL = 0.6
TILE = 32
EPS = 1e-8


@dataclass(frozen=True)
class MapFit:
    """The map-fit calibration: per input modality the median and 95th percentile of c on held-out tiles, and
    the logistic weights (w0, w1, w2) of the confidence."""

    spread: dict[str, tuple[float, float]]
    weights: tuple[float, float, float]  # pooled over the calibration's input sets
    level: float = LEVEL
    tile: int = TILE
    source: dict | None = None
    by_inputs: dict[str, tuple[float, float, float]] | None = None  # {"DEM+S1RTC+S2L2A": weights} of each input set

    def weights_for(self, inputs=None) -> tuple[float, float, float]:
        """The weights of a call given `inputs` (modality names): its input set's own where it was calibrated
        (the same agreement means more with more inputs), the pooled ones otherwise."""
        key = inputs_key(inputs) if inputs is not None else None
        return (self.by_inputs or {}).get(key, self.weights)

    def u(self, cs: Mapping[str, np.ndarray]) -> np.ndarray:
        """{modality: c of each tile (n,)} -> u (n,): the largest standardised c over the inputs (NaN-aware)."""
        us = [(np.asarray(c, np.float64) - self.spread[m][0]) / max(self.spread[m][1] - self.spread[m][0], 1e-6)
              for m, c in cs.items() if m in self.spread]
        if not us:
            raise ValueError("no input of the map-fit calibration")
        st = np.stack(us)
        return np.where(np.isnan(st).all(axis=0), np.nan, np.nanmax(np.where(np.isnan(st), -np.inf, st), axis=0))

    def confidence(self, agreement: np.ndarray, u: np.ndarray, inputs=None) -> np.ndarray:
        """The chance that a pixel's class is right from its samples' agreement and its tile's u (u NaN: 0), for a
        map generated from `inputs` (`weights_for`)."""
        w0, w1, w2 = self.weights_for(inputs)
        z = w0 + w1 * logit(agreement) + w2 * np.nan_to_num(u, nan=0.0)
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)

    def to_dict(self) -> dict:
        return {"spread": {m: list(v) for m, v in self.spread.items()}, "weights": list(self.weights),
                "by_inputs": {k: list(v) for k, v in (self.by_inputs or {}).items()},
                "level": self.level, "tile": self.tile, "source": self.source or {}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MapFit":
        return cls({m: (float(v[0]), float(v[1])) for m, v in d["spread"].items()},
                   tuple(float(w) for w in d["weights"]), float(d["level"]), int(d["tile"]), dict(d.get("source", {})),
                   {k: tuple(float(w) for w in v) for k, v in d.get("by_inputs", {}).items()} or None)


def inputs_key(inputs) -> str:
    """The name of an input set: its modalities sorted, joined by '+' ("DEM+S1RTC+S2L2A")."""
    from .registry import base_modality

    return "+".join(sorted({base_modality(m) for m in inputs}))


def logit(a: np.ndarray) -> np.ndarray:
    a = np.clip(np.asarray(a, np.float64), 0.02, 0.98)
    return np.log(a / (1 - a))


@torch.no_grad()
def tile_fit(bundle, device, m: str, x: torch.Tensor, ok: torch.Tensor, given: np.ndarray | None, target: str,
             y: torch.Tensor, level: float = LEVEL, seed: int = 0, batch: int = 64) -> np.ndarray:
    """Model-space tiles (n, C, T, T) of input m, their valid mask (n, T, T), and the model-space class map tiles
    y (n, T, T) of `target` -> c of each tile (n,), NaN where the tile has no valid token."""
    from .novelty import given_mask, x0_error

    model, diff = bundle.model, bundle.diffusion
    tok, tok_y = bundle.tokenizers[m], bundle.tokenizers[target]
    z, zy = tok.encode(x.to(device)), tok_y.encode(y.to(device))
    n, C = z.shape[:2]
    g = given_mask(given, C, device)
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed * 1009 + 7)).to(device)
    t = torch.full((n,), float(level), device=device)
    zt = diff.add_noise(z, eps, t)
    valid = tok.latent_valid(ok.to(device).bool()).float()  # (n, h, w)
    errs = {}
    for name, extra in (("alone", None), ("given", {target: zy})):
        e = x0_error(model, diff, m, z, zt, t, g, batch, extra)  # (n, h, w)
        errs[name] = (e * valid).sum(dim=(1, 2)) / valid.sum(dim=(1, 2)).clamp(min=1)
    c = torch.log(errs["given"] + EPS) - torch.log(errs["alone"] + EPS)
    return np.where(valid.sum(dim=(1, 2)).cpu().numpy() > 0, c.cpu().numpy(), np.nan)


def scene_fit(bundle, device, sources: Mapping[str, Any], target: str, classes: np.ndarray, fit: MapFit,
              nodata: float | None = None, seed: int = 0, batch: int = 64) -> tuple[np.ndarray, float]:
    """u of every pixel (H, W) float32 (its tile's; NaN where no input is valid or no class was generated) and
    the scene's u (the mean over tiles), for the class map `classes` (H, W) of `target` generated from
    `sources` (`cogen.pipeline` sources on its grid). The tiles are whole 32 px squares side by side, the last
    of a row or column moved back inside the scene (scenes smaller than a tile are padded as invalid)."""
    from .data.dataset import to_model_space

    reg = bundle.registry
    lulc = reg[target]
    srcs = {m: s for m, s in sources.items() if m in fit.spread and not reg[m].is_categorical}
    H, W = classes.shape
    T = fit.tile
    out = np.full((H, W), np.nan, np.float32)
    if not srcs:
        return out, float("nan")
    tiles = []
    cols = anchored_starts(W, T, 0)
    for r in anchored_starts(H, T, 0):
        cs = {}
        ys = []
        for c in cols:
            cl = np.full((T, T), -1, np.int64)
            blk = classes[r : r + T, c : c + T]
            cl[: blk.shape[0], : blk.shape[1]] = blk
            good = np.isin(cl, lulc.class_ids) & (cl != (nodata if nodata is not None else -1))
            ys.append(to_model_space(lulc, cl[None], good)[0])
        y = torch.stack(ys)
        for m, s in srcs.items():
            given = s.given
            xs, vs = [], []
            for c in cols:
                raw, ok = s.read(r, c, T, T)
                x, v = to_model_space(s.modality, raw, ok, given)
                xs.append(x)
                vs.append(v)
            cs[m] = tile_fit(bundle, device, m, torch.stack(xs), torch.stack(vs), given, target, y, fit.level, seed,
                             batch)
        u = fit.u(cs)
        for j, c in enumerate(cols):
            out[r : r + T, c : c + T] = u[j]
            if np.isfinite(u[j]):
                tiles.append(float(u[j]))
    has_class = np.isin(classes, lulc.class_ids)
    out = np.where(has_class, out, np.nan).astype(np.float32)
    return out, float(np.mean(tiles)) if tiles else float("nan")


def fit_logistic(a: np.ndarray, u: np.ndarray, right: np.ndarray, iters: int = 50,
                 ridge: float = 1e-3) -> tuple[float, float, float]:
    """Maximum-likelihood weights (w0, w1, w2) of p(right) = sigmoid(w0 + w1 logit(a) + w2 u), by Newton steps
    with a small ridge (pixels: agreement a, tile u, whether the class is right). A map that fits its inputs
    worse is never more likely right: where the fit gives u a positive weight, u is left out (w2 = 0) and the
    other two are fitted again."""
    w = _newton(a, u, right, iters, ridge, use_u=True)
    if w[2] > 0:
        w = _newton(a, u, right, iters, ridge, use_u=False)
    return float(w[0]), float(w[1]), float(w[2])


def _newton(a, u, right, iters: int, ridge: float, use_u: bool) -> np.ndarray:
    X = np.stack([np.ones_like(a, np.float64), logit(a), np.nan_to_num(np.asarray(u, np.float64))], axis=1)
    if not use_u:
        X[:, 2] = 0.0
    y = np.asarray(right, np.float64)
    w = np.zeros(3)
    for _ in range(iters):
        p = 1 / (1 + np.exp(-(X @ w)))
        g = X.T @ (p - y) + ridge * w
        Hm = (X * (p * (1 - p))[:, None]).T @ X + ridge * np.eye(3)
        step = np.linalg.solve(Hm, g)
        w = w - step
        if np.abs(step).max() < 1e-8:
            break
    return w


def ece(conf: np.ndarray, right: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: the mean over equal-width confidence bins of |accuracy - confidence|, weighted
    by the bins' pixel counts."""
    conf, right = np.asarray(conf, np.float64), np.asarray(right, np.float64)
    idx = np.clip((conf * bins).astype(int), 0, bins - 1)
    tot = 0.0
    for b in range(bins):
        s = idx == b
        if s.any():
            tot += s.sum() * abs(right[s].mean() - conf[s].mean())
    return float(tot / max(len(conf), 1))


HELD_OUT = "the labelled test regions, rows 0-111, of the places trained on; 4 samples a map"  # what calibrates
SUBSETS = (("S2L2A",), ("S2L1C",), ("S1RTC",), ("S2L2A", "S1RTC", "DEM"))  # inputs the calibration segments from


def labelled_runs(pipe, data, rows: tuple[int, int], subsets=SUBSETS, samples: int = 4, target: str = "LULC",
                  seed: int = 0, split_file=None) -> list[dict]:
    """The model's maps of the labelled held-out regions (the test regions of `split_file`, default
    configs/split.yaml, of the places trained on, `rows` of them) from each input subset: per run the classes,
    the agreement, the truth and c of every tile and input."""
    from .novelty import shipped_regions

    b = pipe.bundle
    mods = sorted({m for s in subsets for m in s})
    regions = shipped_regions(b, data, [*mods, target], rows, "test", split_file)
    by_scene = {m: {s.scene: s for s in regions[m]} for m in regions}
    runs = []
    for subset in subsets:
        for scene, truth_src in by_scene[target].items():
            if not all(scene in by_scene[m] for m in subset):
                continue
            srcs = {m: by_scene[m][scene] for m in subset}
            res = pipe(srcs, [target], samples=samples, seed=seed, progress=False)[target]
            truth = truth_src.read(0, 0, truth_src.height, truth_src.width)[0][0]
            runs.append({"subset": subset, "scene": scene, "classes": res.classes, "agreement": res.confidence,
                         "truth": truth, "c": tile_cs(b, pipe.device, srcs, target, res.classes, seed)})
    return runs


def tile_cs(bundle, device, sources, target: str, classes: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """{input: c of each pixel's tile (H, W)} for a class map (as `scene_fit`, before standardising)."""
    reg = bundle.registry
    out = {}
    for m, s in sources.items():
        if reg[m].is_categorical:
            continue
        ident = MapFit({m: (0.0, 1.0)}, (0.0, 0.0, 0.0))  # u = c
        out[m], _ = scene_fit(bundle, device, {m: s}, target, classes, ident, seed=seed)
    return out


def pixels(runs: list[dict], fit: MapFit | None, target_ids, step: int = 2):
    """(agreement, u, right) of the labelled pixels of `runs` (every `step`-th row and column); u from `fit`."""
    a, u, right = [], [], []
    for r in runs:
        ok = np.isin(r["truth"], target_ids) & np.isfinite(r["agreement"])
        sel = np.zeros_like(ok)
        sel[::step, ::step] = True
        ok &= sel
        if fit is not None:
            uu = fit.u({m: c[ok] for m, c in r["c"].items()})
        else:
            uu = np.zeros(ok.sum())
        a.append(r["agreement"][ok])
        u.append(uu)
        right.append(r["classes"][ok] == r["truth"][ok])
    return np.concatenate(a), np.concatenate(u), np.concatenate(right)


def calibrate_map_fit(runs: list[dict], target_ids, quantile: float = 0.95, source: dict | None = None) -> MapFit:
    """The map-fit calibration from `labelled_runs` of held-out regions: each input's median and `quantile` of c
    over its tiles, then the logistic weights on their pixels."""
    spread = {}
    for m in sorted({m for r in runs for m in r["c"]}):
        # one value a tile: c is constant over a tile's pixels
        vals = np.concatenate([np.unique(r["c"][m][np.isfinite(r["c"][m])]) for r in runs if m in r["c"]])
        spread[m] = (float(np.median(vals)), float(np.quantile(vals, quantile)))
    fit = MapFit(spread, (0.0, 1.0, 0.0), source=source)
    a, u, right = pixels(runs, fit, target_ids)
    by_inputs = {}
    for subset in sorted({r["subset"] for r in runs}):
        own = [r for r in runs if r["subset"] == subset]
        by_inputs[inputs_key(subset)] = fit_logistic(*pixels(own, fit, target_ids))
    return MapFit(spread, fit_logistic(a, u, right), source={**(source or {}), "pixels": int(len(a)),
                                                              "runs": len(runs)}, by_inputs=by_inputs)

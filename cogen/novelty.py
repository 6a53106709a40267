"""Novelty: how unlike what the model learned a scene is, measured by the model itself.

For each given input, every token of the model (a p x p patch) gets four numbers from the model:
- how well the model denoises the input on its own at three noise levels (t = 0.3, 0.6, 0.9): the log of the
  squared error of its clean estimate, over the token's pixels and the input's given bands;
- how far the model's embedding of the token lies from the nearest of a bank of embedded training tokens (log).

A familiar input behaves as held-out parts of the training places do (the top half of the shipped scenes' test
columns, `python -m cogen.novelty`, written into the checkpoint). Two scores measure how far it is from that:
the root mean square of the denoising errors' standardised deviations, *both ways*, and the embedding distance's
deviation *above* its mean; each is divided by its 95th percentile on the held-out regions and the larger one
counts. The denoising errors alone call smooth, simple scenes (a constant image, a winter field) *more* familiar
than the training places, because those are easier to denoise: hence both ways. The embedding distance catches
spectra and textures the model never read; the denoising errors catch inputs the model reads but does not know
how to denoise (a radar composite without speckle).

- novelty.tif: each token's score on the pixel grid (the larger over inputs); 1 is the held-out regions' 95th
  percentile;
- scene_score: the score of the tile-mean numbers (32 px tiles, the training crop; the larger over inputs),
  averaged over tiles; the scene is unfamiliar above the held-out tiles' 95th percentile plus a margin.
"""
from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from .errors import CheckpointError, UsageError, cli_exit
from .io import atomic_path
from .tiling import anchored_starts

FILE, BANK_FILE = "novelty.json", "novelty.safetensors"
TILE = 32  # the training crop: the context the model knows
LEVELS = (0.3, 0.6, 0.9)
BANK = 1024  # embedded training tokens kept per modality
EPS = 1e-8


@dataclass(frozen=True)
class Stats:
    """Per-feature mean and spread of the feature vectors of familiar data, and the 95th percentiles of its two
    deviation scores; `distance` is the larger of the two, each over its percentile (1 = the familiar data's 95th
    percentile): the root mean square of the denoising errors' standardised deviations, both ways (too easy is as
    unlike the training places as too hard), and the embedding distance's deviation above its mean only (tokens
    of the training data itself lie in the bank, nearer than any other)."""

    mean: np.ndarray
    std: np.ndarray
    scale: tuple[float, float] = (1.0, 1.0)  # the 95th percentiles of the two scores on the familiar data

    def _scores(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = (np.asarray(x, np.float64) - self.mean) / self.std
        return np.sqrt((z[..., :-1] ** 2).mean(axis=-1)), np.maximum(z[..., -1], 0.0)

    @classmethod
    def fit(cls, x: np.ndarray, quantile: float = 0.95) -> "Stats":
        x = np.asarray(x, np.float64)
        s = cls(x.mean(axis=0), np.maximum(x.std(axis=0), 1e-6))
        den, emb = s._scores(x)
        return cls(s.mean, s.std, (max(float(np.quantile(den, quantile)), 1e-6),
                                   max(float(np.quantile(emb, quantile)), 1e-6)))

    def distance(self, x: np.ndarray) -> np.ndarray:
        den, emb = self._scores(x)
        return np.maximum(den / self.scale[0], emb / self.scale[1])

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d) -> "Stats":
        return cls(np.asarray(d["mean"], np.float64), np.asarray(d["std"], np.float64), tuple(d["scale"]))


@dataclass(frozen=True)
class Calibration:
    banks: dict[str, torch.Tensor]  # {modality: (BANK, D) embedded training tokens}
    tokens: dict[str, Stats]  # per-token feature statistics of the calibration regions
    tiles: dict[str, Stats]  # tile-mean feature statistics
    threshold: float  # scene scores above it are unfamiliar
    pixel_scale: float  # the 95th percentile of the held-out tokens' scores: confidence falls above it
    levels: tuple[float, ...] = LEVELS
    tile: int = TILE
    seed: int = 0
    source: dict[str, Any] = field(default_factory=dict)
    map_fit: Any = None  # cogen.mapfit.MapFit: a class map's confidence from its fit to the inputs (None: agreement)

    @property
    def modalities(self) -> list[str]:
        return list(self.tokens)

    @classmethod
    def load(cls, bundle_path: str | Path | None) -> "Calibration | None":
        if bundle_path is None or not (Path(bundle_path) / FILE).is_file():
            return None
        p = Path(bundle_path) / FILE
        try:
            from safetensors.torch import load_file

            d = json.loads(p.read_text())
            banks = {m: v.float() for m, v in load_file(str(Path(bundle_path) / BANK_FILE)).items()}
            from .mapfit import MapFit

            return cls(banks, {m: Stats.from_dict(v) for m, v in d["tokens"].items()},
                       {m: Stats.from_dict(v) for m, v in d["tiles"].items()}, float(d["threshold"]),
                       float(d["pixel_scale"]), tuple(float(t) for t in d["levels"]), int(d["tile"]),
                       int(d.get("seed", 0)), dict(d.get("source", {})),
                       MapFit.from_dict(d["map_fit"]) if d.get("map_fit") else None)
        except Exception as e:  # a damaged or foreign file: one line that says how to mend it
            raise CheckpointError(f"{p}: not a novelty calibration ({type(e).__name__}: {str(e)[:120]}); run "
                                  f"python -m cogen.novelty --checkpoint {bundle_path}") from None

    def save(self, bundle_path: str | Path) -> Path:
        from safetensors.torch import save_file

        from .checkpoint import write_manifest

        d = Path(bundle_path)
        with atomic_path(d / BANK_FILE) as tmp:
            save_file({m: b.half().contiguous() for m, b in self.banks.items()}, str(tmp))
        doc = {"tokens": {m: s.to_dict() for m, s in self.tokens.items()},
               "tiles": {m: s.to_dict() for m, s in self.tiles.items()}, "threshold": self.threshold,
               "pixel_scale": self.pixel_scale, "levels": list(self.levels), "tile": self.tile, "seed": self.seed,
               "source": self.source, **({"map_fit": self.map_fit.to_dict()} if self.map_fit is not None else {})}
        with atomic_path(d / FILE) as tmp:
            tmp.write_text(json.dumps(doc, indent=1) + "\n")
        write_manifest(d)
        return d / FILE


# ---- the model's numbers for each token ---------------------------------------------------------------------
@torch.no_grad()
def embed_tokens(model, m: str, z: torch.Tensor, given: torch.Tensor | None = None) -> torch.Tensor:
    """(n, c, h, w) latents -> (n, N, D): the model's patch embedding of each token (missing bands zeroed)."""
    p = model.patch_size(m)
    if given is not None:
        z = z * given[None, :, None, None].to(z.dtype)
    return model.embed[m](rearrange(z, "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=p))


def given_mask(given: np.ndarray | None, C: int, device) -> torch.Tensor:
    """(C,) bool: the bands of an input that are given (all when `given` is None or not of C bands)."""
    if given is not None and len(given) == C:
        return torch.from_numpy(np.asarray(given, bool)).to(device)
    return torch.ones(C, dtype=torch.bool, device=device)


@torch.no_grad()
def x0_error(model, diff, m: str, z: torch.Tensor, zt: torch.Tensor, t: torch.Tensor, g: torch.Tensor, batch: int,
             extra: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """The squared error of the model's clean estimate of input m from its noised latent zt (n, c, h, w) at times
    t (n,), averaged over the given bands g: (n, h, w). `extra`: other modalities' clean latents given beside
    it (at time 0). Batches of `batch` tiles."""
    bands = None if bool(g.all()) else g[None].expand(z.shape[0], -1)
    est = []
    for i in range(0, z.shape[0], batch):
        sl = slice(i, i + batch)
        inp, tt = {m: zt[sl]}, {m: t[sl]}
        for k, v in (extra or {}).items():
            inp[k], tt[k] = v[sl], torch.zeros_like(t[sl])
        o = model(inp, tt, bands=None if bands is None else {m: bands[sl]})[m]
        est.append(diff.predict_x0(zt[sl], o, t[sl]))
    chan = g.float()
    return ((torch.cat(est) - z) ** 2 * chan[None, :, None, None]).sum(dim=1) / chan.sum()


@torch.no_grad()
def token_features(bundle, device, m: str, x: torch.Tensor, ok: torch.Tensor, given: np.ndarray | None,
                   levels, seed: int, bank: torch.Tensor | None, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Model-space tiles (n, C, T, T) of input m and their valid mask (n, T, T) -> features (n, gh, gw, K) of each
    token (K = levels + 1 with a bank) and (n, gh, gw) whether the token's pixels are all valid."""
    model, tok, diff = bundle.model, bundle.tokenizers[m], bundle.diffusion
    p = model.patch_size(m)
    z = tok.encode(x.to(device))
    n, C, h, w = z.shape
    g = given_mask(given, C, device)
    feats = []
    for li, t in enumerate(levels):
        gen = torch.Generator().manual_seed(seed * 1009 + li)
        eps = torch.randn(z.shape, generator=gen).to(device)
        tt = torch.full((n,), float(t), device=device)
        e = x0_error(model, diff, m, z, diff.add_noise(z, eps, tt), tt, g, batch)  # (n, h, w)
        feats.append(torch.log(F.avg_pool2d(e[:, None], p)[:, 0] + EPS))  # (n, gh, gw)
    if bank is not None:
        emb = embed_tokens(model, m, z, g)  # (n, N, D)
        d = torch.cdist(emb.reshape(-1, emb.shape[-1]).float(), bank.to(device)).min(dim=1).values
        feats.append(torch.log(d.reshape(n, h // p, w // p) + EPS))
    valid = tok.latent_valid(ok.to(device).bool())
    valid = F.avg_pool2d((~valid).float()[:, None], p)[:, 0] < 1e-6  # a token of valid cells only
    return torch.stack(feats, dim=-1).cpu(), valid.cpu()


def tile_means(f: torch.Tensor, valid: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Token features (n, gh, gw, K) and their validity (n, gh, gw) -> each tile's mean feature over its valid
    tokens (n, K) and its count of valid tokens (n,)."""
    cnt = valid.sum(dim=(1, 2))
    return ((f * valid[..., None]).sum(dim=(1, 2)) / cnt.clamp(min=1)[:, None]).numpy(), cnt.numpy()


@dataclass
class Novelty:
    scene_score: float
    threshold: float
    unfamiliar: bool
    map: np.ndarray  # (H, W) float32 token distance on the scene grid, NaN where no input is valid
    pixel_scale: float = 0.0
    tile_scores: list[float] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"scene_score": round(self.scene_score, 4), "threshold": round(self.threshold, 4),
                "unfamiliar": self.unfamiliar}

    def familiarity(self, top: int, n: int) -> np.ndarray:
        """(n, W) rows [top, top + n) of the map as the factor a class map's confidence is multiplied by."""
        return familiarity(self.map[top : top + n], self.pixel_scale)

    def warning(self) -> str:
        return (f"warning: this scene is unlike what the model learned (novelty {self.scene_score:.2f} > "
                f"{self.threshold:.2f}); its outputs may be wrong however sure they look; novelty.tif shows where")


def familiarity(novelty: np.ndarray, pixel_scale: float) -> np.ndarray:
    """(H, W) factor in (0, 1] that a class map's confidence is multiplied by: 1 up to `pixel_scale` (the 95th
    percentile of the calibration tokens), halving for each unit of distance above it; 1 where it is unknown."""
    return np.exp2(-np.clip(np.nan_to_num(novelty - pixel_scale, nan=0.0), 0, None)).astype(np.float32)


def scene_novelty(bundle, device, sources: Mapping[str, Any], cal: Calibration, masks: Mapping[str, Any] | None = None,
                  writer=None, batch: int = 64) -> Novelty:
    """The novelty of a scene's inputs (`cogen.pipeline` sources on one grid): the map, computed by row bands of
    `cal.tile` pixels (each band also written to `writer.write(arr, window)` if given) and held in memory (4
    bytes a pixel), and the scene score. masks: {m: MaskSource or (H, W) bool}: pixels of m left out (clouds)."""
    from rasterio.windows import Window

    from .data.dataset import to_model_space
    from .pipeline.sources import read_mask

    srcs = {m: s for m, s in sources.items() if m in cal.tokens}
    if not srcs:
        raise UsageError(f"novelty: no input is one the calibration knows ({', '.join(cal.modalities)})")
    first = next(iter(srcs.values()))
    H, W, T = first.height, first.width, cal.tile
    full = np.full((H, W), np.nan, np.float32)
    tile_scores, weights, done = [], [], 0
    cols = anchored_starts(W, T, 0)  # whole tiles side by side, the last moved back inside the scene
    for r in anchored_starts(H, T, 0):
        dist_px, tile_d, tile_w = [], [], []
        for m, s in srcs.items():
            given = None if s.modality.is_categorical else s.given
            xs, vs = [], []
            for c in cols:
                raw, ok = s.read(r, c, T, T)
                if masks and m in masks:
                    ok = ok & ~read_mask(masks[m], r, c, T, T)
                x, v = to_model_space(s.modality, raw, ok, given)
                xs.append(x)
                vs.append(v)
            f, val = token_features(bundle, device, m, torch.stack(xs), torch.stack(vs), given, cal.levels, cal.seed,
                                    cal.banks.get(m), batch)
            d = cal.tokens[m].distance(f.numpy())  # (n, gh, gw)
            d = np.where(val.numpy(), d, np.nan)
            up = T // d.shape[-1]
            dist_px.append(np.repeat(np.repeat(d, up, axis=1), up, axis=2))
            mean_f, cnt = tile_means(f, val)
            tile_d.append(np.where(cnt > 0, cal.tiles[m].distance(mean_f), np.nan))
            tile_w.append(cnt / val[0].numel())
        with warnings.catch_warnings():  # a pixel no input holds stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            nov = np.nanmax(np.stack(dist_px), axis=0)  # the least familiar input counts
            td = np.nanmax(np.stack(tile_d), axis=0)
        tw = np.max(np.stack(tile_w), axis=0)
        band = np.full((min(T, H - r), W), np.nan, np.float32)
        for j, c in enumerate(cols):
            band[:, c : c + min(T, W - c)] = nov[j, : band.shape[0], : min(T, W - c)]
            if np.isfinite(td[j]):
                tile_scores.append(float(td[j]))
                weights.append(float(tw[j]))
        rows = band[done - r :]  # the last band moved back: only rows not written yet
        if writer is not None:
            writer.write(rows[None], Window(0, done, W, rows.shape[0]))
        full[done : done + rows.shape[0]] = rows
        done += rows.shape[0]
    score = float(np.average(tile_scores, weights=weights)) if tile_scores and sum(weights) > 0 else float("nan")
    return Novelty(score, cal.threshold, bool(score > cal.threshold), full, cal.pixel_scale, tile_scores)


# ---- calibration ----------------------------------------------------------------------------------------------
def _tiles(src, T: int, stride: int):
    """Whole tiles of a source with every pixel valid: [(x, ok)] in model space."""
    from .data.dataset import to_model_space

    out = []
    for r in range(0, src.height - T + 1, stride):
        for c in range(0, src.width - T + 1, stride):
            raw, ok = src.read(r, c, T, T)
            if ok.all():
                out.append(to_model_space(src.modality, raw, ok, None if src.modality.is_categorical else src.given))
    return out


def calibrate(bundle, device, train: Mapping[str, list], held_out: Mapping[str, list], levels=LEVELS,
              tile: int = TILE, seed: int = 0, quantile: float = 0.95, margin: float = 0.25,
              source: dict | None = None) -> Calibration:
    """train / held_out: {modality: [pipeline Source]}: the training regions (for the bank of embedded tokens)
    and held-out regions of the training places (for the statistics and the threshold).

    The threshold is the `quantile` of the held-out tiles' scores plus `margin`; the pixel scale the `quantile` of
    the held-out tokens' distances."""
    model = bundle.model
    g = torch.Generator().manual_seed(seed)
    banks, tok_stats, tile_stats, tile_d, tok_d = {}, {}, {}, [], []
    for m, srcs in held_out.items():
        tr = [t for s in train.get(m, []) for t in _tiles(s, tile, tile)]
        if not tr:
            continue
        z = bundle.tokenizers[m].encode(torch.stack([x for x, _ in tr]).to(device))
        emb = embed_tokens(model, m, z).reshape(-1, model.config.hidden_size).float()
        banks[m] = emb[torch.randperm(len(emb), generator=g)[:BANK]].cpu()
        ho = [t for s in srcs for t in _tiles(s, tile, tile // 4)]
        x = torch.stack([a for a, _ in ho])
        v = torch.stack([b for _, b in ho])
        given = None if bundle.registry[m].is_categorical else srcs[0].given
        f, val = token_features(bundle, device, m, x, v, given, levels, seed, banks[m])
        ft = f[val].numpy()
        tok_stats[m] = Stats.fit(ft)
        mean_f, _ = tile_means(f, val)
        tile_stats[m] = Stats.fit(mean_f)
        tok_d.append(tok_stats[m].distance(ft))
        tile_d.append(tile_stats[m].distance(mean_f))
    if not tok_stats:
        raise UsageError("novelty: no modality has both training and held-out tiles to calibrate on")
    td = np.concatenate(tile_d)
    return Calibration(banks, tok_stats, tile_stats, float(np.quantile(td, quantile)) + margin,
                       float(np.quantile(np.concatenate(tok_d), quantile)), tuple(levels), tile, seed,
                       {**(source or {}), "held_out_tiles": int(len(td)), "quantile": quantile, "margin": margin})


def roc_auc(negatives, positives) -> float:
    """The probability that a random positive scores above a random negative (ties count one half)."""
    neg, pos = np.asarray(negatives, float), np.asarray(positives, float)
    if not len(neg) or not len(pos):
        return float("nan")
    return float((pos[:, None] > neg[None]).mean() + 0.5 * (pos[:, None] == neg[None]).mean())


def shipped_regions(bundle, data: Path | Sequence[Path], modalities: list[str], rows: tuple[int, int] | None,
                    split: str, split_file: str | Path | None = None) -> dict[str, list]:
    """{modality: [Source]} of the scenes of `data` (one dataset folder or several) restricted to a split of
    `split_file` (default configs/split.yaml; `train` or `test`) and, if given, to `rows` of it; each Source is an
    array of that region. Only places the model trained on count: a scene the training split excludes (a place
    held out whole) is left out of either split, and so is a file that holds some of its modality's bands only."""
    from .data.dataset import load_split
    from .io import read_raster
    from .pipeline.sources import ArraySource

    split_file = Path(split_file) if split_file else Path(__file__).resolve().parent.parent / "configs" / "split.yaml"
    region, regions = load_split(split_file, split)
    t_region, t_regions = load_split(split_file, "train")
    roots = [Path(data)] if isinstance(data, (str, Path)) else [Path(d) for d in data]
    out: dict[str, list] = {m: [] for m in modalities}
    for root in roots:
        for m in modalities:
            for f in sorted((root / m).glob("*.tif")):
                if t_regions.excluded(f.stem, t_region) or regions.excluded(f.stem, region):
                    continue
                raw, _ = read_raster(f)
                if raw.shape[0] != bundle.registry[m].num_bands:
                    continue  # some of its modality's bands only: the statistics are of whole inputs
                w = regions.get(f.stem, region).window(raw.shape[1], raw.shape[2])
                a = raw[:, int(w.row_off) : int(w.row_off + w.height), int(w.col_off) : int(w.col_off + w.width)]
                if rows is not None:
                    a = a[:, rows[0] : rows[1]]
                if a.shape[1] and a.shape[2]:
                    arr = ArraySource(bundle.registry[m], a)
                    arr.scene = f.stem  # which scene it is a region of
                    out[m].append(arr)
    return out


@cli_exit
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Calibrate a checkpoint's novelty score and write novelty.json and "
                                "novelty.safetensors into it: the bank of embedded tokens from the training regions "
                                "of the places it trained on, the statistics and threshold from rows 0-111 of their "
                                "held-out test regions (configs/split.yaml).")
    p.add_argument("--checkpoint", default=None, help="cogen bundle (default: the shipped demo model)")
    p.add_argument("--data", action="append", default=None,
                   help="a dataset folder (repeatable; default: data/terramind-examples and data/more-real)")
    p.add_argument("--modalities", default=None, help="inputs to calibrate, comma-separated (default: every "
                   "continuous modality of the checkpoint that the scenes hold)")
    p.add_argument("--split-file", default=None, help="the split of the data (train and test regions, as "
                   "configs/split.yaml, the default); the calibration uses rows 0-111 of the test regions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-map-fit", action="store_true", help="leave out the class maps' confidence calibration "
                   "(cogen.mapfit: the model's maps of the labelled held-out regions from 4 input subsets, "
                   "about 8 minutes on two cores)")
    a = p.parse_args(argv)
    from .checkpoint import DEFAULT_CHECKPOINT, REPO_ROOT, load_bundle

    torch.manual_seed(a.seed)
    path = Path(a.checkpoint) if a.checkpoint else DEFAULT_CHECKPOINT
    bundle = load_bundle(path)
    data = [Path(d) for d in a.data] if a.data else [REPO_ROOT / "data" / "terramind-examples",
                                                      REPO_ROOT / "data" / "more-real"]
    mods = ([m.strip() for m in a.modalities.split(",") if m.strip()] if a.modalities else
            [m for m in bundle.model.names if any((d / m).is_dir() for d in data)])
    sf = a.split_file
    train, held = (shipped_regions(bundle, data, mods, None, "train", sf),
                   shipped_regions(bundle, data, mods, (0, 112), "test", sf))
    mods = [m for m in mods if train[m] and held[m]]
    cal = calibrate(bundle, "cpu", {m: train[m] for m in mods}, {m: held[m] for m in mods}, seed=a.seed,
                    source={"bank": f"the training regions ({sf or 'configs/split.yaml'}) of " + ", ".join(map(str, data)),
                            "held_out": "the test regions, rows 0-111, of the places trained on", "modalities": mods})
    target = next((m for m in bundle.model.names if bundle.registry[m].is_categorical), None)
    if not a.no_map_fit and target is not None:
        from dataclasses import replace

        from .mapfit import HELD_OUT, calibrate_map_fit, labelled_runs
        from .pipeline import CogenPipeline

        runs = labelled_runs(CogenPipeline(bundle, torch.device("cpu")), data, (0, 112), target=target, seed=a.seed,
                             split_file=sf)
        if runs:
            cal = replace(cal, map_fit=calibrate_map_fit(runs, bundle.registry[target].class_ids,
                                                         source={"held_out": HELD_OUT}))
            print(f"map fit: weights {', '.join(f'{w:.3f}' for w in cal.map_fit.weights)} "
                  f"({cal.map_fit.source['pixels']} pixels of {len(runs)} maps)")
    print(f"wrote {cal.save(path)}: threshold {cal.threshold:.3f}, pixel scale {cal.pixel_scale:.3f} "
          f"({cal.source['held_out_tiles']} held-out tiles, {', '.join(cal.modalities)})")


if __name__ == "__main__":
    main()

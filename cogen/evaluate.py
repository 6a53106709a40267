r"""Score a checkpoint on any directions, with baselines, and write results.json and a results page.

    python -m cogen.evaluate --checkpoint checkpoints/demo --data data/terramind-examples --split test \
        --direction "S1RTC->S2L2A" --direction "S2L2A->LULC" --samples 8 --steps 10 \
        --baseline mean --baseline-checkpoint checkpoints/regression --robustness LULC:S2L2A,S1RTC,DEM \
        --cloud-removal --sweep "S1RTC->S2L2A" --out results.json --report docs/RESULTS.md

Everything is in physical units over valid pixels. Continuous targets: MAE, RMSE, PSNR, SSIM, SAM (spectral
modalities) for one sample and for the per-pixel mean of N; diversity (mean per-pixel std); realism (1-D
Wasserstein distance of per-band histograms, high-frequency power of a sample over the truth's). Class maps:
pixel accuracy, mIoU, per-class IoU of the majority of N samples, and the calibration (ECE) of its confidence.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .data.dataset import discover, load_split
from .errors import UsageError, cli_exit
from .flags import add_sampling_flags, apply_sampling_flags
from .io import atomic_path, file_valid, read_raster, write_json
from .metrics import (confusion, ece_np, hf_power_ratios, iou_per_class, mae_np, psnr_np, rmse_np, sam_np, ssim_np,
                      wasserstein_per_band)
from .registry import Registry, default_registry

FIG_DIR = "figures"


def parse_direction(s: str) -> tuple[list[str], list[str]]:
    if "->" not in s:
        raise UsageError(f"direction {s!r}: expected 'A,B->C', e.g. 'S1RTC,DEM->S2L2A'")
    a, b = s.split("->", 1)
    cond = [m.strip() for m in a.split(",") if m.strip()]
    tgt = [m.strip() for m in b.split(",") if m.strip()]
    if not tgt:
        raise UsageError(f"direction {s!r}: no target after '->'")
    both = set(cond) & set(tgt)
    if both:
        raise UsageError(f"direction {s!r}: {', '.join(sorted(both))} is both condition and target")
    return cond, tgt


class Split:
    """The raw arrays of every scene's region of one split (small evaluation splits fit in memory)."""

    def __init__(self, root: str | Path, registry: Registry, split_file: str | None, split: str | None,
                 modalities: Sequence[str] | None = None, cols: tuple[int, int] | None = None):
        """Reads every modality of every scene, or only `modalities`; `cols` instead of a split: these columns
        of every scene."""
        from .data.dataset import Region

        self.registry = registry
        self.files = discover(root, registry)
        default, regions = load_split(split_file, split) if split else (None, {})
        default = Region(cols=cols) if cols is not None else (default or Region())
        self.arrays: dict[str, dict[str, np.ndarray]] = {}
        self.valid: dict[str, dict[str, np.ndarray]] = {}
        self.offsets: dict[str, tuple[int, int]] = {}  # (row, col) of each region in its scene
        for sid, mods in sorted(self.files.items()):
            for m, p in mods.items():
                if modalities is not None and m not in modalities:
                    continue
                with __import__("rasterio").open(p) as src:
                    win = regions.get(sid, default).window(src.height, src.width)
                raw, _ = read_raster(p, window=win)
                self.offsets[sid] = (int(win.row_off), int(win.col_off))
                self.arrays.setdefault(sid, {})[m] = raw
                self.valid.setdefault(sid, {})[m] = registry[m].valid_mask(raw) & file_valid(p, raw, win)
        self.scenes = sorted(self.arrays)

    def with_all(self, mods: Sequence[str]) -> list[str]:
        return [s for s in self.scenes if all(m in self.arrays[s] for m in mods)]

    def model_space(self, m: str) -> list[tuple]:
        """(model-space tensor, valid mask) of modality `m` for every scene that has it."""
        from .data.dataset import to_model_space

        return [to_model_space(self.registry[m], self.arrays[s][m], self.valid[s][m]) for s in self.with_all([m])]


def _phys(reg: Registry, m: str, raw: np.ndarray) -> np.ndarray:
    mod = reg[m]
    return raw.astype(np.float64) * mod.scale + mod.offset


def continuous_scores(reg: Registry, m: str, truth: np.ndarray, sample: np.ndarray, mean: np.ndarray | None,
                      std: np.ndarray | None, ok: np.ndarray) -> dict[str, Any]:
    """truth, sample, mean: (C,H,W) physical; ok: (H,W) valid pixels."""
    mod = reg[m]
    rng = mod.data_range or float(np.nanmax(truth[:, ok]) - np.nanmin(truth[:, ok]))
    out: dict[str, Any] = {}
    for name, pred in (("sample", sample), ("mean", mean)):
        if pred is None:
            continue
        p, t = pred[:, ok], truth[:, ok]
        s = {"MAE": mae_np(p, t), "RMSE": rmse_np(p, t), "PSNR": psnr_np(p, t, rng), "SSIM": ssim_np(pred, truth, rng)}
        if mod.spectral:
            s["SAM"] = sam_np(p, t)
        out[name] = s
    if std is not None:
        out["diversity"] = float(np.mean(std[:, ok]))
    out["wasserstein"] = wasserstein_per_band(sample[:, ok], truth[:, ok])
    out["hf_power_ratio"], out["hf_power_ratio_per_band"] = hf_power_ratios(sample, truth)
    return out


def _pool(per_scene: list[dict], weights: list[int]) -> dict:
    """Pixel-weighted mean of each figure; PSNR pooled from the pooled MSE (RMSE), not averaged in dB."""
    def rec(keys_src: list[dict]) -> Any:
        first = keys_src[0]
        if isinstance(first, dict):
            return {k: rec([d[k] for d in keys_src]) for k in first if all(k in d for d in keys_src)}
        if isinstance(first, list):  # per-band figures
            return [float(np.average(col, weights=weights)) for col in zip(*keys_src)]
        return float(np.average(keys_src, weights=weights))
    pooled = rec(per_scene)
    for name in ("sample", "mean"):
        if name in pooled and "RMSE" in pooled[name]:
            mse = np.average([d[name]["RMSE"] ** 2 for d in per_scene], weights=weights)
            ranges = [10 ** (d[name]["PSNR"] / 20) * d[name]["RMSE"] for d in per_scene]  # data range per scene
            pooled[name]["RMSE"] = float(np.sqrt(mse))
            pooled[name]["PSNR"] = float(10 * np.log10(np.average(np.square(ranges), weights=weights) / mse))
    return pooled


def class_scores(reg: Registry, m: str, truth: np.ndarray, pred: np.ndarray, conf: np.ndarray | None) -> dict:
    mod = reg[m]
    cm = confusion(pred, truth, mod.class_ids)
    iou = iou_per_class(cm)
    out = {"pixel_accuracy": float(np.trace(cm) / max(cm.sum(), 1)), "mIoU": float(np.nanmean(iou)),
           "per_class_IoU": {mod.classes[i].name: (None if np.isnan(v) else float(v)) for i, v in enumerate(iou)},
           "confusion": cm.tolist()}
    if conf is not None:
        ok = np.isin(truth, mod.class_ids) & np.isfinite(conf)
        out["ECE"] = ece_np(conf[ok], (pred == truth)[ok])
    return out


class Evaluator:
    def __init__(self, split: Split, registry: Registry, samples: int, steps: int, sampler: str, tile: int,
                 overlap: int, seed: int, batch: int, fig_dir: Path | None):
        self.split, self.reg = split, registry
        self.samples, self.steps, self.sampler = samples, steps, sampler
        self.tile, self.overlap, self.seed, self.batch = tile, overlap, seed, batch
        self.tile_by_target: dict[str, list[int]] = {}  # as SampleConfig.tile_by_target
        self.tile_regenerate: list[int] = []  # as SampleConfig.tile_regenerate
        self.fig_dir = fig_dir

    def tiling(self, targets, regenerate: bool = False, given=()) -> tuple[int, int]:
        """(tile, overlap) of a call with these targets and given modalities, the same for every method."""
        from .pipeline import default_tiling

        return default_tiling(self, list(targets), regenerate, image_given=self.reg.has_image(given))

    # -- one direction, one predictor ---------------------------------------------------------------------
    def run(self, predictor, cond: list[str], tgt: list[str], label: str, samples: int | None = None,
            figure: bool = False, steps: int | None = None, sampler: str | None = None) -> dict:
        scenes = self.split.with_all(cond + tgt)
        per_target: dict[str, list] = {m: [] for m in tgt}
        weights: dict[str, list] = {m: [] for m in tgt}
        confs: dict[str, list] = {m: [] for m in tgt}
        fig_rows = []
        for si, sid in enumerate(scenes):
            arrays = self.split.arrays[sid]
            res = predictor(sid, {m: arrays[m] for m in cond}, tgt, samples or self.samples, steps, sampler)
            for m in tgt:
                truth_raw, ok = arrays[m], self.split.valid[sid][m]
                r = res[m]
                if self.reg[m].is_categorical:
                    cm_pred = np.where(ok, r["classes"], 0)
                    per_target[m].append((truth_raw[0], cm_pred, r.get("confidence")))
                else:
                    truth = _phys(self.reg, m, truth_raw)
                    per_target[m].append(continuous_scores(self.reg, m, truth, r["sample"], r.get("mean"),
                                                           r.get("std"), ok))
                    weights[m].append(int(ok.sum()))
            if figure and si < 2 and self.fig_dir is not None:
                fig_rows.append(self._figure_row(sid, cond, tgt, res))
        out = {}
        for m in tgt:
            if self.reg[m].is_categorical:
                truth = np.concatenate([t.ravel() for t, _, _ in per_target[m]])
                pred = np.concatenate([p.ravel() for _, p, _ in per_target[m]])
                conf = None
                if all(c is not None for _, _, c in per_target[m]):
                    conf = np.concatenate([c.ravel() for _, _, c in per_target[m]])
                out[m] = class_scores(self.reg, m, truth, pred, conf)
            else:
                out[m] = _pool(per_target[m], weights[m])
            out[m]["scenes"] = len(scenes)
        if fig_rows:
            out["figure"] = self._save_figure(label, fig_rows)
        return out

    def _figure_row(self, sid, cond, tgt, res):
        from .quicklook import render

        arrays = self.split.arrays[sid]
        row = [(f"{sid[:10]} {m}", render(self.reg[m], arrays[m])) for m in cond]
        for m in tgt:
            mod = self.reg[m]
            row.append((f"truth {m}", render(mod, arrays[m])))
            r = res[m]
            if mod.is_categorical:
                row.append((f"{m} majority", render(mod, r["classes"])))
                if r.get("confidence") is not None:
                    row.append((f"{m} confidence", np.nan_to_num(r["confidence"])))
            else:
                raw = lambda phys: (phys - mod.offset) / mod.scale
                row.append((f"{m} sample", render(mod, raw(r["sample"]))))
                if r.get("mean") is not None:
                    row.append((f"{m} mean", render(mod, raw(r["mean"]))))
                if r.get("std") is not None:
                    s = r["std"].mean(axis=0)
                    row.append((f"{m} std", np.clip(s / max(np.percentile(s, 98), 1e-12), 0, 1)))
        return row

    def _save_figure(self, label, rows) -> str:
        from .quicklook import save_grid

        name = "".join(ch if ch.isalnum() else "_" for ch in label).strip("_") + ".png"
        save_grid(self.fig_dir / name, rows, dpi=80, cell=1.8)
        return f"{FIG_DIR}/{name}"


# ---- predictors: (scene, {m: raw}, targets, samples) -> {m: {"sample"/"mean"/"std"/"classes"/"confidence"}} ----
def cogen_predictor(pipe, ev: "Evaluator", regenerate_fn=None, guidance: float | None = None):
    """guidance: None for the checkpoint's own."""
    def predict(sid, conds, tgt, samples, steps=None, sampler=None):
        regen = regenerate_fn(sid) if regenerate_fn else None
        tile, overlap = ev.tiling(tgt, regenerate=regen is not None, given=conds)
        res = pipe(conds, tgt, steps=steps or ev.steps, sampler=sampler or ev.sampler, guidance=guidance,
                   samples=samples, seed=ev.seed, tile=tile, overlap=overlap, batch=ev.batch, progress=False,
                   regenerate=regen, grid_offset=ev.split.offsets.get(sid))
        out = {}
        for m, r in res.items():
            out[m] = {"sample": r.sample, "mean": r.mean, "std": r.std, "classes": r.classes,
                      "confidence": r.confidence}
        return out
    return predict


def mean_predictor(reg: Registry, prior: dict[str, np.ndarray]):
    """Training mean (continuous) / the most frequent training class (class maps), everywhere."""
    def predict(sid, conds, tgt, samples, steps=None, sampler=None):
        shape = next(iter(conds.values())).shape[1:]
        out = {}
        for m in tgt:
            mod = reg[m]
            if mod.is_categorical:
                cls = mod.class_ids[int(np.argmax(prior[m]))]
                out[m] = {"classes": np.full(shape, cls), "confidence": np.full(shape, float(prior[m].max()))}
            else:
                out[m] = {"sample": np.broadcast_to(np.asarray(mod.mean)[:, None, None], (mod.num_bands, *shape)).copy()}
        return out
    return predict


def class_prior(root, registry: Registry, split_file, split: str, m: str) -> np.ndarray:
    from .data.dataset import SceneDataset

    region, regions = load_split(split_file, split)
    counts = SceneDataset(root, registry=registry, modalities=[m], region=region, regions=regions,
                          mode="grid").class_counts(m)
    return counts / max(counts.sum(), 1)


# ---- cloud removal --------------------------------------------------------------------------------------
def cloud_masks(split: Split, covers: Sequence[float], seed: int) -> dict[tuple[str, float], np.ndarray]:
    from .data.synthetic import smooth_field

    masks = {}
    for si, sid in enumerate(split.scenes):
        h, w = split.arrays[sid]["S2L2A"].shape[1:]
        for cover in covers:
            f = smooth_field(np.random.default_rng((seed, si, int(cover * 100))), h, w, 12)
            masks[(sid, cover)] = f > np.quantile(f, 1 - cover)
    return masks


CLOUD_ONE = "cogen (clear pixels + S1RTC + DEM)"  # one sample; the mean of N samples is its own row


def cloud_start(strength: float | None) -> str:
    """How cogen's cloud removal starts, in words: from noise (None) or from the interpolation at `strength`."""
    return "from noise" if strength is None else f"from the interpolation, strength {strength:g}"


def cloud_row(strength: float | None) -> str:
    """Row name of cogen's cloud removal from noise (None) or from the interpolation at `strength`."""
    return CLOUD_ONE if strength is None else f"cogen {cloud_start(strength)} (clear pixels + S1RTC + DEM)"


def fillnodata_baseline(truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The interpolation baseline of cloud removal: each band of (C, H, W) `truth` filled inside `mask` from
    its clear pixels (`rasterio.fill.fillnodata`, search distance 200 px), as float32."""
    from rasterio.fill import fillnodata

    return np.stack([fillnodata(band.astype(np.float32), mask=(~mask).astype(np.uint8), max_search_distance=200)
                     for band in truth])


def cloud_removal_figure(path: Path, mod, strips: list[dict], n: int) -> Path:
    """One PNG of cloud removal on every strip, side by side in each panel: the input with its masks (magenta,
    as snow is white), the truth, `fillnodata`, cogen's mean of `n` samples and one sample, and the per-pixel
    spread of the samples (band-averaged std over its 98th percentile; zero on clear pixels)."""
    from .quicklook import render, save_grid

    def raw(phys):
        return (phys - mod.offset) / mod.scale

    def side_by_side(imgs):  # a white gap between strips (NaN: left blank in a map)
        gap = np.ones((imgs[0].shape[0], 4, *imgs[0].shape[2:])) if imgs[0].ndim == 3 else np.full((imgs[0].shape[0], 4), np.nan)
        return np.concatenate([x for img in imgs for x in (img, gap)][:-1], axis=1)

    truths = [render(mod, raw(s["truth"])) for s in strips]
    cloudy = [np.where(s["mask"][..., None], (1.0, 0.0, 1.0), img) for img, s in zip(truths, strips)]
    spread = [np.nan_to_num(s["std"]).mean(axis=0) for s in strips]
    top = max(float(np.percentile(np.concatenate([x[s["mask"]] for x, s in zip(spread, strips)]), 98)), 1e-12)
    panels = [("input: S2L2A, masks magenta", side_by_side(cloudy)),
              ("truth", side_by_side(truths)),
              ("fillnodata", side_by_side([render(mod, raw(s["fill"])) for s in strips])),
              (f"cogen, mean of {n}", side_by_side([render(mod, raw(s["mean"])) for s in strips])),
              ("cogen, one sample", side_by_side([render(mod, raw(s["sample"])) for s in strips])),
              (f"cogen std of {n} samples", side_by_side([np.clip(x / top, 0, 1) for x in spread]))]
    return save_grid(path, [panels[:3], panels[3:]], dpi=80, cell=3.2)


def cloud_removal_eval(pipe, ev: Evaluator, split: Split, covers: Sequence[float], seed: int,
                       strengths: Sequence[float] = (), figure: Path | None = None,
                       figure_cover: float | None = None) -> dict:
    """Per cover: cogen from noise and from the interpolation at each of `strengths` (one sample and the mean
    of N), cogen without the clear pixels, and fillnodata; scores inside the masks, averaged over strips. With
    `figure`, a picture of every strip at `figure_cover` (the last start: the interpolation at the last
    strength, else noise) is written there."""
    reg = ev.reg
    fig_strips: list[dict] = []
    masks = cloud_masks(split, covers, seed)
    scenes = split.with_all(["S2L2A", "S1RTC", "DEM"])
    table: dict[str, dict] = {}
    n = ev.samples
    blind_name = "cogen without clear pixels (S1RTC + DEM)"
    starts = [None, *strengths]
    hows: dict[str, dict] = {}
    tile, overlap = ev.tiling(["S2L2A"], regenerate=True, given=["S1RTC", "DEM"])
    blind_tile, blind_overlap = ev.tiling(["S2L2A"], given=["S1RTC", "DEM"])  # S2L2A generated whole
    for cover in covers:
        rows: dict[str, list] = {}
        for sid in scenes:
            a = split.arrays[sid]
            mask = masks[(sid, cover)]
            truth = _phys(reg, "S2L2A", a["S2L2A"])
            preds = []  # (row name, prediction, how it was made: start, strength, samples)
            for st in starts:
                res = pipe({"S2L2A": a["S2L2A"], "S1RTC": a["S1RTC"], "DEM": a["DEM"]}, ["S2L2A"],
                           regenerate={"S2L2A": mask}, steps=ev.steps, sampler=ev.sampler, samples=n, seed=ev.seed,
                           tile=tile, overlap=overlap, batch=ev.batch, progress=False,
                           start="noise" if st is None else "interpolate", strength=1.0 if st is None else st)["S2L2A"]
                assert np.array_equal(res.sample[:, ~mask], truth[:, ~mask].astype(np.float32)), "clear pixels changed"
                how = {"start": "noise" if st is None else "interpolate", "strength": 1.0 if st is None else st,
                       "library_neighbours": pipe.library_neighbours,
                       "orientations": pipe.orientations_for(regenerate=True)}
                preds.append((cloud_row(st), res.sample, {**how, "samples": 1}))
                if n > 1:
                    preds.append((f"{cloud_row(st)}, mean of {n} samples", res.mean, {**how, "samples": n}))
            blind = pipe({"S1RTC": a["S1RTC"], "DEM": a["DEM"]}, ["S2L2A"], steps=ev.steps, sampler=ev.sampler,
                         samples=1, seed=ev.seed, tile=blind_tile, overlap=blind_overlap, batch=ev.batch,
                         progress=False, grid_offset=split.offsets.get(sid))["S2L2A"].sample
            interp = fillnodata_baseline(truth, mask)
            if figure is not None and cover == figure_cover:
                fig_strips.append({"truth": truth, "mask": mask, "fill": interp, "sample": res.sample,
                                   "mean": res.mean if res.mean is not None else res.sample,
                                   "std": res.std if res.std is not None else np.zeros_like(res.sample)})
            preds += [(blind_name, blind, {"start": "noise", "strength": 1.0, "samples": 1, "clear_pixels": False}),
                      ("fillnodata interpolation", interp, {"baseline": True})]
            for name, pred, how in preds:
                p, t = pred[:, mask], truth[:, mask]
                rows.setdefault(name, {})[sid] = {"PSNR": psnr_np(p, t, 1.0), "SAM": sam_np(p, t), "MAE": mae_np(p, t)}
                hows[name] = how
        table[f"{int(cover * 100)}%"] = {
            k: {**{q: float(np.mean([r[q] for r in v.values()])) for q in ("PSNR", "SAM", "MAE")}, **hows[k],
                "per_strip": {sid: {q: float(x) for q, x in r.items()} for sid, r in v.items()}}
            for k, v in rows.items()}
    if fig_strips:
        cloud_removal_figure(figure, reg["S2L2A"], fig_strips, n)
    return table


def cloud_strip_rows(rows: dict) -> list[str]:
    """The methods of one cover to show strip by strip: the means of N samples and the baselines."""
    return [k for k, s in rows.items() if "per_strip" in s and (s.get("samples", 1) > 1 or s.get("baseline"))]


PRIOR = "training mean / class prior"  # the baseline that predicts the training mean / class prior
DETERMINISTIC = "deterministic (same backbone)"  # the --baseline-checkpoint model
PARTS = ("meta", "robustness", "cloud_removal", "cloud_removal_figure", "sweep")  # results.json keys that are not methods


# ---- merging parts scored as separate runs -------------------------------------------------------------
MERGE_OWN = ("checkpoint", "directions", "seconds", "baselines")  # meta keys a part may have its own of; all others must agree


def cogen_scored(doc: dict) -> bool:
    """Whether a results document holds figures of cogen's weights (not only baselines)."""
    return "cogen" in doc or any(k in doc for k in PARTS if k not in ("meta", "robustness"))


def settings_mismatch(meta: dict, ref: dict, with_weights: bool) -> str | None:
    """The first meta key (but `MERGE_OWN`) on which two results documents differ, or None; the checkpoint's
    digest counts only `with_weights` (a --baselines-only document does not depend on cogen's weights)."""
    for k in sorted((set(meta) | set(ref)) - set(MERGE_OWN)):
        if k == "checkpoint_sha256" and not with_weights:
            continue
        if meta.get(k) != ref.get(k):
            return k
    return None


def without_method(doc: dict, method: str) -> dict:
    """A copy of a results document without one method's figures: its directions, its robustness column and
    the record of its checkpoint."""
    doc = json.loads(json.dumps(doc))
    doc.pop(method, None)
    rb = doc.get("robustness")
    if rb is not None:
        rb["methods"] = [k for k in rb["methods"] if k != method]
        for row in rb["table"].values():
            row.pop(method, None)
        for k in ("mean", "worst"):
            rb.get(k, {}).pop(method, None)
        if not rb["methods"]:
            doc.pop("robustness")
    doc.get("meta", {}).get("baselines", {}).pop(method, None)
    return doc


def merge_results(parts: Sequence[tuple[str, dict]], replace: Sequence[str] = ()) -> dict:
    """One results document from parts scored as separate runs of one command (`evaluate` writes only when it
    ends, so a long page is best scored part by part, in parallel). Every part must have the same weights and
    settings (every key of its meta but `MERGE_OWN`); a figure scored in two parts must be the same in both. The meta's
    directions are the union, its seconds the sum; robustness mean / worst are recomputed from the merged table
    for the methods that have every row. A part with no cogen figures (`--baselines-only`) may come from
    another cogen checkpoint. A method named in `replace` (a baseline trained again) is taken from the last part
    that scores it alone; its figures in earlier parts are dropped."""
    if not parts:
        raise UsageError("merge: no results files given")
    for meth in replace:
        holders = [i for i, (_, d) in enumerate(parts) if meth in d or meth in d.get("robustness", {}).get("methods", [])]
        if not holders:
            raise UsageError(f"merge: --replace {meth!r}: no file scores it; methods are named as in results.json, "
                             f"e.g. {DETERMINISTIC!r}")
        parts = [(n, without_method(d, meth) if i < holders[-1] else d) for i, (n, d) in enumerate(parts)]
    first_name, first = next(((n, d) for n, d in parts if cogen_scored(d)), parts[0])  # whose weights count
    out: dict[str, Any] = {}

    def put(where: dict, key: str, value, what: str, name: str) -> None:
        if key in where and where[key] != value:
            raise UsageError(f"merge: {what} is scored in both an earlier file and {name}, with other figures; "
                             f"drop it from one of them")
        where[key] = value

    meta = dict(first["meta"])
    meta["directions"], meta["seconds"], meta["baselines"] = [], 0.0, {}
    rb_target, rb_rows, rb_methods = None, {}, []
    for name, doc in parts:
        m = doc.get("meta", {})
        k = settings_mismatch(m, first["meta"], cogen_scored(doc))
        if k is not None:
            raise UsageError(f"merge: {name} was scored with {k}={m.get(k)!r}, {first_name} with "
                             f"{first['meta'].get(k)!r}; merge only parts of one command")
        meta["directions"] += [d for d in m.get("directions", []) if d not in meta["directions"]]
        meta["seconds"] += m.get("seconds", 0.0)
        for meth, ckpt in m.get("baselines", {}).items():
            put(meta["baselines"], meth, ckpt, f"the checkpoint of {meth}", name)
        for key, val in doc.items():
            if key == "meta":
                continue
            if key == "robustness":
                if rb_target not in (None, val["target"]):
                    raise UsageError(f"merge: {name} scores robustness of {val['target']}, an earlier file of {rb_target}")
                rb_target = val["target"]
                rb_methods += [k for k in val["methods"] if k not in rb_methods]
                for sub, row in val["table"].items():
                    for meth, v in row.items():
                        put(rb_rows.setdefault(sub, {}), meth, v, f"robustness '{sub}' of {meth}", name)
            elif key == "cloud_removal":
                for cover, rows in val.items():
                    put(out.setdefault(key, {}), cover, rows, f"cloud removal at {cover}", name)
            elif key in PARTS:  # the sweep, the cloud-removal picture: whole parts
                put(out, key, val, key, name)
            else:  # a method: direction by direction
                for d, v in val.items():
                    put(out.setdefault(key, {}), d, v, f"{d} of {key}", name)
    if rb_target is not None:
        full = [k for k in rb_methods if all(k in row for row in rb_rows.values())]
        out["robustness"] = {"target": rb_target, "methods": rb_methods, "table": rb_rows,
                             "mean": {k: float(np.mean([row[k] for row in rb_rows.values()])) for k in full},
                             "worst": {k: float(np.min([row[k] for row in rb_rows.values()])) for k in full}}
    if not meta["baselines"]:
        meta.pop("baselines")
    out["meta"] = meta
    return out


# ---- report ---------------------------------------------------------------------------------------------
def _fmt(v, nd=3):
    return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _scored(results: dict, methods: list[str]):
    """(direction, method, target, scores) for every scored target, in report order; figures excluded."""
    for d in results["meta"]["directions"]:
        for meth in methods:
            for m, s in (results[meth].get(d) or {}).items():
                if m != "figure":
                    yield d, meth, m, s


def describe_co_target(rule: dict) -> str:
    """One `sample.co_targets` rule in words, e.g. 'LULC generated jointly with DEM when only S2L2A is given'."""
    given = rule.get("given") or []
    return (f"{rule['target']} generated jointly with {', '.join(rule['add'])} (where not given; dropped)"
            + (f" when {'only ' if rule.get('exact') else ''}{', '.join(given)} {'is' if len(given) == 1 else 'are'} "
               f"given" if given else ""))


def write_report(path: Path, results: dict, command: str, notes: str | None = None) -> None:
    L = ["# cogen: results", "",
         "Generated by `python -m cogen.evaluate` (do not edit by hand). Test split: columns 160-223 of each of the",
         "five shipped scenes (224 x 64 px strips, never seen in training). Physical units; PSNR of reflectance",
         "with data range 1.", "", "Command:", "", "```", command, "```", ""]
    meta = results["meta"]
    L += [f"Checkpoint `{meta['checkpoint']}`; {meta['samples']} samples, {meta['steps']} {meta['sampler']} steps, "
          f"tiles {meta['tile']} px (overlap {meta['overlap']})"
          + "".join(f", {m} targets: tiles {t} px (overlap {o})" for m, (t, o) in meta.get("tile_by_target", {}).items())
          + "".join(f", cloud removal: tiles {t} px (overlap {o})" for t, o in ([meta["tile_regenerate"]] if meta.get("tile_regenerate") else []))
          + f", seed {meta['seed']}, patch grid "
          f"{'moved every step' if meta.get('grid_shift', True) else 'fixed (--no-grid-shift)'}"
          + (f", each step averaged over {meta['shift_ensemble']} grid offsets" if meta.get("shift_ensemble", 1) > 1 else "")
          + (f", a clean-up call at model time {meta['final_denoise']:g} after the last step" if meta.get("final_denoise") else "")
          + (", generated 20 m / 60 m bands one value per native block" if meta.get("native_blocks") else "")
          + (f", sample s drawn in dihedral orientation s mod {meta['orientations']} and turned back"
             if meta.get("orientations", 1) > 1 else "")
          + "".join(f", {describe_co_target(r)}" for r in (meta.get("co_targets") or []))
          + (f", cloud removal: sample s drawn in dihedral orientation s mod {meta['orientations_regenerate']} and "
             f"turned back" if meta.get("orientations_regenerate", 0) > 1 else "")
          + (f", cloud removal: each generated pixel moved onto the mean of the {meta['library_neighbours']} clear "
             f"pixels of its strip with the nearest spectra" if meta.get("library_neighbours") else "")
          + (f", class maps: each pixel's vote smoothed with its neighbours' (Gaussian, sigma {meta['vote_sigma']:g} px) "
             f"before the majority" if meta.get("vote_sigma") else "")
          + (", token positions of tiles beyond the training crops squeezed into the trained range"
             if meta.get("interpolate_positions") else "")
          + f"; {meta['seconds']:.0f} s.", ""]
    L += [f"{meth}: checkpoint `{c['checkpoint']}` (sha256 `{c['checkpoint_sha256'][:16]}`)."
          for meth, c in meta.get("baselines", {}).items()] + ([""] if meta.get("baselines") else [])
    L += ["Reference figures on this split (per-pixel random forest, from the data's README): LULC from S2L2A "
          "acc 0.769 / mIoU 0.431; from S1RTC 0.375 / 0.135; from S2L2A+S1RTC+DEM 0.792 / 0.455. S1RTC -> S2L2A "
          "PSNR: training mean 12.62 dB, random forest 13.68 dB. Cloud removal (35% masks): fillnodata 27.86 dB, "
          "SAM 4.74 deg.", ""]
    methods = [k for k in results if k not in PARTS]
    # continuous
    L += ["## Continuous targets", "",
          "| direction | target | method | PSNR 1 sample | PSNR mean of N | SSIM (mean) | SAM deg (mean) | MAE (mean) | "
          "diversity | HF power ratio | Wasserstein |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    figs = [(f"{d} ({meth})", results[meth][d]["figure"]) for d in results["meta"]["directions"] for meth in methods
            if "figure" in (results[meth].get(d) or {})]
    for d, meth, m, s in _scored(results, methods):
        if "sample" in s:
            mean = s.get("mean", s["sample"])
            L.append(f"| {d} | {m} | {meth} | {_fmt(s['sample']['PSNR'], 2)} | {_fmt(mean['PSNR'], 2)} | "
                     f"{_fmt(mean['SSIM'])} | {_fmt(mean.get('SAM'), 2)} | {_fmt(mean['MAE'], 4)} | "
                     f"{_fmt(s.get('diversity'), 4)} | {_fmt(s['hf_power_ratio'], 2)} | {_fmt(s['wasserstein'], 4)} |")
    L += ["", "## Class maps", "", "| direction | target | method | pixel accuracy | mIoU | ECE | per-class IoU |",
          "|---|---|---|---|---|---|---|"]
    for d, meth, m, s in _scored(results, methods):
        if "mIoU" in s:
            pc = ", ".join(f"{k} {v:.2f}" for k, v in s["per_class_IoU"].items() if v is not None)
            L.append(f"| {d} | {m} | {meth} | {_fmt(s['pixel_accuracy'])} | {_fmt(s['mIoU'])} | "
                     f"{_fmt(s.get('ECE'))} | {pc} |")
    if "robustness" in results:
        rb = results["robustness"]
        L += ["", f"## Missing-modality robustness: {rb['target']} mIoU for every subset of inputs", "",
              "| inputs | " + " | ".join(rb["methods"]) + " |", "|---|" + "---|" * len(rb["methods"])]
        for sub, vals in rb["table"].items():
            L.append(f"| {sub} | " + " | ".join(_fmt(vals.get(k)) for k in rb["methods"]) + " |")
        L.append("| **mean** | " + " | ".join(_fmt(rb["mean"].get(k)) for k in rb["methods"]) + " |")
        L.append("| **worst** | " + " | ".join(_fmt(rb["worst"].get(k)) for k in rb["methods"]) + " |")
    if "cloud_removal" in results:
        L += ["", "## Cloud removal (synthetic cloud masks over the real S2L2A test strips; scores inside the masks)", "",
              "| cover | method | PSNR dB | SAM deg | MAE |", "|---|---|---|---|---|"]
        for cover, rows in results["cloud_removal"].items():
            for meth, s in rows.items():
                L.append(f"| {cover} | {meth} | {s['PSNR']:.2f} | {s['SAM']:.2f} | {s['MAE']:.4f} |")
        per = {cover: cloud_strip_rows(rows) for cover, rows in results["cloud_removal"].items()}
        if any(per.values()):
            L += ["", "Per strip (PSNR dB / SAM deg inside the masks; the table above averages these):", ""]
            for cover, meths in per.items():
                rows = results["cloud_removal"][cover]
                if not meths:
                    continue
                L += [f"| {cover} | " + " | ".join(meths) + " |", "|---|" + "---|" * len(meths)]
                for sid in rows[meths[0]]["per_strip"]:
                    L.append(f"| {sid} | " + " | ".join(
                        f"{rows[k]['per_strip'][sid]['PSNR']:.2f} / {rows[k]['per_strip'][sid]['SAM']:.2f}" for k in meths) + " |")
                L.append("")
    if results.get("cloud_removal_figure"):
        cf = results["cloud_removal_figure"]
        L += [f"Cloud removal at {cf['cover']} cover on every test strip, side by side in each panel "
              f"(cogen {cf['how']}, with the page's sampling):", "", f"![cloud removal]({cf['figure']})", ""]
    if "sweep" in results:
        sw = results["sweep"]
        k = sw.get("shift_ensemble", 1)
        L += ["", f"## Sampling efficiency: {sw['direction']} (1 sample, "
              f"{'one model call per step' if k == 1 else f'{k} grid offsets per step'}"
              f"{', then a clean-up call' if sw.get('final_denoise') else ''})", "", f"![steps]({sw['figure']})", "",
              "| sampler | " + " | ".join(str(s) for s in sw["steps"]) + " |", "|---|" + "---|" * len(sw["steps"])]
        for smp, vals in sw["psnr"].items():
            L.append(f"| {smp} PSNR | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
        for smp, vals in sw["seconds"].items():
            L.append(f"| {smp} seconds | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    if notes:
        L += ["", notes.strip()]
    if figs:
        L += ["", "## Figures", ""]
        for title, f in figs:
            L += [f"**{title}**", "", f"![{title}]({f})", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(L) + "\n")


def _tile_overlap(value: str, error: str) -> list[int]:
    """'32,0' -> [32, 0]; anything else raises UsageError(error)."""
    try:
        t_o = [int(x) for x in value.split(",")]
    except ValueError:
        t_o = []
    if len(t_o) != 2:
        raise UsageError(error)
    return t_o


def run_settings(pipe, ev, a) -> dict:
    """What a run's figures depend on besides its directions: the weights, the sampling and the split (the
    meta of results.json but `MERGE_OWN`), as the file holds them (lists, not tuples)."""
    return json.loads(json.dumps({
        "checkpoint_sha256": pipe.bundle.digest, "samples": a.samples, "steps": a.steps, "sampler": a.sampler,
        "tile": a.tile, "overlap": a.overlap, "tile_by_target": ev.tile_by_target,
        "tile_regenerate": ev.tile_regenerate, "seed": a.seed, "grid_shift": pipe.grid_shift,
        "shift_ensemble": pipe.shift_ensemble, "final_denoise": pipe.final_denoise,
        "native_blocks": pipe.native_blocks, "orientations": pipe.orientations,
        "orientations_regenerate": pipe.orientations_regenerate, "co_targets": pipe.co_targets,
        "library_neighbours": pipe.library_neighbours, "vote_sigma": pipe.vote_sigma, "split": a.split,
        **({"interpolate_positions": True} if pipe.interpolate_positions else {})}))  # absent when off, as before


@cli_exit
def main(argv: list[str] | None = None) -> None:
    import sys

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="cogen bundle (default: the shipped demo model)")
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--split-file", default="configs/split.yaml")
    p.add_argument("--split", default="test")
    p.add_argument("--train-split", default="train", help="split the baselines' statistics come from")
    p.add_argument("--direction", action="append", default=[], help="e.g. 'S1RTC,DEM->S2L2A' (repeatable)")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--tile", type=int, default=32)
    p.add_argument("--overlap", type=int, default=0)
    p.add_argument("--tile-for", action="append", default=[], metavar="M=TILE,OVERLAP",
                   help="tile and overlap for calls whose targets are all M, e.g. LULC=32,0 (repeatable)")
    p.add_argument("--tile-regenerate", default=None, metavar="TILE,OVERLAP",
                   help="tile and overlap for cloud removal (targets given in part), e.g. 32,0")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    add_sampling_flags(p)
    p.add_argument("--baseline", action="append", default=[], choices=["mean"], help="training mean / class prior")
    p.add_argument("--baseline-checkpoint", default=None, help="a deterministic (train.objective=regression) bundle")
    p.add_argument("--robustness", default=None, help="TARGET:A,B,C -> scores TARGET for every non-empty subset")
    p.add_argument("--cloud-removal", action="store_true", help="synthetic cloud masks over the real S2L2A")
    p.add_argument("--cloud-covers", default="0.2,0.3,0.4,0.5")
    p.add_argument("--cloud-figure-cover", type=float, default=0.4,
                   help="the cover pictured on the page (with --report; the first cover if this one is not scored)")
    p.add_argument("--cloud-strength", type=float, action="append", default=[],
                   help="also score cloud removal started from the interpolation at this strength (repeatable)")
    p.add_argument("--sweep", default=None, help="direction for the quality-vs-steps plot (ddim, dpm++)")
    p.add_argument("--sweep-steps", default="5,10,20,50,100")
    p.add_argument("--out", required=True, help="results.json")
    p.add_argument("--reuse", default=None, help="an earlier results.json: parts already scored there are kept")
    p.add_argument("--baselines-only", action="store_true",
                   help="score only the baselines (a file to --reuse when cogen is re-scored later)")
    p.add_argument("--notes", default=None, help="a Markdown file of analysis to include in the report")
    p.add_argument("--report", default=None, help="write a Markdown page (figures beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out / --report (and its figures)")
    a = p.parse_args(argv)
    t0 = time.time()
    for f in (a.out, a.report):  # checked before hours of scoring, not after
        if f and Path(f).exists() and not a.overwrite:
            raise UsageError(f"{f} exists; pass --overwrite to replace it (with --reuse {a.out} the figures already in "
                             f"it are kept, not scored again)")
    from .pipeline import CogenPipeline

    pipe = apply_sampling_flags(CogenPipeline.from_checkpoint(a.checkpoint), a)
    pipe.grid_shift = not a.no_grid_shift  # the evaluation moves the grid unless told not to, whatever the bundle says
    reg = pipe.registry
    directions = {d: parse_direction(d) for d in a.direction}
    for d, (c, t) in directions.items():
        for m in c + t:
            if m not in pipe.model.names:
                raise UsageError(f"direction {d}: the checkpoint does not know {m} (it knows {', '.join(pipe.model.names)})")
    split = Split(a.data, reg, a.split_file, a.split)
    fig_dir = Path(a.report).parent / FIG_DIR if a.report else None
    ev = Evaluator(split, reg, a.samples, a.steps, a.sampler, a.tile, a.overlap, a.seed, a.batch, fig_dir)
    for spec in a.tile_for:
        m, _, v = spec.partition("=")
        ev.tile_by_target[m.strip()] = _tile_overlap(v, f"--tile-for {spec!r}: expected M=TILE,OVERLAP, e.g. LULC=32,0")
    if a.tile_regenerate:
        ev.tile_regenerate = _tile_overlap(a.tile_regenerate,
                                           f"--tile-regenerate {a.tile_regenerate!r}: expected TILE,OVERLAP, e.g. 32,0")
    settings = run_settings(pipe, ev, a)
    prev: dict[str, Any] = json.loads(Path(a.reuse).read_text()) if a.reuse and Path(a.reuse).is_file() else {}
    if prev:  # figures kept from another run must be of these weights and settings, or the page would mislabel them
        pm = prev.get("meta", {})
        k = settings_mismatch(pm, settings, cogen_scored(prev) and not a.baselines_only)
        if k is not None:
            raise UsageError(f"--reuse {a.reuse}: it was scored with {k}={pm.get(k)!r}, this run has "
                             f"{settings.get(k)!r}; reuse only a file of the same weights and settings, or score again without --reuse")
    results: dict[str, Any] = {}
    predictors = {} if a.baselines_only else {"cogen": cogen_predictor(pipe, ev)}
    if "mean" in a.baseline:
        priors = {}
        for d, (c, t) in directions.items():
            for m in t:
                if reg[m].is_categorical and m not in priors:
                    priors[m] = class_prior(a.data, reg, a.split_file, a.train_split, m)
        predictors[PRIOR] = mean_predictor(reg, priors)
    baselines: dict[str, dict] = {}  # the checkpoints behind the baselines' figures, for the page
    if a.baseline_checkpoint:
        bpipe = CogenPipeline.from_checkpoint(a.baseline_checkpoint)
        predictors[DETERMINISTIC] = cogen_predictor(bpipe, ev)
        baselines[DETERMINISTIC] = {"checkpoint": str(bpipe.bundle.path), "checkpoint_sha256": bpipe.bundle.digest}
        kept = prev.get("meta", {}).get("baselines", {}).get(DETERMINISTIC, {}).get("checkpoint_sha256")
        if DETERMINISTIC in prev and kept != bpipe.bundle.digest:  # figures of other (or unrecorded) weights: score again
            print(f"--reuse {a.reuse}: its {DETERMINISTIC} figures are not of {a.baseline_checkpoint}; scoring them "
                  f"again", flush=True)
            prev = without_method(prev, DETERMINISTIC)
    # methods scored in the --reuse file that are not run now (e.g. a baseline whose checkpoint is not here) are kept
    carried = [] if a.baselines_only else [k for k in prev if k not in predictors and k not in PARTS and k != "cogen"]
    baselines.update({k: v for k, v in prev.get("meta", {}).get("baselines", {}).items() if k in carried})
    subsets: list[tuple[str, ...]] = []  # --robustness: every non-empty subset of the pool, and its target
    if a.robustness:
        tgt, pool = a.robustness.split(":")
        pool_m = [m.strip() for m in pool.split(",")]
        subsets = [sub for k in range(1, len(pool_m) + 1) for sub in itertools.combinations(pool_m, k)]
    prev_rows = prev.get("robustness", {}).get("table", {})
    meths = [k for k in [*predictors, *carried] if k != PRIOR]  # the robustness table's (the prior is not one)
    for meth in [k for k in meths if k in carried]:  # checked before anything runs: each kept one needs its whole row
        for sub in subsets:
            if prev_rows.get(" + ".join(sub), {}).get(meth) is None:
                raise UsageError(f"--reuse {a.reuse}: {meth} has no '{' + '.join(sub)}' robustness row to "
                                 f"keep; pass its checkpoint so that it can be scored")
    scored = False  # whether this run scored anything itself (a render from --reuse adds no seconds)
    for name, pred in predictors.items():
        results[name] = {}
        for d, (c, t) in directions.items():
            if d in prev.get(name, {}):
                results[name][d] = prev[name][d]
                continue
            print(f"[{time.time() - t0:6.0f}s] {name}: {d}", flush=True)
            scored = True
            results[name][d] = ev.run(pred, c, t, d + " " + name, figure=(name == "cogen"),
                                      samples=1 if name != "cogen" else None)
    for name in carried:
        print(f"kept from {a.reuse}: {name} (not run now)", flush=True)
        results[name] = {d: prev[name][d] for d in directions if d in prev[name]}
    if a.robustness:
        table = {}
        for sub in subsets:
            d = ",".join(sub) + "->" + tgt
            print(f"[{time.time() - t0:6.0f}s] robustness: {d}", flush=True)
            table[" + ".join(sub)] = {}
            for meth in meths:
                done = results[meth].get(d)
                old = prev_rows.get(" + ".join(sub), {}).get(meth)
                if old is not None:
                    table[" + ".join(sub)][meth] = old
                    continue
                scored = scored or not done
                r = done[tgt] if done else ev.run(predictors[meth], list(sub), [tgt], d,
                                                  samples=1 if meth != "cogen" else None)[tgt]
                table[" + ".join(sub)][meth] = r["mIoU"]
        results["robustness"] = {"target": tgt, "methods": meths, "table": table,
                                 "mean": {k: float(np.mean([v[k] for v in table.values()])) for k in meths},
                                 "worst": {k: float(np.min([v[k] for v in table.values()])) for k in meths}}
    cogen_parts = not a.baselines_only  # cloud removal and the sweep score cogen only
    if cogen_parts and a.cloud_removal and "cloud_removal" in prev:
        results["cloud_removal"] = prev["cloud_removal"]
        if prev.get("cloud_removal_figure"):
            results["cloud_removal_figure"] = prev["cloud_removal_figure"]
    elif cogen_parts and a.cloud_removal:
        print(f"[{time.time() - t0:6.0f}s] cloud removal", flush=True)
        scored = True
        covers = [float(c) for c in a.cloud_covers.split(",")]
        fig_cover = a.cloud_figure_cover if a.cloud_figure_cover in covers else covers[0]
        fig = fig_dir / "cloud_removal.png" if fig_dir is not None else None
        results["cloud_removal"] = cloud_removal_eval(pipe, ev, split, covers, a.seed, a.cloud_strength, fig, fig_cover)
        if fig is not None:
            results["cloud_removal_figure"] = {
                "figure": f"{FIG_DIR}/cloud_removal.png", "cover": f"{int(fig_cover * 100)}%",
                "how": cloud_start(a.cloud_strength[-1] if a.cloud_strength else None)}
    if cogen_parts and a.sweep and "sweep" in prev:
        results["sweep"] = prev["sweep"]
    elif cogen_parts and a.sweep:
        c, t = parse_direction(a.sweep)
        steps = [int(s) for s in a.sweep_steps.split(",")]
        psnr, secs = {}, {}
        scored = True
        for smp in ("ddim", "dpm++"):
            psnr[smp], secs[smp] = [], []
            for k in steps:
                print(f"[{time.time() - t0:6.0f}s] sweep {smp} {k} steps", flush=True)
                ts = time.time()
                r = ev.run(predictors["cogen"], c, t, a.sweep, samples=1, steps=k, sampler=smp)
                secs[smp].append(time.time() - ts)
                psnr[smp].append(r[t[0]]["sample"]["PSNR"])
        fig = None
        if fig_dir is not None:
            import matplotlib.pyplot as plt

            fig_dir.mkdir(parents=True, exist_ok=True)
            f, ax = plt.subplots(figsize=(4.5, 3))
            for smp in psnr:
                ax.plot(steps, psnr[smp], marker="o", label=smp)
            ax.set_xscale("log"); ax.set_xlabel("denoising steps"); ax.set_ylabel(f"{t[0]} PSNR dB (1 sample)")
            ax.set_title(a.sweep); ax.legend(); f.tight_layout()
            with atomic_path(fig_dir / "sweep.png") as tmp:
                f.savefig(tmp, dpi=100, format="png")
            plt.close(f)
            fig = f"{FIG_DIR}/sweep.png"
        results["sweep"] = {"direction": a.sweep, "steps": steps, "psnr": psnr, "seconds": secs, "figure": fig,
                            "shift_ensemble": pipe.shift_ensemble, "final_denoise": pipe.final_denoise,
                            "native_blocks": pipe.native_blocks, "orientations": pipe.orientations, "co_targets": pipe.co_targets}
    results["meta"] = {"checkpoint": str(pipe.bundle.path), **settings, "directions": list(directions),
                       "seconds": (time.time() - t0 if scored else 0.0) + prev.get("meta", {}).get("seconds", 0.0),
                       **({"baselines": baselines} if baselines else {})}
    write_json(a.out, results)
    cmd = "python -m cogen.evaluate " + " ".join(f"'{x}'" if ">" in x or " " in x else x for x in (argv or sys.argv[1:]))
    if a.report and not a.baselines_only:
        write_report(Path(a.report), results, cmd, Path(a.notes).read_text() if a.notes else None)
    print(f"wrote {a.out}" + (f" and {a.report}" if a.report else ""))


if __name__ == "__main__":
    main()

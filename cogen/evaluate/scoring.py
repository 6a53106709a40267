"""Scoring: a split in memory, the scores of one prediction, the predictors (cogen and the baselines), and the
parts of a run that score them: every direction, the missing-modality robustness table and the steps sweep."""
from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..data.dataset import discover, load_split
from ..errors import UsageError
from ..io import atomic_path, file_valid, read_raster
from ..metrics import (confusion, ece_np, hf_power_ratios, iou_per_class, mae_np, psnr_np, rmse_np, sam_np, ssim_np,
                       wasserstein_per_band)
from ..options import SampleOptions
from ..registry import Registry

FIG_DIR = "figures"
PRIOR = "training mean / class prior"  # the baseline that predicts the training mean / class prior
DETERMINISTIC = "deterministic (same backbone)"  # the --baseline-checkpoint model
SHARED = ("steps", "sampler", "samples", "seed", "batch", "tiles", "tile", "overlap")  # a baseline samples as cogen


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


def parse_directions(specs: Sequence[str], known: Sequence[str]) -> dict[str, tuple[list[str], list[str]]]:
    """{direction: (conditions, targets)} of every spec, each modality one of `known` (the checkpoint's)."""
    directions = {d: parse_direction(d) for d in specs}
    for d, (c, t) in directions.items():
        for m in c + t:
            if m not in known:
                raise UsageError(f"direction {d}: the checkpoint does not know {m} (it knows {', '.join(known)})")
    return directions


class Split:
    """The raw arrays of every scene's region of one split (small evaluation splits fit in memory)."""

    def __init__(self, root: str | Path, registry: Registry, split_file: str | None, split: str | None,
                 modalities: Sequence[str] | None = None, cols: tuple[int, int] | None = None):
        """Reads every modality of every scene, or only `modalities`; `cols` instead of a split: these columns
        of every scene."""
        from ..data.dataset import Region

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
        from ..data.dataset import to_model_space

        return [to_model_space(self.registry[m], self.arrays[s][m], self.valid[s][m]) for s in self.with_all([m])]


def _phys(reg: Registry, m: str, raw: np.ndarray) -> np.ndarray:
    return reg[m].to_physical(raw.astype(np.float64))


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
    def __init__(self, split: Split, registry: Registry, options: SampleOptions, fig_dir: Path | None):
        """options: the run's sampling settings (the checkpoint's, changed by the command's flags)."""
        self.split, self.reg, self.opts = split, registry, options
        self.fig_dir = fig_dir
        self.scored = False  # whether it has scored anything (a render from --reuse adds no seconds)

    # -- one direction, one predictor ---------------------------------------------------------------------
    def run(self, predictor, cond: list[str], tgt: list[str], label: str, samples: int | None = None,
            figure: bool = False, steps: int | None = None, sampler: str | None = None) -> dict:
        self.scored = True
        scenes = self.split.with_all(cond + tgt)
        per_target: dict[str, list] = {m: [] for m in tgt}
        weights: dict[str, list] = {m: [] for m in tgt}
        fig_rows = []
        for si, sid in enumerate(scenes):
            arrays = self.split.arrays[sid]
            res = predictor(sid, {m: arrays[m] for m in cond}, tgt, samples or self.opts.samples, steps, sampler)
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
        from ..quicklook import render

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
                raw = mod.from_physical
                row.append((f"{m} sample", render(mod, raw(r["sample"]))))
                if r.get("mean") is not None:
                    row.append((f"{m} mean", render(mod, raw(r["mean"]))))
                if r.get("std") is not None:
                    s = r["std"].mean(axis=0)
                    row.append((f"{m} std", np.clip(s / max(np.percentile(s, 98), 1e-12), 0, 1)))
        return row

    def _save_figure(self, label, rows) -> str:
        from ..quicklook import save_grid

        name = "".join(ch if ch.isalnum() else "_" for ch in label).strip("_") + ".png"
        save_grid(self.fig_dir / name, rows, dpi=80, cell=1.8)
        return f"{FIG_DIR}/{name}"


# ---- predictors: (scene, {m: raw}, targets, samples) -> {m: {"sample"/"mean"/"std"/"classes"/"confidence"}} ----
def cogen_predictor(pipe, ev: Evaluator, options: SampleOptions | None = None, regenerate_fn=None):
    """A cogen pipeline's predictions, sampled with `options` (default: the run's, `ev.opts`)."""
    def predict(sid, conds, tgt, samples, steps=None, sampler=None):
        opts = (options or ev.opts).replace(samples=samples, steps=steps, sampler=sampler)
        res = pipe(conds, tgt, options=opts, regenerate=regenerate_fn(sid) if regenerate_fn else None,
                   grid_offset=ev.split.offsets.get(sid), progress=False)
        out = {}
        for m, r in res.items():
            out[m] = {"sample": r.sample, "mean": r.mean, "std": r.std, "classes": r.classes,
                      "confidence": r.confidence}
        return out
    return predict


def shared_options(own: SampleOptions, run: SampleOptions) -> SampleOptions:
    """A baseline checkpoint's options `own` sampled as the run's `run` (steps, sampler, samples, seed, batch and
    tiling), so that every method is scored on the same draws and tiles; its other settings stay its own."""
    return dataclasses.replace(own, **{k: getattr(run, k) for k in SHARED})  # None too: a tile by `tiles`


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
    from ..data.dataset import SceneDataset

    region, regions = load_split(split_file, split)
    counts = SceneDataset(root, registry=registry, modalities=[m], region=region, regions=regions,
                          mode="grid").class_counts(m)
    return counts / max(counts.sum(), 1)


def training_priors(root, registry: Registry, split_file, split: str, directions: dict) -> dict[str, np.ndarray]:
    """The class prior on the training split of every class-map target of `directions`."""
    targets = dict.fromkeys(m for _, t in directions.values() for m in t if registry[m].is_categorical)
    return {m: class_prior(root, registry, split_file, split, m) for m in targets}


# ---- the parts of a run ---------------------------------------------------------------------------------
Say = Callable[[str], None]  # prints one line of progress


def score_methods(ev: Evaluator, predictors: dict, directions: dict, prev: dict, say: Say) -> dict:
    """{method: {direction: scores}}: each predictor on each direction, those in `prev` (--reuse) kept as they are.
    cogen draws the run's samples and pictures its directions; a baseline draws one sample."""
    results: dict[str, dict] = {}
    for name, pred in predictors.items():
        results[name] = {}
        for d, (c, t) in directions.items():
            if d in prev.get(name, {}):
                results[name][d] = prev[name][d]
                continue
            say(f"{name}: {d}")
            results[name][d] = ev.run(pred, c, t, d + " " + name, figure=(name == "cogen"),
                                      samples=1 if name != "cogen" else None)
    return results


def robustness_subsets(spec: str) -> tuple[str, list[tuple[str, ...]]]:
    """'TARGET:A,B,C' -> (TARGET, every non-empty subset of A, B, C)."""
    tgt, pool = spec.split(":")
    pool_m = [m.strip() for m in pool.split(",")]
    return tgt, [sub for k in range(1, len(pool_m) + 1) for sub in itertools.combinations(pool_m, k)]


def score_robustness(ev: Evaluator, predictors: dict, methods: list[str], tgt: str, subsets: list[tuple[str, ...]],
                     results: dict, prev_rows: dict, say: Say) -> dict:
    """The target's mIoU of every method from every subset of inputs, with its mean and worst: a row already
    scored as a direction of this run, or kept in `prev_rows` (--reuse), is not scored again."""
    table = {}
    for sub in subsets:
        d = ",".join(sub) + "->" + tgt
        say(f"robustness: {d}")
        row = table[" + ".join(sub)] = {}
        for meth in methods:
            done = results[meth].get(d)
            old = prev_rows.get(" + ".join(sub), {}).get(meth)
            if old is not None:
                row[meth] = old
                continue
            r = done[tgt] if done else ev.run(predictors[meth], list(sub), [tgt], d,
                                              samples=1 if meth != "cogen" else None)[tgt]
            row[meth] = r["mIoU"]
    return {"target": tgt, "methods": methods, "table": table,
            "mean": {k: float(np.mean([v[k] for v in table.values()])) for k in methods},
            "worst": {k: float(np.min([v[k] for v in table.values()])) for k in methods}}


def steps_sweep(ev: Evaluator, predictor, direction: str, steps: list[int], fig_dir: Path | None, say: Say) -> dict:
    """PSNR of one sample and seconds against the number of steps, for ddim and dpm++, with its plot."""
    c, t = parse_direction(direction)
    psnr, secs = {}, {}
    for smp in ("ddim", "dpm++"):
        psnr[smp], secs[smp] = [], []
        for k in steps:
            say(f"sweep {smp} {k} steps")
            ts = time.time()
            r = ev.run(predictor, c, t, direction, samples=1, steps=k, sampler=smp)
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
        ax.set_title(direction); ax.legend(); f.tight_layout()
        with atomic_path(fig_dir / "sweep.png") as tmp:
            f.savefig(tmp, dpi=100, format="png")
        plt.close(f)
        fig = f"{FIG_DIR}/sweep.png"
    return {"direction": direction, "steps": steps, "psnr": psnr, "seconds": secs, "figure": fig}

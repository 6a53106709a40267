"""Cloud removal: synthetic cloud masks over the real S2L2A strips, cogen filling them (with and without the
clear pixels), the fillnodata interpolation baseline, scores inside the masks, and its figure."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from ..metrics import mae_np, psnr_np, sam_np
from .scoring import FIG_DIR, Evaluator, Say, Split, _phys


def cloud_masks(split: Split, covers: Sequence[float], seed: int) -> dict[tuple[str, float], np.ndarray]:
    from ..data.synthetic import smooth_field

    masks = {}
    for si, sid in enumerate(split.scenes):
        h, w = split.arrays[sid]["S2L2A"].shape[1:]
        for cover in covers:
            f = smooth_field(np.random.default_rng((seed, si, int(cover * 100))), h, w, 12)
            masks[(sid, cover)] = f > np.quantile(f, 1 - cover)
    return masks


CLOUD_ONE = "cogen (clear pixels + S1RTC + DEM)"  # one sample from noise; the mean of N samples is its own row
BLIND = "cogen without clear pixels (S1RTC + DEM)"
FILL = "fillnodata interpolation"


def cloud_start(strength: float) -> str:
    """How cogen's cloud removal starts at `strength` (SampleOptions.strength), in words."""
    return "from noise" if strength >= 1 else f"from the interpolation, strength {strength:g}"


def cloud_row(strength: float) -> str:
    """Row name of cogen's cloud removal at `strength` (SampleOptions.strength; 1: from noise)."""
    return CLOUD_ONE if strength >= 1 else f"cogen {cloud_start(strength)} (clear pixels + S1RTC + DEM)"


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
    from ..quicklook import render, save_grid

    raw = mod.from_physical

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
                       figure: Path | None = None, figure_cover: float | None = None) -> dict:
    """Per cover: cogen with the clear pixels, sampled with the run's options (its strength: from noise or from
    the interpolation; one sample and the mean of N), cogen without the clear pixels, and fillnodata; scores
    inside the masks, averaged over strips. With `figure`, a picture of every strip at `figure_cover`."""
    reg, opts, n = ev.reg, ev.opts, ev.opts.samples
    ev.scored = True
    fig_strips: list[dict] = []
    masks = cloud_masks(split, covers, seed)
    table: dict[str, dict] = {}
    one, mean = cloud_row(opts.strength), f"{cloud_row(opts.strength)}, mean of {n} samples"
    how = {"start": "noise" if opts.strength >= 1 else "interpolate", "strength": opts.strength,
           "library_neighbours": opts.library_neighbours}
    hows = {one: {**how, "samples": 1}, mean: {**how, "samples": n}, FILL: {"baseline": True},
            BLIND: {"start": "noise", "strength": 1.0, "samples": 1, "clear_pixels": False}}
    for cover in covers:
        rows: dict[str, dict] = {}
        for sid in split.with_all(["S2L2A", "S1RTC", "DEM"]):
            a = split.arrays[sid]
            mask = masks[(sid, cover)]
            truth = _phys(reg, "S2L2A", a["S2L2A"])
            res = pipe({"S2L2A": a["S2L2A"], "S1RTC": a["S1RTC"], "DEM": a["DEM"]}, ["S2L2A"], options=opts,
                       regenerate={"S2L2A": mask}, progress=False)["S2L2A"]
            assert np.array_equal(res.sample[:, ~mask], truth[:, ~mask].astype(np.float32)), "clear pixels changed"
            blind = pipe({"S1RTC": a["S1RTC"], "DEM": a["DEM"]}, ["S2L2A"], options=opts.replace(samples=1),
                         grid_offset=split.offsets.get(sid), progress=False)["S2L2A"].sample
            interp = fillnodata_baseline(truth, mask)
            if figure is not None and cover == figure_cover:
                fig_strips.append({"truth": truth, "mask": mask, "fill": interp, "sample": res.sample,
                                   "mean": res.mean if res.mean is not None else res.sample,
                                   "std": res.std if res.std is not None else np.zeros_like(res.sample)})
            preds = [(one, res.sample), *([(mean, res.mean)] if n > 1 else []), (BLIND, blind), (FILL, interp)]
            for name, pred in preds:
                p, t = pred[:, mask], truth[:, mask]
                rows.setdefault(name, {})[sid] = {"PSNR": psnr_np(p, t, 1.0), "SAM": sam_np(p, t), "MAE": mae_np(p, t)}
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


def cloud_part(pipe, ev: Evaluator, covers: Sequence[float], figure_cover: float, fig_dir: Path | None, prev: dict,
               say: Say) -> dict:
    """The results' cloud_removal (and cloud_removal_figure, with `fig_dir`): kept from `prev` (--reuse) when
    scored there, else scored, pictured at `figure_cover` (the first cover when that one is not scored)."""
    if "cloud_removal" in prev:
        kept = {"cloud_removal": prev["cloud_removal"]}
        if prev.get("cloud_removal_figure"):
            kept["cloud_removal_figure"] = prev["cloud_removal_figure"]
        return kept
    say("cloud removal")
    fig_cover = figure_cover if figure_cover in covers else covers[0]
    fig = fig_dir / "cloud_removal.png" if fig_dir is not None else None
    out = {"cloud_removal": cloud_removal_eval(pipe, ev, ev.split, covers, ev.opts.seed, fig, fig_cover)}
    if fig is not None:
        out["cloud_removal_figure"] = {"figure": f"{FIG_DIR}/cloud_removal.png", "cover": f"{int(fig_cover * 100)}%",
                                       "how": cloud_start(ev.opts.strength)}
    return out

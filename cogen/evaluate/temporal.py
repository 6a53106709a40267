"""Time series: cogen given other dates, against what users run today, on dates and places it never trained on.

Two tasks, on data/more-real (its README):
- **Cloud removal with real cloud masks of 30-50% cover**, Slovenia (held out whole: no pixel of the place is
  trained on): each of its three clear Sentinel-2 L1C dates with each real s2cloudless mask of that cover from the
  place's 68-date series (one, 47%) and its three mirror images, DEM given. Methods: cogen given the other two clear
  dates, and the start it refines without the model; cogen at the target date alone;
  the nearest clear date, copied; per-pixel linear interpolation in time between the clear dates before and after
  (the nearest one where there is only one side); `fillnodata`.
- **A wholly missing month**, Belgium's held-out rows (configs/split.yaml, test): each month whose neighbouring
  months hold Sentinel-2 L2A, generated from those two months (9 of the 12 bands), the month's own Sentinel-1 GRD
  and the DEM. Methods: cogen with the neighbouring months; cogen from the month's radar and DEM alone; linear
  interpolation in time between the two months; the month before, copied.
Scores: PSNR (reflectance, range 1) and SAM (degrees) inside the masks (cloud removal) or over the valid pixels
(missing month), on the bands the truth holds, pooled over runs weighted by pixels. cogen's figure is the
per-pixel mean of its samples.
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.dataset import load_split
from ..io import read_raster
from ..pipeline.sources import RasterSource
from .clouds import fillnodata_baseline
from .places import SLOVENIA_CLEAR, _mean_of, _spectral
from .scoring import _phys

COVER = (0.30, 0.50)
Say = Callable[[str], None]
WITH_DATES, ALONE = "cogen with the other dates", "cogen, target date alone"
NEAREST, LINEAR, FILL = "nearest clear date (copied)", "linear interpolation in time", "fillnodata"
START = "cogen's start alone: the other dates fitted to the clear pixels, interpolated in time (no model)"


def _day(s: str) -> dt.date:
    return dt.date.fromisoformat(s[:10])


def linear_in_time(target: dt.date, before: tuple[dt.date, np.ndarray] | None,
                   after: tuple[dt.date, np.ndarray] | None) -> np.ndarray:
    """Per-pixel linear interpolation in time between (date, image) before and after the target date; the one
    side there is when the other is None."""
    if before is None or after is None:
        d, img = before or after  # type: ignore[misc]
        return img
    (d0, a), (d1, b) = before, after
    w = (target - d0).days / max((d1 - d0).days, 1)
    return (1 - w) * a + w * b


def nearest_in_time(target: dt.date, others: list[tuple[dt.date, np.ndarray]]) -> np.ndarray:
    """The image of the date nearest the target (the earlier one on a tie)."""
    return min(others, key=lambda o: (abs((o[0] - target).days), o[0]))[1]


FLIPS = {"": (False, False), "flipped left-right": (False, True), "flipped upside down": (True, False),
         "turned half round": (True, True)}


def slovenia_masks(more: Path, cover: tuple[float, float] = COVER) -> list[tuple[str, np.ndarray]]:
    """Every real cloud mask of Slovenia's series with a cover in `cover` (inclusive), as it is and in its three
    mirror images (the same cloud shape over other fields; the series holds one mask of 30-50% cover):
    [(its date and mirroring, (H, W) bool)]."""
    import rasterio

    path = more / "series" / "CLOUD" / "slovenia.tif"
    raw, _ = read_raster(path)
    with rasterio.open(path) as src:
        names = list(src.descriptions)
    out = []
    for i in range(raw.shape[0]):
        m = raw[i] == 1
        if cover[0] <= float(m.mean()) <= cover[1]:
            for how, (ud, lr) in FLIPS.items():
                v = m[::-1] if ud else m
                out.append((names[i][:10] + (f" {how}" if how else ""), np.ascontiguousarray(v[:, ::-1] if lr else v)))
    return out


def _call(pipe, opts, conds: dict, target: str, regenerate=None) -> np.ndarray:
    r = pipe(conds, [target], options=opts, regenerate=regenerate, progress=False)[target.split("@")[0]]
    return r.mean if r.mean is not None else r.sample


def start_alone(pipe, opts, conds: dict, target: str, mask: np.ndarray) -> np.ndarray:
    """cogen's start for cloud removal given other dates (cogen.pipeline.stream.TemporalStart: the other dates
    fitted to the clear pixels, interpolated in time), without the model: physical (C, H, W)."""
    import torch

    from ..pipeline.request import plan_call
    from ..pipeline.stream import interpolated_starts

    m = target.split("@")[0]
    call = plan_call(pipe.registry, pipe.model.names, pipe.unit, pipe.options, conds, [target], opts, {}, {m: mask},
                     None, None, None, None, None, None, pipe.bundle.tokenizers)
    st = interpolated_starts(call)[m]
    x = st.window(0, 0, max(call.height, call.width))[:, : call.height, : call.width]
    return pipe.registry[m].denormalize(torch.from_numpy(x)).numpy()


def temporal_cloud_removal(pipe, opts, more: Path, say: Say) -> dict:
    reg = pipe.registry
    l1c = reg["S2L1C"]
    scenes = {}
    for d in SLOVENIA_CLEAR:
        src = RasterSource(l1c, more / "S2L1C" / f"slovenia_{d}.tif")
        scenes[d] = src.read(0, 0, src.height, src.width)[0]
    dem = read_raster(more / "DEM" / f"slovenia_{SLOVENIA_CLEAR[0]}.tif")[0]
    masks = slovenia_masks(more)
    rows: dict[str, list] = {k: [] for k in (WITH_DATES, START, ALONE, NEAREST, LINEAR, FILL)}
    runs = []
    allb = np.ones(l1c.num_bands, bool)
    for d in SLOVENIA_CLEAR:
        day = _day(d)
        others = [(_day(o), _phys(reg, "S2L1C", scenes[o])) for o in SLOVENIA_CLEAR if o != d]
        before = max((o for o in others if o[0] < day), key=lambda o: o[0], default=None)
        after = min((o for o in others if o[0] > day), key=lambda o: o[0], default=None)
        truth = _phys(reg, "S2L1C", scenes[d])
        for mdate, mask in masks:
            say(f"time series: cloud removal of slovenia_{d}, mask of {mdate} ({mask.mean():.0%})")
            base = {"S2L1C": scenes[d], "DEM": dem}
            dated = {**base, **{f"S2L1C@{o}": scenes[o] for o in SLOVENIA_CLEAR if o != d}}
            preds = {WITH_DATES: _call(pipe, opts, dated, f"S2L1C@{d}", {"S2L1C": mask}),
                     # cogen starts from it when the options start from an estimate (strength < 1)
                     **({START: start_alone(pipe, opts, dated, f"S2L1C@{d}", mask)} if opts.strength < 1 else {}),
                     ALONE: _call(pipe, opts, base, "S2L1C", {"S2L1C": mask}),
                     NEAREST: nearest_in_time(day, others), LINEAR: linear_in_time(day, before, after),
                     FILL: fillnodata_baseline(truth, mask)}
            for k, p in preds.items():
                rows[k].append(_spectral(p, truth, mask, allb))
            runs.append(f"slovenia_{d} / mask {mdate}")
    return {**{k: _mean_of(v) for k, v in rows.items() if v}, "runs": runs,
            "cover": float(np.mean([m.mean() for _, m in masks])) if masks else None,
            "other_dates": "the other two clear dates (2015-07-11, 2015-08-30, 2015-09-09)"}


def missing_month(pipe, opts, more: Path, split_file: str, split: str, say: Say) -> dict:
    reg = pipe.registry
    s2 = reg["S2L2A"]
    default, regions = load_split(split_file, split)
    months = sorted(f.stem.split("_", 1)[1] for f in (more / "S2L2A").glob("belgium_*.tif"))
    data, ok, given = {}, {}, None
    first = RasterSource(s2, more / "S2L2A" / f"belgium_{months[0]}.tif")  # the months share one grid and region
    win = regions.get(f"belgium_{months[0]}", default).window(first.height, first.width)
    r0, c0, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
    for mth in months:
        src = RasterSource(s2, more / "S2L2A" / f"belgium_{mth}.tif")
        data[mth], ok[mth] = src.read(r0, c0, h, w)
        given = src.given
    names = [b for b, g in zip(s2.bands, given) if g]

    def step(mth: str, k: int) -> str:
        y, m = int(mth[:4]), int(mth[5:7]) + k
        y, m = y + (m - 1) // 12, (m - 1) % 12 + 1
        return f"{y:04d}-{m:02d}"

    rows: dict[str, list] = {k: [] for k in ("cogen with the neighbouring months", "cogen from radar and DEM alone",
                                             LINEAR, "the month before (copied)")}
    runs = []
    for mth in months:
        prev, nxt = step(mth, -1), step(mth, 1)
        if prev not in data or nxt not in data or ok[mth].mean() < 0.5:
            continue
        say(f"time series: the missing month belgium_{mth} from {prev} and {nxt}")
        valid = ok[mth] & ok[prev] & ok[nxt]
        truth = _phys(reg, "S2L2A", data[mth])
        target = f"S2L2A@{mth}-01"
        alone = {m: RasterSource(reg[m], more / m / f"belgium_{mth}.tif", window=win) for m in ("S1GRD", "DEM")}
        dated = {**alone, **{f"S2L2A@{o}-01": RasterSource(s2, more / "S2L2A" / f"belgium_{o}.tif", window=win)
                             for o in (prev, nxt)}}  # 9 bands, named by the files' band descriptions
        a, b = _phys(reg, "S2L2A", data[prev]), _phys(reg, "S2L2A", data[nxt])
        preds = {"cogen with the neighbouring months": _call(pipe, opts, dated, target),
                 "cogen from radar and DEM alone": _call(pipe, opts, alone, target),
                 LINEAR: linear_in_time(_day(mth + "-01"), (_day(prev + "-01"), a), (_day(nxt + "-01"), b)),
                 "the month before (copied)": a}
        for k, p in preds.items():
            rows[k].append(_spectral(p, truth, valid, given))
        runs.append(f"belgium_{mth}")
    return {**{k: _mean_of(v) for k, v in rows.items() if v}, "runs": runs, "bands": names,
            "region": {"rows": [r0, r0 + h], "cols": [c0, c0 + w]}}


def temporal_part(pipe, opts, more: Path, split_file: str, split: str, prev: dict, say: Say,
                  samples: int | None = None) -> dict:
    """The results' time_series: kept from `prev` (--reuse) when scored there, else scored with the run's options
    but `samples` (its own count, default the run's)."""
    if "time_series" in prev:
        return {"time_series": prev["time_series"]}
    opts = opts.replace(samples=samples)
    res = {"cloud removal S2L1C, real masks 30-50%": temporal_cloud_removal(pipe, opts, more, say),
           "missing month S2L2A": missing_month(pipe, opts, more, split_file, split, say),
           "samples": opts.samples}
    return {"time_series": res}

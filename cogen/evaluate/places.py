"""Out of place: every task scored on places the model never trained on, beside the same task on the held-out
strips of its training places.

The other places are data/more-real (its README): Belgium (monthly Sentinel-2 L2A with 9 of the 12 bands,
Sentinel-1 GRD backscatter, both composites of a month), Slovenia (Sentinel-2 L1C at three clear dates,
elevation, 68 real s2cloudless cloud masks, a land-use map with its own legend). Slovenia is held out whole
(configs/split.yaml); the demo model trains on Belgium's north rows, so Belgium is scored on its held-out rows
(a model trained before Belgium joined: on the whole scene, its GRD given as S1RTC). Tasks:
- imputation S1 -> S2L2A (Belgium; scored on the bands the truth holds), with the training mean beside it;
- land cover S2L1C -> LULC (Slovenia; its legend mapped onto LULC where the classes agree), with the class prior;
- cloud removal of S2L1C with real cloud masks of 30-50% cover (Slovenia, DEM given), with `fillnodata` and the
  training mean.
The in-place column runs the same task, settings and scoring on the held-out test strips of the shipped scenes
(cloud removal: the same real masks, cropped and repeated onto the strips).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import rasterio

from rasterio.windows import Window

from ..data.dataset import load_split
from ..io import read_raster
from ..metrics import miou_np, psnr_np, sam_np
from ..pipeline.sources import RasterSource
from .clouds import fillnodata_baseline
from .scoring import Split, _phys

# eo-learn's land-use legend -> the shipped LULC (ESRI) where the classes agree: cultivated land is crops, forest
# trees, built-up artificial surface built area; grassland and shrubland are both ESRI's rangeland.
EOLEARN_TO_LULC = {1: 4, 2: 2, 3: 9, 4: 9, 8: 5}
SLOVENIA_CLEAR = ["2015-07-11", "2015-08-30", "2015-09-09"]
COVERS = (0.25, 0.55)  # the series holds 7 masks of such cover (2 of 30-50%)
MASKS_PER_DATE = 2
Say = Callable[[str], None]


def _spectral(pred: np.ndarray, truth: np.ndarray, ok: np.ndarray, bands: np.ndarray) -> dict[str, float]:
    """PSNR (reflectance, range 1) and SAM (degrees) over valid pixels and the `bands` the truth holds."""
    p, t = pred[bands][:, ok], truth[bands][:, ok]
    return {"PSNR": psnr_np(p, t, 1.0), "SAM": sam_np(p, t), "pixels": int(ok.sum())}


def _mean_of(rows: list[dict]) -> dict[str, float]:
    w = [r["pixels"] for r in rows]
    return {"PSNR": float(np.average([r["PSNR"] for r in rows], weights=w)),
            "SAM": float(np.average([r["SAM"] for r in rows], weights=w)), "runs": len(rows)}


def _predict(pipe, opts, conds: dict, target: str, regenerate=None) -> Any:
    return pipe(conds, [target], options=opts, regenerate=regenerate, progress=False)[target]


def imputation(pipe, opts, more: Path, strips: Split, split_file: str | Path, split: str) -> dict:
    """S1 -> S2L2A: Belgium's months holding both, and the shipped strips; cogen (mean of N) and training mean.
    A model that knows S1GRD is given Belgium's GRD as S1GRD on the rows the split holds out (it trained on the
    others); an older one, as S1RTC on the whole scene, a place it never saw."""
    reg = pipe.registry
    s2 = reg["S2L2A"]
    mean = np.asarray(s2.mean)[:, None, None]
    out: dict[str, dict] = {}
    runs = {"out_of_place": [], "in_place": []}
    grd = "S1GRD" in pipe.model.names
    default, regions = load_split(split_file, split)
    where = None
    for f in sorted((more / "S2L2A").glob("belgium_*.tif")):
        s1 = more / "S1GRD" / f.name
        if not s1.is_file():
            continue
        src = RasterSource(s2, f)
        win = regions.get(f.stem, default).window(src.height, src.width) if grd else Window(0, 0, src.width, src.height)
        r0, c0, h, w = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
        raw, ok = src.read(r0, c0, h, w)
        if ok.mean() < 0.5:
            continue
        s1raw = RasterSource(reg["S1GRD" if grd else "S1RTC"], s1).read(r0, c0, h, w)[0]
        where = (f"Belgium's rows {r0}-{r0 + h} (held out; the model trained on its other rows), S1 GRD as S1GRD"
                 if grd else "Belgium (never trained on), S1 GRD given as S1RTC")
        runs["out_of_place"].append((f.stem, {"S1GRD" if grd else "S1RTC": s1raw}, _phys(reg, "S2L2A", raw), ok,
                                     src.given))
    for sid in strips.with_all(["S1RTC", "S2L2A"]):
        a, v = strips.arrays[sid], strips.valid[sid]
        # the bands scored out of place, for a like-for-like column
        given = runs["out_of_place"][0][4] if runs["out_of_place"] else np.ones(s2.num_bands, bool)
        runs["in_place"].append((sid, {"S1RTC": a["S1RTC"]}, _phys(reg, "S2L2A", a["S2L2A"]), v["S2L2A"], given))
    for side, items in runs.items():
        cg, mn = [], []
        for name, conds, truth, ok, given in items:
            r = _predict(pipe, opts, conds, "S2L2A")
            cg.append(_spectral(r.mean if r.mean is not None else r.sample, truth, ok, given))
            mn.append(_spectral(np.broadcast_to(mean, truth.shape), truth, ok, given))
        if items:
            out[side] = {"cogen": _mean_of(cg), "training mean": _mean_of(mn),
                         "scenes": [n for n, *_ in items], "bands": [b for b, g in zip(s2.bands, items[0][4]) if g]}
    if "out_of_place" in out:
        out["out_of_place"]["where"] = where
    return out


def land_cover(pipe, opts, more: Path, strips: Split, prior: np.ndarray) -> dict:
    """S2L1C -> LULC: Slovenia's clear dates against its land-use map mapped onto LULC, and the shipped strips;
    cogen (majority of N) and the class prior's most frequent class."""
    reg = pipe.registry
    lulc = reg["LULC"]
    majority = lulc.class_ids[int(np.argmax(prior))]
    runs = []
    for d in SLOVENIA_CLEAR:
        raw, _ = read_raster(more / "LULC_EOLEARN" / f"slovenia_{d}.tif")
        truth = np.zeros(raw.shape[1:], np.int64)
        for k, v in EOLEARN_TO_LULC.items():
            truth[raw[0] == k] = v
        runs.append(("out_of_place", f"slovenia_{d}", {"S2L1C": more / "S2L1C" / f"slovenia_{d}.tif"}, truth))
    for sid in strips.with_all(["S2L1C", "LULC"]):
        runs.append(("in_place", sid, {"S2L1C": strips.arrays[sid]["S2L1C"]},
                     np.where(strips.valid[sid]["LULC"], strips.arrays[sid]["LULC"][0], 0)))
    out: dict[str, dict] = {}
    for where in ("in_place", "out_of_place"):
        items = [r for r in runs if r[0] == where]
        truths, preds = [], []
        for _, name, conds, truth in items:
            preds.append(_predict(pipe, opts, conds, "LULC").classes)
            truths.append(truth)
        t = np.concatenate([x.ravel() for x in truths])
        p = np.concatenate([x.ravel() for x in preds])
        ok = t > 0
        present = [c for c in lulc.class_ids if (t[ok] == c).any()]
        out[where] = {
            "cogen": {"mIoU": miou_np(p[ok], t[ok], present), "pixel_accuracy": float((p[ok] == t[ok]).mean())},
            "class prior": {"mIoU": miou_np(np.full(ok.sum(), majority), t[ok], present),
                            "pixel_accuracy": float((t[ok] == majority).mean())},
            "classes": [lulc.classes[lulc.class_ids.index(c)].name for c in present],
            "scenes": [n for _, n, _, _ in items]}
    return out


def real_masks(more: Path, covers=COVERS, per_date: int = MASKS_PER_DATE, seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """Real cloud masks of Slovenia's series whose cover lies in `covers` (inclusive), `per_date` x the clear dates
    of them, drawn with `seed`: [(its date, (H, W) bool)]."""
    raw, _ = read_raster(more / "series" / "CLOUD" / "slovenia.tif")
    with rasterio.open(more / "series" / "CLOUD" / "slovenia.tif") as src:
        dates = list(src.descriptions)
    cands = [(dates[i], raw[i] == 1) for i in range(raw.shape[0])
             if covers[0] <= float((raw[i] == 1).mean()) <= covers[1]]
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(cands), size=min(len(cands), per_date * len(SLOVENIA_CLEAR)), replace=False)
    return [cands[i] for i in sorted(pick)]


def cloud_removal(pipe, opts, more: Path, strips: Split, seed: int) -> dict:
    """S2L1C cloud removal with real masks (DEM given): cogen (mean of N), fillnodata, training mean."""
    reg = pipe.registry
    l1c = reg["S2L1C"]
    masks = real_masks(more, seed=seed)
    mean = np.asarray(l1c.mean)[:, None, None]
    runs = []
    for j, (mdate, mask) in enumerate(masks):
        d = SLOVENIA_CLEAR[j % len(SLOVENIA_CLEAR)]
        src = RasterSource(l1c, more / "S2L1C" / f"slovenia_{d}.tif")
        raw, _ = src.read(0, 0, src.height, src.width)
        runs.append(("out_of_place", f"slovenia_{d} / mask {mdate[:10]}",
                     {"S2L1C": raw, "DEM": RasterSource(reg["DEM"], more / "DEM" / f"slovenia_{d}.tif").read(
                         0, 0, src.height, src.width)[0]}, raw, mask))
    for i, sid in enumerate(strips.with_all(["S2L1C", "DEM"])):
        a = strips.arrays[sid]
        H, W = a["S2L1C"].shape[1:]
        m = masks[i % len(masks)][1][:, :W]
        m = np.tile(m, (-(-H // m.shape[0]), 1))[:H]
        runs.append(("in_place", f"{sid} / mask {masks[i % len(masks)][0][:10]}", {"S2L1C": a["S2L1C"], "DEM": a["DEM"]},
                     a["S2L1C"], m))
    out: dict[str, dict] = {}
    for where in ("in_place", "out_of_place"):
        rows: dict[str, list] = {"cogen": [], "fillnodata": [], "training mean": []}
        items = [r for r in runs if r[0] == where]
        for _, name, conds, raw, mask in items:
            truth = _phys(reg, "S2L1C", raw)
            r = _predict(pipe, opts, conds, "S2L1C", regenerate={"S2L1C": mask})
            allb = np.ones(l1c.num_bands, bool)
            rows["cogen"].append(_spectral(r.mean if r.mean is not None else r.sample, truth, mask, allb))
            rows["fillnodata"].append(_spectral(fillnodata_baseline(truth, mask), truth, mask, allb))
            rows["training mean"].append(_spectral(np.broadcast_to(mean, truth.shape), truth, mask, allb))
        out[where] = {k: _mean_of(v) for k, v in rows.items()}
        out[where]["cover"] = float(np.mean([m.mean() for *_, m in items]))
        out[where]["runs"] = [n for _, n, *_ in items]
    return out


def out_of_place_part(pipe, opts, more: Path, shipped: Path, split_file: str, split: str, prior: np.ndarray,
                      prev: dict, say: Say, samples: int | None = None) -> dict:
    """The results' out_of_place: kept from `prev` (--reuse) when scored there, else scored with the run's options
    but `samples` (its own count, default the run's)."""
    if "out_of_place" in prev:
        return {"out_of_place": prev["out_of_place"]}
    opts = opts.replace(samples=samples)
    reg = pipe.registry
    strips = Split(shipped, reg, split_file, split, modalities=["S2L2A", "S2L1C", "S1RTC", "DEM", "LULC"])
    say("out of place: imputation S1 -> S2L2A (Belgium)")
    res = {"S1RTC->S2L2A": imputation(pipe, opts, more, strips, split_file, split)}
    say("out of place: land cover S2L1C -> LULC (Slovenia)")
    res["S2L1C->LULC"] = land_cover(pipe, opts, more, strips, prior)
    say("out of place: cloud removal of S2L1C with real masks (Slovenia)")
    res["cloud removal S2L1C"] = cloud_removal(pipe, opts, more, strips, opts.seed)
    res["samples"] = opts.samples
    return {"out_of_place": res}

"""Is a class map's confidence the chance that it is right? Agreement of the samples against the map-fit
confidence (cogen.mapfit), on pixels the calibration never saw.

    python scripts/map_fit_check.py [--checkpoint DIR] [--write] [--out docs/map_fit.json]

Calibrates on rows 0-111 of the labelled test regions of the places trained on (the TerraMind strips; the
model's maps from S2L2A, S2L1C, S1RTC and S2L2A + S1RTC + DEM, 4 samples), then measures on rows 112-223 of the
same strips and on Slovenia (never trained on: its three clear L1C dates, its land-use map mapped onto LULC where
the classes agree) the pixel accuracy, the mean confidence and the expected calibration error (ECE, 10 bins) of
the agreement and of the calibrated confidence. --write puts the calibration into the checkpoint's novelty.json
(as `python -m cogen.novelty` does).
"""
from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cogen.evaluate.places import EOLEARN_TO_LULC, SLOVENIA_CLEAR  # noqa: E402
from cogen.io import read_raster, write_json  # noqa: E402
from cogen.mapfit import HELD_OUT, calibrate_map_fit, ece, labelled_runs, pixels, tile_cs  # noqa: E402
from cogen.novelty import Calibration  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402
from cogen.pipeline.sources import RasterSource  # noqa: E402

MORE = ROOT / "data" / "more-real"


def summary(runs, fit, ids) -> dict:
    a, u, right = pixels(runs, fit, ids, step=1)
    p = np.concatenate([fit.confidence(*pixels([r], fit, ids, step=1)[:2], r["subset"]) for r in runs])
    return {"pixels": int(len(a)), "accuracy": float(right.mean()),
            "agreement": {"mean": float(a.mean()), "ece": ece(a, right)},
            "calibrated": {"mean": float(p.mean()), "ece": ece(p, right)}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--write", action="store_true", help="write the calibration into the checkpoint's novelty.json")
    ap.add_argument("--out", default=str(ROOT / "docs" / "map_fit.json"))
    a = ap.parse_args()
    t0 = time.time()
    pipe = CogenPipeline.from_checkpoint(a.checkpoint) if a.checkpoint else CogenPipeline.from_checkpoint()
    b, ids = pipe.bundle, pipe.registry["LULC"].class_ids
    data = [ROOT / "data" / "terramind-examples"]
    cal_runs = labelled_runs(pipe, data, (0, 112), samples=a.samples)
    fit = calibrate_map_fit(cal_runs, ids, source={"held_out": HELD_OUT})
    print(f"calibrated on {len(cal_runs)} maps: weights {fit.weights}, spread {fit.spread} ({time.time() - t0:.0f} s)")
    check = labelled_runs(pipe, data, (112, 224), samples=a.samples)
    doc = {"weights": list(fit.weights), "spread": {m: list(v) for m, v in fit.spread.items()}, "samples": a.samples,
           "in_place": {}, "out_of_place": {}}
    for subset in sorted({r["subset"] for r in check}):
        doc["in_place"]["+".join(subset)] = summary([r for r in check if r["subset"] == subset], fit, ids)
    doc["in_place"]["all"] = summary(check, fit, ids)
    slo = []
    for d in SLOVENIA_CLEAR:
        src = RasterSource(pipe.registry["S2L1C"], MORE / "S2L1C" / f"slovenia_{d}.tif")
        raw, _ = read_raster(MORE / "LULC_EOLEARN" / f"slovenia_{d}.tif")
        truth = np.zeros(raw.shape[1:], np.int64)
        for k, v in EOLEARN_TO_LULC.items():
            truth[raw[0] == k] = v
        res = pipe({"S2L1C": src}, ["LULC"], samples=a.samples, progress=False)["LULC"]
        run = {"subset": ("S2L1C",), "scene": f"slovenia_{d}", "classes": res.classes, "agreement": res.confidence,
               "truth": truth, "c": tile_cs(b, pipe.device, {"S2L1C": src}, "LULC", res.classes)}
        slo.append(run)
        doc["out_of_place"][f"slovenia_{d}"] = summary([run], fit, ids)
    doc["out_of_place"]["all"] = summary(slo, fit, ids)
    doc["seconds"] = round(time.time() - t0, 1)
    for where in ("in_place", "out_of_place"):
        for k, v in doc[where].items():
            print(f"{where:12s} {k:20s} accuracy {v['accuracy']:.3f}  agreement {v['agreement']['mean']:.3f} "
                  f"(ECE {v['agreement']['ece']:.3f})  calibrated {v['calibrated']['mean']:.3f} "
                  f"(ECE {v['calibrated']['ece']:.3f})")
    write_json(Path(a.out), doc)
    if a.write:
        cal = Calibration.load(b.path)
        if cal is None:
            raise SystemExit(f"{b.path}: no novelty calibration to add the map fit to; run python -m cogen.novelty")
        print("wrote", replace(cal, map_fit=fit).save(b.path))


if __name__ == "__main__":
    main()

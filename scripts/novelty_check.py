"""Does the novelty score tell places the model never saw from held-out parts of the places it trained on?

    python scripts/novelty_check.py [--checkpoint checkpoints/demo] [--out docs/novelty.json]

In-place tiles: rows 112-223 of the held-out test regions (configs/split.yaml) of the places the model trained on:
the shipped scenes' test columns and north-east Germany's east (the calibration used rows 0-111). Out-of-place
tiles: Slovenia's clear L1C dates and DEM, the place the training split holds out whole. Tiles of 32 px, each scored with one input set;
prints the ROC AUC of the tile scores per input set and pooled, and the scene scores of a noise scene, a constant
scene and the demo scene; writes them as JSON.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cogen.checkpoint import DEFAULT_CHECKPOINT, load_bundle  # noqa: E402
from cogen.io import write_json  # noqa: E402
from cogen.novelty import Calibration, roc_auc, scene_novelty, shipped_regions  # noqa: E402
from cogen.pipeline.sources import ArraySource, RasterSource  # noqa: E402

MORE = ROOT / "data" / "more-real"
SLOVENIA_CLEAR = ["2015-07-11", "2015-08-30", "2015-09-09"]
SETS = [["S2L1C"], ["S2L1C", "DEM"], ["DEM"]]  # the inputs the held-out place has


def out_of_place(reg) -> dict[str, list[dict]]:
    """{place: [{modality: Source}]}: every scene of the place the training split holds out whole (Slovenia), its
    inputs as cogen modalities."""
    src = lambda m, f: RasterSource(reg[m], f)
    return {"slovenia": [{"S2L1C": src("S2L1C", MORE / "S2L1C" / f"slovenia_{d}.tif"),
                          "DEM": src("DEM", MORE / "DEM" / f"slovenia_{d}.tif")} for d in SLOVENIA_CLEAR]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    ap.add_argument("--out", default=str(ROOT / "docs" / "novelty.json"))
    a = ap.parse_args()
    t0 = time.time()
    bundle = load_bundle(a.checkpoint)
    cal = Calibration.load(a.checkpoint)
    if cal is None:
        sys.exit(f"error: {a.checkpoint} has no novelty.json; run python -m cogen.novelty --checkpoint {a.checkpoint}")
    reg = bundle.registry
    mods = sorted({m for s in SETS for m in s})
    held = shipped_regions(bundle, [ROOT / "data" / "terramind-examples", MORE], mods, (112, 224), "test")
    by_scene: dict[str, dict] = {}
    for m, srcs in held.items():
        for sc in srcs:
            by_scene.setdefault(sc.scene, {})[m] = sc
    strips = list(by_scene.values())
    places = out_of_place(reg)
    tiles = lambda scenes: [v for s in scenes for v in scene_novelty(bundle, "cpu", s, cal).tile_scores]
    rows, pooled_in, pooled_out = [], [], []
    for subset in SETS:
        inp = tiles([{m: sc[m] for m in subset} for sc in strips if all(m in sc for m in subset)])
        outs = {}
        for place, scenes in places.items():
            have = [{m: s[m] for m in subset} for s in scenes if all(m in s for m in subset)]
            if have:
                outs[place] = tiles(have)
        allout = [v for vs in outs.values() for v in vs]
        if not allout:
            continue
        pooled_in += inp
        pooled_out += allout
        row = {"inputs": "+".join(subset), "in_place_tiles": len(inp), "out_of_place_tiles": len(allout),
               "auc": round(roc_auc(inp, allout), 3), "in_place_mean": round(float(np.mean(inp)), 3),
               "in_place_above_threshold": round(float(np.mean(np.asarray(inp) > cal.threshold)), 3),
               "out_of_place_above_threshold": round(float(np.mean(np.asarray(allout) > cal.threshold)), 3),
               "per_place": {p: {"tiles": len(v), "mean": round(float(np.mean(v)), 3),
                                 "auc": round(roc_auc(inp, v), 3)} for p, v in outs.items()}}
        rows.append(row)
        print(f"{row['inputs']:12s} AUC {row['auc']:.3f}  ({len(inp)} in-place / {len(allout)} out-of-place tiles; "
              f"above the threshold {row['in_place_above_threshold']:.0%} / {row['out_of_place_above_threshold']:.0%}; "
              f"mean {row['in_place_mean']:.2f} vs " + ", ".join(f"{p} {v['mean']:.2f}" for p, v in row["per_place"].items())
              + ")", flush=True)
    pooled = round(roc_auc(pooled_in, pooled_out), 3)
    print(f"pooled       AUC {pooled:.3f}  ({len(pooled_in)} / {len(pooled_out)} tiles)")

    # whole scenes: noise, a constant image, the demo scene
    rng = np.random.default_rng(0)
    s2 = reg["S2L2A"]
    extreme = {
        "uniform noise S2L2A": rng.integers(0, 10000, (12, 64, 64)).astype(np.int16),
        "constant S2L2A (reflectance 0.2)": np.full((12, 64, 64), 2000, np.int16),
    }
    scenes = {}
    for name, raw in extreme.items():
        n = scene_novelty(bundle, "cpu", {"S2L2A": ArraySource(s2, raw)}, cal)
        scenes[name] = n.to_json()
    demo = ROOT / "data" / "terramind-examples"
    sid = "433D_629L_3_1"  # sample.py demo's scene
    for name, ms in {"demo scene: S2L2A": ["S2L2A"], "demo scene: S1RTC+DEM": ["S1RTC", "DEM"]}.items():
        n = scene_novelty(bundle, "cpu", {m: RasterSource(reg[m], demo / m / f"{sid}.tif") for m in ms}, cal)
        scenes[name] = n.to_json()
    for name, v in scenes.items():
        print(f"{name:34s} score {v['scene_score']:.3f}  threshold {v['threshold']:.3f}  unfamiliar {v['unfamiliar']}")
    write_json(Path(a.out), {"checkpoint": str(a.checkpoint), "threshold": cal.threshold, "sets": rows,
                             "pooled_auc": pooled, "scenes": scenes, "seconds": round(time.time() - t0, 1)})
    print(f"wrote {a.out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()

"""Does a generated land-cover map agree with the image it came from? A check for the next novelty score.

    python scripts/consistency_check.py [--samples 2] [--out docs/consistency_check.json]

Novelty (cogen.novelty) scores the inputs alone, and misses the worst case: a forest the model has read before,
labelled "crops" everywhere with high confidence (docs/NOVELTY.md). This check measures, for each 32 px tile,
how much the generated map helps the model denoise the image it was made from:

    c = log err(S2L1C noised to t = 0.6 | the generated LULC, clean) - log err(S2L1C noised to t = 0.6, alone)

A map that fits the image helps (c < 0); one that does not, hurts. It prints c on the held-out strips of the
training places (rows 112-223 of the test columns, segmented by the model) and on places the model never saw
(Slovenia's clear dates, a 512 px square of north-east Germany), and the ROC AUC between them. Not used by the
workflows yet.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rasterio.windows import Window  # noqa: E402

from cogen.data.dataset import to_model_space  # noqa: E402
from cogen.io import write_json  # noqa: E402
from cogen.novelty import roc_auc, shipped_regions  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402
from cogen.pipeline.sources import RasterSource  # noqa: E402

MORE = ROOT / "data" / "more-real"
T, LEVEL = 32, 0.6


@torch.no_grad()
def consistency(pipe, src, classes: np.ndarray, m: str = "S2L1C") -> list[float]:
    """c of every whole tile of `src` (modality m) given the class map `classes` (H, W) of the same grid."""
    b = pipe.bundle
    model, diff, lulc = b.model, b.diffusion, b.registry["LULC"]
    out = []
    for r in range(0, src.height - T + 1, T):
        for c in range(0, src.width - T + 1, T):
            raw, ok = src.read(r, c, T, T)
            x, _ = to_model_space(src.modality, raw, ok, src.given)
            cl = classes[r : r + T, c : c + T]
            y, _ = to_model_space(lulc, cl[None], np.isin(cl, lulc.class_ids))
            z, zl = b.tokenizers[m].encode(x[None]), b.tokenizers["LULC"].encode(y[None])
            eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(0))
            t = torch.full((1,), LEVEL)
            zt = diff.add_noise(z, eps, t)
            alone = diff.predict_x0(zt, model({m: zt}, {m: t})[m], t)
            given = diff.predict_x0(zt, model({m: zt, "LULC": zl}, {m: t, "LULC": torch.zeros(1)})[m], t)
            out.append(float(torch.log(((given - z) ** 2).mean()) - torch.log(((alone - z) ** 2).mean())))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "consistency_check.json"))
    a = ap.parse_args()
    t0 = time.time()
    pipe = CogenPipeline.from_checkpoint()
    reg = pipe.registry
    seg = lambda cond: pipe(cond, ["LULC"], samples=a.samples, progress=False)["LULC"].classes
    held = shipped_regions(pipe.bundle, ROOT / "data" / "terramind-examples", ["S2L1C"], (112, 224), "test")["S2L1C"]
    inp = [v for s in held for v in consistency(pipe, s, seg({"S2L1C": s}))]
    places = {f"slovenia_{d}": RasterSource(reg["S2L1C"], MORE / "S2L1C" / f"slovenia_{d}.tif")
              for d in ("2015-07-11", "2015-08-30", "2015-09-09")}
    places["germany (512 px)"] = RasterSource(reg["S2L1C"], MORE / "S2L1C" / "germany_2017-02-16.tif",
                                              window=Window(512, 128, 512, 512))
    outs = {name: consistency(pipe, s, seg({"S2L1C": s})) for name, s in places.items()}
    allout = [v for vs in outs.values() for v in vs]
    doc = {"level": LEVEL, "samples": a.samples, "in_place": {"tiles": len(inp), "mean": float(np.mean(inp))},
           "out_of_place": {n: {"tiles": len(v), "mean": float(np.mean(v)), "auc": roc_auc(inp, v)} for n, v in outs.items()},
           "auc": roc_auc(inp, allout), "seconds": round(time.time() - t0, 1)}
    print(f"in place: {len(inp)} tiles, mean c {doc['in_place']['mean']:+.3f}")
    for n, v in doc["out_of_place"].items():
        print(f"{n:20s} {v['tiles']:4d} tiles, mean c {v['mean']:+.3f}, AUC {v['auc']:.3f}")
    print(f"pooled AUC {doc['auc']:.3f} ({time.time() - t0:.0f} s)")
    write_json(Path(a.out), doc)


if __name__ == "__main__":
    main()

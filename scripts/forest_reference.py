"""Reproduce the data README's per-pixel random-forest land-cover reference and score it with cogen's metrics.

The README of the shipped scenes quotes a per-pixel random forest (100 trees, 60k training pixels) on the same
split: LULC from S2L2A 0.769 / 0.431 (pixel accuracy / mIoU), from S1RTC 0.375 / 0.135, from S2L2A + S1RTC +
DEM 0.792 / 0.455. This script trains such forests on the training columns (one per seed, raw band values as
features), predicts the test strips and scores them with `cogen.evaluate.class_scores`, the function that
scores cogen, so the reference and cogen's figures are computed the same way. Needs scikit-learn, which cogen
itself does not (`pip install scikit-learn`).

    python scripts/forest_reference.py --seeds 3
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cogen.evaluate import Split, class_scores  # noqa: E402
from cogen.registry import default_registry  # noqa: E402

INPUTS = (("S2L2A",), ("S1RTC",), ("S2L2A", "S1RTC", "DEM"))


def features(split: Split, inputs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pixels, bands) raw values, truth class ids and their validity, over every scene of the split."""
    X, y, ok = [], [], []
    for s in split.with_all([*inputs, "LULC"]):
        a = split.arrays[s]
        X.append(np.concatenate([a[m].reshape(a[m].shape[0], -1).astype(np.float64) for m in inputs]).T)
        y.append(a["LULC"][0].ravel())
        ok.append(split.valid[s]["LULC"].ravel())
    return np.concatenate(X), np.concatenate(y), np.concatenate(ok)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--train-cols", default="0,160")
    p.add_argument("--test-cols", default="160,224")
    p.add_argument("--pixels", type=int, default=60000, help="training pixels drawn per forest")
    p.add_argument("--trees", type=int, default=100)
    p.add_argument("--seeds", type=int, default=3, help="forests per input set (seeds 0..N-1)")
    a = p.parse_args(argv)
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        sys.exit("scripts/forest_reference.py needs scikit-learn: pip install scikit-learn")
    reg = default_registry()
    cols = lambda s: tuple(int(v) for v in s.split(","))
    for inputs in INPUTS:
        tr = Split(a.data, reg, None, None, [*inputs, "LULC"], cols=cols(a.train_cols))
        te = Split(a.data, reg, None, None, [*inputs, "LULC"], cols=cols(a.test_cols))
        X, y, ok = features(tr, inputs)
        Xt, yt, okt = features(te, inputs)
        acc, miou = [], []
        for seed in range(a.seeds):
            idx = np.random.default_rng(seed).choice(np.flatnonzero(ok), min(a.pixels, int(ok.sum())), replace=False)
            rf = RandomForestClassifier(a.trees, n_jobs=-1, random_state=seed).fit(X[idx], y[idx])
            s = class_scores(reg, "LULC", yt, np.where(okt, rf.predict(Xt), 0), None)
            acc.append(s["pixel_accuracy"])
            miou.append(s["mIoU"])
            iou = ", ".join(f"{k} {v:.2f}" for k, v in s["per_class_IoU"].items() if v is not None)
            print(f"{' + '.join(inputs)} -> LULC, seed {seed}: accuracy {acc[-1]:.3f}, mIoU {miou[-1]:.3f} ({iou})",
                  flush=True)
        print(f"{' + '.join(inputs)} -> LULC, {a.seeds} forests: accuracy {np.mean(acc):.3f} "
              f"({min(acc):.3f}-{max(acc):.3f}), mIoU {np.mean(miou):.3f} ({min(miou):.3f}-{max(miou):.3f})", flush=True)


if __name__ == "__main__":
    main()

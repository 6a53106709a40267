"""Choose the spatial smoothing of class votes (sample.vote_sigma) on training pixels.

Like scripts/select_sampling.py, the test strips (columns 160-223) are never used: each direction is sampled
once on the 64 training columns beside them (96-159) with the checkpoint's own sampling settings, its per-pixel
votes are kept, and every sigma is scored on the same votes (the smoothing is a deterministic step after
sampling, so this is exactly what sampling with that sigma gives). With `--prior-tau`, the smoothed votes are
also divided by the training split's class frequencies to that power (logit adjustment). One line per
direction, sigma and power: mIoU, pixel accuracy, the calibration error of the confidence, per-class IoU.
`--save DIR` keeps the votes, `--load DIR` scores kept votes again without sampling.

    python scripts/select_vote_smoothing.py --direction "S2L2A->LULC" --sigma 1 --sigma 2 --sigma 3 --save votes
    python scripts/select_vote_smoothing.py --direction "S2L2A->LULC" --sigma 2 --prior-tau 0.5 --load votes
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cogen.evaluate import Evaluator, Split, class_prior, class_scores, cogen_predictor, parse_direction  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402
from cogen.votes import smooth_votes  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/demo")
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--cols", default="96,160", help="training columns to use")
    p.add_argument("--direction", action="append", required=True, help="e.g. 'S2L2A->LULC' (repeatable)")
    p.add_argument("--sigma", type=float, action="append", default=[], help="pixels (repeatable); 0 is always scored")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--tile", default="32,0", help="TILE,OVERLAP of the class-map calls (the evaluation's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prior-tau", type=float, action="append", default=[],
                   help="also divide the smoothed votes by the training class frequency to this power (logit "
                        "adjustment; repeatable; 0 is always scored)")
    p.add_argument("--save", default=None, help="folder to keep each direction's votes in (npz)")
    p.add_argument("--load", default=None, help="score votes kept by --save instead of sampling")
    a = p.parse_args(argv)
    sigmas = sorted({0.0, *a.sigma})
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    pipe.vote_sigma = 0.0  # votes are captured unsmoothed and smoothed here
    captured: list = []
    flush = pipe._flush

    def capture(sources, targets, regenerate, writers, acc, wsum, info, top, n, W, samples, *rest):
        w = wsum[:n, :W]
        has = (info[:n, :W] / w) > 1e-6 if sources else np.ones((n, W), bool)
        for m in targets:
            if m in writers and pipe.registry[m].is_categorical:
                captured.append((m, (acc[m][:, :n, :W] / w[None]).copy(), has.copy()))
        flush(sources, targets, regenerate, writers, acc, wsum, info, top, n, W, samples, *rest)

    pipe._flush = capture
    c0, c1 = (int(v) for v in a.cols.split(","))
    tile, overlap = (int(v) for v in a.tile.split(","))
    for d in a.direction:
        cond, tgt = parse_direction(d)
        split = Split(a.data, pipe.registry, None, None, cond + tgt, cols=(c0, c1))
        ev = Evaluator(split, pipe.registry, a.samples, a.steps, "ddim", tile, overlap, a.seed, 16, None)
        pred = cogen_predictor(pipe, ev)
        t0 = time.time()
        votes: dict[str, list] = {m: [] for m in tgt if pipe.registry[m].is_categorical}
        name = "".join(ch if ch.isalnum() else "_" for ch in d)
        if a.load:
            z = np.load(Path(a.load) / f"{name}.npz")
            for m in votes:
                votes[m] = [(sid, z[f"{m}/{sid}/votes"], z[f"{m}/{sid}/ok"]) for sid in split.with_all(cond + tgt)]
        else:
            for sid in split.with_all(cond + tgt):
                captured.clear()
                pred(sid, {m: split.arrays[sid][m] for m in cond}, tgt, a.samples)
                for m in votes:
                    v = np.concatenate([c[1] for c in captured if c[0] == m], axis=1)
                    ok = np.concatenate([c[2] for c in captured if c[0] == m], axis=0)
                    votes[m].append((sid, v, ok))
        if a.save:
            Path(a.save).mkdir(parents=True, exist_ok=True)
            np.savez_compressed(Path(a.save) / f"{name}.npz", **{f"{m}/{sid}/{k}": x for m, per in votes.items()
                                                                 for sid, v, ok in per for k, x in (("votes", v), ("ok", ok))})
        print(f"{d}, columns {c0}-{c1 - 1}, {a.samples} samples, {a.steps} steps, tile {tile}/{overlap} "
              f"({time.time() - t0:.0f} s)", flush=True)
        for m, per in votes.items():
            mod = pipe.registry[m]
            prior = class_prior(a.data, pipe.registry, "configs/split.yaml", "train", m) if a.prior_tau else None
            for s in sigmas:
                for tau in sorted({0.0, *a.prior_tau}):
                    truth, preds, confs = [], [], []
                    for sid, v, ok in per:
                        sv = smooth_votes(v, ok, s)
                        if tau:
                            sv = sv / np.maximum(prior, 1e-4)[:, None, None] ** tau
                            sv = sv / np.maximum(sv.sum(0, keepdims=True), 1e-12)
                        valid = split.valid[sid][m]
                        truth.append(split.arrays[sid][m][0].ravel())
                        preds.append(np.where(valid & ok, np.asarray(mod.class_ids)[sv.argmax(axis=0)], 0).ravel())
                        confs.append(np.where(ok, sv.max(axis=0), np.nan).ravel())
                    o = class_scores(pipe.registry, m, np.concatenate(truth), np.concatenate(preds),
                                     np.concatenate(confs))
                    iou = ", ".join(f"{k} {v:.2f}" for k, v in o["per_class_IoU"].items() if v is not None)
                    print(f"  sigma {s:g}" + (f", prior tau {tau:g}" if a.prior_tau else "") + f": {m} mIoU "
                          f"{o['mIoU']:.3f}  accuracy {o['pixel_accuracy']:.3f}  ECE {o['ECE']:.3f}  ({iou})", flush=True)


if __name__ == "__main__":
    main()

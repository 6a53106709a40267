r"""Score a checkpoint on any directions, with baselines, and write results.json and a results page.

    python -m cogen.evaluate --checkpoint checkpoints/demo --data data/terramind-examples --split test \
        --direction "S1RTC->S2L2A" --direction "S2L2A->LULC" --samples 8 \
        --baseline mean --baseline-checkpoint checkpoints/regression --robustness LULC:S2L2A,S1RTC,DEM \
        --cloud-removal --sweep "S1RTC->S2L2A" --out results.json --report docs/RESULTS.md

Everything is in physical units over valid pixels. Continuous targets: MAE, RMSE, PSNR, SSIM, SAM (spectral
modalities) for one sample and for the per-pixel mean of N; diversity (mean per-pixel std); realism (1-D
Wasserstein distance of per-band histograms, high-frequency power of a sample over the truth's). Class maps:
pixel accuracy, mIoU, per-class IoU of the majority of N samples, and the calibration (ECE) of its confidence.

Sampling follows the checkpoint's options (cogen.options.SampleOptions); --samples (default 8), --steps,
--sampler, --tile, --overlap, --batch and --seed change one of them. Every method samples with the same steps,
sampler, seeds and tiles.

Parts: `scoring` (the split, the scores, the predictors, directions, robustness, the steps sweep), `clouds`
(cloud removal), `places` (every task on places the model never saw, beside the same on the split), `temporal`
(other dates against nearest-date copies, interpolation in time and fillnodata) and `report` (results.json documents
and the page); `main` runs them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..errors import UsageError, cli_exit
from ..flags import add_sampling_flags, sampling_overrides
from ..io import write_json
from ..options import SAMPLERS
from .clouds import (BLIND, CLOUD_ONE, FILL, cloud_masks, cloud_part, cloud_removal_eval, cloud_removal_figure,
                     cloud_row, cloud_start, cloud_strip_rows, fillnodata_baseline)
from .places import out_of_place_part
from .temporal import temporal_part
from .report import (MERGE_OWN, PARTS, carried_methods, cogen_scored, kept_baseline, load_reuse, merge_results,
                     run_settings, sampling_words, settings_mismatch, without_method, write_report)
from .scoring import (DETERMINISTIC, FIG_DIR, PRIOR, Evaluator, Split, _phys, class_prior, class_scores,
                      cogen_predictor, continuous_scores, mean_predictor, parse_direction, parse_directions,
                      robustness_subsets, score_methods, score_robustness, shared_options, steps_sweep,
                      training_priors)

__all__ = ["BLIND", "CLOUD_ONE", "DETERMINISTIC", "FIG_DIR", "FILL", "MERGE_OWN", "PARTS", "PRIOR", "Evaluator", "Split",
           "class_prior", "class_scores", "cloud_masks", "cloud_removal_eval", "cloud_removal_figure", "cloud_row",
           "cloud_start", "cloud_strip_rows", "cogen_predictor", "cogen_scored", "continuous_scores",
           "fillnodata_baseline", "main", "mean_predictor", "merge_results", "parse_direction", "run_settings",
           "sampling_words", "settings_mismatch", "shared_options", "without_method", "write_report",
           "_phys"]  # _phys: raw -> physical values, used by scripts


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m cogen.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=None, help="cogen bundle (default: the shipped demo model)")
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--split-file", default="configs/split.yaml")
    p.add_argument("--split", default="test")
    p.add_argument("--train-split", default="train", help="split the baselines' statistics come from")
    p.add_argument("--direction", action="append", default=[], help="e.g. 'S1RTC,DEM->S2L2A' (repeatable)")
    add_sampling_flags(p, {"samples": 8})
    p.add_argument("--sampler", default=None, choices=SAMPLERS, help="the scheduler (default: the checkpoint's)")
    p.add_argument("--baseline", action="append", default=[], choices=["mean"], help="training mean / class prior")
    p.add_argument("--baseline-checkpoint", default=None, help="a deterministic (train.objective=regression) bundle")
    p.add_argument("--robustness", default=None, help="TARGET:A,B,C -> scores TARGET for every non-empty subset")
    p.add_argument("--cloud-removal", action="store_true", help="synthetic cloud masks over the real S2L2A")
    p.add_argument("--cloud-covers", default="0.2,0.3,0.4,0.5")
    p.add_argument("--cloud-figure-cover", type=float, default=0.4,
                   help="the cover pictured on the page (with --report; the first cover if this one is not scored)")
    p.add_argument("--out-of-place", default=None, metavar="DIR",
                   help="score imputation, land cover and cloud removal on the places in DIR (data/more-real) beside "
                        "the same tasks on the split's strips (cogen.evaluate.places)")
    p.add_argument("--out-of-place-samples", type=int, default=None,
                   help="samples per scene there (default: --samples); the part is 15 scenes and 11 cloud runs")
    p.add_argument("--time-series", default=None, metavar="DIR",
                   help="score cloud removal and a missing month given other dates against nearest-date, linear "
                        "interpolation in time and fillnodata on the series in DIR (data/more-real; "
                        "cogen.evaluate.temporal)")
    p.add_argument("--time-series-samples", type=int, default=None, help="samples per run there (default: --samples)")
    p.add_argument("--sweep", default=None, help="direction for the quality-vs-steps plot (ddim, dpm++)")
    p.add_argument("--sweep-steps", default="5,10,20,50,100")
    p.add_argument("--out", required=True, help="results.json")
    p.add_argument("--reuse", default=None, help="an earlier results.json: parts already scored there are kept")
    p.add_argument("--baselines-only", action="store_true",
                   help="score only the baselines (a file to --reuse when cogen is re-scored later)")
    p.add_argument("--notes", default=None, help="a Markdown file of analysis to include in the report")
    p.add_argument("--report", default=None, help="write a Markdown page (figures beside it)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out / --report (and its figures)")
    return p


@cli_exit
def main(argv: list[str] | None = None) -> None:
    a = parser().parse_args(argv)
    t0 = time.time()

    def say(msg: str) -> None:
        print(f"[{time.time() - t0:6.0f}s] {msg}", flush=True)

    for f in (a.out, a.report):  # checked before hours of scoring, not after
        if f and Path(f).exists() and not a.overwrite:
            raise UsageError(f"{f} exists; pass --overwrite to replace it (with --reuse {a.out} the figures already in "
                             f"it are kept, not scored again)")
    from ..pipeline import CogenPipeline

    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    opts = pipe.options.replace(sampler=a.sampler, **sampling_overrides(a))  # the checkpoint's, changed by the flags
    reg = pipe.registry
    directions = parse_directions(a.direction, pipe.model.names)
    fig_dir = Path(a.report).parent / FIG_DIR if a.report else None
    ev = Evaluator(Split(a.data, reg, a.split_file, a.split), reg, opts, fig_dir)
    settings = run_settings(pipe, opts, a.split)
    prev = load_reuse(a.reuse, settings, a.baselines_only)
    # the methods: cogen, the baselines asked for, and those scored in the --reuse file that are not run now
    predictors = {} if a.baselines_only else {"cogen": cogen_predictor(pipe, ev)}
    if "mean" in a.baseline:
        predictors[PRIOR] = mean_predictor(reg, training_priors(a.data, reg, a.split_file, a.train_split, directions))
    baselines: dict[str, dict] = {}  # the checkpoints behind the baselines' figures, for the page
    if a.baseline_checkpoint:
        bpipe = CogenPipeline.from_checkpoint(a.baseline_checkpoint)
        predictors[DETERMINISTIC] = cogen_predictor(bpipe, ev, shared_options(bpipe.options, opts))
        baselines[DETERMINISTIC] = {"checkpoint": str(bpipe.bundle.path), "checkpoint_sha256": bpipe.bundle.digest}
        prev = kept_baseline(prev, DETERMINISTIC, baselines[DETERMINISTIC], a.reuse, a.baseline_checkpoint)
    tgt, subsets = robustness_subsets(a.robustness) if a.robustness else (None, [])
    carried = [] if a.baselines_only else carried_methods(prev, list(predictors), a.reuse,
                                                          [" + ".join(sub) for sub in subsets])
    baselines.update({k: v for k, v in prev.get("meta", {}).get("baselines", {}).items() if k in carried})
    # scoring
    results = score_methods(ev, predictors, directions, prev, say)
    for name in carried:
        print(f"kept from {a.reuse}: {name} (not run now)", flush=True)
        results[name] = {d: prev[name][d] for d in directions if d in prev[name]}
    if a.robustness:
        meths = [k for k in [*predictors, *carried] if k != PRIOR]  # the prior is not in the table
        results["robustness"] = score_robustness(ev, predictors, meths, tgt, subsets, results,
                                                 prev.get("robustness", {}).get("table", {}), say)
    if not a.baselines_only and a.cloud_removal:  # cloud removal and the sweep score cogen only
        results.update(cloud_part(pipe, ev, [float(c) for c in a.cloud_covers.split(",")], a.cloud_figure_cover,
                                  fig_dir, prev, say))
    if not a.baselines_only and a.out_of_place:
        ev.scored = ev.scored or "out_of_place" not in prev
        results.update(out_of_place_part(pipe, opts, Path(a.out_of_place), Path(a.data), a.split_file, a.split,
                                         class_prior(a.data, reg, a.split_file, a.train_split, "LULC"), prev, say,
                                         a.out_of_place_samples))
    if not a.baselines_only and a.time_series:
        ev.scored = ev.scored or "time_series" not in prev
        results.update(temporal_part(pipe, opts, Path(a.time_series), a.split_file, a.split, prev, say,
                                     a.time_series_samples))
    if not a.baselines_only and a.sweep:
        results["sweep"] = prev["sweep"] if "sweep" in prev else {
            **steps_sweep(ev, predictors["cogen"], a.sweep, [int(s) for s in a.sweep_steps.split(",")], fig_dir, say),
            "final_denoise": opts.final_denoise}
    # reporting
    results["meta"] = {"checkpoint": str(pipe.bundle.path), **settings, "directions": list(directions),
                       "seconds": (time.time() - t0 if ev.scored else 0.0) + prev.get("meta", {}).get("seconds", 0.0),
                       **({"baselines": baselines} if baselines else {})}
    write_json(a.out, results)
    cmd = "python -m cogen.evaluate " + " ".join(f"'{x}'" if ">" in x or " " in x else x for x in (argv or sys.argv[1:]))
    if a.report and not a.baselines_only:
        write_report(Path(a.report), results, cmd, Path(a.notes).read_text() if a.notes else None)
    print(f"wrote {a.out}" + (f" and {a.report}" if a.report else ""))

"""Reporting: results.json as documents (the settings a run's figures depend on, reusing an earlier run's
figures, merging parts scored as separate runs) and the Markdown page made from one."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import UsageError
from ..io import atomic_path
from ..options import SampleOptions
from .clouds import cloud_strip_rows
from .scoring import DETERMINISTIC, PRIOR

PARTS = ("meta", "robustness", "cloud_removal", "cloud_removal_figure", "sweep", "out_of_place", "time_series")  # results.json keys that are not methods


# ---- a run's settings, and figures reused from an earlier run ----------------------------------------------
def run_settings(pipe, options: SampleOptions, split: str) -> dict:
    """What a run's figures depend on besides its directions: the weights, the sampling options and the split
    (the meta of results.json but `MERGE_OWN`), as the file holds them (lists, not tuples)."""
    return json.loads(json.dumps({"checkpoint_sha256": pipe.bundle.digest, **dataclasses.asdict(options),
                                  "split": split}))


def load_reuse(path: str | None, settings: dict, baselines_only: bool) -> dict:
    """The results document at `path` (--reuse; {} when none), refused unless its figures are of these weights
    and `settings` (the page would mislabel them); a --baselines-only run needs only the same settings."""
    prev: dict[str, Any] = json.loads(Path(path).read_text()) if path and Path(path).is_file() else {}
    if prev:
        pm = prev.get("meta", {})
        k = settings_mismatch(pm, settings, cogen_scored(prev) and not baselines_only)
        if k is not None:
            raise UsageError(f"--reuse {path}: it was scored with {k}={pm.get(k)!r}, this run has "
                             f"{settings.get(k)!r}; reuse only a file of the same weights and settings, or score again without --reuse")
    return prev


def kept_baseline(prev: dict, method: str, record: dict, reuse: str | None, checkpoint: str) -> dict:
    """`prev` without `method`'s figures unless they are of the checkpoint in `record` (its sha256)."""
    kept = prev.get("meta", {}).get("baselines", {}).get(method, {}).get("checkpoint_sha256")
    if method in prev and kept != record["checkpoint_sha256"]:  # figures of other (or unrecorded) weights
        print(f"--reuse {reuse}: its {method} figures are not of {checkpoint}; scoring them again", flush=True)
        return without_method(prev, method)
    return prev


def carried_methods(prev: dict, run: Sequence[str], reuse: str | None, robustness_rows: Sequence[str]) -> list[str]:
    """Methods scored in the --reuse document that are not run now (e.g. a baseline whose checkpoint is not
    here): they are kept, each with its whole robustness column (checked before anything runs)."""
    carried = [k for k in prev if k not in run and k not in PARTS and k != "cogen"]
    prev_rows = prev.get("robustness", {}).get("table", {})
    for meth in carried:
        if meth == PRIOR:  # the prior is not in the robustness table
            continue
        for row in robustness_rows:
            if prev_rows.get(row, {}).get(meth) is None:
                raise UsageError(f"--reuse {reuse}: {meth} has no '{row}' robustness row to keep; pass its "
                                 f"checkpoint so that it can be scored")
    return carried


# ---- merging parts scored as separate runs -------------------------------------------------------------
MERGE_OWN = ("checkpoint", "directions", "seconds", "baselines")  # meta keys a part may have its own of; all others must agree


def cogen_scored(doc: dict) -> bool:
    """Whether a results document holds figures of cogen's weights (not only baselines)."""
    return "cogen" in doc or any(k in doc for k in PARTS if k not in ("meta", "robustness"))


def settings_mismatch(meta: dict, ref: dict, with_weights: bool) -> str | None:
    """The first meta key (but `MERGE_OWN`) on which two results documents differ, or None; the checkpoint's
    digest counts only `with_weights` (a --baselines-only document does not depend on cogen's weights)."""
    for k in sorted((set(meta) | set(ref)) - set(MERGE_OWN)):
        if k == "checkpoint_sha256" and not with_weights:
            continue
        if meta.get(k) != ref.get(k):
            return k
    return None


def without_method(doc: dict, method: str) -> dict:
    """A copy of a results document without one method's figures: its directions, its robustness column and
    the record of its checkpoint."""
    doc = json.loads(json.dumps(doc))
    doc.pop(method, None)
    rb = doc.get("robustness")
    if rb is not None:
        rb["methods"] = [k for k in rb["methods"] if k != method]
        for row in rb["table"].values():
            row.pop(method, None)
        for k in ("mean", "worst"):
            rb.get(k, {}).pop(method, None)
        if not rb["methods"]:
            doc.pop("robustness")
    doc.get("meta", {}).get("baselines", {}).pop(method, None)
    return doc


def merge_results(parts: Sequence[tuple[str, dict]], replace: Sequence[str] = ()) -> dict:
    """One results document from parts scored as separate runs of one command (`evaluate` writes only when it
    ends, so a long page is best scored part by part, in parallel). Every part must have the same weights and
    settings (every key of its meta but `MERGE_OWN`); a figure scored in two parts must be the same in both. The meta's
    directions are the union, its seconds the sum; robustness mean / worst are recomputed from the merged table
    for the methods that have every row. A part with no cogen figures (`--baselines-only`) may come from
    another cogen checkpoint. A method named in `replace` (a baseline trained again) is taken from the last part
    that scores it alone; its figures in earlier parts are dropped."""
    if not parts:
        raise UsageError("merge: no results files given")
    for meth in replace:
        holders = [i for i, (_, d) in enumerate(parts) if meth in d or meth in d.get("robustness", {}).get("methods", [])]
        if not holders:
            raise UsageError(f"merge: --replace {meth!r}: no file scores it; methods are named as in results.json, "
                             f"e.g. {DETERMINISTIC!r}")
        parts = [(n, without_method(d, meth) if i < holders[-1] else d) for i, (n, d) in enumerate(parts)]
    first_name, first = next(((n, d) for n, d in parts if cogen_scored(d)), parts[0])  # whose weights count
    out: dict[str, Any] = {}

    def put(where: dict, key: str, value, what: str, name: str) -> None:
        if key in where and where[key] != value:
            raise UsageError(f"merge: {what} is scored in both an earlier file and {name}, with other figures; "
                             f"drop it from one of them")
        where[key] = value

    meta = dict(first["meta"])
    meta["directions"], meta["seconds"], meta["baselines"] = [], 0.0, {}
    rb_target, rb_rows, rb_methods = None, {}, []
    for name, doc in parts:
        m = doc.get("meta", {})
        k = settings_mismatch(m, first["meta"], cogen_scored(doc))
        if k is not None:
            raise UsageError(f"merge: {name} was scored with {k}={m.get(k)!r}, {first_name} with "
                             f"{first['meta'].get(k)!r}; merge only parts of one command")
        meta["directions"] += [d for d in m.get("directions", []) if d not in meta["directions"]]
        meta["seconds"] += m.get("seconds", 0.0)
        for meth, ckpt in m.get("baselines", {}).items():
            put(meta["baselines"], meth, ckpt, f"the checkpoint of {meth}", name)
        for key, val in doc.items():
            if key == "meta":
                continue
            if key == "robustness":
                if rb_target not in (None, val["target"]):
                    raise UsageError(f"merge: {name} scores robustness of {val['target']}, an earlier file of {rb_target}")
                rb_target = val["target"]
                rb_methods += [k for k in val["methods"] if k not in rb_methods]
                for sub, row in val["table"].items():
                    for meth, v in row.items():
                        put(rb_rows.setdefault(sub, {}), meth, v, f"robustness '{sub}' of {meth}", name)
            elif key == "cloud_removal":
                for cover, rows in val.items():
                    put(out.setdefault(key, {}), cover, rows, f"cloud removal at {cover}", name)
            elif key in PARTS:  # the sweep, the cloud-removal picture: whole parts
                put(out, key, val, key, name)
            else:  # a method: direction by direction
                for d, v in val.items():
                    put(out.setdefault(key, {}), d, v, f"{d} of {key}", name)
    if rb_target is not None:
        full = [k for k in rb_methods if all(k in row for row in rb_rows.values())]
        out["robustness"] = {"target": rb_target, "methods": rb_methods, "table": rb_rows,
                             "mean": {k: float(np.mean([row[k] for row in rb_rows.values()])) for k in full},
                             "worst": {k: float(np.min([row[k] for row in rb_rows.values()])) for k in full}}
    if not meta["baselines"]:
        meta.pop("baselines")
    out["meta"] = meta
    return out


# ---- report ---------------------------------------------------------------------------------------------
def _fmt(v, nd=3):
    return "–" if v is None else (f"{v:.{nd}f}" if isinstance(v, float) else str(v))


def _scored(results: dict, methods: list[str]):
    """(direction, method, target, scores) for every scored target, in report order; figures excluded."""
    for d in results["meta"]["directions"]:
        for meth in methods:
            for m, s in (results[meth].get(d) or {}).items():
                if m != "figure":
                    yield d, meth, m, s


def tiling_words(meta: dict) -> str:
    """The tiles of a run, in words: its own tile, or the options' tiles by target and for cloud removal."""
    if meta.get("tile") is not None:
        return f"tiles {meta['tile']} px (overlap {meta['overlap']})"
    tiles = meta["tiles"]
    default = tiles["default"][0]
    words = [f"tiles {tiles['default'][0]} px (overlap {tiles['default'][1]})"]
    words += [f"{m} targets: tiles {t} px (overlap {o}){' when an image is given' if t > default else ''}"
              for m, (t, o) in tiles.items() if m not in ("default", "regenerate")]
    if "regenerate" in tiles:
        words.append(f"cloud removal: tiles {tiles['regenerate'][0]} px (overlap {tiles['regenerate'][1]})")
    return ", ".join(words)


def sampling_words(meta: dict) -> str:
    """How the page's figures were sampled, in one sentence (from the meta of results.json)."""
    strength = meta.get("strength", 1.0)
    return (f"Checkpoint `{meta['checkpoint']}`; {meta['samples']} samples, {meta['steps']} {meta['sampler']} steps, "
            f"{tiling_words(meta)}, seed {meta['seed']}"
            + (f", a clean-up call at model time {meta['final_denoise']:g} after the last step" if meta.get("final_denoise") else "")
            + (f", cloud removal started from the interpolation of the clear pixels noised to strength {strength:g}"
               if strength < 1 else "")
            + (f", cloud removal: each generated pixel moved onto the mean of the {meta['library_neighbours']} clear "
               f"pixels of its strip with the nearest spectra" if meta.get("library_neighbours") else "")
            + f"; {meta['seconds']:.0f} s.")


def _header(meta: dict, command: str) -> list[str]:
    L = ["# cogen: results", "",
         "Generated by `python -m cogen.evaluate` (do not edit by hand). Test split: columns 160-223 of each of the",
         "five shipped scenes (224 x 64 px strips, never seen in training). Physical units; PSNR of reflectance",
         "with data range 1.", "", "Command:", "", "```", command, "```", "", sampling_words(meta), ""]
    L += [f"{meth}: checkpoint `{c['checkpoint']}` (sha256 `{c['checkpoint_sha256'][:16]}`)."
          for meth, c in meta.get("baselines", {}).items()] + ([""] if meta.get("baselines") else [])
    return L + ["Reference figures on this split (per-pixel random forest, from the data's README): LULC from S2L2A "
                "acc 0.769 / mIoU 0.431; from S1RTC 0.375 / 0.135; from S2L2A+S1RTC+DEM 0.792 / 0.455. S1RTC -> S2L2A "
                "PSNR: training mean 12.62 dB, random forest 13.68 dB. Cloud removal (35% masks): fillnodata 27.86 dB, "
                "SAM 4.74 deg.", ""]


def _directions(results: dict, methods: list[str]) -> list[str]:
    """The tables of continuous targets and of class maps."""
    L = ["## Continuous targets", "",
         "| direction | target | method | PSNR 1 sample | PSNR mean of N | SSIM (mean) | SAM deg (mean) | MAE (mean) | "
         "diversity | HF power ratio | Wasserstein |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for d, meth, m, s in _scored(results, methods):
        if "sample" in s:
            mean = s.get("mean", s["sample"])
            L.append(f"| {d} | {m} | {meth} | {_fmt(s['sample']['PSNR'], 2)} | {_fmt(mean['PSNR'], 2)} | "
                     f"{_fmt(mean['SSIM'])} | {_fmt(mean.get('SAM'), 2)} | {_fmt(mean['MAE'], 4)} | "
                     f"{_fmt(s.get('diversity'), 4)} | {_fmt(s['hf_power_ratio'], 2)} | {_fmt(s['wasserstein'], 4)} |")
    L += ["", "## Class maps", "", "| direction | target | method | pixel accuracy | mIoU | ECE | per-class IoU |",
          "|---|---|---|---|---|---|---|"]
    for d, meth, m, s in _scored(results, methods):
        if "mIoU" in s:
            pc = ", ".join(f"{k} {v:.2f}" for k, v in s["per_class_IoU"].items() if v is not None)
            L.append(f"| {d} | {m} | {meth} | {_fmt(s['pixel_accuracy'])} | {_fmt(s['mIoU'])} | "
                     f"{_fmt(s.get('ECE'))} | {pc} |")
    return L


def _robustness(rb: dict) -> list[str]:
    L = ["", f"## Missing-modality robustness: {rb['target']} mIoU for every subset of inputs", "",
         "| inputs | " + " | ".join(rb["methods"]) + " |", "|---|" + "---|" * len(rb["methods"])]
    for sub, vals in rb["table"].items():
        L.append(f"| {sub} | " + " | ".join(_fmt(vals.get(k)) for k in rb["methods"]) + " |")
    L.append("| **mean** | " + " | ".join(_fmt(rb["mean"].get(k)) for k in rb["methods"]) + " |")
    L.append("| **worst** | " + " | ".join(_fmt(rb["worst"].get(k)) for k in rb["methods"]) + " |")
    return L


def _cloud_removal(cloud: dict) -> list[str]:
    """The cover-by-method table, then strip by strip the means of N and the baselines."""
    L = ["", "## Cloud removal (synthetic cloud masks over the real S2L2A test strips; scores inside the masks)", "",
         "| cover | method | PSNR dB | SAM deg | MAE |", "|---|---|---|---|---|"]
    for cover, rows in cloud.items():
        for meth, s in rows.items():
            L.append(f"| {cover} | {meth} | {s['PSNR']:.2f} | {s['SAM']:.2f} | {s['MAE']:.4f} |")
    per = {cover: cloud_strip_rows(rows) for cover, rows in cloud.items()}
    if any(per.values()):
        L += ["", "Per strip (PSNR dB / SAM deg inside the masks; the table above averages these):", ""]
        for cover, meths in per.items():
            rows = cloud[cover]
            if not meths:
                continue
            L += [f"| {cover} | " + " | ".join(meths) + " |", "|---|" + "---|" * len(meths)]
            for sid in rows[meths[0]]["per_strip"]:
                L.append(f"| {sid} | " + " | ".join(
                    f"{rows[k]['per_strip'][sid]['PSNR']:.2f} / {rows[k]['per_strip'][sid]['SAM']:.2f}" for k in meths) + " |")
            L.append("")
    return L


def _out_of_place(op: dict) -> list[str]:
    """Each task on the held-out strips of the training places and on places the model never saw, side by side."""
    L = ["", "## In place and out of place", "",
         "Each task with the same settings on the held-out test strips of the shipped scenes (in place) and on the "
         "places of data/more-real (out of place): a place the model never trained on, or, where the notes below "
         "say so, the held-out rows of a place it trained on elsewhere (`cogen.evaluate.places` says how). The "
         "deterministic baseline is not run here (its checkpoint is not shipped). cogen: the mean (imputation, cloud "
         f"removal) or majority (land cover) of {op.get('samples', '?')} samples.", "",
         "| task | figure | method | in place | out of place |", "|---|---|---|---|---|"]
    notes = []
    for task, r in op.items():
        if not isinstance(r, dict) or "in_place" not in r:
            continue
        ip, oo = r["in_place"], r.get("out_of_place", {})
        methods = [k for k, v in ip.items() if isinstance(v, dict)]
        figs = ["mIoU", "pixel_accuracy"] if "mIoU" in ip[methods[0]] else ["PSNR", "SAM"]
        for f in figs:
            for k in methods:
                L.append(f"| {task} | {f} | {k} | {_fmt(ip[k].get(f))} | {_fmt((oo.get(k) or {}).get(f))} |")
        how = [f"bands scored {', '.join(ip['bands'])}" if "bands" in ip else "",
               f"classes in the truth: in place {', '.join(ip['classes'])}; out of place {', '.join(oo.get('classes', []))}"
               if "classes" in ip else "",
               f"mask cover {ip['cover']:.0%} in place, {oo.get('cover', float('nan')):.0%} out of place"
               if "cover" in ip else ""]
        notes.append(f"- {task}: out of place on " + (f"{oo['where']}: " if oo.get("where") else "")
                     + f"{', '.join(oo.get('scenes', oo.get('runs', [])))}"
                     + "".join(f"; {h}" for h in how if h) + ".")
    return L + [""] + notes


def _time_series(ts: dict) -> list[str]:
    """cogen given other dates against the tools users run today, task by task."""
    L = ["", "## Time series: other dates against today's tools", "",
         "cogen given other dates of the place, beside cogen without them and the methods users run today, on a place "
         "and on rows the model never trained on (`cogen.evaluate.temporal` says how). cogen: the mean of "
         f"{ts.get('samples', '?')} samples. PSNR (dB, higher is better) / SAM (degrees, lower is better).", ""]
    for task, r in ts.items():
        if not isinstance(r, dict):
            continue
        meths = [k for k, v in r.items() if isinstance(v, dict) and "PSNR" in v]
        L += [f"**{task}**" + (f" (mask cover {r['cover']:.0%} on average)" if r.get("cover") else ""), "",
              "| method | PSNR | SAM | runs |", "|---|---|---|---|"]
        best = max(r[k]["PSNR"] for k in meths) if meths else None
        for k in meths:
            b = "**" if r[k]["PSNR"] == best else ""
            L.append(f"| {k} | {b}{r[k]['PSNR']:.2f}{b} | {r[k]['SAM']:.2f} | {r[k]['runs']} |")
        L += ["", f"Runs: {', '.join(r.get('runs', []))}" + (f"; bands {', '.join(r['bands'])}" if r.get("bands") else "")
              + (f"; {r['other_dates']}" if r.get("other_dates") else "") + ".", ""]
    return L


def _sweep(sw: dict) -> list[str]:
    L = ["", f"## Sampling efficiency: {sw['direction']} (1 sample, one model call per step"
         f"{', then a clean-up call' if sw.get('final_denoise') else ''})", "", f"![steps]({sw['figure']})", "",
         "| sampler | " + " | ".join(str(s) for s in sw["steps"]) + " |", "|---|" + "---|" * len(sw["steps"])]
    for smp, vals in sw["psnr"].items():
        L.append(f"| {smp} PSNR | " + " | ".join(f"{v:.2f}" for v in vals) + " |")
    for smp, vals in sw["seconds"].items():
        L.append(f"| {smp} seconds | " + " | ".join(f"{v:.1f}" for v in vals) + " |")
    return L


def write_report(path: Path, results: dict, command: str, notes: str | None = None) -> None:
    """The Markdown page of a results document: how it was made, a table per part, `notes`, the pictures."""
    methods = [k for k in results if k not in PARTS]
    L = _header(results["meta"], command) + _directions(results, methods)
    if "robustness" in results:
        L += _robustness(results["robustness"])
    if "cloud_removal" in results:
        L += _cloud_removal(results["cloud_removal"])
    if results.get("cloud_removal_figure"):
        cf = results["cloud_removal_figure"]
        L += [f"Cloud removal at {cf['cover']} cover on every test strip, side by side in each panel "
              f"(cogen {cf['how']}, with the page's sampling):", "", f"![cloud removal]({cf['figure']})", ""]
    if "out_of_place" in results:
        L += _out_of_place(results["out_of_place"])
    if "time_series" in results:
        L += _time_series(results["time_series"])
    if "sweep" in results:
        L += _sweep(results["sweep"])
    if notes:
        L += ["", notes.strip()]
    figs = [(f"{d} ({meth})", results[meth][d]["figure"]) for d in results["meta"]["directions"] for meth in methods
            if "figure" in (results[meth].get(d) or {})]
    if figs:
        L += ["", "## Figures", ""]
        for title, f in figs:
            L += [f"**{title}**", "", f"![{title}]({f})", ""]
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(L) + "\n")

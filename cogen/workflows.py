"""The four user workflows behind sample.py (impute, cloud-removal, segment, synth) and the demo."""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.windows import Window

from .checkpoint import REPO_ROOT
from .errors import UsageError
from .io import Grid, check_same_grid, open_raster, read_raster, write_json, write_raster
from .flags import sampling_overrides
from .options import SampleOptions
from .pipeline import CogenPipeline, MaskSource
from .pipeline.dates import resolve_dates, split_key
from .quicklook import read_preview, render, save_grid
from .runs import OutputDir, write_run_json

SHIPPED_DATA = REPO_ROOT / "data" / "terramind-examples"


def _pipeline(args) -> CogenPipeline:
    if getattr(args, "pipeline", None) is not None:  # loaded once for the many scenes of a --manifest job
        return args.pipeline
    return CogenPipeline.from_checkpoint(args.checkpoint, args.device)


def _parse_add_offsets(items) -> dict[str, float]:
    """--add-offset MOD=DN (repeatable) -> {MOD: DN}."""
    out: dict[str, float] = {}
    for m, v in _parse_pairs(items, "--add-offset", "NUMBER", "S2L2A=-1000").items():
        try:
            out[m] = float(v)
        except ValueError:
            raise UsageError(f"--add-offset '{m}={v}': expected MOD=NUMBER in raw units, e.g. --add-offset "
                             f"S2L2A=-1000 for Sentinel-2 of processing baseline 04.00 or later") from None
    return out


def _parse_bands(items) -> dict[str, list[str]]:
    """--bands MOD=B02,B03,... (repeatable) -> {MOD: [band, ...]}."""
    return {m: [b.strip() for b in v.split(",") if b.strip()]
            for m, v in _parse_pairs(items, "--bands", "B02,B03,...", "S2L2A=B02,B03,B04,B08").items()}


def window_arg(value: str | None):
    """--window COL,ROW,WIDTH,HEIGHT (pixels of the inputs, GDAL's -srcwin order) -> a rasterio Window, or None."""
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"--window {value!r}: expected four whole numbers COL,ROW,WIDTH,HEIGHT in pixels, e.g. "
                         f"--window 0,0,512,512")
    c, r, w, h = (int(p) for p in parts)
    return Window(c, r, w, h)


def bounds_window(value: str, path, crs: str | None = None) -> Window:
    """--bounds LEFT,BOTTOM,RIGHT,TOP in the CRS of the raster at `path` (or in `crs`, e.g. EPSG:4326 for
    longitude/latitude, whose box is taken onto the raster's CRS with its edges densified) -> the window of the
    raster's whole pixels that cover them, clipped to the raster; bounds outside it are a UsageError naming the
    raster's own."""
    import math

    from rasterio.windows import from_bounds

    try:
        left, bottom, right, top = (float(v) for v in value.split(","))
    except ValueError:
        raise UsageError(f"--bounds {value!r}: expected four numbers LEFT,BOTTOM,RIGHT,TOP in the inputs' CRS, "
                         f"e.g. --bounds 500000,4990000,505120,4995120") from None
    if not (left < right and bottom < top):
        raise UsageError(f"--bounds {value!r}: LEFT must be below RIGHT and BOTTOM below TOP")
    with open_raster(path) as src:
        if crs:
            from rasterio.crs import CRS
            from rasterio.errors import CRSError
            from rasterio.warp import transform_bounds

            try:
                left, bottom, right, top = transform_bounds(CRS.from_user_input(crs), src.crs, left, bottom, right, top)
            except CRSError:
                raise UsageError(f"--bounds-crs {crs!r}: not a CRS; give e.g. EPSG:4326") from None
        w = from_bounds(left, bottom, right, top, src.transform)
        eps = 1e-6  # bounds on pixel edges take no extra pixel
        c0 = max(math.floor(w.col_off + eps), 0)
        r0 = max(math.floor(w.row_off + eps), 0)
        c1 = min(math.ceil(w.col_off + w.width - eps), src.width)
        r1 = min(math.ceil(w.row_off + w.height - eps), src.height)
        if c1 <= c0 or r1 <= r0:
            b = src.bounds
            raise UsageError(f"--bounds {value}{f' ({crs})' if crs else ''} lies outside {path}, whose bounds are "
                             f"{b.left:g},{b.bottom:g},{b.right:g},{b.top:g} ({src.crs}); give bounds that overlap it")
    return Window(c0, r0, c1 - c0, r1 - r0)


def scene_window(args, inputs: dict[str, str]):
    """The pixel window of the inputs a job works on (--window, or --bounds on the first input), or None;
    worked out once per job and kept on `args`."""
    if not hasattr(args, "scene_window"):
        win, bnd = getattr(args, "window", None), getattr(args, "bounds", None)
        if win and bnd:
            raise UsageError("give --window (pixels) or --bounds (map coordinates), not both")
        crs = getattr(args, "bounds_crs", None)
        if crs and not bnd:
            raise UsageError("--bounds-crs goes with --bounds")
        args.scene_window = (window_arg(win) if win else
                             bounds_window(bnd, next(iter(inputs.values())), crs) if bnd else None)
    return args.scene_window


def _call_kw(args, **over) -> dict[str, Any]:
    """The pipeline call's keyword arguments from the common flags: sampling overrides, offsets, window, progress."""
    kw = dict(sampling_overrides(args), add_offsets=_parse_add_offsets(getattr(args, "add_offset", None)),
              bands=_parse_bands(getattr(args, "bands", None)),
              window=getattr(args, "scene_window", None), progress=not args.quiet)
    kw.update(over)
    return kw


def _parse_pairs(items, flag: str, value: str, example: str) -> dict[str, str]:
    """Repeated `flag MOD=VALUE` options -> {MOD: VALUE}; each modality once."""
    out: dict[str, str] = {}
    for it in items or []:
        if "=" not in it:
            raise UsageError(f"{flag} {it!r}: expected MOD={value}, e.g. {flag} {example}")
        m, p = it.split("=", 1)
        if m.strip() in out:
            raise UsageError(f"{flag} {m} given twice; give each modality once")
        out[m.strip()] = p.strip()
    return out


def _parse_inputs(items) -> dict[str, str]:
    return _parse_pairs(items, "--input", "path", "S1RTC=s1.tif or S2L2A@2021-05-04=may.tif")


def _quicklook(path: Path, registry, panels_in: dict[str, Any], panels_out: dict[str, Any], extra_row=None) -> Path:
    """panels: {title: (modality name, raw array or path)}."""
    def row(panels):
        out = []
        for title, (m, v) in panels.items():
            arr = read_preview(v) if isinstance(v, (str, Path)) else np.asarray(v)
            if title == "novelty":  # 1 = the 95th percentile of familiar tokens; 2 and above saturate
                out.append((title, np.clip(np.nan_to_num(arr[0] / 2.0), 0, 1)))
            elif title.endswith("confidence") or title.endswith("std"):
                a = arr[0] if arr.ndim == 3 else arr
                finite = a[np.isfinite(a)]
                hi = float(np.percentile(finite, 98)) if finite.size and title.endswith("std") else 1.0
                out.append((title, np.clip(np.nan_to_num(a / max(hi, 1e-12)), 0, 1)))
            else:
                out.append((title, render(registry[m], arr)))
        return out
    rows = [row(panels_in), row(panels_out)]
    if extra_row:
        rows.append(row(extra_row))
    return save_grid(path, [r for r in rows if r])


def _options(pipe: CogenPipeline, args) -> SampleOptions:
    """The sampling options a job runs with: the checkpoint's, with the flags given."""
    return pipe.options.replace(**sampling_overrides(args))


def _run_json(d: Path, args, pipe: CogenPipeline, t0: float, extra: dict) -> None:
    opts = _options(pipe, args)
    arguments = {k: v for k, v in vars(args).items() if k != "pipeline"}
    write_run_json(d, arguments, pipe.bundle, opts.seed, t0, {"options": opts.to_dict(), **extra})


def _outputs(d: Path, targets, names=None) -> dict[str, dict[str, Path]]:
    """Where each output of each target goes: TARGET.tif (a sample or the classes), _mean, _std, _confidence."""
    out = {}
    for m in targets:
        base = (names or {}).get(m, m)
        out[m] = {"sample": d / f"{base}.tif", "mean": d / f"{base}_mean.tif", "std": d / f"{base}_std.tif",
                  "classes": d / f"{base}.tif", "confidence": d / f"{base}_confidence.tif"}
    return out


def _run_job(args, pipe: CogenPipeline, inputs: dict[str, str], targets: list[str], panels, t0: float,
             regenerate=None) -> dict:
    """One job into a staged output folder: rasters, quicklook.png (inputs over `panels(files)`), run.json."""
    window = scene_window(args, inputs)
    kw = _call_kw(args)
    dates = resolve_dates(pipe.registry, inputs, targets, regenerate)  # as the call resolves them, for run.json
    with OutputDir(args.out, args.overwrite) as od:
        nov = _novelty(pipe, inputs, od.path, kw, regenerate)
        res = pipe(inputs, targets, outputs=_outputs(od.path, dates.targets), regenerate=regenerate, novelty=nov, **kw)
        files = {m: r.files for m, r in res.items()}
        fits = {m: _map_fit(pipe, inputs, m, f, nov, kw) for m, f in files.items() if "confidence" in f}
        out_panels = panels(files)
        if nov is not None:
            out_panels["novelty"] = (None, od.path / "novelty.tif")
        _quicklook(od.path / "quicklook.png", pipe.registry,
                   {f"input {m}": (m, read_preview(p, window=window, modality=pipe.registry[m], bands=kw["bands"].get(m)))
                    for m, p in inputs.items()}, out_panels)
        _run_json(od.path, args, pipe, t0, {"outputs": _rel(files, od.path), "dates": dates.to_json(),
                                            "novelty": None if nov is None else nov.to_json(),
                                            **({"map_fit": fits} if fits else {})})
    return files


def _map_fit(pipe: CogenPipeline, inputs: dict[str, str], target: str, files: dict[str, str], nov, kw) -> dict | None:
    """A class map's confidence made the chance that its class is right (cogen.mapfit), times the inputs'
    familiarity as before: the confidence GeoTIFF is rewritten (a temporary file, then renamed). A one-line
    warning when the map fits its inputs worse than 95% of the held-out tiles did. None without a calibration."""
    import rasterio
    from rasterio.windows import Window

    from .io import atomic_path

    path = Path(files["confidence"])
    fit = pipe.map_fit(inputs, target, files["classes"], window=kw["window"], add_offsets=kw["add_offsets"],
                       bands=kw["bands"])
    if fit is None:
        return None
    with rasterio.open(path) as src:
        prof = src.profile
    with atomic_path(path) as tmp:  # both files closed before the rename
        with rasterio.open(path) as src, rasterio.open(tmp, "w", **prof) as dst:
            H, W = src.height, src.width
            for top in range(0, H, 512):  # by bands of rows: the scene's confidence is never whole in memory
                n = min(512, H - top)
                win = Window(0, top, W, n)
                stored = src.read(1, window=win)
                fam = np.ones_like(stored) if nov is None else nov.familiarity(top, n)
                a = stored / fam  # the samples' agreement
                conf = pipe.calibration.map_fit.confidence(np.nan_to_num(a, nan=1.0), fit["u"][top : top + n],
                                                           fit["inputs"])
                dst.write(np.where(np.isfinite(a), conf * fam, np.nan)[None].astype(np.float32), window=win)
            dst.update_tags(**src.tags(), COGEN_CONFIDENCE="the chance that the class is right: the samples' "
                            "agreement and the map's fit to the inputs (cogen.mapfit), times the inputs' familiarity",
                            COGEN_MAP_FIT_WEIGHTS=",".join(f"{w:.6g}" for w in fit["weights"]))
            dst.descriptions = src.descriptions
    score = fit["scene_score"]
    poor = bool(np.isfinite(score) and score > 1.0)
    if poor:
        print(f"warning: the {target} map fits its inputs worse than 95% of the maps of held-out places did (map fit "
              f"{score:.2f} > 1); read it as unreliable; {path.name} shows where", file=sys.stderr)
    return {"scene_score": round(score, 4) if np.isfinite(score) else None, "threshold": 1.0, "poor_fit": poor}


def _novelty(pipe: CogenPipeline, inputs: dict[str, str], out: Path, kw: dict[str, Any], masks=None):
    """The inputs' novelty, written to `out`/novelty.tif, read as the call with keywords `kw` (`_call_kw`) reads
    them; a one-line warning when the scene is unfamiliar; None when the checkpoint has no novelty calibration or
    no input it knows."""
    nov = pipe.novelty(inputs, window=kw["window"], add_offsets=kw["add_offsets"], bands=kw["bands"], masks=masks,
                       out=out / "novelty.tif")
    if nov is not None and nov.unfamiliar:
        print(nov.warning(), file=sys.stderr)
    return nov


# ---- impute ------------------------------------------------------------------------------------------------
def impute(args: argparse.Namespace) -> dict:
    t0 = time.time()
    inputs = _parse_inputs(args.input)
    pipe = _pipeline(args)
    files = _run_job(args, pipe, inputs, args.target, lambda files: {
        **{f"{m} (sample)" if "sample" in f else m: (m, f.get("sample") or f.get("classes")) for m, f in files.items()},
        **{f"{m} std": (m, f["std"]) for m, f in files.items() if "std" in f},
        **{f"{m} confidence": (m, f["confidence"]) for m, f in files.items() if "confidence" in f}}, t0)
    print(f"wrote {', '.join(args.target)} to {args.out} (quicklook: {Path(args.out) / 'quicklook.png'})")
    return files


def _rel(files: dict, base: Path) -> dict:
    return {m: {k: Path(v).name for k, v in f.items()} for m, f in files.items()}


# ---- cloud removal -----------------------------------------------------------------------------------------
def cloud_removal(args: argparse.Namespace) -> dict:
    t0 = time.time()
    if not args.mask:
        raise UsageError("cloud-removal needs --mask: a binary cloud mask (non-zero = cloud) or a "
                         "scene-classification layer with --mask-values")
    inputs = _parse_inputs(args.input)
    optical = [m for m in inputs if split_key(m)[0] in ("S2L2A", "S2L1C") and split_key(m)[1] is None]
    if len(optical) != 1:
        raise UsageError("cloud-removal needs exactly one Sentinel-2 scene to fill, named without a date: --input "
                         "S2L2A=path (or S2L1C=path); give other dates as --input S2L2A@YYYY-MM-DD=path")
    target = optical[0]
    pipe = _pipeline(args)
    values = None
    if args.mask_values:
        try:
            values = [int(v) for v in args.mask_values.split(",") if v.strip()]
        except ValueError:
            raise UsageError(f"--mask-values {args.mask_values!r}: expected integers like 8,9,10,3") from None
    mask = MaskSource(args.mask, values, scene_window(args, inputs))
    check_same_grid(inputs[target], Grid.of(inputs[target]), args.mask, mask.full_grid)
    cover, held = mask.survey()
    if values is None and sum(v != 0 for v in held) > 1:  # a class layer, not a 0/1 or 0/255 mask
        print(f"warning: {args.mask} holds several non-zero values ({', '.join(str(v) for v in held[:8])}); every "
              f"non-zero one counts as cloud ({cover:.0%} of the scene). For a scene-classification layer pass "
              f"--mask-values, e.g. 8,9,10,3", file=sys.stderr)
    if cover == 0:
        print(f"warning: {args.mask} masks no pixel; the output is the input", file=sys.stderr)
    when = getattr(args, "date", None)
    files = _run_job(args, pipe, inputs, [f"{target}@{when}" if when else target],
                     lambda files: {f"{target} filled": (target, files[target]["sample"])}, t0, regenerate={target: mask})
    print(f"wrote {target} with the masked pixels ({cover:.1%} of the {'window' if getattr(args, 'scene_window', None) else 'scene'}) and any no-data pixels of the input "
          f"(nodata, all bands 0, out of range) generated to {args.out} "
          f"(quicklook: {Path(args.out) / 'quicklook.png'})")
    return files


# ---- segment -----------------------------------------------------------------------------------------------
def segment(args: argparse.Namespace) -> dict:
    t0 = time.time()
    inputs = _parse_inputs(args.input)
    pipe = _pipeline(args)
    if args.target in pipe.registry and not pipe.registry[args.target].is_categorical:
        raise UsageError(f"segment makes class maps; {args.target} is continuous (use impute)")
    t = args.target
    files = _run_job(args, pipe, inputs, [t], lambda files: {
        f"{t} (majority of {args.samples})": (t, files[t]["classes"]), f"{t} confidence": (t, files[t]["confidence"])}, t0)
    print(f"wrote {args.target}.tif and {args.target}_confidence.tif to {args.out}")
    return files


# ---- synth -------------------------------------------------------------------------------------------------
def synth(args: argparse.Namespace) -> dict:
    t0 = time.time()
    inputs = _parse_inputs(args.input)
    pipe = _pipeline(args)
    if args.n < 1:
        raise UsageError(f"--n must be at least 1, got {args.n}")
    size = 64 if args.size is None else args.size
    if size < 1:
        raise UsageError(f"--size must be a number of pixels >= 1, got {size} (e.g. --size 64)")
    seed = _options(pipe, args).seed
    manifest: dict[str, dict[str, str]] = {}
    with OutputDir(args.out, args.overwrite) as od:
        nov = _novelty(pipe, inputs, od.path, _call_kw(args)) if inputs else None  # scenes from nothing: nothing to judge
        layouts = {m: read_raster(p) for m, p in inputs.items()}  # copied into every scene to complete it
        panels_out = {}
        for i in range(args.n):
            sid = f"synth_{seed + i:04d}"
            outs = {m: {"sample": od.path / m / f"{sid}.tif", "classes": od.path / m / f"{sid}.tif",
                        "confidence": od.path / f".{m}_{sid}_confidence.tif"} for m in args.target}
            # scenes without inputs lie nowhere: written without a CRS, on a unit pixel grid
            pipe(inputs, args.target, outputs=outs, size=(size, size), **_call_kw(args, seed=seed + i, samples=1))
            manifest[sid] = {m: f"{m}/{sid}.tif" for m in args.target}
            for m, (arr, prof) in layouts.items():
                write_raster(od.path / m / f"{sid}.tif", arr, prof["crs"], prof["transform"], prof["nodata"])
                manifest[sid][m] = f"{m}/{sid}.tif"
            for f in od.path.glob(".*_confidence.tif"):
                f.unlink()
            if i < 4:
                for m in args.target:
                    panels_out[f"{sid} {m}"] = (m, od.path / m / f"{sid}.tif")
        write_json(od.path / "manifest.json", {"scenes": manifest})
        _quicklook(od.path / "quicklook.png", pipe.registry, {f"input {m}": (m, p) for m, p in inputs.items()},
                   panels_out)
        _run_json(od.path, args, pipe, t0, {"scenes": list(manifest), "novelty": None if nov is None else nov.to_json()})
    print(f"wrote {args.n} scene(s) in the dataset layout to {args.out} (manifest.json, quicklook.png)")
    return manifest


# ---- demo --------------------------------------------------------------------------------------------------
def demo(args: argparse.Namespace) -> dict:
    """impute S2L2A from S1RTC+DEM, segment LULC from S2L2A, remove synthetic clouds from S2L2A."""
    from .data.synthetic import smooth_field

    t0 = time.time()
    data = Path(args.data) if args.data else SHIPPED_DATA
    sid = args.scene
    paths = {m: data / m / f"{sid}.tif" for m in ("S2L2A", "S1RTC", "DEM", "LULC")}
    for m, p in paths.items():
        if not p.is_file():
            raise UsageError(f"{p}: not found; --scene must be a shipped scene id (see {data / m})")
    pipe = _pipeline(args)
    seed = _options(pipe, args).seed
    results: dict[str, Any] = {}
    with OutputDir(args.out, args.overwrite) as od:
        inp = od.path / "inputs"
        # a synthetic cloud mask (smooth random field, ~35% cover) and the cloudy scene it makes
        s2, prof = read_raster(paths["S2L2A"])
        rng = np.random.default_rng(seed)
        field = smooth_field(rng, s2.shape[1], s2.shape[2], 14)
        cloud = field > np.quantile(field, 0.65)
        write_raster(inp / "cloud_mask.tif", cloud[None].astype(np.uint8), prof["crs"], prof["transform"], nodata=None)
        cloudy = np.where(cloud[None], np.int16(7500), s2).astype(s2.dtype)
        write_raster(inp / "S2L2A_cloudy.tif", cloudy, prof["crs"], prof["transform"], prof["nodata"])
        jobs = [
            ("impute", impute, dict(input=[f"S1RTC={paths['S1RTC']}", f"DEM={paths['DEM']}"], target=["S2L2A"])),
            ("segment", segment, dict(input=[f"S2L2A={paths['S2L2A']}"], target="LULC", samples=args.samples or 4)),
            ("cloud-removal", cloud_removal, dict(input=[f"S2L2A={inp / 'S2L2A_cloudy.tif'}", f"S1RTC={paths['S1RTC']}",
                                                         f"DEM={paths['DEM']}"], mask=str(inp / "cloud_mask.tif"),
                                                  mask_values=None, samples=1)),
        ]
        for name, fn, kw in jobs:
            a = argparse.Namespace(**{**vars(args), **kw, "out": str(od.path / name), "overwrite": False})
            t = time.time()
            print(f"demo: {name} ...", flush=True)
            with contextlib.redirect_stdout(io.StringIO()):  # the jobs' own lines name the staging folder
                fn(a)
            results[name] = {"seconds": round(time.time() - t, 1),
                             "novelty": json.loads((od.path / name / "run.json").read_text()).get("novelty")}
        # scores against the real data (the demo scene is shipped with every modality)
        from .metrics import psnr_np, miou_np

        refl = lambda raw: pipe.registry["S2L2A"].to_physical(raw.astype(np.float64))
        s2_true = refl(s2)
        imp, _ = read_raster(od.path / "impute" / "S2L2A.tif")
        results["impute"]["psnr_db"] = round(psnr_np(refl(imp), s2_true, 1.0), 2)
        seg, _ = read_raster(od.path / "segment" / "LULC.tif")
        lulc, _ = read_raster(paths["LULC"])
        reg = pipe.registry["LULC"]
        results["segment"]["miou"] = round(miou_np(seg[0], lulc[0], reg.class_ids), 3)
        results["segment"]["pixel_accuracy"] = round(float((seg[0] == lulc[0]).mean()), 3)
        filled, _ = read_raster(od.path / "cloud-removal" / "S2L2A.tif")
        m = cloud
        results["cloud-removal"]["psnr_in_mask_db"] = round(psnr_np(refl(filled[:, m]), s2_true[:, m], 1.0), 2)
        results["cloud-removal"]["clear_pixels_identical"] = bool((filled[:, ~m] == s2[:, ~m]).all())
        results["cloud-removal"]["mask_cover"] = round(float(m.mean()), 3)
        _quicklook(od.path / "quicklook.png", pipe.registry,
                   {"S1RTC": ("S1RTC", paths["S1RTC"]), "DEM": ("DEM", paths["DEM"]), "S2L2A (truth)": ("S2L2A", paths["S2L2A"]),
                    "LULC (truth)": ("LULC", paths["LULC"]), "S2L2A cloudy": ("S2L2A", inp / "S2L2A_cloudy.tif")},
                   {"S2L2A from S1RTC+DEM": ("S2L2A", od.path / "impute" / "S2L2A.tif"),
                    "LULC from S2L2A": ("LULC", od.path / "segment" / "LULC.tif"),
                    "LULC confidence": ("LULC", od.path / "segment" / "LULC_confidence.tif"),
                    "S2L2A clouds removed": ("S2L2A", od.path / "cloud-removal" / "S2L2A.tif")})
        _run_json(od.path, args, pipe, t0, {"jobs": results, "scene": sid})
    print(json.dumps(results, indent=2))
    print(f"outputs in {args.out}/ (impute/, segment/, cloud-removal/); overview: {Path(args.out) / 'quicklook.png'}")
    return results

r"""The `cogen` command (also `python sample.py`): generate missing modalities with a trained cogen model; every output is a georeferenced GeoTIFF.

    cogen demo --out outputs/demo
    cogen impute --input S1RTC=s1.tif --input DEM=dem.tif --target S2L2A --out out/impute
    cogen cloud-removal --input S2L2A=s2.tif --mask scl.tif --mask-values 8,9,10,3 \
        --input S1RTC=s1.tif --out out/clouds
    cogen segment --input S2L2A=s2.tif --samples 8 --out out/seg
    cogen impute --manifest scenes.csv --target S2L2A --out out/many   # one row per scene (--manifest in --help)
    cogen synth --n 4 --input LULC=layout.tif --target S2L2A --out out/synth
    cogen info [--checkpoint CKPT] [--json]    # what a checkpoint knows: modalities, classes, defaults
    cogen parts s1.tif --rows 4                  # one --window per line: parts that join into one whole run
    cogen join part*/S2L2A.tif --out S2L2A.tif   # parts of a scene (--window runs), blended where they overlap

Each command writes into --out (an existing non-empty folder needs --overwrite) the rasters, a run.json
(arguments, checkpoint hash, versions, seed, timings) and a quicklook.png.
"""
from __future__ import annotations

import argparse
import sys

from cogen.errors import exit_code
from cogen.flags import add_sampling_flags


def common(p: argparse.ArgumentParser, default_out: str | None = None, defaults: dict | None = None) -> None:
    g = p.add_argument_group("common options")
    g.add_argument("--out", required=default_out is None, default=default_out, help="output folder (created)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing non-empty output folder")
    g.add_argument("--checkpoint", default=None, help="cogen bundle or training checkpoint (default: shipped demo model)")
    add_sampling_flags(g, defaults)
    g.add_argument("--add-offset", action="append", default=None, metavar="MOD=DN",
                   help="the additive offset in raw units that the product of a continuous modality states, "
                        "applied when reading it and kept in the outputs of that modality (repeatable). Sentinel-2 "
                        "L2A/L1C of processing baseline 04.00 or later (from 25 January 2022) carry "
                        "BOA_ADD_OFFSET/RADIO_ADD_OFFSET = -1000: --add-offset S2L2A=-1000 (default: none, "
                        "reflectance = raw / 10000)")
    g.add_argument("--bands", action="append", default=None, metavar="MOD=B02,B03,...",
                   help="the bands of an input that holds some of its modality's bands only and does not name them "
                        "in its band descriptions, in file order (repeatable), e.g. --bands S2L2A=B02,B03,B04,B08; "
                        "the missing bands are absent for the model, and generated modalities hold every band")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps")
    g.add_argument("--quiet", action="store_true", help="no progress bars")


def add_window_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--window", default=None, metavar="COL,ROW,WIDTH,HEIGHT",
                   help="work on this pixel window of the inputs only (GDAL's -srcwin order), e.g. a 512 px preview "
                        "of a large scene, or one part of it per process; the outputs are georeferenced on the window")
    p.add_argument("--bounds", default=None, metavar="LEFT,BOTTOM,RIGHT,TOP",
                   help="the same in map coordinates of the inputs' CRS: the whole pixels that cover them")
    p.add_argument("--bounds-crs", default=None, metavar="CRS",
                   help="the CRS of --bounds when it is not the inputs', e.g. EPSG:4326 for longitude/latitude")


def add_input_or_manifest(p: argparse.ArgumentParser, text: str | None = None, mask: bool = False) -> None:
    """--input MOD=PATH (repeatable) for one scene, or --manifest CSV for many (cogen/scenes.py)."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--input", action="append", metavar="MOD[@DATE]=PATH",
                   help=(text + "; " if text else "") + "an input at another date than the target's: MOD@YYYY-MM-DD=PATH "
                        "(a file's own date tag ACQUISITION_DATE is read when the name has none)")
    g.add_argument("--manifest", default=None, metavar="CSV",
                   help="many scenes instead of --input: a CSV with a header line and one row per scene, columns "
                        "scene (its id: the outputs go to --out/ID/), one per input modality (S1RTC, DEM, ...: a "
                        "path relative to the CSV's folder or absolute; empty: the scene lacks it)"
                        + (", mask (the scene's cloud mask, required)" if mask else "")
                        + " and optionally window (\"COL,ROW,WIDTH,HEIGHT\" in quotes; empty: the whole scene). "
                        "Complete scenes are skipped (rerun to finish a killed job; --overwrite redoes all), a failed "
                        "one is reported and the others go on; --out/summary.json lists what was written, skipped and "
                        "failed. Split across processes with `accelerate launch --multi_gpu --num_processes N "
                        "sample.py ...` (CPU too). Format: docs/SAMPLING.md, \"Many scenes\"")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("impute", help="generate missing modalities from the given ones")
    add_input_or_manifest(p)
    p.add_argument("--target", action="append", default=[], metavar="MOD[@DATE]",
                   help="a modality to generate, at the target date MOD@YYYY-MM-DD when inputs are at other dates")
    add_window_flags(p)
    common(p)
    p = sub.add_parser("cloud-removal", help="fill the cloudy pixels of a Sentinel-2 scene")
    add_input_or_manifest(p, "the Sentinel-2 scene (S2L2A or S2L1C) and any other inputs (S1RTC, DEM, ...)",
                          mask=True)
    p.add_argument("--mask", default=None, help="binary mask (non-zero = cloud) or a scene-classification layer "
                                                "(required with --input; with --manifest: its mask column)")
    p.add_argument("--mask-values", default=None, help="class values that are cloud/shadow, e.g. 8,9,10,3 for SCL")
    p.add_argument("--date", default=None, metavar="YYYY-MM-DD",
                   help="the date of the scene to fill, when its file has no date tag and other dates are given")
    add_window_flags(p)
    common(p)
    p = sub.add_parser("segment", help="land-cover map (majority of samples) with a confidence map")
    add_input_or_manifest(p)
    p.add_argument("--target", default="LULC")
    add_window_flags(p)
    common(p, defaults={"samples": 8})
    p = sub.add_parser("synth", help="synthetic scenes, unconditional or from a given layout")
    p.add_argument("--n", type=int, default=1, help="number of scenes")
    p.add_argument("--input", action="append", default=[], metavar="MOD=PATH")
    p.add_argument("--target", action="append", required=True, metavar="MOD")
    p.add_argument("--size", type=int, default=None, help="scene size in px without inputs (default 64)")
    common(p)
    p = sub.add_parser("info", help="what a checkpoint is and knows: modalities, bands, classes, sampling defaults")
    p.add_argument("--checkpoint", default=None, help="cogen bundle or training checkpoint (default: shipped demo model)")
    p.add_argument("--json", action="store_true", help="print it as JSON")
    p = sub.add_parser("join", help="join outputs of --window / --bounds parts of a scene, blended where they overlap")
    p.add_argument("parts", nargs="+", help="the parts' rasters of one output (e.g. part*/S2L2A.tif)")
    p.add_argument("--out", required=True, help="the joined GeoTIFF")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    p = sub.add_parser("parts", help="the --window of each part of a scene split for one process per part, "
                                     "overlapping so that their join equals one run over the scene")
    p.add_argument("scene", help="a GeoTIFF of the scene (any of its inputs)")
    p.add_argument("--rows", type=int, required=True, help="parts from top to bottom")
    p.add_argument("--cols", type=int, default=1, help="parts from left to right (default 1)")
    p.add_argument("--overlap", type=int, default=128,
                   help="px that neighbouring parts share (default 128: two of the default 64 px tiles; join takes "
                        "each part where it is more than a tile from its inner edges)")
    p = sub.add_parser("demo", help="the three demo jobs on a shipped scene with the shipped model")
    p.add_argument("--scene", default="433D_629L_3_1", help="shipped scene id")
    p.add_argument("--data", default=None, help="dataset folder (default: the shipped scenes)")
    common(p, default_out="outputs/demo")
    return ap


def info(args) -> None:
    import json

    from cogen.checkpoint import describe, load_bundle

    d = describe(load_bundle(args.checkpoint))
    if args.json:
        print(json.dumps(d, indent=2))
        return
    print(f"checkpoint {d['checkpoint']}\n  sha256 {d['sha256']}")
    print(f"  {d['objective']} model, {d['model']['size']}, {d['parameters'] / 1e6:.1f} M parameters; "
          f"step {d['step']} of {d['source']}; weights: {d['weights']}")
    print("modalities:")
    for m, x in d["modalities"].items():
        if x["kind"] == "categorical":
            what = "classes " + ", ".join(f"{k} {v}" for k, v in x["classes"].items())
        else:
            what = (f"{len(x['bands'])} band{'s' if len(x['bands']) > 1 else ''} ({', '.join(x['bands'])}), {x['units'] or 'no unit'} = raw x {x['scale']:g}"
                    + (f" + {x['offset']:g}" if x["offset"] else "")
                    + (f", valid {x['valid_range'][0]:g} to {x['valid_range'][1]:g} raw" if x["valid_range"] else "")
                    + (f", {x['nodata_all_bands']:g} in every band = no data"
                       if x.get("nodata_all_bands") is not None and len(x["bands"]) > 1 else ""))
        print(f"  {m:6s} {what}; {x['dtype']}, nodata {x['nodata']}; {x['tokenizer']} tokenizer, "
              f"patch {x['patch_size']} px")
    print("sampling defaults (override with the flags of impute / segment / cloud-removal / synth):")
    for k, v in d["sample"].items():
        print(f"  {k}: {v}")


def join(args) -> None:
    from cogen.join import join_parts

    out = join_parts(args.parts, args.out, args.overwrite)
    print(f"wrote {out} from {len(args.parts)} parts")


def parts(args) -> None:
    from cogen.io import Grid
    from cogen.join import plan_parts

    g = Grid.of(args.scene)
    for win in plan_parts(g.height, g.width, args.rows, args.cols, args.overlap):
        print(f"{win.col_off},{win.row_off},{win.width},{win.height}")


def run(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.command in ("info", "join", "parts"):
        {"info": info, "join": join, "parts": parts}[args.command](args)
        return
    from cogen import workflows

    fn = getattr(workflows, args.command.replace("-", "_"))
    if getattr(args, "manifest", None):  # many scenes, one run of `fn` each
        from cogen.scenes import run_manifest

        run_manifest(args, fn)
        return
    fn(args)


def main(argv: list[str] | None = None) -> int:
    """The `cogen` command: its exit code (0; 2 for bad input, `cogen.errors.exit_code`)."""
    return exit_code(run, argv)


if __name__ == "__main__":
    sys.exit(main())

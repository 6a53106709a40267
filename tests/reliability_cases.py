"""The bad-input cases of the reliability checks: each builds its files and names the command, the exit code
and the words its one-line message must contain. Used by tests/test_reliability.py and
scripts/reliability_report.py (which writes docs/RELIABILITY.md)."""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rasterio.transform import from_origin


@dataclass
class Case:
    name: str
    program: str  # sample.py | train.py
    argv: list[str]
    keywords: list[str]
    out: Path | None = None
    code: int = 2
    note: str = ""


def build(tmp: Path, bundle: Path) -> list[Case]:
    from cogen.data.synthetic import make_scene
    from cogen.io import write_raster

    tmp.mkdir(parents=True, exist_ok=True)
    sc = make_scene(32, 32, seed=0)["rasters"]
    tr = from_origin(500000.0, 5000000.0, 10, 10)
    crs = "EPSG:32633"
    f = {}
    for m in ("S2L2A", "S1RTC", "DEM", "LULC"):
        f[m] = str(write_raster(tmp / f"{m}.tif", sc[m], crs, tr, nodata={"LULC": 0}.get(m)))
    f["S1_3bands"] = str(write_raster(tmp / "s1_3bands.tif", np.concatenate([sc["S1RTC"], sc["S1RTC"][:1]]), crs, tr))
    f["LULC_float"] = str(write_raster(tmp / "lulc_float.tif", sc["LULC"].astype(np.float32) + 0.5, crs, tr))
    f["S1_nan"] = str(write_raster(tmp / "s1_nan.tif", np.full((2, 32, 32), np.nan, np.float32), crs, tr))
    f["S2_zeros"] = str(write_raster(tmp / "s2_zeros.tif", np.zeros((12, 32, 32), np.int16), crs, tr))
    f["DEM_shifted"] = str(write_raster(tmp / "dem_shifted.tif", sc["DEM"], crs, from_origin(500320.0, 5000000.0, 10, 10)))
    f["DEM_other_crs"] = str(write_raster(tmp / "dem_4326.tif", sc["DEM"], "EPSG:4326", from_origin(12, 45, 1e-4, 1e-4)))
    f["mask_other_grid"] = str(write_raster(tmp / "mask_big.tif", np.zeros((1, 40, 40), np.uint8), crs, tr))
    trunc = tmp / "ckpt_truncated"
    shutil.copytree(bundle, trunc, dirs_exist_ok=True)
    w = next((trunc / "model").glob("*.safetensors"))
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    corrupt = tmp / "ckpt_corrupted"
    shutil.copytree(bundle, corrupt, dirs_exist_ok=True)
    w = next((corrupt / "model").glob("*.safetensors"))
    data = bytearray(w.read_bytes())
    data[-100] ^= 0xFF
    w.write_bytes(bytes(data))
    (tmp / "bad.yaml").write_text("model: {size: tiny}\ntrain: {stepz: 3}\n")
    (tmp / "typed.yaml").write_text("optim: {lr: fast}\n")
    (tmp / "range.yaml").write_text("model: {size: tiny}\ntrain: {steps: 0}\n")
    existing = tmp / "existing"
    existing.mkdir(exist_ok=True)
    (existing / "LULC.tif").write_text("an earlier result")

    def imp(out, *inputs, target=("S2L2A",), extra=(), ck=bundle):
        args = ["impute"]
        for i in inputs:
            args += ["--input", i]
        for t in target:
            args += ["--target", t]
        return args + ["--checkpoint", str(ck), "--out", str(out), "--steps", "2", "--tile", "16", "--quiet", *extra]

    o = lambda n: tmp / "out" / n
    cases = [
        Case("wrong band count", "sample.py", imp(o("bands"), f"S1RTC={f['S1_3bands']}"),
             ["s1_3bands.tif", "3 band", "S1RTC has 2", "--bands S1RTC="], o("bands")),
        Case("dtype that cannot be converted safely", "sample.py",
             imp(o("dtype"), f"LULC={f['LULC_float']}", target=("S2L2A",)), ["lulc_float.tif", "integer", "float32"],
             o("dtype")),
        Case("all-NaN input", "sample.py", imp(o("nan"), f"S1RTC={f['S1_nan']}"), ["s1_nan.tif", "no valid pixel"],
             o("nan")),
        Case("image that is zero in every band (no data)", "sample.py",
             imp(o("zeros"), f"S2L2A={f['S2_zeros']}", target=("LULC",)), ["s2_zeros.tif", "no valid pixel", "every band"],
             o("zeros")),
        Case("window outside the scene", "sample.py",
             imp(o("window"), f"S1RTC={f['S1RTC']}", extra=("--window", "20,20,32,32")),
             ["--window 20,20,32,32", "does not lie inside", "S1RTC.tif", "32 x 32 px"], o("window")),
        Case("conditions on different transforms", "sample.py",
             imp(o("grid"), f"S1RTC={f['S1RTC']}", f"DEM={f['DEM_shifted']}"),
             ["dem_shifted.tif", "not on the grid", "S1RTC.tif", "cogen-reproject"], o("grid")),
        Case("conditions on different CRS", "sample.py",
             imp(o("crs"), f"S1RTC={f['S1RTC']}", f"DEM={f['DEM_other_crs']}"), ["dem_4326.tif", "CRS", "cogen-reproject"],
             o("crs")),
        Case("missing file", "sample.py", imp(o("missing"), f"S1RTC={tmp / 'nope.tif'}"), ["nope.tif", "not found"],
             o("missing")),
        Case("unknown modality", "sample.py", imp(o("unknown"), f"S3OLCI={f['S1RTC']}"),
             ["S3OLCI", "known modalities", "S2L2A"], o("unknown")),
        Case("target that is also an input", "sample.py", imp(o("both"), f"S2L2A={f['S2L2A']}", target=("S2L2A",)),
             ["S2L2A", "both an input and a target"], o("both")),
        Case("empty target list", "sample.py", imp(o("empty"), f"S1RTC={f['S1RTC']}", target=()), ["no targets", "--target"],
             o("empty")),
        Case("mask on another grid", "sample.py",
             ["cloud-removal", "--input", f"S2L2A={f['S2L2A']}", "--mask", f["mask_other_grid"], "--checkpoint",
              str(bundle), "--out", str(o("mask")), "--steps", "2", "--tile", "16", "--quiet"],
             ["mask_big.tif", "not on the grid", "S2L2A.tif"], o("mask")),
        Case("tile smaller than the model's patch", "sample.py",
             imp(o("tile"), f"S1RTC={f['S1RTC']}", extra=("--tile", "2")), ["tile 2", "multiples of 4"], o("tile")),
        Case("truncated checkpoint", "sample.py", imp(o("trunc"), f"S1RTC={f['S1RTC']}", ck=trunc),
             ["truncated or corrupted", "ckpt_truncated"], o("trunc")),
        Case("corrupted checkpoint", "sample.py", imp(o("corrupt"), f"S1RTC={f['S1RTC']}", ck=corrupt),
             ["truncated or corrupted", "ckpt_corrupted"], o("corrupt")),
        Case("checkpoint for other modalities", "sample.py",
             imp(o("othermods"), f"S1RTC={f['S1RTC']}", target=("S2L1C",)),
             ["trained for", "not S2L1C"], o("othermods")),
        Case("config with an unknown key", "train.py", ["--config", str(tmp / "bad.yaml"), f"train.out_dir={o('cfg')}"],
             ["unknown config key train.stepz", "valid keys"], o("cfg")),
        Case("config with a mistyped value", "train.py",
             ["--config", str(tmp / "typed.yaml"), f"train.out_dir={o('cfg2')}"], ["optim.lr", "expected float", "fast"],
             o("cfg2")),
        Case("config with a number out of range", "train.py",
             ["--config", str(tmp / "range.yaml"), f"train.out_dir={o('cfg3')}"], ["train.steps=0", "whole number >= 1"],
             o("cfg3")),
        Case("zero samples", "sample.py", imp(o("zero"), f"S1RTC={f['S1RTC']}", extra=("--samples", "0")),
             ["samples=0", "whole number >= 1"], o("zero")),
        Case("additive offset that is not a number", "sample.py",
             imp(o("offset"), f"S2L2A={f['S2L2A']}", target=("LULC",), extra=("--add-offset", "S2L2A=-1k")),
             ["--add-offset", "S2L2A=-1k", "MOD=NUMBER", "S2L2A=-1000"], o("offset")),
        Case("additive offset for a class map", "sample.py",
             imp(o("offset2"), f"LULC={f['LULC']}", extra=("--add-offset", "LULC=-1000")),
             ["LULC is a class map", "continuous modalities only"], o("offset2")),
        Case("parts finer than the scene", "sample.py", ["parts", f["S1RTC"], "--rows", "40"],
             ["32 x 32 px", "40 x 1 parts", "give fewer"]),
        Case("joining parts of other grids", "sample.py",
             ["join", f["DEM"], f["DEM_other_crs"], "--out", str(o("joined.tif"))],
             ["dem_4326.tif", "CRS differs", "DEM.tif"]),
        Case("output folder exists", "sample.py",
             ["segment", "--input", f"S2L2A={f['S2L2A']}", "--checkpoint", str(bundle), "--out", str(existing),
              "--steps", "2", "--tile", "16", "--quiet"], ["existing", "exists", "--overwrite"], existing,
             note="the earlier result is left untouched"),
    ]
    return cases


RESULT_SUFFIXES = (".tif", ".json", ".png", ".safetensors")


def result_files(out: Path | None) -> list[Path]:
    """Files in an output folder that look like finished results (hidden temporaries excluded)."""
    if out is None or not out.exists():
        return []
    return [p for p in out.rglob("*") if p.is_file() and p.suffix in RESULT_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(out).parts)]

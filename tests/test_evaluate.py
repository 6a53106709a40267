import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cogen.evaluate import main, merge_results, parse_direction
from cogen.errors import UsageError


def test_parse_direction():
    assert parse_direction("S1RTC, DEM->S2L2A") == (["S1RTC", "DEM"], ["S2L2A"])
    with pytest.raises(UsageError):
        parse_direction("S1RTC")
    with pytest.raises(UsageError):
        parse_direction("S2L2A->S2L2A")


@pytest.fixture(scope="module")
def cloud_bundle(tiny_bundle, tmp_path_factory):
    """tiny_bundle with sampling options of its own: cloud removal from the interpolation at strength 0.5 with
    a clear-pixel library, and a clean-up call after the last step."""
    from cogen.checkpoint import write_manifest

    path = tmp_path_factory.mktemp("bundle") / "cloud"
    shutil.copytree(tiny_bundle, path)
    doc = json.loads((path / "cogen.json").read_text())
    doc["config"]["sample"].update(strength=0.5, library_neighbours=4, final_denoise=0.05)
    (path / "cogen.json").write_text(json.dumps(doc))
    write_manifest(path)
    return path


def test_evaluate_end_to_end_with_a_tiny_model(tmp_path, cloud_bundle, synth_root, capsys):
    split = tmp_path / "split.yaml"
    split.write_text("splits:\n  train: {default: {cols: [0, 32]}}\n  test: {default: {cols: [32, 64]}}\n")
    out, report = tmp_path / "r.json", tmp_path / "docs" / "RESULTS.md"
    main(["--checkpoint", str(cloud_bundle), "--data", str(synth_root), "--split-file", str(split), "--split", "test",
          "--direction", "S1RTC->S2L2A", "--direction", "S2L2A->LULC", "--samples", "2", "--steps", "2",
          "--tile", "16", "--baseline", "mean", "--baseline-checkpoint", str(cloud_bundle), "--robustness",
          "LULC:S2L2A,S1RTC", "--cloud-removal", "--cloud-covers", "0.3", "--sweep", "S1RTC->S2L2A",
          "--sweep-steps", "2,3", "--out", str(out), "--report", str(report)])
    r = json.loads(out.read_text())
    s2 = r["cogen"]["S1RTC->S2L2A"]["S2L2A"]
    assert {"sample", "mean", "diversity", "hf_power_ratio", "wasserstein"} <= set(s2)
    assert {"MAE", "RMSE", "PSNR", "SSIM", "SAM"} <= set(s2["mean"]) and s2["diversity"] > 0
    lulc = r["cogen"]["S2L2A->LULC"]["LULC"]
    assert 0 <= lulc["mIoU"] <= 1 and 0 <= lulc["ECE"] <= 1 and "per_class_IoU" in lulc
    assert r["training mean / class prior"]["S1RTC->S2L2A"]["S2L2A"]["sample"]["PSNR"] > 0
    assert "deterministic (same backbone)" in r and set(r["robustness"]["table"]) == {"S2L2A", "S1RTC", "S2L2A + S1RTC"}
    # cloud removal as the checkpoint's options say: from the interpolation at its strength
    assert set(r["cloud_removal"]["30%"]) == {"cogen without clear pixels (S1RTC + DEM)",
                                             "cogen from the interpolation, strength 0.5 (clear pixels + S1RTC + DEM)",
                                             "cogen from the interpolation, strength 0.5 (clear pixels + S1RTC + DEM), "
                                             "mean of 2 samples", "fillnodata interpolation"}
    cr = r["cloud_removal"]["30%"]
    im = cr["cogen from the interpolation, strength 0.5 (clear pixels + S1RTC + DEM), mean of 2 samples"]
    assert (im["start"], im["strength"], im["samples"], im["library_neighbours"]) == ("interpolate", 0.5, 2, 4)
    assert cr["fillnodata interpolation"]["baseline"] and not cr["cogen without clear pixels (S1RTC + DEM)"]["clear_pixels"]
    # per-strip figures, whose mean is the table's, shown strip by strip for the means of N and the baseline
    for row in cr.values():
        assert len(row["per_strip"]) == r["cogen"]["S1RTC->S2L2A"]["S2L2A"]["scenes"]
        assert row["SAM"] == pytest.approx(np.mean([v["SAM"] for v in row["per_strip"].values()]))
    sid, fill = next(iter(cr["fillnodata interpolation"]["per_strip"].items()))
    assert f"| {sid} | " in report.read_text() and f"{fill['PSNR']:.2f} / {fill['SAM']:.2f}" in report.read_text()
    # the README's headline table reads how each cloud row was made from these fields
    spec = importlib.util.spec_from_file_location("readme_table", Path(__file__).parent.parent / "scripts" / "readme_table.py")
    rt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rt)
    cloud_lines = [ln for ln in rt.table(r).splitlines() if ln.startswith("| cloud removal, 30%")]
    assert len(cloud_lines) == 1 and "strength 0.5" in cloud_lines[0]
    assert f"{im['PSNR']:.2f} dB" in cloud_lines[0] and f"fillnodata {cr['fillnodata interpolation']['PSNR']:.2f}" in cloud_lines[0]
    assert len(r["sweep"]["psnr"]["ddim"]) == 2
    text = report.read_text()
    assert "Missing-modality robustness" in text and "figures/" in text
    # the run's settings are the checkpoint's options, changed by the flags given
    from cogen.checkpoint import load_bundle
    from cogen.options import SampleOptions
    opts = load_bundle(cloud_bundle).config.sample.replace(samples=2, steps=2, tile=16)
    assert {k: r["meta"][k] for k in SampleOptions.__dataclass_fields__} == json.loads(json.dumps(opts.to_dict()))
    assert r["meta"]["final_denoise"] == r["sweep"]["final_denoise"] == 0.05
    assert "a clean-up call at model time 0.05 after the last step" in text
    assert "one model call per step, then a clean-up call)" in text
    assert f"2 samples, 2 {opts.sampler} steps, tiles 16 px (overlap {opts.overlap}), seed 0" in text
    assert "cloud removal started from the interpolation of the clear pixels noised to strength 0.5" in text
    assert (report.parent / "figures" / "sweep.png").is_file()
    # cloud removal is pictured at the one scored cover (--cloud-figure-cover 0.4 is not scored here), started as
    # the last row was
    assert r["cloud_removal_figure"] == {"figure": "figures/cloud_removal.png", "cover": "30%",
                                         "how": "from the interpolation, strength 0.5"}
    assert (report.parent / "figures" / "cloud_removal.png").is_file() and "![cloud removal](figures/cloud_removal.png)" in text
    # reuse: nothing is recomputed, same figures, the cloud-removal picture kept on the page
    same = ["--checkpoint", str(cloud_bundle), "--data", str(synth_root), "--split-file", str(split), "--split", "test",
            "--direction", "S1RTC->S2L2A", "--samples", "2", "--steps", "2", "--tile", "16", "--reuse", str(out),
            "--cloud-removal"]
    main(same + ["--out", str(tmp_path / "r2.json"), "--report", str(tmp_path / "R2.md")])
    r2 = json.loads((tmp_path / "r2.json").read_text())
    # an existing --out or --report is replaced only when asked, and refused before anything is scored
    for args in (["--out", str(tmp_path / "r2.json")], ["--out", str(tmp_path / "new.json"), "--report", str(tmp_path / "R2.md")]):
        with pytest.raises(SystemExit) as e:
            main(same + args)
        assert e.value.code == 2 and "--overwrite" in capsys.readouterr().err and not (tmp_path / "new.json").exists()
    assert json.loads((tmp_path / "r2.json").read_text()) == r2
    main(same + ["--out", str(tmp_path / "r2.json"), "--overwrite"])
    assert r2["cogen"]["S1RTC->S2L2A"] == r["cogen"]["S1RTC->S2L2A"] and r2["cloud_removal"] == r["cloud_removal"]
    assert r2["cloud_removal_figure"] == r["cloud_removal_figure"] and "![cloud removal]" in (tmp_path / "R2.md").read_text()
    assert r2["meta"]["seconds"] == r["meta"]["seconds"]  # a render from --reuse scores nothing: its time is not added
    # ... but figures of other settings (or weights) are refused, not carried under this run's header
    for flag, value in (("--seed", "1"), ("--batch", "3")):
        with pytest.raises(SystemExit) as e:
            main(same + [flag, value, "--out", str(tmp_path / "r3.json")])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert e.value.code != 0 and "r.json" in err and flag.lstrip("-").replace("-", "_") in err
        assert not (tmp_path / "r3.json").exists()


def test_baselines_only_then_cogen_reusing_them(tmp_path, tiny_bundle, synth_root, capsys):
    split = tmp_path / "split.yaml"
    split.write_text("splits:\n  train: {default: {cols: [0, 32]}}\n  test: {default: {cols: [32, 64]}}\n")
    common = ["--checkpoint", str(tiny_bundle), "--data", str(synth_root), "--split-file", str(split), "--split", "test",
              "--direction", "S2L2A->LULC", "--samples", "2", "--steps", "2", "--tile", "16", "--baseline", "mean",
              "--baseline-checkpoint", str(tiny_bundle), "--robustness", "LULC:S2L2A,S1RTC", "--cloud-removal",
              "--cloud-covers", "0.3"]
    base = tmp_path / "base.json"
    main(common + ["--baselines-only", "--out", str(base), "--report", str(tmp_path / "R.md")])
    b = json.loads(base.read_text())
    assert "cogen" not in b and "cloud_removal" not in b and not (tmp_path / "R.md").exists()
    assert b["robustness"]["methods"] == ["deterministic (same backbone)"]
    from cogen.checkpoint import load_bundle
    assert b["meta"]["tiles"] == load_bundle(tiny_bundle).config.sample.tiles and b["meta"]["tile"] == 16
    record = {"checkpoint": str(tiny_bundle), "checkpoint_sha256": load_bundle(tiny_bundle).digest}
    assert b["meta"]["baselines"] == {"deterministic (same backbone)": record}
    full = tmp_path / "full.json"
    main(common + ["--reuse", str(base), "--out", str(full)])
    f = json.loads(full.read_text())
    assert f["training mean / class prior"] == b["training mean / class prior"]
    assert f["deterministic (same backbone)"] == b["deterministic (same backbone)"]
    assert set(f["robustness"]["methods"]) == {"cogen", "deterministic (same backbone)"}
    assert "S2L2A->LULC" in f["cogen"] and "30%" in f["cloud_removal"]
    for sub, row in f["robustness"]["table"].items():
        assert row["deterministic (same backbone)"] == b["robustness"]["table"][sub]["deterministic (same backbone)"]
    # without its checkpoint, a baseline scored in the --reuse file is kept as it was, in the tables and the page
    no_ckpt = [x for i, x in enumerate(common) if x != "--baseline-checkpoint" and common[i - 1] != "--baseline-checkpoint"]
    kept = tmp_path / "kept.json"
    main(no_ckpt + ["--reuse", str(full), "--out", str(kept), "--report", str(tmp_path / "K.md")])
    k = json.loads(kept.read_text())
    assert k["deterministic (same backbone)"] == f["deterministic (same backbone)"]
    assert k["robustness"]["table"] == f["robustness"]["table"]
    assert [m for m in k if m in f] == [m for m in f if m in k]  # methods in the same order as a full run
    assert "deterministic (same backbone)" in (tmp_path / "K.md").read_text()
    assert f["meta"]["baselines"] == k["meta"]["baselines"] == b["meta"]["baselines"]  # the page names its weights
    assert record["checkpoint_sha256"][:16] in (tmp_path / "K.md").read_text()
    # the training prior, which has no robustness row, is kept too when it is not run again
    i = no_ckpt.index("mean")
    assert no_ckpt[i - 1] == "--baseline"
    no_prior = no_ckpt[:i - 1] + no_ckpt[i + 1:]
    main(no_prior + ["--reuse", str(full), "--out", str(tmp_path / "kp.json")])
    kp = json.loads((tmp_path / "kp.json").read_text())
    assert kp["training mean / class prior"] == f["training mean / class prior"] and kp["robustness"] == k["robustness"]
    # figures of other weights than the checkpoint given are scored again, not relabelled
    other = json.loads(json.dumps(f))
    other["meta"]["baselines"]["deterministic (same backbone)"]["checkpoint_sha256"] = "0" * 64
    other["deterministic (same backbone)"]["S2L2A->LULC"]["LULC"]["mIoU"] = -1.0
    (tmp_path / "other.json").write_text(json.dumps(other))
    capsys.readouterr()
    main(common + ["--reuse", str(tmp_path / "other.json"), "--out", str(tmp_path / "o.json")])
    o = json.loads((tmp_path / "o.json").read_text())
    assert "scoring them again" in capsys.readouterr().out
    assert o["deterministic (same backbone)"] == f["deterministic (same backbone)"] and o["meta"]["baselines"] == f["meta"]["baselines"]
    assert o["cogen"] == f["cogen"]  # cogen's own figures are still reused
    # ... and one it has no row for is an error that names the file and the fix, not a silent gap
    f["robustness"]["table"].pop("S2L2A + S1RTC")
    f["deterministic (same backbone)"].clear()
    (tmp_path / "gap.json").write_text(json.dumps(f))
    with pytest.raises(SystemExit) as e:
        main(no_ckpt + ["--reuse", str(tmp_path / "gap.json"), "--out", str(tmp_path / "g.json")])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code != 0 and "gap.json" in err and "pass its checkpoint" in err
    assert not (tmp_path / "g.json").exists()


def test_the_page_states_the_sampling_options_and_the_module_runs():
    from cogen.evaluate import sampling_words
    from cogen.options import SampleOptions

    opts = SampleOptions(tiles={"default": [32, 8], "S2L2A": [64, 16], "LULC": [16, 0], "regenerate": [32, 8]},
                         final_denoise=0.08, strength=0.2, library_neighbours=32, samples=8, steps=5)
    words = sampling_words({"checkpoint": "ckpt", "seconds": 3.0, **opts.to_dict()})
    assert words == ("Checkpoint `ckpt`; 8 samples, 5 ddim steps, tiles 32 px (overlap 8), S2L2A targets: tiles 64 px "
                     "(overlap 16) when an image is given, LULC targets: tiles 16 px (overlap 0), cloud removal: tiles "
                     "32 px (overlap 8), seed 0, a clean-up call at model time 0.08 after the last step, cloud removal "
                     "started from the interpolation of the clear pixels noised to strength 0.2, cloud removal: each "
                     "generated pixel moved onto the mean of the 32 clear pixels of its strip with the nearest "
                     "spectra; 3 s.")
    run = subprocess.run([sys.executable, "-m", "cogen.evaluate", "--help"], capture_output=True, text=True,
                         cwd=Path(__file__).parent.parent)
    assert run.returncode == 0 and "--samples" in run.stdout and "--cloud-strength" not in run.stdout


def test_split_over_columns_without_a_split_file(registry, synth_root, tmp_path):
    from cogen.evaluate import Split

    sf = tmp_path / "split.yaml"
    sf.write_text("splits:\n  sel: {default: {cols: [8, 24]}}\n")
    by_cols = Split(synth_root, registry, None, None, ["S2L2A", "LULC"], cols=(8, 24))
    by_file = Split(synth_root, registry, str(sf), "sel", ["S2L2A", "LULC"])
    assert by_cols.scenes == by_file.scenes and by_cols.scenes
    for sid in by_cols.scenes:
        for m in ("S2L2A", "LULC"):
            assert by_cols.arrays[sid][m].shape[-1] == 16
            np.testing.assert_array_equal(by_cols.arrays[sid][m], by_file.arrays[sid][m])
        assert by_cols.offsets[sid] == by_file.offsets[sid] == (0, 8)  # where native blocks of the strip start


def test_merge_results_joins_parts_of_one_command_and_refuses_others(tmp_path):
    meta = {"checkpoint_sha256": "abc", "samples": 8, "steps": 5, "tile": 64, "seed": 0, "split": "test"}
    a = {"cogen": {"S1RTC->S2L2A": {"S2L2A": {"x": 1.0}}}, "training mean / class prior": {"S1RTC->S2L2A": {"y": 2.0}},
         "robustness": {"target": "LULC", "methods": ["cogen"], "table": {"S2L2A": {"cogen": 0.4}, "S1RTC": {"cogen": 0.2}},
                        "mean": {}, "worst": {}},
         "meta": {**meta, "directions": ["S1RTC->S2L2A"], "seconds": 10.0}}
    b = {"cogen": {"S2L2A->LULC": {"LULC": {"mIoU": 0.4}}}, "sweep": {"psnr": [1, 2]},
         "cloud_removal": {"30%": {"fill": {"PSNR": 28.0}}},
         "meta": {**meta, "directions": ["S2L2A->LULC"], "seconds": 5.0}}
    base = {"deterministic (same backbone)": {"S1RTC->S2L2A": {"z": 3.0}},  # --baselines-only, another cogen bundle
            "robustness": {"target": "LULC", "methods": ["deterministic"], "mean": {}, "worst": {},
                           "table": {"S2L2A": {"deterministic": 0.3}}},
            "meta": {**meta, "checkpoint_sha256": "old", "directions": ["S1RTC->S2L2A"], "seconds": 1.0}}
    m = merge_results([("base.json", base), ("a.json", a), ("b.json", b)])
    assert set(m["cogen"]) == {"S1RTC->S2L2A", "S2L2A->LULC"} and m["sweep"] == b["sweep"]
    assert m["deterministic (same backbone)"] == base["deterministic (same backbone)"] and "30%" in m["cloud_removal"]
    assert m["meta"]["directions"] == ["S1RTC->S2L2A", "S2L2A->LULC"] and m["meta"]["seconds"] == 16.0
    assert m["meta"]["checkpoint_sha256"] == "abc"
    # a part of cogen's weights without a "cogen" method (cloud removal, the sweep) is whose weights count too
    cloud = {k: b[k] for k in ("cloud_removal", "meta")}
    assert merge_results([("base.json", base), ("cloud.json", cloud)])["meta"]["checkpoint_sha256"] == "abc"
    # mean / worst recomputed over the merged rows, only for methods with every row
    assert m["robustness"]["mean"] == {"cogen": pytest.approx(0.3)} and m["robustness"]["worst"] == {"cogen": 0.2}
    # the same figure twice is fine; another figure for the same part, or other settings, is refused
    assert merge_results([("a.json", a), ("a2.json", a)])["cogen"] == a["cogen"]
    other = json.loads(json.dumps(b))
    other["cloud_removal"]["30%"]["fill"]["PSNR"] = 27.0
    with pytest.raises(UsageError, match="cloud removal at 30%.*other.json"):
        merge_results([("b.json", b), ("other.json", other)])
    steps = {**a, "meta": {**a["meta"], "steps": 10}}
    with pytest.raises(UsageError, match="steps.json was scored with steps=10"):
        merge_results([("a.json", a), ("steps.json", steps)])
    weights = {**b, "meta": {**b["meta"], "checkpoint_sha256": "zzz"}}
    with pytest.raises(UsageError, match="checkpoint_sha256"):
        merge_results([("a.json", a), ("w.json", weights)])
    # a baseline trained again replaces the old one's figures only when asked to, with its checkpoint's record
    det = "deterministic (same backbone)"
    old = {det: {"S1RTC->S2L2A": {"z": 3.0}},
           "robustness": {"target": "LULC", "methods": ["cogen", det], "mean": {}, "worst": {},
                          "table": {"S2L2A": {"cogen": 0.4, det: 0.3}, "S1RTC": {"cogen": 0.2, det: 0.1}}},
           "meta": {**a["meta"], "baselines": {det: {"checkpoint": "r1", "checkpoint_sha256": "s1"}}}}
    old["cogen"] = a["cogen"]
    new = {det: {"S1RTC->S2L2A": {"z": 5.0}},
           "robustness": {"target": "LULC", "methods": [det], "mean": {}, "worst": {},
                          "table": {"S2L2A": {det: 0.5}, "S1RTC": {det: 0.45}}},
           "meta": {**meta, "checkpoint_sha256": "old", "directions": ["S1RTC->S2L2A"], "seconds": 1.0,
                    "baselines": {det: {"checkpoint": "r2", "checkpoint_sha256": "s2"}}}}
    with pytest.raises(UsageError, match="new.json"):
        merge_results([("old.json", old), ("new.json", new)])
    r = merge_results([("old.json", old), ("new.json", new)], replace=[det])
    assert r[det] == new[det] and r["cogen"] == a["cogen"] and r["meta"]["baselines"] == new["meta"]["baselines"]
    assert r["robustness"]["table"] == {"S2L2A": {"cogen": 0.4, det: 0.5}, "S1RTC": {"cogen": 0.2, det: 0.45}}
    assert r["robustness"]["mean"][det] == pytest.approx(0.475) and r["robustness"]["worst"]["cogen"] == 0.2
    with pytest.raises(UsageError, match="no file scores it"):
        merge_results([("a.json", a)], replace=["forest"])
    # the script: writes atomically, never over an existing file unless told to
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    script = str(Path(__file__).parent.parent / "scripts" / "merge_results.py")
    run = lambda *args: subprocess.run([sys.executable, script, *args], capture_output=True, text=True)  # noqa: E731
    out = tmp_path / "m.json"
    assert run(str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--out", str(out)).returncode == 0
    assert json.loads(out.read_text())["meta"]["seconds"] == 15.0
    r = run(str(tmp_path / "a.json"), "--out", str(out))
    assert r.returncode == 2 and "--overwrite" in r.stderr and json.loads(out.read_text())["meta"]["seconds"] == 15.0


def test_out_of_place_part_scores_every_task_on_both_sides(tmp_path, tmp_path_factory):
    """cogen.evaluate.places with a tiny model that knows S2L1C: the three tasks, in place and out of place, with
    their baselines, on the page."""
    import torch

    from cogen.config import load_config
    from cogen.evaluate.places import EOLEARN_TO_LULC, out_of_place_part, real_masks
    from cogen.evaluate.report import _out_of_place
    from cogen.evaluate.scoring import class_prior
    from cogen.pipeline import CogenPipeline
    from conftest import ROOT, SHIPPED, _save_perturbed
    from train import build_everything

    more = ROOT / "data" / "more-real"
    masks = real_masks(more)
    assert len(masks) == 6 and all(0.25 <= m.mean() <= 0.55 for _, m in masks)
    assert set(EOLEARN_TO_LULC.values()) <= {2, 4, 5, 9}  # trees, crops, built area, rangeland
    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["data.modalities=[S2L2A,S2L1C,S1RTC,DEM,LULC]"])
    torch.manual_seed(0)
    reg, toks, model = build_everything(cfg)
    bundle = _save_perturbed(tmp_path / "tiny", model, toks, reg, cfg)
    pipe = CogenPipeline.from_checkpoint(bundle)
    opts = pipe.options.replace(steps=1, samples=1)
    prior = class_prior(SHIPPED, pipe.registry, ROOT / "configs" / "split.yaml", "train", "LULC")
    op = out_of_place_part(pipe, opts, more, SHIPPED, ROOT / "configs" / "split.yaml", "test", prior, {},
                           lambda s: None, samples=2)["out_of_place"]
    assert op["samples"] == 2
    imp = op["S1RTC->S2L2A"]
    assert len(imp["out_of_place"]["scenes"]) == 10 and len(imp["in_place"]["scenes"]) == 5
    assert imp["out_of_place"]["bands"] == ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]
    lc = op["S2L1C->LULC"]
    assert set(lc["out_of_place"]["classes"]) == {"trees", "crops", "built area", "rangeland"}
    assert 0 <= lc["out_of_place"]["cogen"]["mIoU"] <= 1
    cr = op["cloud removal S2L1C"]
    assert len(cr["out_of_place"]["runs"]) == 6 and len(cr["in_place"]["runs"]) == 5
    for where in ("in_place", "out_of_place"):
        assert {"cogen", "fillnodata", "training mean"} <= set(cr[where])
        assert cr[where]["fillnodata"]["PSNR"] > cr[where]["training mean"]["PSNR"]  # an interpolation beats a constant
    page = "\n".join(_out_of_place(op))
    assert "## In place and out of place" in page and "| S2L1C->LULC | mIoU | class prior |" in page


def test_time_series_part_scores_every_method_and_the_baselines_are_exact(tmp_path):
    """cogen.evaluate.temporal with a tiny model: both tasks with every method, the page section, and the baselines
    computed as they say (interpolation in time between two images at its weights; the nearest date copied)."""
    import datetime as dt

    import torch

    from cogen.config import load_config
    from cogen.evaluate.report import _time_series
    from cogen.evaluate.temporal import (ALONE, FILL, LINEAR, NEAREST, START, WITH_DATES, linear_in_time,
                                         nearest_in_time, slovenia_masks, temporal_part)
    from cogen.pipeline import CogenPipeline
    from conftest import ROOT, _save_perturbed
    from train import build_everything

    a, b = np.zeros((2, 3, 3)), np.ones((2, 3, 3))
    d = dt.date(2021, 6, 1)
    mid = linear_in_time(d + dt.timedelta(days=10), (d, a), (d + dt.timedelta(days=40), b))
    assert np.allclose(mid, 0.25)  # 10 of 40 days from a to b
    assert np.array_equal(linear_in_time(d, None, (d, b)), b)
    assert nearest_in_time(d, [(d - dt.timedelta(days=5), a), (d + dt.timedelta(days=5), b)]) is a  # a tie: earlier
    more = ROOT / "data" / "more-real"
    masks = slovenia_masks(more)
    assert masks and all(0.3 <= m.mean() <= 0.5 for _, m in masks) and len(masks) % 4 == 0
    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["data.modalities=[S2L2A,S2L1C,S1GRD,DEM]"])
    torch.manual_seed(0)
    reg, toks, model = build_everything(cfg)
    pipe = CogenPipeline.from_checkpoint(_save_perturbed(tmp_path / "tiny", model, toks, reg, cfg))
    opts = pipe.options.replace(steps=1, samples=1, strength=0.2)  # cloud removal from its start, as shipped
    said = []
    ts = temporal_part(pipe, opts, more, ROOT / "configs" / "split.yaml", "test", {}, said.append, samples=2)["time_series"]
    assert ts["samples"] == 2
    cr = ts["cloud removal S2L1C, real masks 30-50%"]
    assert {WITH_DATES, START, ALONE, NEAREST, LINEAR, FILL} <= set(cr) and len(cr["runs"]) == 3 * len(masks)
    assert cr[LINEAR]["PSNR"] > cr[FILL]["PSNR"] - 10 and all(cr[k]["runs"] == len(cr["runs"]) for k in (LINEAR, FILL))
    mm = ts["missing month S2L2A"]
    assert mm["region"]["rows"] == [68, 100] and len(mm["bands"]) == 9 and mm["runs"]
    assert all(len(k) for k in mm["runs"]) and LINEAR in mm
    assert any("missing month" in s for s in said)
    page = "\n".join(_time_series(ts))
    assert "## Time series" in page and f"| {LINEAR} |" in page and "missing month S2L2A" in page

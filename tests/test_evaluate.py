import json

import pytest

from cogen.evaluate import main, parse_direction
from cogen.errors import UsageError


def test_parse_direction():
    assert parse_direction("S1RTC, DEM->S2L2A") == (["S1RTC", "DEM"], ["S2L2A"])
    with pytest.raises(UsageError):
        parse_direction("S1RTC")
    with pytest.raises(UsageError):
        parse_direction("S2L2A->S2L2A")


def test_evaluate_end_to_end_with_a_tiny_model(tmp_path, tiny_bundle, synth_root):
    split = tmp_path / "split.yaml"
    split.write_text("splits:\n  train: {default: {cols: [0, 32]}}\n  test: {default: {cols: [32, 64]}}\n")
    out, report = tmp_path / "r.json", tmp_path / "docs" / "RESULTS.md"
    main(["--checkpoint", str(tiny_bundle), "--data", str(synth_root), "--split-file", str(split), "--split", "test",
          "--direction", "S1RTC->S2L2A", "--direction", "S2L2A->LULC", "--samples", "2", "--steps", "2",
          "--tile", "16", "--baseline", "mean", "--baseline-checkpoint", str(tiny_bundle), "--robustness",
          "LULC:S2L2A,S1RTC", "--cloud-removal", "--cloud-covers", "0.3", "--cloud-strength", "0.5", "--sweep", "S1RTC->S2L2A",
          "--sweep-steps", "2,3", "--out", str(out), "--report", str(report)])
    r = json.loads(out.read_text())
    s2 = r["cogen"]["S1RTC->S2L2A"]["S2L2A"]
    assert {"sample", "mean", "diversity", "hf_power_ratio", "wasserstein"} <= set(s2)
    assert {"MAE", "RMSE", "PSNR", "SSIM", "SAM"} <= set(s2["mean"]) and s2["diversity"] > 0
    lulc = r["cogen"]["S2L2A->LULC"]["LULC"]
    assert 0 <= lulc["mIoU"] <= 1 and 0 <= lulc["ECE"] <= 1 and "per_class_IoU" in lulc
    assert r["training mean / class prior"]["S1RTC->S2L2A"]["S2L2A"]["sample"]["PSNR"] > 0
    assert "deterministic (same backbone)" in r and set(r["robustness"]["table"]) == {"S2L2A", "S1RTC", "S2L2A + S1RTC"}
    assert set(r["cloud_removal"]["30%"]) == {"cogen (clear pixels + S1RTC + DEM)", "cogen without clear pixels (S1RTC + DEM)",
                                             "cogen (clear pixels + S1RTC + DEM), mean of 2 samples",
                                             "cogen from the interpolation, strength 0.5 (clear pixels + S1RTC + DEM)",
                                             "cogen from the interpolation, strength 0.5 (clear pixels + S1RTC + DEM), "
                                             "mean of 2 samples", "fillnodata interpolation"}
    assert len(r["sweep"]["psnr"]["ddim"]) == 2
    text = report.read_text()
    assert "Missing-modality robustness" in text and "figures/" in text
    assert (report.parent / "figures" / "sweep.png").is_file()
    # reuse: nothing is recomputed, same figures
    main(["--checkpoint", str(tiny_bundle), "--data", str(synth_root), "--split-file", str(split), "--split", "test",
          "--direction", "S1RTC->S2L2A", "--samples", "2", "--steps", "2", "--tile", "16", "--reuse", str(out),
          "--out", str(tmp_path / "r2.json")])
    assert json.loads((tmp_path / "r2.json").read_text())["cogen"]["S1RTC->S2L2A"] == r["cogen"]["S1RTC->S2L2A"]

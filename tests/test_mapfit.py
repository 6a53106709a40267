"""Map fit: a class map's confidence as the chance that its class is right, from the samples' agreement and how
well the map fits its inputs (cogen.mapfit); the segment workflow rewrites its confidence with it."""
import json
import shutil
from dataclasses import replace

import numpy as np
import pytest
import rasterio

import sample
from cogen.mapfit import MapFit, ece, fit_logistic, logit, scene_fit


def test_logistic_fit_recovers_known_weights_and_calibrates():
    rng = np.random.default_rng(0)
    a = rng.uniform(0.3, 1.0, 20000)
    u = rng.normal(0.0, 1.0, 20000)
    w = (0.2, 0.8, -1.0)
    p = 1 / (1 + np.exp(-(w[0] + w[1] * logit(a) + w[2] * u)))
    right = rng.uniform(size=a.shape) < p
    got = fit_logistic(a, u, right)
    assert np.allclose(got, w, atol=0.08)
    assert fit_logistic(a, -u, right)[2] == 0.0  # a worse fit never raises the confidence: u left out
    fit = MapFit({"S2L2A": (0.0, 1.0)}, got)
    assert ece(fit.confidence(a, u), right) < 0.02 < ece(a, right)  # the agreement alone is not the chance of being right


def test_ece_and_u():
    assert ece(np.array([0.9, 0.9, 0.9, 0.9]), np.array([1, 1, 1, 0])) == pytest.approx(0.15)
    assert ece(np.array([0.25, 0.75]), np.array([0, 1])) == pytest.approx(0.25)
    fit = MapFit({"A": (0.0, 0.1), "B": (1.0, 2.0)}, (0.0, 1.0, -1.0))
    u = fit.u({"A": np.array([0.05, np.nan, np.nan]), "B": np.array([1.0, 3.0, np.nan]), "C": np.array([9.0] * 3)})
    assert u[0] == pytest.approx(0.5) and u[1] == pytest.approx(2.0) and np.isnan(u[2])  # the larger; C unknown
    assert MapFit.from_dict(json.loads(json.dumps(fit.to_dict()))) == replace(fit, source={})
    c = fit.confidence(np.array([0.9, 0.9]), np.array([0.0, 2.0]))
    assert c[1] < c[0]  # a worse fit, a lower confidence at the same agreement
    sets = replace(fit, by_inputs={"A+B": (2.0, 1.0, -1.0)})
    assert MapFit.from_dict(json.loads(json.dumps(sets.to_dict()))) == replace(sets, source={})
    assert sets.weights_for(["B", "A@1", "A"]) == (2.0, 1.0, -1.0)  # an input set calibrated on: its own weights
    assert sets.weights_for(["A"]) == sets.weights_for(None) == (0.0, 1.0, -1.0)  # others: the pooled ones
    assert sets.confidence(np.array([0.9]), np.array([0.0]), ["A", "B"])[0] > c[0]


def test_scene_fit_is_per_tile_on_the_map_grid_and_nan_where_no_class(tiny_bundle):
    from cogen.checkpoint import load_bundle
    from cogen.data.synthetic import make_scene
    from cogen.pipeline.sources import ArraySource

    b = load_bundle(tiny_bundle)
    sc = make_scene(40, 48, seed=2)["rasters"]
    classes = sc["LULC"][0].astype(np.int64)
    classes[:5, :5] = 0  # no class generated there (nodata)
    fit = MapFit({"S2L2A": (0.0, 0.1)}, (0.0, 1.0, -1.0))
    u, score = scene_fit(b, "cpu", {"S2L2A": ArraySource(b.registry["S2L2A"], sc["S2L2A"])}, "LULC", classes, fit, 0)
    assert u.shape == (40, 48) and u.dtype == np.float32
    assert np.isnan(u[:5, :5]).all() and np.isfinite(u[5:, 5:]).all()
    assert np.isfinite(score)
    assert len(np.unique(u[8:40, 16:48])) == 1  # one value a 32 px tile (the last of a row and column moved back)
    other = sc["LULC"][0].astype(np.int64)[::-1].copy()
    u2, _ = scene_fit(b, "cpu", {"S2L2A": ArraySource(b.registry["S2L2A"], sc["S2L2A"])}, "LULC", other, fit, 0)
    assert not np.allclose(u2[5:, 5:], u[5:, 5:])  # the map matters


def test_segment_rewrites_its_confidence_with_the_map_fit(tmp_path, tiny_bundle):
    from cogen.checkpoint import load_bundle
    from cogen.data.synthetic import make_scene
    from cogen.io import write_raster
    from cogen.novelty import calibrate
    from cogen.pipeline.sources import ArraySource
    from rasterio.transform import from_origin

    path = tmp_path / "tiny"
    shutil.copytree(tiny_bundle, path)
    b = load_bundle(path)
    scenes = [make_scene(48, 48, seed=s)["rasters"] for s in range(3)]
    src = lambda i, m: ArraySource(b.registry[m], scenes[i][m])
    cal = calibrate(b, "cpu", {"S2L2A": [src(0, "S2L2A")]}, {"S2L2A": [src(1, "S2L2A")]})
    sc = make_scene(40, 40, seed=9)["rasters"]
    s2 = write_raster(tmp_path / "S2L2A.tif", sc["S2L2A"], "EPSG:32632", from_origin(600000.0, 4000000.0, 10, 10))
    args = ["segment", "--input", f"S2L2A={s2}", "--target", "LULC", "--samples", "3", "--checkpoint", path,
            "--steps", "2", "--tile", "16", "--overlap", "4", "--quiet"]
    cal.save(path)  # without a map fit: the confidence is the agreement
    assert sample.main([str(a) for a in [*args, "--out", tmp_path / "plain"]]) == 0
    assert json.loads((tmp_path / "plain" / "run.json").read_text())["map_fit"] == {"LULC": None}
    replace(cal, map_fit=MapFit({"S2L2A": (0.0, 1e-3)}, (0.0, 1.0, -0.5))).save(path)
    assert sample.main([str(a) for a in [*args, "--out", tmp_path / "fit"]]) == 0
    run = json.loads((tmp_path / "fit" / "run.json").read_text())
    assert set(run["map_fit"]["LULC"]) == {"scene_score", "threshold", "poor_fit"}
    with rasterio.open(tmp_path / "plain" / "LULC_confidence.tif") as p, \
            rasterio.open(tmp_path / "fit" / "LULC_confidence.tif") as f:
        assert (f.crs, f.transform, f.shape, f.dtypes[0]) == (p.crs, p.transform, p.shape, "float32")
        a, c = p.read(1), f.read(1)
        assert "COGEN_CONFIDENCE" in f.tags() and f.tags()["COGEN_MAP_FIT_WEIGHTS"] == "0,1,-0.5"
    assert not np.allclose(a, c) and ((c >= 0) & (c <= 1)).all()
    # the value: the chance from the agreement and the tile's fit, times the familiarity (as without the fit)
    from cogen.novelty import familiarity
    from cogen.pipeline import CogenPipeline

    pipe = CogenPipeline.from_checkpoint(path)
    with rasterio.open(tmp_path / "fit" / "novelty.tif") as nv:
        fam = familiarity(nv.read(1), pipe.calibration.pixel_scale)
    fit = pipe.map_fit({"S2L2A": str(s2)}, "LULC", tmp_path / "fit" / "LULC.tif")
    want = pipe.calibration.map_fit.confidence(a / fam, fit["u"], ["S2L2A"]) * fam
    assert np.allclose(c, want, atol=1e-5)

"""Novelty: every workflow writes novelty.tif on the output grid and says in run.json whether a scene is unfamiliar;
a noise image is unfamiliar to the shipped model, a constant one less familiar than a real one; class-map confidence falls where novelty is high."""
import json
import shutil

import numpy as np
import pytest
import rasterio

import sample
from cogen.novelty import Calibration, Novelty, Stats, calibrate, familiarity, scene_novelty, shipped_regions
from conftest import ROOT, SHIPPED


@pytest.fixture(scope="module")
def calibrated_tiny(tmp_path_factory, tiny_bundle):
    """The tiny test bundle with a novelty calibration fitted on generated scenes."""
    from cogen.checkpoint import load_bundle
    from cogen.data.synthetic import make_scene
    from cogen.pipeline.sources import ArraySource

    path = tmp_path_factory.mktemp("cal") / "tiny"
    shutil.copytree(tiny_bundle, path)
    b = load_bundle(path)
    scenes = [make_scene(64, 64, seed=s)["rasters"] for s in range(4)]
    src = lambda i, m: ArraySource(b.registry[m], scenes[i][m])
    mods = ["S2L2A", "S1RTC", "DEM"]
    cal = calibrate(b, "cpu", {m: [src(0, m), src(1, m)] for m in mods}, {m: [src(2, m), src(3, m)] for m in mods})
    cal.save(path)
    return path


def test_stats_count_denoising_both_ways_and_the_embedding_distance_above_its_mean():
    s = Stats(np.zeros(4), np.ones(4), (1.0, 2.0))
    assert s.distance(np.array([-2.0, -2.0, -2.0, 0.0])) == pytest.approx(2.0)  # too easy to denoise: novel
    assert s.distance(np.array([2.0, 2.0, 2.0, 0.0])) == pytest.approx(2.0)
    assert s.distance(np.array([0.0, 0.0, 0.0, -3.0])) == 0.0  # nearer the training tokens than usual: not novel
    assert s.distance(np.array([0.0, 0.0, 0.0, 3.0])) == pytest.approx(1.5)  # over its own 95th percentile
    rng = np.random.default_rng(0)
    fit = Stats.fit(rng.normal(size=(2000, 4)))
    assert np.mean(fit.distance(rng.normal(size=(2000, 4))) > 1.0) == pytest.approx(0.1, abs=0.03)  # two scores


def test_every_workflow_writes_novelty_on_the_output_grid(tmp_path, calibrated_tiny, capsys):
    from cogen.data.synthetic import make_scene
    from cogen.io import write_raster
    from rasterio.transform import from_origin

    sc = make_scene(40, 52, seed=7)["rasters"]
    tr = from_origin(600000.0, 4000000.0, 10, 10)
    s1 = write_raster(tmp_path / "S1RTC.tif", sc["S1RTC"], "EPSG:32632", tr)
    s2 = write_raster(tmp_path / "S2L2A.tif", sc["S2L2A"], "EPSG:32632", tr)
    mask = np.zeros((40, 52), np.uint8)
    mask[10:30, 10:30] = 1
    m = write_raster(tmp_path / "mask.tif", mask, "EPSG:32632", tr)
    common = ["--checkpoint", calibrated_tiny, "--steps", "2", "--tile", "16", "--overlap", "4", "--quiet"]
    jobs = {"impute": ["impute", "--input", f"S1RTC={s1}", "--target", "S2L2A"],
            "segment": ["segment", "--input", f"S2L2A={s2}", "--target", "LULC", "--samples", "2"],
            "cloud": ["cloud-removal", "--input", f"S2L2A={s2}", "--mask", m]}
    for name, args in jobs.items():
        assert sample.main([str(a) for a in [*args, "--out", tmp_path / name, *common]]) == 0
        out = tmp_path / name
        run = json.loads((out / "run.json").read_text())
        nov = run["novelty"]
        assert set(nov) == {"scene_score", "threshold", "unfamiliar"} and isinstance(nov["unfamiliar"], bool)
        with rasterio.open(out / "novelty.tif") as a, rasterio.open(next(out.glob("*.tif"))) as ref:
            assert (a.crs, a.transform, a.shape, a.dtypes[0]) == (ref.crs, ref.transform, ref.shape, "float32")
            v = a.read(1)
        if name == "cloud":  # the masked pixels are left out: NaN where no input is valid (a token of the clouds)
            assert np.isfinite(v[mask == 0]).mean() > 0.6 and not np.isfinite(v[12:28, 12:28]).any()
        else:
            assert np.isfinite(v).all()
        assert (v[np.isfinite(v)] >= 0).all()
        assert (nov["scene_score"] > nov["threshold"]) == nov["unfamiliar"]


def test_a_checkpoint_without_calibration_says_so(tmp_path, tiny_bundle):
    from cogen.data.synthetic import make_scene
    from cogen.io import write_raster
    from rasterio.transform import from_origin

    sc = make_scene(24, 24, seed=1)["rasters"]
    s1 = write_raster(tmp_path / "S1RTC.tif", sc["S1RTC"], "EPSG:32632", from_origin(0, 0, 10, 10))
    rc = sample.main([str(a) for a in ["impute", "--input", f"S1RTC={s1}", "--target", "DEM", "--out", tmp_path / "o",
                                       "--checkpoint", tiny_bundle, "--steps", "2", "--tile", "16", "--overlap", "4",
                                       "--quiet"]])
    assert rc == 0 and json.loads((tmp_path / "o" / "run.json").read_text())["novelty"] is None
    assert not (tmp_path / "o" / "novelty.tif").exists()


def test_confidence_falls_where_novelty_is_high(calibrated_tiny):
    from cogen.data.synthetic import make_scene
    from cogen.pipeline import CogenPipeline

    f = familiarity(np.array([[0.0, 1.0, 2.0, 3.0, np.nan]]), 1.0)
    assert f[0].tolist() == [1.0, 1.0, 0.5, 0.25, 1.0]
    pipe = CogenPipeline.from_checkpoint(calibrated_tiny)
    sc = make_scene(32, 32, seed=3)["rasters"]
    kw = dict(steps=2, samples=3, seed=0, tile=16, overlap=4, progress=False)
    plain = pipe({"S2L2A": sc["S2L2A"]}, ["LULC"], **kw)["LULC"].confidence
    nmap = np.zeros((32, 32), np.float32)
    nmap[:, 16:] = 5.0  # the right half unfamiliar
    nov = Novelty(5.0, 1.0, True, nmap, pixel_scale=1.0)
    low = pipe({"S2L2A": sc["S2L2A"]}, ["LULC"], novelty=nov, **kw)["LULC"].confidence
    assert np.allclose(low[:, :16], plain[:, :16])
    assert np.allclose(low[:, 16:], plain[:, 16:] / 16)


@pytest.fixture(scope="module")
def shipped():
    from cogen.checkpoint import DEFAULT_CHECKPOINT, load_bundle

    cal = Calibration.load(DEFAULT_CHECKPOINT)
    assert cal is not None, "the shipped model carries its novelty calibration"
    return load_bundle(DEFAULT_CHECKPOINT), cal


def test_a_noise_scene_is_unfamiliar_and_a_constant_one_less_familiar_than_a_real_one(shipped):
    """Noise is flagged. A constant image is not flagged by the shipped model (docs/NOVELTY.md: after training on
    smooth winter and composite scenes it scores just under the threshold), but it scores far above a held-out
    strip of a training place."""
    from cogen.pipeline.sources import ArraySource

    bundle, cal = shipped
    score = lambda raw: scene_novelty(bundle, "cpu", {"S2L2A": ArraySource(bundle.registry["S2L2A"], raw)}, cal)
    noise = score(np.random.default_rng(0).integers(0, 10000, (12, 64, 64)).astype(np.int16))
    assert noise.unfamiliar and noise.scene_score > cal.threshold
    strip = shipped_regions(bundle, SHIPPED, ["S2L2A"], (112, 176), "test")["S2L2A"][2]
    real = scene_novelty(bundle, "cpu", {"S2L2A": strip}, cal).scene_score
    assert score(np.full((12, 64, 64), 2000, np.int16)).scene_score > 2 * real


def test_a_held_out_strip_of_a_training_place_is_familiar(shipped):
    bundle, cal = shipped
    strips = shipped_regions(bundle, SHIPPED, ["S2L2A"], (112, 224), "test")["S2L2A"]
    scores = [scene_novelty(bundle, "cpu", {"S2L2A": s}, cal).scene_score for s in strips]
    assert np.median(scores) < cal.threshold


def test_regions_follow_the_split_file_given(shipped, tmp_path):
    """Calibrating on one's own data takes one's own split (python -m cogen.novelty --split-file)."""
    bundle, _ = shipped
    own = tmp_path / "split.yaml"
    own.write_text("splits:\n  train:\n    default: {cols: [0, 100]}\n  test:\n    default: {cols: [120, 152]}\n")
    default = shipped_regions(bundle, SHIPPED, ["DEM"], None, "test")["DEM"]
    mine = shipped_regions(bundle, SHIPPED, ["DEM"], None, "test", own)["DEM"]
    assert len(mine) == len(default) == 5
    assert {s.width for s in default} == {64} and {s.width for s in mine} == {32}

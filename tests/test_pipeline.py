"""Sampling and the sample.py workflows with a tiny random model on generated rasters."""
import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

import sample
from cogen.io import write_raster
from cogen.tiling import coverage_weights, tile_grid


def scene(tmp, h, w, crs="EPSG:32633", seed=0, nodata_s1=None):
    from cogen.data.synthetic import make_scene

    sc = make_scene(h, w, seed=seed)
    if crs == "EPSG:4326":
        tr = from_origin(12.0, 45.0, 1e-4, 1e-4)
    else:
        tr = from_origin(500000.0, 5000000.0, 10, 10)
    paths = {}
    for m in ("S2L2A", "S1RTC", "DEM", "LULC"):
        arr = sc["rasters"][m]
        nod = {"LULC": 0}.get(m)
        if m == "S1RTC" and nodata_s1 is not None:
            arr = arr.copy()
            arr[:, nodata_s1] = -9999.0
            nod = -9999.0
        paths[m] = write_raster(tmp / f"{m}.tif", arr, crs, tr, nodata=nod)
    return paths, sc


def run(*args) -> int:
    return sample.main([str(a) for a in args])


def common(bundle, out, *extra):
    return ["--checkpoint", bundle, "--out", out, "--steps", "3", "--tile", "16", "--overlap", "4", "--quiet", *extra]


@pytest.mark.parametrize("h,w,crs", [(229, 301, "EPSG:32633"), (40, 52, "EPSG:4326"), (9, 11, "EPSG:32633")])
def test_impute_keeps_grid_exactly(tmp_path, tiny_bundle, h, w, crs):
    paths, _ = scene(tmp_path, h, w, crs)
    out = tmp_path / "out"
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--input", f"DEM={paths['DEM']}", "--target", "S2L2A",
               "--target", "LULC", *common(tiny_bundle, out)) == 0
    with rasterio.open(paths["S1RTC"]) as ref:
        for f in ("S2L2A.tif", "LULC.tif", "LULC_confidence.tif"):
            with rasterio.open(out / f) as o:
                assert o.crs == ref.crs and o.transform == ref.transform and o.shape == ref.shape, f
        with rasterio.open(out / "S2L2A.tif") as o:
            assert o.count == 12 and o.dtypes[0] == "int16" and o.descriptions[0] == "B01"
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["checkpoint"]["sha256"] and run_json["seed"] == 0 and "torch" in run_json["versions"]
    assert (out / "quicklook.png").stat().st_size > 1000
    assert not list(out.glob(".*"))  # no temporary left


def test_samples_write_mean_and_std(tmp_path, tiny_bundle):
    paths, _ = scene(tmp_path, 32, 32)
    out = tmp_path / "o"
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "S2L2A", *common(tiny_bundle, out),
               "--samples", "3") == 0
    with rasterio.open(out / "S2L2A_std.tif") as s, rasterio.open(out / "S2L2A_mean.tif") as m:
        assert s.read().mean() > 0 and m.count == 12


def test_same_seed_same_files_other_seed_different(tmp_path, tiny_bundle):
    paths, _ = scene(tmp_path, 40, 40)
    outs = []
    for i, seed in enumerate((3, 3, 4)):
        out = tmp_path / f"o{i}"
        assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "S2L2A", *common(tiny_bundle, out),
                   "--seed", seed) == 0
        with rasterio.open(out / "S2L2A.tif") as o:
            outs.append(o.read())
    assert np.array_equal(outs[0], outs[1]) and not np.array_equal(outs[0], outs[2])


def test_cloud_removal_keeps_every_clear_pixel(tmp_path, tiny_bundle):
    paths, sc = scene(tmp_path, 45, 37)
    cloud = sc["rasters"]["CLOUD"][0]
    scl = np.where(cloud == 1, 9, np.where(cloud == 3, 3, 4)).astype(np.uint8)  # an SCL-like layer
    with rasterio.open(paths["S2L2A"]) as r:
        write_raster(tmp_path / "scl.tif", scl, r.crs, r.transform)
        s2 = r.read()
    out = tmp_path / "cr"
    assert run("cloud-removal", "--input", f"S2L2A={paths['S2L2A']}", "--input", f"S1RTC={paths['S1RTC']}",
               "--mask", tmp_path / "scl.tif", "--mask-values", "8,9,10,3", *common(tiny_bundle, out)) == 0
    with rasterio.open(out / "S2L2A.tif") as o:
        filled = o.read()
        assert o.dtypes[0] == "int16"
    masked = np.isin(scl, [8, 9, 10, 3])
    assert masked.any() and (~masked).any()
    assert np.array_equal(filled[:, ~masked], s2[:, ~masked])
    assert not np.array_equal(filled[:, masked], s2[:, masked])


def test_cloud_removal_reports_the_cover_and_warns_about_a_class_layer(tmp_path, tiny_bundle, capsys):
    """An SCL-like layer passed without --mask-values masks every non-zero class: said on stderr, with the cover;
    a mask that masks nothing is said too."""
    paths, sc = scene(tmp_path, 24, 24)
    cloud = sc["rasters"]["CLOUD"][0]
    scl = np.where(cloud == 1, 9, 4).astype(np.uint8)  # vegetation 4 everywhere the clouds are not
    with rasterio.open(paths["S2L2A"]) as r:
        write_raster(tmp_path / "scl.tif", scl, r.crs, r.transform)
        write_raster(tmp_path / "none.tif", np.zeros_like(scl), r.crs, r.transform)
        write_raster(tmp_path / "m255.tif", (scl == 9).astype(np.uint8) * 255, r.crs, r.transform)  # binary, 0/255
        s2 = r.read()
    base = ["cloud-removal", "--input", f"S2L2A={paths['S2L2A']}"]
    assert run(*base, "--mask", tmp_path / "scl.tif", *common(tiny_bundle, tmp_path / "a")) == 0
    cap = capsys.readouterr()
    assert "warning:" in cap.err and "scl.tif" in cap.err and "4, 9" in cap.err and "100% of the scene" in cap.err
    assert "(100.0% of the scene)" in cap.out
    assert run(*base, "--mask", tmp_path / "scl.tif", "--mask-values", "9", *common(tiny_bundle, tmp_path / "b")) == 0
    cap = capsys.readouterr()
    assert "warning" not in cap.err and f"({(scl == 9).mean():.1%} of the scene)" in cap.out
    assert run(*base, "--mask", tmp_path / "m255.tif", *common(tiny_bundle, tmp_path / "d")) == 0
    assert "warning" not in capsys.readouterr().err
    assert run(*base, "--mask", tmp_path / "none.tif", *common(tiny_bundle, tmp_path / "c")) == 0
    assert "masks no pixel" in capsys.readouterr().err
    with rasterio.open(tmp_path / "c" / "S2L2A.tif") as o:
        assert np.array_equal(o.read(), s2)


def test_add_offset_reads_and_writes_a_products_offset(tmp_path, tiny_bundle, capsys):
    """Sentinel-2 of processing baseline 04.00+ stores reflectance * 10000 + 1000. With --add-offset
    S2L2A=-1000 cloud removal sees the same reflectance as from the scene without the offset, keeps every clear
    pixel bit-identical, and writes its generated pixels with the offset (the same reflectance, +1000 in raw
    units). A file whose metadata declares the offset gets a warning when it is not applied."""
    paths, sc = scene(tmp_path, 24, 24)
    cloud = sc["rasters"]["CLOUD"][0] == 1
    with rasterio.open(paths["S2L2A"]) as r:
        s2, crs, tr = r.read(), r.crs, r.transform
        write_raster(tmp_path / "mask.tif", cloud.astype(np.uint8), crs, tr)
    write_raster(tmp_path / "pb4.tif", (s2.astype(np.int32) + 1000).astype(np.int16), crs, tr)
    with rasterio.open(tmp_path / "pb4.tif", "r+") as f:
        f.update_tags(BOA_ADD_OFFSET_B2="-1000", PROCESSING_BASELINE="05.10")
        f.update_tags(1, WAVELENGTH="0.49")
    base = ["cloud-removal", "--input", f"S1RTC={paths['S1RTC']}", "--mask", tmp_path / "mask.tif"]
    assert run(*base, "--input", f"S2L2A={paths['S2L2A']}", *common(tiny_bundle, tmp_path / "plain")) == 0
    assert "warning" not in capsys.readouterr().err
    assert run(*base, "--input", f"S2L2A={tmp_path / 'pb4.tif'}", "--add-offset", "S2L2A=-1000",
               *common(tiny_bundle, tmp_path / "pb4")) == 0
    assert "warning" not in capsys.readouterr().err
    with rasterio.open(tmp_path / "plain" / "S2L2A.tif") as a, rasterio.open(tmp_path / "pb4" / "S2L2A.tif") as b:
        plain, pb4 = a.read().astype(np.int32), b.read().astype(np.int32)
    assert cloud.any() and np.array_equal(pb4[:, ~cloud], s2[:, ~cloud] + 1000)
    # the same product: the scene's own tags are kept, and the offset is stated
    with rasterio.open(tmp_path / "pb4" / "S2L2A.tif") as b:
        t = b.tags()
        assert (t["PROCESSING_BASELINE"], t["BOA_ADD_OFFSET_B2"], t["COGEN_ADD_OFFSET"]) == ("05.10", "-1000", "-1000")
        assert b.tags(1)["WAVELENGTH"] == "0.49" and t["COGEN_PRODUCT"] == "sample"
    with rasterio.open(tmp_path / "plain" / "S2L2A.tif") as a:
        assert "COGEN_ADD_OFFSET" not in a.tags() and "PROCESSING_BASELINE" not in a.tags()
    assert not np.array_equal(plain[:, cloud], s2[:, cloud])
    # the same reflectance, rounded. Below 0 only the offset product can hold it (what the offset is for): each
    # tile's generated values are kept within the valid range, which then reaches 0.1 lower, before tiles are
    # blended, so where a tile went below 0 (and in the overlaps of such tiles) the plain product comes out
    # brighter, by at most those 0.1; everywhere else the two agree to rounding
    d = np.abs(np.maximum(pb4[:, cloud] - 1000, 0) - plain[:, cloud])
    darker = pb4[:, cloud] - 1000 < plain[:, cloud]
    assert darker[d > 1].all() and d.max() <= 1000 and (d <= 1).mean() > 0.95
    assert (pb4[:, cloud] < 1000).any() and (plain >= 0).all()
    # the offset declared but not applied: generated from reflectance 0.1 too bright, and said so
    assert run(*base, "--input", f"S2L2A={tmp_path / 'pb4.tif'}", *common(tiny_bundle, tmp_path / "forgot")) == 0
    err = capsys.readouterr().err
    assert "warning:" in err and "pb4.tif" in err and "--add-offset S2L2A=-1000" in err
    # an imputed scene written with the offset says so, and read back without it is warned about too
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "S2L2A", "--add-offset", "S2L2A=-1000",
               *common(tiny_bundle, tmp_path / "imputed")) == 0
    with rasterio.open(tmp_path / "imputed" / "S2L2A.tif") as f:
        assert f.tags()["COGEN_ADD_OFFSET"] == "-1000" and "BOA_ADD_OFFSET_B2" not in f.tags()
    assert run(*base, "--input", f"S2L2A={tmp_path / 'imputed' / 'S2L2A.tif'}",
               *common(tiny_bundle, tmp_path / "again")) == 0
    assert "--add-offset S2L2A=-1000" in capsys.readouterr().err
    for bad, said in (("S2L2A=abc", "expected MOD=NUMBER"), ("LULC=5", "LULC is a class map")):
        assert run(*base, "--input", f"S2L2A={paths['S2L2A']}", "--add-offset", bad,
                   *common(tiny_bundle, tmp_path / "bad")) == 2
        assert said in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_inputs_in_other_units_are_warned_about(tmp_path, tiny_bundle, capsys):
    """Backscatter in linear power where dB is expected, and reflectance already scaled to 0-1 where raw
    numbers x 1e-4 are expected, would be read as nonsense without a word: each gets a warning naming the file
    and the conversion; the scene as stored gets none."""
    paths, _ = scene(tmp_path, 24, 24)
    with rasterio.open(paths["S1RTC"]) as r:
        s1, crs, tr = r.read(), r.crs, r.transform
    with rasterio.open(paths["S2L2A"]) as r:
        s2 = r.read()
    write_raster(tmp_path / "s1_linear.tif", (10 ** (s1 / 10)).astype(np.float32), crs, tr)
    write_raster(tmp_path / "s2_scaled.tif", (s2 * 1e-4).astype(np.float32), crs, tr)
    assert run("impute", "--target", "LULC", "--input", f"S1RTC={paths['S1RTC']}", "--input",
               f"S2L2A={paths['S2L2A']}", *common(tiny_bundle, tmp_path / "ok")) == 0
    assert "warning" not in capsys.readouterr().err
    for m, f, said in (("S1RTC", "s1_linear.tif", "10 * log10(value)"), ("S2L2A", "s2_scaled.tif", "x 10000")):
        out = tmp_path / f"out_{m}"
        assert run("impute", "--target", "LULC", "--input", f"{m}={tmp_path / f}", *common(tiny_bundle, out)) == 0
        err = capsys.readouterr().err
        assert "warning:" in err and f in err and said in err, err


def test_outputs_describe_themselves(tmp_path, tiny_bundle):
    """Every output GeoTIFF says what it holds without run.json: band names, GDAL scale/offset/unit giving
    physical values, the class colours and names of a class map, and the checkpoint, inputs and seed."""
    from cogen.checkpoint import load_bundle
    from cogen.registry import default_registry

    paths, _ = scene(tmp_path, 20, 20)
    out = tmp_path / "o"
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "S2L2A", "--target", "LULC",
               "--samples", "2", "--seed", "7", *common(tiny_bundle, out)) == 0
    reg, digest = default_registry(), load_bundle(tiny_bundle).digest
    with rasterio.open(out / "S2L2A.tif") as f, rasterio.open(out / "S2L2A_std.tif") as g:
        assert f.descriptions == reg["S2L2A"].bands and f.units[0] == "reflectance"
        assert f.scales[0] == pytest.approx(1e-4) and f.offsets[0] == 0 and g.scales[0] == pytest.approx(1e-4)
        t = f.tags()
        assert (t["COGEN_CHECKPOINT_SHA256"], t["COGEN_INPUTS"], t["COGEN_SEED"], t["COGEN_PRODUCT"]) == \
            (digest, "S1RTC", "7", "sample")
        assert g.tags()["COGEN_PRODUCT"] == "std"
    with rasterio.open(out / "LULC.tif") as f:
        cmap, t = f.colormap(1), f.tags()
        water = next(c for c in reg["LULC"].classes if c.id == 1)
        assert cmap[1][:3] == tuple(int(round(v * 255)) for v in water.rgb) and t["CLASS_1"] == water.name
        assert t["COGEN_PRODUCT"] == "classes"


def test_cloud_removal_with_a_partial_model_feeds_clear_tokens_clean(tmp_path, tiny_bundle, partial_bundle):
    """Same weights; the bundle trained with partial targets takes the clear tokens as clean conditions, so
    the generated pixels change while every clear pixel is still kept exactly."""
    paths, sc = scene(tmp_path, 40, 40)
    cloud = sc["rasters"]["CLOUD"][0]
    with rasterio.open(paths["S2L2A"]) as r:
        write_raster(tmp_path / "mask.tif", (cloud > 0).astype(np.uint8), r.crs, r.transform)
        s2 = r.read()
    outs = []
    for b in (tiny_bundle, partial_bundle):
        out = tmp_path / b.name
        assert run("cloud-removal", "--input", f"S2L2A={paths['S2L2A']}", "--input", f"S1RTC={paths['S1RTC']}",
                   "--mask", tmp_path / "mask.tif", *common(b, out)) == 0
        with rasterio.open(out / "S2L2A.tif") as o:
            outs.append(o.read())
    masked = cloud > 0
    assert masked.any() and (~masked).any()
    for o in outs:
        assert np.array_equal(o[:, ~masked], s2[:, ~masked])
    assert not np.array_equal(outs[0][:, masked], outs[1][:, masked])


def test_segment_majority_and_confidence(tmp_path, tiny_bundle):
    paths, _ = scene(tmp_path, 32, 32)
    out = tmp_path / "seg"
    # without overlap each pixel's confidence is an exact fraction of the 4 samples (overlaps blend them)
    assert run("segment", "--input", f"S2L2A={paths['S2L2A']}", *common(tiny_bundle, out), "--samples", "4",
               "--overlap", "0") == 0
    with rasterio.open(out / "LULC.tif") as c, rasterio.open(out / "LULC_confidence.tif") as f:
        cls, conf = c.read(1), f.read(1)
    assert set(np.unique(cls)) <= set(range(1, 10))
    assert ((conf >= 0.25 - 1e-6) & (conf <= 1 + 1e-6)).all()  # fractions of 4 samples, at least one agrees
    assert np.allclose(conf * 4, np.round(conf * 4), atol=1e-4)


def test_synth_writes_a_dataset(tmp_path, tiny_bundle):
    paths, _ = scene(tmp_path, 20, 20)
    out = tmp_path / "syn"
    assert run("synth", "--n", "2", "--input", f"LULC={paths['LULC']}", "--target", "S2L2A", "--target", "S1RTC",
               *common(tiny_bundle, out)) == 0
    from cogen.data import SceneDataset

    ds = SceneDataset(out, mode="grid")
    assert len(ds.scene_ids) == 2 and {"S2L2A", "S1RTC", "LULC"} <= set(ds.modalities)
    man = json.loads((out / "manifest.json").read_text())
    assert set(man["scenes"]) == set(ds.scene_ids)
    a, b = (rasterio.open(out / "S2L2A" / f"{s}.tif").read() for s in ds.scene_ids)
    assert not np.array_equal(a, b)
    out2 = tmp_path / "uncond"
    assert run("synth", "--n", "1", "--target", "DEM", "--size", "16", *common(tiny_bundle, out2)) == 0
    assert SceneDataset(out2, mode="grid")[0]["values"]["DEM"].shape == (1, 16, 16)


def test_a_targets_larger_tiles_need_an_image_among_the_inputs(tmp_path, tiny_bundle, monkeypatch):
    """A target's own `tiles` entry (chosen for imputation from radar) puts S2L2A alone on tiles beyond the
    training crops. From a layout, elevation or nothing those come out striped, so impute and synth then keep the
    default tiles; from radar the larger tiles are used. A tile or overlap given on the command line wins."""
    from cogen import workflows

    paths, _ = scene(tmp_path, 20, 20)
    made = workflows._pipeline

    def pipeline(args):
        pipe = made(args)
        pipe.bundle.config.sample = pipe.options.replace(tiles={"default": [16, 4], "S2L2A": [64, 16]})
        return pipe

    def tiling(path):
        with rasterio.open(path) as f:
            return tuple(int(v) for v in f.tags()["COGEN_TILE"].split())

    monkeypatch.setattr(workflows, "_pipeline", pipeline)
    common = ["--target", "S2L2A", "--checkpoint", tiny_bundle, "--steps", "2", "--quiet"]
    synth = ["synth", "--n", "1", "--input", f"LULC={paths['LULC']}", *common]
    assert run(*synth, "--out", tmp_path / "a") == 0
    assert tiling(tmp_path / "a" / "S2L2A" / "synth_0000.tif") == (16, 4)
    assert run(*synth, "--overlap", "8", "--out", tmp_path / "b") == 0  # an overlap given alone is kept
    assert tiling(tmp_path / "b" / "S2L2A" / "synth_0000.tif") == (16, 8)
    assert run(*synth, "--tile", "8", "--overlap", "0", "--out", tmp_path / "c") == 0  # and a tile given is used
    assert tiling(tmp_path / "c" / "S2L2A" / "synth_0000.tif") == (8, 0)
    for m, want in (("DEM", (16, 4)), ("LULC", (16, 4)), ("S1RTC", (64, 16))):
        assert run("impute", "--input", f"{m}={paths[m]}", *common, "--out", tmp_path / f"impute_{m}") == 0
        assert tiling(tmp_path / f"impute_{m}" / "S2L2A.tif") == want, m


def test_condition_nodata_is_generated_and_unknown_pixels_stay_nodata(tmp_path, tiny_bundle):
    hole = np.zeros((32, 32), bool)
    hole[4:12, 4:12] = True
    paths, _ = scene(tmp_path, 32, 32, nodata_s1=hole)
    out = tmp_path / "o"
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "DEM", *common(tiny_bundle, out)) == 0
    with rasterio.open(out / "DEM.tif") as o:
        dem = o.read(1)
        nod = o.nodata
    assert np.isnan(nod) and np.isnan(dem[hole]).all() and np.isfinite(dem[~hole]).all()
    out2 = tmp_path / "o2"
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--input", f"S2L2A={paths['S2L2A']}", "--target",
               "DEM", *common(tiny_bundle, out2)) == 0
    with rasterio.open(out2 / "DEM.tif") as o:
        assert np.isfinite(o.read(1)).all()  # S2 says something where S1 has a hole


def test_existing_output_needs_overwrite(tmp_path, tiny_bundle, capsys):
    paths, _ = scene(tmp_path, 16, 16)
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("user file")
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "DEM", *common(tiny_bundle, out)) == 2
    assert "exists" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "DEM", *common(tiny_bundle, out),
               "--overwrite") == 0
    assert (out / "DEM.tif").exists()


@pytest.mark.parametrize("cmd,flag,value", [("impute", "--steps", "0"), ("impute", "--steps", "-1"),
                                            ("impute", "--batch", "0"), ("impute", "--tile", "0"),
                                            ("impute", "--samples", "0"), ("segment", "--samples", "0"),
                                            ("synth", "--size", "0")])
def test_zero_or_negative_counts_are_refused(tmp_path, tiny_bundle, capsys, cmd, flag, value):
    """0 is not taken for "the default" (nor -1 run as it came): one line naming the value, exit 2, nothing written."""
    paths, _ = scene(tmp_path, 16, 16)
    out = tmp_path / "o"
    inputs = {"impute": ["--input", f"S1RTC={paths['S1RTC']}", "--target", "DEM"],
              "segment": ["--input", f"S2L2A={paths['S2L2A']}"], "synth": ["--target", "DEM"]}[cmd]
    assert run(cmd, *inputs, *common(tiny_bundle, out), flag, value) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error:") and value in err[-1] and flag.strip("-") in err[-1]
    assert not out.exists() and not list(tmp_path.glob(".o*"))


@pytest.mark.parametrize("h,w,tile,ov", [(512, 512, 64, 16), (229, 301, 32, 8), (10, 7, 16, 4), (100, 33, 32, 0)])
def test_blend_weights_sum_to_one(h, w, tile, ov):
    np.testing.assert_allclose(coverage_weights(h, w, tile, ov), 1.0, rtol=1e-12)
    cov = np.zeros((max(h, tile), max(w, tile)), int)
    for r, c in tile_grid(h, w, tile, ov):
        cov[r : r + tile, c : c + tile] += 1
    assert (cov[:h, :w] >= 1).all()


def test_api_arrays_in_physical_units_out(tiny_bundle):
    from cogen.data.synthetic import make_scene
    from cogen.pipeline import CogenPipeline

    sc = make_scene(24, 24, seed=1)["rasters"]
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    out = pipe({"S1RTC": sc["S1RTC"]}, ["S2L2A", "LULC"], steps=2, samples=2, seed=0, tile=16, overlap=4, progress=False)
    assert out["S2L2A"].sample.shape == (12, 24, 24) and out["S2L2A"].mean.shape == (12, 24, 24)
    assert out["LULC"].classes.shape == (24, 24)
    same = pipe({"S1RTC": sc["S1RTC"]}, ["S2L2A"], steps=2, seed=0, tile=16, overlap=4, progress=False)
    other = pipe({"S1RTC": sc["S1RTC"]}, ["S2L2A"], steps=2, seed=1, tile=16, overlap=4, progress=False)
    again = pipe({"S1RTC": sc["S1RTC"]}, ["S2L2A"], steps=2, seed=0, tile=16, overlap=4, progress=False)
    assert np.array_equal(same["S2L2A"].sample, again["S2L2A"].sample)
    assert not np.array_equal(same["S2L2A"].sample, other["S2L2A"].sample)


@pytest.mark.parametrize("sampler", ["ddim", "dpm++", "ddpm", "euler"])
def test_every_sampler_runs(tiny_bundle, sampler):
    from cogen.data.synthetic import make_scene
    from cogen.pipeline import CogenPipeline

    sc = make_scene(16, 16, seed=1)["rasters"]
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    out = pipe({"S1RTC": sc["S1RTC"]}, ["DEM"], steps=3, sampler=sampler, tile=16, overlap=0, progress=False)
    assert np.isfinite(out["DEM"].sample).all()


def test_vae_tokenized_modality_imputes_and_keeps_clear_pixels(tmp_path, vae_bundle):
    """A bundle whose S2L2A goes through a compressing VAE: the grid is kept, and cloud removal still returns
    every clear pixel exactly (the known values are pasted back in pixel space)."""
    paths, sc = scene(tmp_path, 37, 45)
    out = tmp_path / "imp"
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "S2L2A", *common(vae_bundle, out)) == 0
    with rasterio.open(paths["S1RTC"]) as ref, rasterio.open(out / "S2L2A.tif") as o:
        assert o.crs == ref.crs and o.transform == ref.transform and o.shape == ref.shape and o.count == 12
        assert np.isfinite(o.read().astype(float)).all() and o.read().std() > 0
    cloud = sc["rasters"]["CLOUD"][0] == 1
    with rasterio.open(paths["S2L2A"]) as r:
        write_raster(tmp_path / "mask.tif", cloud.astype(np.uint8), r.crs, r.transform)
        s2 = r.read()
    out = tmp_path / "cr"
    assert run("cloud-removal", "--input", f"S2L2A={paths['S2L2A']}", "--input", f"S1RTC={paths['S1RTC']}",
               "--mask", tmp_path / "mask.tif", *common(vae_bundle, out)) == 0
    with rasterio.open(out / "S2L2A.tif") as o:
        filled = o.read()
    assert cloud.any() and (~cloud).any()
    assert np.array_equal(filled[:, ~cloud], s2[:, ~cloud])
    assert not np.array_equal(filled[:, cloud], s2[:, cloud])


def test_cloud_removal_started_from_the_interpolation(tiny_bundle):
    """strength < 1: gaps start from fillnodata of the clear pixels; at a low noise level the result stays near
    that interpolation (a smooth ramp is filled almost exactly) while a start from noise (strength 1) does not;
    clear pixels are kept exactly either way."""
    from cogen.pipeline import CogenPipeline

    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    h = w = 32
    r, c = np.mgrid[0:h, 0:w]
    s2 = np.stack([1000 + 20 * r + 10 * c + 100 * b for b in range(12)]).astype(np.int16)
    s1 = np.random.default_rng(0).normal(-12, 2, (2, h, w)).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[10:20, 8:22] = True
    kw = dict(regenerate={"S2L2A": mask}, steps=10, seed=0, tile=16, overlap=0, progress=False)
    outs = [pipe({"S2L2A": s2, "S1RTC": s1}, ["S2L2A"], strength=st, **kw)["S2L2A"].sample for st in (0.1, 0.5, 1.0)]
    truth = s2 * 1e-4
    for out in outs:
        assert np.array_equal(out[:, ~mask], truth[:, ~mask].astype(np.float32))
    err = [np.abs(out[:, mask] - truth[:, mask]).mean() for out in outs]  # the random model adds its own error
    assert err[0] < err[1] < err[2] and err[0] < err[2] / 4
    pipe.bundle.config.sample = pipe.options.replace(strength=0.1)  # the checkpoint's default
    assert np.array_equal(pipe({"S2L2A": s2, "S1RTC": s1}, ["S2L2A"], **kw)["S2L2A"].sample, outs[0])
    with pytest.raises(Exception, match="strength"):
        pipe({"S2L2A": s2, "S1RTC": s1}, ["S2L2A"], strength=1.5, **kw)
    # generated from nothing, a target starts from noise whatever the strength
    a = pipe({"S1RTC": s1}, ["S2L2A"], steps=2, tile=16, overlap=0, progress=False)["S2L2A"].sample
    b = pipe({"S1RTC": s1}, ["S2L2A"], steps=2, tile=16, overlap=0, progress=False, strength=1.0)["S2L2A"].sample
    assert np.array_equal(a, b)


def test_interpolated_start_with_holes_in_a_condition_and_a_scene_smaller_than_a_tile(tiny_bundle):
    """A condition with nodata holes (or the padding of a scene smaller than a tile) is generated where it is
    invalid; started from the interpolation it starts from its own valid pixels (nearest fill), as the target does.
    Clear pixels stay exact; a categorical condition with holes works the same way."""
    from cogen.pipeline import CogenPipeline

    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    rng = np.random.default_rng(1)
    for h, w, tile in ((32, 32, 16), (12, 20, 16)):  # the second is padded into one 16 px tile
        s2 = (rng.random((12, h, w)) * 3000 + 200).astype(np.int16)
        s1 = rng.normal(-12, 2, (2, h, w)).astype(np.float32)
        s1[:, 2:7, 3:9] = np.nan  # a hole in the radar
        lulc = rng.choice([1, 2, 4, 5], (1, h, w)).astype(np.uint8)
        lulc[:, 9:12, 0:3] = 0  # and in the land cover (nodata 0)
        mask = np.zeros((h, w), bool)
        mask[3:9, 4:14] = True
        res = pipe({"S2L2A": s2, "S1RTC": s1, "LULC": lulc}, ["S2L2A"], regenerate={"S2L2A": mask}, steps=4,
                   samples=2, seed=0, tile=tile, overlap=0, progress=False, strength=0.5)["S2L2A"]
        assert np.array_equal(res.sample[:, ~mask], (s2 * 1e-4)[:, ~mask].astype(np.float32))
        assert np.isfinite(res.sample).all() and np.isfinite(res.mean).all()


def test_nearest_fill_copies_the_closest_valid_pixel():
    import torch

    from cogen.pipeline.tiles import nearest_fill

    x = torch.tensor([[[1.0, 0.0, 0.0, 4.0]]]).expand(2, 3, 1, 4).clone()  # (tiles, C, h, w)
    ok = torch.tensor([[[True, False, False, True]], [[False, False, False, False]]])
    out = nearest_fill(x, ok)
    assert out[0, :, 0].tolist() == [[1.0, 1.0, 4.0, 4.0]] * 3
    assert torch.equal(out[1], x[1])  # nothing valid: left as it is
    cls = torch.tensor([[[2, -1, -1, -1]]])  # categorical (tiles, h, w), -1 = invalid
    assert nearest_fill(cls, cls >= 0).tolist() == [[[2, 2, 2, 2]]]


def test_interpolated_start_by_blocks_equals_the_whole_scene_interpolation(registry):
    """Blocks of rows with the search distance as context give exactly fillnodata over the whole scene."""
    from rasterio.fill import fillnodata

    from cogen.data.dataset import to_model_space
    from cogen.pipeline import ArraySource
    from cogen.pipeline.stream import InterpolatedStart

    rng = np.random.default_rng(0)
    H, W = 70, 50
    raw = (rng.random((12, H, W)) * 3000).astype(np.int16)
    mask = np.zeros((H, W), bool)
    mask[5:30, 10:40] = True
    mask[50:68, 0:20] = True
    st = InterpolatedStart(ArraySource(registry["S2L2A"], raw), mask, H, W, block=16, distance=12)
    x, v = (a.numpy() for a in to_model_space(registry["S2L2A"], raw, ~mask))
    full = np.stack([fillnodata(b.copy(), mask=v.astype(np.uint8), max_search_distance=12) for b in x])
    reached = fillnodata(v.astype(np.float32), mask=v.astype(np.uint8), max_search_distance=12) > 0
    assert (~reached).any()  # some gap pixels are out of reach: they get the band mean instead
    got = np.concatenate([st.window(r, 0, 64)[:, : min(16, H - r), :W] for r in range(0, H, 16)], axis=1)
    assert len(st.cache) <= 2
    np.testing.assert_array_equal(got[:, reached], full[:, reached])
    np.testing.assert_array_equal(got[:, v], x[:, v])
    assert np.isfinite(got).all() and np.array_equal(st.window(80, 0, 16), np.zeros((12, 16, 16), np.float32))


def test_tiles_by_target_pick_the_tiling_of_the_targets(tiny_bundle):
    from cogen.errors import ConfigError, UsageError
    from cogen.options import SampleOptions
    from cogen.pipeline import CogenPipeline

    o = SampleOptions(tiles={"default": [64, 16], "LULC": [32, 8]})
    assert o.tiling(["LULC"], False, True) == (32, 8)
    assert o.tiling(["S2L2A"], False, True) == (64, 16)
    assert o.tiling(["S2L2A", "LULC"], False, True) == (64, 16)  # mixed targets: the default
    o3 = SampleOptions(tiles={"default": [32, 8], "S2L2A": [64, 16], "LULC": [16, 0]})
    assert o3.tiling(["S2L2A"], False, False) == (32, 8)  # larger than the default tile: only with an image given
    assert o3.tiling(["S2L2A"], False, True) == (64, 16)
    assert o3.tiling(["LULC"], False, False) == (16, 0)  # smaller: needs no image
    o2 = SampleOptions(tiles={"default": [64, 16], "regenerate": [32, 8]})
    assert o2.tiling(["S2L2A"], True, True) == (32, 8) and o2.tiling(["S2L2A"], False, True) == (64, 16)
    assert o2.replace(tile=16).tiling(["S2L2A"], True, True) == (16, 4)  # a call's own tile wins; overlap tile / 4
    assert o2.replace(tile=16, overlap=0).tiling(["S2L2A"], True, True) == (16, 0)
    for bad in ({"LULC": [32, 8]}, {"default": [16, 16]}, {"default": [32]}):
        with pytest.raises(ConfigError, match="tiles"):
            SampleOptions(tiles=bad)
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    s1 = np.full((2, 32, 32), -10.0, np.float32)  # dB (0 in every band would be no data)
    with pytest.raises(UsageError, match="multiples of 4"):
        pipe({"S1RTC": s1}, ["LULC"], steps=1, progress=False, tile=18)


def test_the_cogen_command_is_sample_py():
    """The installed `cogen` command and `python sample.py` are one CLI: same subcommands, same exit codes."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    exe = shutil.which("cogen", path=str(Path(sys.executable).parent))
    assert exe, "the cogen console script is not installed next to this python (pip install -e .)"
    root = Path(__file__).parent.parent
    for cmd in ([exe], [sys.executable, str(root / "sample.py")]):
        r = subprocess.run(cmd + ["--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "{impute,cloud-removal,segment,synth,info,join,parts,demo}" in r.stdout
        r = subprocess.run(cmd + ["impute", "--input", "S1RTC=nope.tif", "--target", "S2L2A", "--out",
                                  str(root / "never")], capture_output=True, text=True)
        assert r.returncode == 2 and "nope.tif" in r.stderr and not (root / "never").exists()


def test_info_says_what_a_checkpoint_knows(tmp_path, tiny_bundle, capsys):
    """`cogen info`: the checkpoint's hash, its modalities with bands, units and classes, and the sampling
    defaults, as text or JSON; a folder that is no checkpoint is one line and exit 2."""
    from cogen.checkpoint import load_bundle

    b = load_bundle(tiny_bundle)
    assert run("info", "--checkpoint", tiny_bundle, "--json") == 0
    d = json.loads(capsys.readouterr().out)
    assert d["sha256"] == b.digest and list(d["modalities"]) == b.modalities
    assert d["parameters"] == sum(p.numel() for p in b.model.parameters())
    lulc = d["modalities"]["LULC"]
    assert lulc["kind"] == "categorical" and lulc["classes"]["1"] == b.registry["LULC"].classes[0].name
    assert d["modalities"]["S2L2A"]["bands"] == list(b.registry["S2L2A"].bands)
    assert d["sample"]["steps"] == b.config.sample.steps
    assert run("info", "--checkpoint", tiny_bundle) == 0
    out = capsys.readouterr().out
    assert b.digest in out and "S1RTC  2 bands (VV, VH), dB" in out and "steps:" in out
    assert run("info", "--checkpoint", tmp_path) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_zero_fill_of_an_image_is_no_data(tmp_path, tiny_bundle):
    """Sentinel-2 products mark no data with 0 in every band (ESA's NODATA) and are often stored without a
    nodata tag: such pixels are no data, not black ground, so what is generated from S2 alone there is nodata;
    a single zero band (or zero elevation) stays a value."""
    from cogen.registry import Registry, default_registry

    paths, _ = scene(tmp_path, 32, 32)
    with rasterio.open(paths["S2L2A"]) as r:
        s2, crs, tr = r.read(), r.crs, r.transform
        assert r.nodata is None
    s2[:, :, :8] = 0  # the swath edge: every band 0
    s2[3, 20:, 20:] = 0  # one band 0: a value
    write_raster(tmp_path / "edge.tif", s2, crs, tr)
    out = tmp_path / "o"
    assert run("segment", "--input", f"S2L2A={tmp_path / 'edge.tif'}", *common(tiny_bundle, out)) == 0
    with rasterio.open(out / "LULC.tif") as o:
        lulc, nod = o.read(1), o.nodata
    assert (lulc[:, :8] == nod).all() and (lulc[:, 8:] != nod).all()
    reg = default_registry()
    assert reg["S2L2A"].nodata_all_bands == 0 and reg["DEM"].nodata_all_bands is None
    off = Registry({"S2L2A": {**reg["S2L2A"].to_dict(), "nodata_all_bands": None}})
    assert off["S2L2A"].valid_mask(s2)[:, :8].all() and not reg["S2L2A"].valid_mask(s2)[:, :8].any()
    assert Registry(reg.to_dict())["S2L2A"].nodata_all_bands == 0  # kept through a bundle's registry


def test_demo_runs_its_three_jobs_and_scores_them(tmp_path, tiny_bundle, synth_root, capsys):
    """`sample.py demo` (the README's first command) with a tiny model on a generated scene: the three jobs'
    rasters on the scene's grid, their scores against the truth, clear pixels kept, and the overview picture."""
    out = tmp_path / "demo"
    assert run("demo", "--checkpoint", tiny_bundle, "--data", synth_root, "--scene", "synth_0000", "--out", out,
               "--steps", "2", "--tile", "16", "--overlap", "4", "--quiet") == 0
    res = json.loads((out / "run.json").read_text())["jobs"]
    assert set(res) == {"impute", "segment", "cloud-removal"}
    assert res["cloud-removal"]["clear_pixels_identical"] is True and 0.2 < res["cloud-removal"]["mask_cover"] < 0.5
    assert np.isfinite(res["impute"]["psnr_db"]) and 0 <= res["segment"]["miou"] <= 1
    with rasterio.open(synth_root / "S2L2A" / "synth_0000.tif") as ref:
        for f in ("impute/S2L2A.tif", "segment/LULC.tif", "segment/LULC_confidence.tif", "cloud-removal/S2L2A.tif"):
            with rasterio.open(out / f) as o:
                assert (o.crs, o.transform, o.shape) == (ref.crs, ref.transform, ref.shape), f
    assert (out / "quicklook.png").stat().st_size > 1000 and "overview" in capsys.readouterr().out
    assert run("demo", "--checkpoint", tiny_bundle, "--data", synth_root, "--scene", "nope", "--out",
               tmp_path / "d2", "--quiet") == 2 and "nope" in capsys.readouterr().err


def test_a_window_of_the_inputs_is_the_same_as_cropping_them_first(tmp_path, tiny_bundle, capsys):
    """--window COL,ROW,WIDTH,HEIGHT: a preview of a large scene, or one part per process. The outputs lie on the
    window's grid and equal those of inputs cropped to it first (with the native-block grid carried along);
    cloud removal keeps the window's clear pixels; a window beyond the scene is refused in one line."""
    from rasterio.windows import Window

    paths, sc = scene(tmp_path, 40, 52)
    win = Window(7, 5, 30, 24)  # col, row, width, height
    crop = {}
    for m in ("S1RTC", "S2L2A"):
        with rasterio.open(paths[m]) as r:
            crop[m] = write_raster(tmp_path / f"crop_{m}.tif", r.read(window=win), r.crs, r.window_transform(win), r.nodata)
            tr, tr_full = r.window_transform(win), r.transform
    a, b = tmp_path / "a", tmp_path / "b"
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "S2L2A", "--target", "LULC",
               "--window", "7,5,30,24", *common(tiny_bundle, a)) == 0
    from cogen.pipeline import CogenPipeline

    CogenPipeline.from_checkpoint(tiny_bundle)(  # the crop with the native-block grid carried along (Python only)
        {"S1RTC": crop["S1RTC"]}, ["S2L2A", "LULC"], grid_offset=(5, 7), steps=3, tile=16, overlap=4, progress=False,
        outputs={"S2L2A": {"sample": b / "S2L2A.tif"}, "LULC": {"classes": b / "LULC.tif",
                                                                 "confidence": b / "LULC_confidence.tif"}})
    for f in ("S2L2A.tif", "LULC.tif"):
        with rasterio.open(a / f) as x, rasterio.open(b / f) as y:
            assert x.transform == y.transform == tr and x.shape == (24, 30) and x.crs == y.crs
            np.testing.assert_array_equal(x.read(), y.read())
    # cloud removal on the window: the mask is read on the same window, the clear pixels are kept
    cloud = (sc["rasters"]["CLOUD"][0] == 1).astype(np.uint8)
    with rasterio.open(paths["S2L2A"]) as r:
        write_raster(tmp_path / "mask.tif", cloud, r.crs, r.transform)
        s2w = r.read(window=win)
    cw = cloud[5:29, 7:37].astype(bool)
    out = tmp_path / "c"
    assert run("cloud-removal", "--input", f"S2L2A={paths['S2L2A']}", "--mask", tmp_path / "mask.tif",
               "--window", "7,5,30,24", *common(tiny_bundle, out)) == 0
    assert f"({cw.mean():.1%} of the window)" in capsys.readouterr().out
    with rasterio.open(out / "S2L2A.tif") as o:
        got = o.read()
        assert o.transform == tr and cw.any() and np.array_equal(got[:, ~cw], s2w[:, ~cw])
    # --bounds: the same window in map coordinates (edges on pixel edges; a hair inside takes no less)
    bnd = rasterio.windows.bounds(win, tr_full)
    for name, value in (("d", ",".join(f"{v:.6f}" for v in bnd)),
                        ("e", f"{bnd[0] + 0.3},{bnd[1] + 0.3},{bnd[2] - 0.3},{bnd[3] - 0.3}")):
        assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "S2L2A", "--target", "LULC",
                   "--bounds", value, *common(tiny_bundle, tmp_path / name)) == 0
        for f in ("S2L2A.tif", "LULC.tif"):
            with rasterio.open(a / f) as x, rasterio.open(tmp_path / name / f) as y:
                assert y.transform == tr and np.array_equal(x.read(), y.read())
    # ... or in longitude/latitude: the box taken onto the scene's CRS covers the window, and a few pixels more
    from rasterio.warp import transform_bounds

    lonlat = transform_bounds("EPSG:32633", "EPSG:4326", *bnd)
    assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "DEM", "--bounds",
               ",".join(f"{v:.9f}" for v in lonlat), "--bounds-crs", "EPSG:4326", *common(tiny_bundle, tmp_path / "ll")) == 0
    with rasterio.open(tmp_path / "ll" / "DEM.tif") as o:
        got = rasterio.windows.from_bounds(*o.bounds, tr_full)
        assert got.col_off <= 7 and got.row_off <= 5 and got.col_off + got.width >= 37 and got.row_off + got.height >= 29
        assert got.width <= 32 and got.height <= 26
    for flags, said in ((["--bounds", "0,0,10,10"], "lies outside"), (["--bounds", "1,2,3"], "four numbers"),
                        (["--bounds", ",".join(map(str, bnd)), "--bounds-crs", "nonsense"], "not a CRS"),
                        (["--bounds-crs", "EPSG:4326"], "goes with --bounds"),
                        (["--bounds", ",".join(map(str, bnd)), "--window", "0,0,8,8"], "not both")):
        assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "DEM", *flags,
                   *common(tiny_bundle, tmp_path / "bad")) == 2
        assert said in capsys.readouterr().err and not (tmp_path / "bad").exists()
    for bad, said in (("40,0,30,24", "does not lie inside"), ("0,0,0,8", "does not lie inside"), ("1,2,3", "four whole")):
        assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "DEM", "--window", bad,
                   *common(tiny_bundle, tmp_path / "bad")) == 2
        err = capsys.readouterr().err
        assert said in err and not (tmp_path / "bad").exists(), err


def test_api_window_and_mask_path(tmp_path, tiny_bundle):
    """From Python: `window=` crops GeoTIFF inputs and a mask given as a path alike."""
    from rasterio.windows import Window

    from cogen.pipeline import CogenPipeline

    paths, sc = scene(tmp_path, 32, 40)
    cloud = (sc["rasters"]["CLOUD"][0] == 1).astype(np.uint8)
    with rasterio.open(paths["S2L2A"]) as r:
        write_raster(tmp_path / "mask.tif", cloud, r.crs, r.transform)
        s2 = r.read()
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    win = Window(8, 4, 24, 20)
    out = pipe({"S2L2A": paths["S2L2A"]}, ["S2L2A"], regenerate={"S2L2A": str(tmp_path / "mask.tif")}, window=win,
               steps=2, tile=16, overlap=4, progress=False)["S2L2A"]
    keep = ~cloud[4:24, 8:32].astype(bool)
    assert out.sample.shape == (12, 20, 24) and keep.any() and (~keep).any()
    np.testing.assert_allclose(out.sample[:, keep], s2[:, 4:24, 8:32][:, keep] * 1e-4, rtol=0, atol=1e-6)


def test_an_internal_mask_marks_no_data(tmp_path, tiny_bundle):
    """A GeoTIFF whose no-data area is an internal mask (GDAL's per-dataset mask, common beside JPEG-compressed
    imagery) rather than a nodata value: the masked pixels are no data, so what is generated from them alone is
    nodata, and the rest is as from the same file without the mask."""
    paths, _ = scene(tmp_path, 32, 32)
    with rasterio.open(paths["S1RTC"]) as r:
        prof, s1 = r.profile, r.read()
    valid = np.ones((32, 32), bool)
    valid[:, 20:] = False
    with rasterio.open(tmp_path / "masked.tif", "w", **prof) as dst:
        dst.write(s1)
        dst.write_mask(valid.astype(np.uint8) * 255)
    with rasterio.open(tmp_path / "masked.tif") as r:
        assert r.nodata is None and rasterio.enums.MaskFlags.per_dataset in r.mask_flag_enums[0]
    outs = {}
    for name, f in (("masked", tmp_path / "masked.tif"), ("plain", paths["S1RTC"])):
        assert run("segment", "--input", f"S1RTC={f}", "--samples", "1", *common(tiny_bundle, tmp_path / name)) == 0
        with rasterio.open(tmp_path / name / "LULC.tif") as o:
            outs[name], nod = o.read(1), o.nodata
    assert (outs["masked"][:, 20:] == nod).all() and (outs["masked"][:, :16] != nod).all()
    assert (outs["plain"] != nod).all()


def test_join_blends_parts_of_a_scene_where_they_overlap(tmp_path, tiny_bundle, capsys):
    """Two --window parts overlapping by 12 rows, joined: the scene's grid, each part's own pixels where only it
    lies, a weighted mean across the overlap that moves from the upper part to the lower one (no seam), and
    for a class map one of the parts' classes; parts of other grids, and an existing --out, are refused."""
    paths, _ = scene(tmp_path, 40, 32)
    for name, win in (("top", "0,0,32,26"), ("bottom", "0,14,32,26")):
        assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "DEM", "--target", "LULC",
                   "--window", win, *common(tiny_bundle, tmp_path / name)) == 0
    for f in ("DEM.tif", "LULC.tif"):
        assert run("join", tmp_path / "top" / f, tmp_path / "bottom" / f, "--out", tmp_path / f"joined_{f}") == 0
    with rasterio.open(paths["S1RTC"]) as r, rasterio.open(tmp_path / "joined_DEM.tif") as j:
        assert (j.crs, j.transform, j.shape) == (r.crs, r.transform, r.shape)
        dem = j.read(1)
    top = rasterio.open(tmp_path / "top" / "DEM.tif").read(1)
    bot = rasterio.open(tmp_path / "bottom" / "DEM.tif").read(1)
    np.testing.assert_array_equal(dem[:14], top[:14])
    np.testing.assert_array_equal(dem[26:], bot[12:])
    ov_t, ov_b, ov = top[14:26], bot[:12], dem[14:26]
    assert (ov >= np.minimum(ov_t, ov_b) - 1e-4).all() and (ov <= np.maximum(ov_t, ov_b) + 1e-4).all()
    frac = np.abs(ov - ov_t) / np.maximum(np.abs(ov_b - ov_t), 1e-9)  # 0 = the upper part, 1 = the lower one
    moving = np.abs(ov_b - ov_t) > 1e-3
    assert frac[0][moving[0]].mean() < 0.2 and frac[-1][moving[-1]].mean() > 0.8
    lulc = rasterio.open(tmp_path / "joined_LULC.tif").read(1)
    lt = rasterio.open(tmp_path / "top" / "LULC.tif").read(1)
    lb = rasterio.open(tmp_path / "bottom" / "LULC.tif").read(1)
    assert ((lulc[14:26] == lt[14:]) | (lulc[14:26] == lb[:12])).all()
    assert (lulc[:14] == lt[:14]).all() and (lulc[26:] == lb[12:]).all()
    assert rasterio.open(tmp_path / "joined_LULC.tif").colormap(1)
    with rasterio.open(tmp_path / "top" / "DEM.tif") as r:
        write_raster(tmp_path / "other.tif", r.read(), "EPSG:4326", r.transform)
    capsys.readouterr()
    assert run("join", tmp_path / "top" / "DEM.tif", tmp_path / "other.tif", "--out", tmp_path / "x.tif") == 2
    assert "CRS differs" in capsys.readouterr().err and not (tmp_path / "x.tif").exists()
    assert run("join", tmp_path / "top" / "DEM.tif", tmp_path / "bottom" / "DEM.tif", "--out",
               tmp_path / "joined_DEM.tif") == 2
    assert "--overwrite" in capsys.readouterr().err


def test_parts_of_a_scene_cut_the_same_tiles_and_generate_the_same_values(tmp_path, tiny_bundle, capsys):
    """Tiles and noise are fixed on the map (Grid.anchor), not on each part: two --window parts and the whole
    scene generate the same values on every row that the same tiles cover in all three runs. Rows covered by
    other tiles (near each part's own edges) do differ; `join` takes each part where it is more than a tile
    (COGEN_TILE) from its inner edges, so parts that overlap by two tiles join into the whole run."""
    from cogen.io import Grid
    from cogen.tiling import anchored_starts

    paths, _ = scene(tmp_path, 72, 40)
    capsys.readouterr()
    assert run("parts", paths["S1RTC"], "--rows", "2", "--overlap", "48") == 0  # two tiles of 16 px and more
    wins = capsys.readouterr().out.split()
    assert wins == ["0,0,40,60", "0,12,40,60"]
    runs = {"whole": (0, 72), "top": (0, 60), "bottom": (12, 60)}  # (first row, rows); full width
    for name, win in zip(runs, [None, *wins]):
        assert run("impute", "--input", f"S1RTC={paths['S1RTC']}", "--target", "DEM", "--target", "LULC",
                   *(["--window", win] if win else []), *common(tiny_bundle, tmp_path / name)) == 0
    anchor = Grid.of(paths["S1RTC"]).anchor()[0]
    assert anchor == -500000  # from_origin(500000, 5000000, 10, 10): 5e6 m over -10 m pixels

    def cover(r0, h):  # map row -> the map rows of the tiles (16 px, overlap 4) that cover it
        st = [r0 + s for s in anchored_starts(h, 16, 4, anchor + r0)]
        return {r: frozenset(s for s in st if s <= r < s + 16) for r in range(r0, r0 + h)}

    cov = {k: cover(*v) for k, v in runs.items()}
    same = [r for r in range(12, 60) if cov["whole"][r] == cov["top"][r] == cov["bottom"][r]]
    other = [r for r in range(12, 60) if r not in same]
    assert len(same) >= 20 and other
    dem = {k: rasterio.open(tmp_path / k / "DEM.tif").read(1) for k in runs}
    whole, top, bot = dem["whole"][same], dem["top"][same], dem["bottom"][[r - 12 for r in same]]
    np.testing.assert_allclose(top, whole, rtol=0, atol=1e-3)
    np.testing.assert_allclose(bot, whole, rtol=0, atol=1e-3)
    assert np.abs(dem["top"][other] - dem["whole"][other]).max() > 1e-2 or \
        np.abs(dem["bottom"][[r - 12 for r in other]] - dem["whole"][other]).max() > 1e-2
    assert rasterio.open(tmp_path / "top" / "DEM.tif").tags()["COGEN_TILE"] == "16 4"
    assert run("join", tmp_path / "top" / "DEM.tif", tmp_path / "bottom" / "DEM.tif", "--out",
               tmp_path / "joined.tif") == 0
    np.testing.assert_allclose(rasterio.open(tmp_path / "joined.tif").read(1), dem["whole"], rtol=0, atol=1e-3)
    from cogen.join import join_parts  # blending every overlap by distance alone mixes in the edge tiles' values

    blended = join_parts([tmp_path / "top" / "DEM.tif", tmp_path / "bottom" / "DEM.tif"], tmp_path / "b.tif", tile=0)
    assert np.abs(rasterio.open(blended).read(1) - dem["whole"]).max() > 1e-2
    # a class map: each pixel takes the class of the part deepest inside, which is the whole run's class
    assert run("join", tmp_path / "top" / "LULC.tif", tmp_path / "bottom" / "LULC.tif", "--out",
               tmp_path / "joined_LULC.tif") == 0
    np.testing.assert_array_equal(rasterio.open(tmp_path / "joined_LULC.tif").read(1),
                                  rasterio.open(tmp_path / "whole" / "LULC.tif").read(1))


def test_two_threads_share_one_pipeline(tiny_bundle):
    """A call keeps nothing on the pipeline: two calls with different options, run at once from two threads,
    give what each gives alone, and the pipeline's defaults are unchanged."""
    from concurrent.futures import ThreadPoolExecutor

    from cogen.data.synthetic import make_scene
    from cogen.pipeline import CogenPipeline

    sc = make_scene(40, 40, seed=5)["rasters"]
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    before = pipe.options
    mask = np.zeros((40, 40), bool)
    mask[8:30, 5:25] = True
    calls = [  # imputation on 16 px tiles; cloud removal on 24 px tiles from the interpolation with the library
        lambda: pipe({"S1RTC": sc["S1RTC"]}, ["S2L2A", "LULC"], steps=3, samples=2, seed=1, tile=16, progress=False),
        lambda: pipe({"S2L2A": sc["S2L2A"], "S1RTC": sc["S1RTC"]}, ["S2L2A"], regenerate={"S2L2A": mask}, steps=4,
                     seed=2, tile=24, overlap=8, strength=0.5, library_neighbours=4, progress=False),
    ]
    alone = [f() for f in calls]
    with ThreadPoolExecutor(2) as ex:
        together = [f.result() for f in [ex.submit(c) for c in calls for _ in range(2)]]
    for i, res in enumerate(together):
        want = alone[i // 2]
        for m, r in want.items():
            for kind in ("sample", "mean", "std", "classes", "confidence"):
                if getattr(r, kind) is not None:
                    np.testing.assert_array_equal(getattr(res[m], kind), getattr(r, kind), err_msg=f"{m} {kind}")
    assert pipe.options == before

import json

import numpy as np
import pytest
import torch

from cogen.data import Region, SceneDataset, collate_scenes, load_split
from cogen.errors import DatasetError, GridMismatchError, RasterError, UnknownModalityError
from conftest import SHIPPED, write_pattern

EXPECTED_BANDS = {"S2L2A": 12, "S2L1C": 13, "S1RTC": 2, "DEM": 1, "NDVI": 1}


def test_shipped_scenes_read_with_every_modality():
    ds = SceneDataset(SHIPPED, mode="grid")
    assert ds.scene_ids == sorted(["282D_485L_3_3", "38D_378R_2_3", "433D_629L_3_1", "609U_541L_3_0", "637U_59R_1_3"])
    assert set(ds.modalities) == {"S2L2A", "S2L1C", "S1RTC", "DEM", "NDVI", "LULC"}
    for i in range(len(ds)):
        it = ds[i]
        for m, n in EXPECTED_BANDS.items():
            assert it["values"][m].shape == (n, 224, 224) and it["values"][m].dtype == torch.float32
            assert it["valid"][m].shape == (224, 224) and it["valid"][m].all()
        assert it["values"]["LULC"].shape == (224, 224) and (it["values"]["LULC"] >= 0).all()
        assert it["valid"]["LULC"].all()


def _pattern_scene(root, sid="s0", h=40, w=50, **kw):
    for m, b in (("S2L2A", 12), ("DEM", 1)):
        write_pattern(root / m / f"{sid}.tif", b, h, w, **kw)


def test_crops_are_aligned_across_modalities(tmp_path, registry):
    _pattern_scene(tmp_path)
    ds = SceneDataset(tmp_path, crop=8, length=20, seed=3, augment=True)
    s2, dem = registry["S2L2A"], registry["DEM"]
    for i in range(len(ds)):
        it = ds[i]
        assert it["valid"]["S2L2A"].all() and it["valid"]["DEM"].all()
        a = s2.denormalize(it["values"]["S2L2A"].double(), physical=False)[0]  # value = row * 50 + col
        b = dem.denormalize(it["values"]["DEM"].double())[0]
        assert torch.allclose(a, b, atol=1e-2)
        r, c, h, w = it["window"]
        assert {int(round(v)) for v in a.flatten().tolist()} == {rr * 50 + cc for rr in range(r, r + h) for cc in range(c, c + w)}


def test_crops_are_seeded(tmp_path):
    _pattern_scene(tmp_path)
    a = [SceneDataset(tmp_path, crop=8, length=5, seed=1)[i]["window"] for i in range(5)]
    b = [SceneDataset(tmp_path, crop=8, length=5, seed=1)[i]["window"] for i in range(5)]
    c = [SceneDataset(tmp_path, crop=8, length=5, seed=2)[i]["window"] for i in range(5)]
    assert a == b and a != c


def test_train_and_test_regions_never_share_a_pixel():
    tr, trs = load_split("configs/split.yaml", "train")
    te, tes = load_split("configs/split.yaml", "test")
    train = SceneDataset(SHIPPED, modalities=["DEM"], crop=32, region=tr, regions=trs, length=400, seed=0, augment=True)
    test = SceneDataset(SHIPPED, modalities=["DEM"], crop=32, region=te, regions=tes, mode="grid")
    seen_train = {sid: np.zeros((224, 224), bool) for sid in train.scene_ids}
    for i in range(len(train)):
        r, c, h, w = train[i]["window"]
        seen_train[train[i]["scene"]][r : r + h, c : c + w] = True
    for i in range(len(test)):
        it = test[i]
        r, c, h, w = it["window"]
        assert not seen_train[it["scene"]][r : r + h, c : c + w].any()
        assert c >= 160
    assert all(not s[:, 160:].any() for s in seen_train.values())


def test_misregistered_pair_names_both_files(tmp_path):
    write_pattern(tmp_path / "S1RTC" / "s0.tif", 2, 20, 20)
    write_pattern(tmp_path / "DEM" / "s0.tif", 1, 20, 20, origin=(500010.0, 5000000.0))
    with pytest.raises(GridMismatchError) as e:
        SceneDataset(tmp_path)
    msg = str(e.value)
    assert "S1RTC/s0.tif" in msg and "DEM/s0.tif" in msg and "cogen-reproject" in msg


def test_other_crs_is_a_mismatch(tmp_path):
    write_pattern(tmp_path / "S1RTC" / "s0.tif", 2, 20, 20)
    write_pattern(tmp_path / "DEM" / "s0.tif", 1, 20, 20, crs="EPSG:32634")
    with pytest.raises(GridMismatchError, match="CRS"):
        SceneDataset(tmp_path)


def test_unnamed_band_subset_names_the_file_and_the_fix(tmp_path):
    write_pattern(tmp_path / "S2L2A" / "s0.tif", 3, 10, 10)
    with pytest.raises(RasterError, match=r"S2L2A/s0.tif.*3 band.*has 12.*not named.*band descriptions"):
        SceneDataset(tmp_path)


def test_missing_folder_and_empty_folder(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        SceneDataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no scenes"):
        SceneDataset(tmp_path)


def test_unknown_modality_requested(tmp_path):
    _pattern_scene(tmp_path)
    with pytest.raises(UnknownModalityError, match="known modalities"):
        SceneDataset(tmp_path, modalities=["DEM", "SENTINEL3"])


def test_missing_modality_is_normal_and_collated_as_absent(tmp_path):
    _pattern_scene(tmp_path, "s0")
    write_pattern(tmp_path / "S2L2A" / "s1.tif", 12, 40, 50)  # s1 lacks DEM
    ds = SceneDataset(tmp_path, crop=8, mode="grid")
    items = [ds[i] for i in range(len(ds))]
    assert any("DEM" not in it["values"] for it in items)
    b = collate_scenes(items)
    no_dem = torch.tensor(["DEM" not in it["values"] for it in items])
    assert (b["present"]["DEM"] == ~no_dem).all()
    assert not b["valid"]["DEM"][no_dem].any()


def test_nodata_nan_and_out_of_range_are_invalid_not_values(tmp_path, registry):
    arr = write_pattern(tmp_path / "S1RTC" / "s0.tif", 2, 10, 10, nodata=-9999.0, offset=-200.0)  # -200..-101 dB
    from cogen.io import read_raster, write_raster

    a, prof = read_raster(tmp_path / "S1RTC" / "s0.tif")
    a[:] = -12.0
    a[0, 0, 0] = -9999.0
    a[1, 1, 1] = np.nan
    a[0, 2, 2] = 80.0  # out of the valid range
    write_raster(tmp_path / "S1RTC" / "s0.tif", a, prof["crs"], prof["transform"], -9999.0)
    it = SceneDataset(tmp_path, mode="grid")[0]
    ok = it["valid"]["S1RTC"]
    assert not ok[0, 0] and not ok[1, 1] and not ok[2, 2] and ok.sum() == 97
    x = it["values"]["S1RTC"]
    assert torch.isfinite(x).all() and (x[:, ~ok] == 0).all()


def test_manifest(tmp_path):
    _pattern_scene(tmp_path / "files")
    man = {"sceneA": {"S2L2A": "files/S2L2A/s0.tif", "DEM": "files/DEM/s0.tif"}}
    (tmp_path / "m.json").write_text(json.dumps(man))
    ds = SceneDataset(manifest=tmp_path / "m.json", mode="grid")
    assert ds.scene_ids == ["sceneA"] and set(ds[0]["values"]) == {"S2L2A", "DEM"}


def test_region_restriction():
    ds = SceneDataset(SHIPPED, modalities=["DEM"], region=Region(cols=(160, 224)), mode="grid")
    assert all(ds[i]["values"]["DEM"].shape == (1, 64, 64) for i in range(len(ds)))


def test_class_counts_cover_the_region_only(registry):
    """Per-class pixel counts (for class-balanced loss weights) over the training columns only."""
    import rasterio

    tr, trs = load_split("configs/split.yaml", "train")
    ds = SceneDataset(SHIPPED, modalities=["LULC"], crop=32, region=tr, regions=trs, length=1)
    want = np.zeros(registry["LULC"].num_classes, np.int64)
    for f in sorted((SHIPPED / "LULC").glob("*.tif")):
        with rasterio.open(f) as src:
            a = src.read(1)[:, :160]
        want += [(a == cid).sum() for cid in registry["LULC"].class_ids]
    got = ds.class_counts("LULC")
    assert got.tolist() == want.tolist() and got.sum() == 5 * 224 * 160


def test_a_files_own_nodata_and_internal_mask_are_invalid_for_training_and_statistics(tmp_path, registry):
    """The registry need not declare a file's nodata value: a DEM with nodata -100 (inside the valid range) and
    radar with an internal mask give those pixels as invalid to training and leave them out of the statistics."""
    import rasterio
    from rasterio.transform import from_origin

    from cogen.io import write_raster
    from cogen.stats import compute_stats

    rng = np.random.default_rng(0)
    tr = from_origin(500000.0, 5000000.0, 10, 10)
    dem = rng.normal(300, 50, size=(1, 16, 16)).astype(np.float32)
    dem[0, :4, :] = -100.0
    write_raster(tmp_path / "DEM" / "s0.tif", dem, "EPSG:32633", tr, nodata=-100.0)
    s1 = rng.normal(-12, 3, size=(2, 16, 16)).astype(np.float32)
    s1[:, :, 12:] = -15.0
    valid = np.ones((16, 16), bool)
    valid[:, 12:] = False
    prof = dict(driver="GTiff", height=16, width=16, count=2, dtype="float32", crs="EPSG:32633", transform=tr)
    (tmp_path / "S1RTC").mkdir()
    with rasterio.open(tmp_path / "S1RTC" / "s0.tif", "w", **prof) as dst:
        dst.write(s1)
        dst.write_mask(valid.astype(np.uint8) * 255)
    it = SceneDataset(tmp_path, mode="grid")[0]
    assert (it["valid"]["DEM"].numpy() == (dem[0] != -100.0)).all()
    assert (it["valid"]["S1RTC"].numpy() == valid).all()
    from cogen.data.dataset import discover

    st = compute_stats(discover(tmp_path, registry), registry, block=8)
    np.testing.assert_allclose(st["DEM"].mean, dem[:, 4:].reshape(1, -1).mean(1), rtol=1e-6)
    np.testing.assert_allclose(st["S1RTC"].mean, s1[:, valid].mean(1), rtol=1e-6)


def test_split_quadrants_cuts_each_crop_into_its_four_quarters(tmp_path):
    from cogen.data.dataset import split_quadrants

    _pattern_scene(tmp_path, "s0")
    write_pattern(tmp_path / "S2L2A" / "s1.tif", 12, 40, 50)  # s1 lacks DEM
    ds = SceneDataset(tmp_path, crop=16, mode="grid")
    items = [ds[i] for i in range(len(ds))]
    b = collate_scenes(items)
    q = split_quadrants(b)
    B = len(items)
    assert q["values"]["S2L2A"].shape == (4 * B, 12, 8, 8)
    x = b["values"]["S2L2A"]
    for j in (0, B - 1):  # quadrant k of crop j is at 4j + k, in reading order
        assert torch.equal(q["values"]["S2L2A"][4 * j + 1], x[j, :, :8, 8:])
        assert torch.equal(q["values"]["S2L2A"][4 * j + 2], x[j, :, 8:, :8])
        assert torch.equal(q["valid"]["DEM"][4 * j + 3], b["valid"]["DEM"][j, 8:, 8:])
        assert q["scene"][4 * j + 3] == b["scene"][j]
        r, c, h, w = b["window"][j]
        assert tuple(q["window"][4 * j + 3]) == (r + 8, c + 8, 8, 8)
    assert torch.equal(q["present"]["DEM"], b["present"]["DEM"].repeat_interleave(4))
    assert torch.equal(q["bands"]["S2L2A"], b["bands"]["S2L2A"].repeat_interleave(4, dim=0))

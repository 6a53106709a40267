import numpy as np

from cogen.data import SceneDataset
from cogen.data.synthetic import S1_DB, make_scene


def test_generator_is_deterministic_per_seed():
    a, b, c = make_scene(48, 40, seed=5), make_scene(48, 40, seed=5), make_scene(48, 40, seed=6)
    for k in a["rasters"]:
        np.testing.assert_array_equal(a["rasters"][k], b["rasters"][k])
    assert not np.array_equal(a["rasters"]["S2L2A"], c["rasters"]["S2L2A"])
    assert a["rasters"]["S2L2A"].shape == (12, 48, 40) and a["crs"].to_epsg() == 32633


def test_documented_relations_hold():
    r = make_scene(128, 128, seed=1)["rasters"]
    s2, lulc, s1, ndvi = r["S2L2A"].astype(float), r["LULC"][0], r["S1RTC"], r["NDVI"][0]
    np.testing.assert_allclose(ndvi, (s2[7] - s2[3]) / (s2[7] + s2[3]), atol=1e-6)
    assert ndvi[lulc == 1].mean() < 0 < 0.5 < ndvi[lulc == 2].mean()
    vv_water = s1[0][lulc == 1].mean()
    assert abs(vv_water - S1_DB[1][0]) < 3 and vv_water < s1[0][lulc == 5].mean()
    cloud, cloudy = r["CLOUD"][0], r["S2L2A_cloudy"]
    assert 0.15 < (cloud > 0).mean() < 0.6
    np.testing.assert_array_equal(cloudy[:, cloud == 0], r["S2L2A"][:, cloud == 0])  # clear pixels untouched
    assert cloudy[1][cloud == 1].mean() > s2[1][cloud == 1].mean() + 3000  # thick clouds are bright


def test_written_scenes_are_read_by_the_dataset(synth_root):
    ds = SceneDataset(synth_root, mode="grid")
    assert len(ds.scene_ids) == 3
    assert {"S2L2A", "S1RTC", "DEM", "NDVI", "LULC", "CLOUD"} <= set(ds.modalities)
    assert "S2L2A_cloudy" not in ds.modalities

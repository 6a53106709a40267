import numpy as np
import pytest
import rasterio
import yaml
from rasterio.windows import Window

from cogen.errors import OutputExistsError, RasterError
from cogen.io import read_raster, reproject_like, write_raster
from cogen.stats import compute_stats, main as stats_main
from conftest import write_pattern


def test_write_read_keeps_crs_transform_nodata_descriptions(tmp_path):
    arr = write_pattern(tmp_path / "a.tif", 2, 20, 30, crs="EPSG:4326", nodata=-9999.0)
    back, prof = read_raster(tmp_path / "a.tif")
    with rasterio.open(tmp_path / "a.tif") as src:
        assert src.crs.to_epsg() == 4326 and src.nodata == -9999.0
        assert src.transform.c == 500000.0 and src.transform.a == 10
    np.testing.assert_array_equal(back, arr)
    write_raster(tmp_path / "b.tif", back, prof["crs"], prof["transform"], prof["nodata"], descriptions=["VV", "VH"])
    with rasterio.open(tmp_path / "b.tif") as src:
        assert src.descriptions == ("VV", "VH") and src.crs == prof["crs"] and src.transform == prof["transform"]
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left behind


def test_windowed_read_has_window_transform(tmp_path):
    arr = write_pattern(tmp_path / "a.tif", 1, 20, 30)
    w, prof = read_raster(tmp_path / "a.tif", window=Window(5, 3, 4, 2))
    np.testing.assert_array_equal(w, arr[:, 3:5, 5:9])
    assert prof["transform"].c == 500000.0 + 50 and prof["transform"].f == 5000000.0 - 30


def test_write_refuses_to_overwrite_when_asked(tmp_path):
    write_pattern(tmp_path / "a.tif", 1, 4, 4)
    with pytest.raises(OutputExistsError):
        write_raster(tmp_path / "a.tif", np.zeros((1, 4, 4)), None, rasterio.Affine.identity(), overwrite=False)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(RasterError, match="not found"):
        read_raster(tmp_path / "nope.tif")
    (tmp_path / "bad.tif").write_bytes(b"not a tiff")
    with pytest.raises(RasterError, match="not a readable raster"):
        read_raster(tmp_path / "bad.tif")


def test_reproject_onto_reference_grid(tmp_path):
    write_pattern(tmp_path / "ref.tif", 1, 16, 16)
    # same area at 20 m in another UTM-compatible CRS (3857) -> must land on the 10 m UTM grid
    from rasterio.transform import from_origin
    from rasterio.warp import transform_bounds

    with rasterio.open(tmp_path / "ref.tif") as r:
        b = transform_bounds(r.crs, "EPSG:3857", *r.bounds)
    src = np.ones((1, 12, 12), np.float32) * 5
    write_raster(tmp_path / "src.tif", src, "EPSG:3857", from_origin(b[0] - 40, b[3] + 40, (b[2] - b[0] + 80) / 12,
                                                                      (b[3] - b[1] + 80) / 12))
    out = reproject_like(tmp_path / "src.tif", tmp_path / "ref.tif", tmp_path / "out.tif")
    with rasterio.open(out) as o, rasterio.open(tmp_path / "ref.tif") as r:
        assert o.crs == r.crs and o.transform == r.transform and o.shape == r.shape
        assert np.allclose(o.read(), 5)


def test_stats_equal_numpy_over_full_array(tmp_path, registry):
    rng = np.random.default_rng(0)
    from rasterio.transform import from_origin

    arrays = []
    for i in range(2):
        a = rng.normal(-12, 3, size=(2, 50, 70)).astype(np.float32)
        a[:, :3, :5] = -9999.0  # nodata
        a[0, 10, 10] = np.nan
        arrays.append(a)
        write_raster(tmp_path / "S1RTC" / f"s{i}.tif", a, "EPSG:32633", from_origin(0, 0, 10, 10), nodata=-9999.0)
    # nodata of the file is not in the registry: read with a registry that declares it
    doc = yaml.safe_load(open("configs/modalities.yaml"))
    doc["modalities"]["S1RTC"]["nodata"] = -9999.0
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(doc))
    from cogen.registry import Registry

    reg = Registry.from_yaml(tmp_path / "m.yaml", stats=None)
    from cogen.data.dataset import discover

    st = compute_stats(discover(tmp_path, reg), reg, block=16)["S1RTC"]
    allv = np.concatenate([a.reshape(2, -1) for a in arrays], axis=1).astype(np.float64)
    ok = np.isfinite(allv).all(0) & (allv != -9999.0).all(0)
    np.testing.assert_allclose(st.mean, allv[:, ok].mean(1), rtol=1e-9)
    np.testing.assert_allclose(st.std, allv[:, ok].std(1), rtol=1e-9)


def test_stats_command_writes_registry_format(tmp_path, synth_root):
    out = tmp_path / "stats.yaml"
    stats_main(["--data", str(synth_root), "--out", str(out)])
    doc = yaml.safe_load(out.read_text())
    assert len(doc["modalities"]["S2L2A"]["mean"]) == 12 and len(doc["modalities"]["S1RTC"]["std"]) == 2
    from cogen.registry import Registry

    reg = Registry.from_yaml("configs/modalities.yaml", stats=out)
    assert reg["S2L2A"].mean == tuple(doc["modalities"]["S2L2A"]["mean"])


def test_large_outputs_get_overviews_small_ones_none(tmp_path):
    """GIS tools open a large output fast from its internal overviews: averaged for values, the most common
    class for class maps (so a zoomed-out map holds only real classes); small outputs stay as they are."""
    from rasterio.transform import from_origin

    from cogen.io import RasterMeta, WindowedWriter, overview_factors

    assert overview_factors(224, 224) == [] and overview_factors(1100, 300) == [2, 4]
    assert overview_factors(6144, 6144) == [2, 4, 8, 16]
    rng = np.random.default_rng(0)
    classes = rng.choice(np.array([1, 5], np.uint8), size=(1, 1100, 300), p=[0.3, 0.7])
    values = rng.normal(size=(1, 1100, 300)).astype(np.float32)
    for name, arr, meta in (("c.tif", classes, RasterMeta(categorical=True)), ("v.tif", values, RasterMeta())):
        w = WindowedWriter(tmp_path / name, None, from_origin(0, 0, 10, 10), 1100, 300, 1, arr.dtype.name, None, meta=meta)
        w.write(arr, Window(0, 0, 300, 1100))
        w.commit()
        with rasterio.open(tmp_path / name) as f:
            assert f.overviews(1) == [2, 4]
            np.testing.assert_array_equal(f.read(), arr)  # full resolution untouched
            low = f.read(1, out_shape=(275, 75))
        if name == "c.tif":
            assert set(np.unique(low)) <= {1, 5}
        else:  # the average of 4 x 4 blocks: far less spread than single values
            assert low.std() < 0.5 * arr.std()
    small = WindowedWriter(tmp_path / "s.tif", None, from_origin(0, 0, 10, 10), 64, 64, 1, "float32", None)
    small.write(values[:, :64, :64], Window(0, 0, 64, 64))
    small.commit()
    with rasterio.open(tmp_path / "s.tif") as f:
        assert f.overviews(1) == []

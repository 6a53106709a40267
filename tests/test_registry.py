import dataclasses

import numpy as np
import pytest
import torch
import yaml

from cogen.errors import ConfigError, RasterError, UnknownModalityError
from cogen.registry import Registry


def test_every_modality_of_the_issue_is_declared(registry):
    assert registry["S2L2A"].num_bands == 12 and "B10" not in registry["S2L2A"].bands
    assert registry["S2L1C"].num_bands == 13 and "B10" in registry["S2L1C"].bands
    for m in ("S1RTC", "S1GRD"):
        assert registry[m].bands == ("VV", "VH") and registry[m].units == "dB"
    assert registry["DEM"].units == "m"
    assert [c.name for c in registry["LULC"].classes][:2] == ["water", "trees"] and registry["LULC"].nodata == 0
    assert registry["LULC"].num_classes == 9 and 0 not in registry["LULC"].class_ids
    assert [c.name for c in registry["CLOUD"].classes] == ["clear", "thick cloud", "thin cloud", "cloud shadow"]
    assert registry["NDVI"].kind == "continuous"


@pytest.mark.parametrize("name", ["S2L2A", "S2L1C", "S1RTC", "DEM", "NDVI"])
def test_value_transform_round_trip(registry, name):
    mod = registry[name]
    g = torch.Generator().manual_seed(0)
    lo, hi = mod.valid_range
    raw = (torch.rand(mod.num_bands, 8, 8, generator=g, dtype=torch.float64) * (min(hi, 20000) - lo) + lo)
    x = mod.normalize(raw.double())
    back = mod.denormalize(x.double(), physical=False)
    assert torch.allclose(back.double(), raw, rtol=1e-5, atol=1e-4 * max(1.0, abs(hi)))
    phys = mod.denormalize(x.double())
    assert torch.allclose(phys, raw * mod.scale + mod.offset, rtol=1e-5, atol=1e-6 * max(1.0, abs(hi)))


def test_normalised_training_data_is_standardised(registry):
    from cogen.io import read_raster
    from conftest import SHIPPED

    raw, _ = read_raster(SHIPPED / "S2L2A" / "433D_629L_3_1.tif")
    x = registry["S2L2A"].normalize(torch.from_numpy(raw.astype(np.float32)))
    assert x.abs().mean() < 3  # order one values in model space


def test_unknown_modality_lists_known(registry):
    with pytest.raises(UnknownModalityError) as e:
        registry["S3OLCI"]
    assert "S3OLCI" in str(e.value) and "S2L2A" in str(e.value) and "LULC" in str(e.value)


def test_registry_is_frozen(registry):
    with pytest.raises(dataclasses.FrozenInstanceError):
        registry["S2L2A"].scale = 2.0
    with pytest.raises(TypeError):
        registry["S2L2A"].tokenizer["type"] = "vae"
    with pytest.raises(TypeError):
        registry["NEW"] = registry["S2L2A"]


def test_wrong_band_count_is_an_error(registry):
    with pytest.raises(RasterError, match="has 3 band.*LULC needs 1"):
        registry["LULC"].file_bands(3, "x.tif")
    with pytest.raises(RasterError, match="has 3 band.*S2L2A has 12.*not named"):
        registry["S2L2A"].file_bands(3, "x.tif")


def test_a_new_sensor_is_a_config_entry(tmp_path):
    doc = yaml.safe_load(open("configs/modalities.yaml"))
    doc["modalities"]["LANDSAT8"] = {"kind": "continuous", "bands": ["B2", "B3", "B4"], "units": "reflectance",
                                     "transform": {"scale": 2.75e-5, "offset": -0.2}, "mean": [0.1, 0.1, 0.1],
                                     "std": [0.05, 0.05, 0.05], "valid_range": [1, 65535]}
    p = tmp_path / "mods.yaml"
    p.write_text(yaml.safe_dump(doc))
    reg = Registry.from_yaml(p)
    raw = torch.full((3, 2, 2), 10000.0, dtype=torch.float64)
    assert torch.allclose(reg["LANDSAT8"].denormalize(reg["LANDSAT8"].normalize(raw).double(), physical=False), raw)


def test_bad_entry_is_a_config_error(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("modalities:\n  X: {kind: continuous, bands: [a], colour: red}\n")
    with pytest.raises(ConfigError, match="unknown key"):
        Registry.from_yaml(p)


def test_valid_mask_excludes_nan_nodata_and_out_of_range(registry):
    raw = np.ones((2, 2, 2), np.float32) * -10
    raw[0, 0, 0] = np.nan
    raw[1, 1, 1] = 99.0  # above the valid range of S1 dB
    ok = registry["S1RTC"].valid_mask(raw)
    assert ok.tolist() == [[False, True], [True, False]]
    lulc = np.array([[[0, 1], [8, 10]]], np.uint8)
    assert registry["LULC"].valid_mask(lulc).tolist() == [[False, True], [True, False]]


def test_add_offsets_make_a_copy_with_the_products_offset():
    """Sentinel-2 of processing baseline 04.00+: reflectance = (raw - 1000) / 10000; the original is untouched."""
    from cogen.errors import UsageError
    from cogen.registry import default_registry

    reg = default_registry()
    pb4 = reg.with_add_offsets({"S2L2A": -1000})
    raw = np.array([1000.0, 3500.0])
    np.testing.assert_allclose(pb4["S2L2A"].to_physical(raw), [0.0, 0.25], atol=1e-12)
    np.testing.assert_allclose(pb4["S2L2A"].from_physical(pb4["S2L2A"].to_physical(raw)), raw)
    np.testing.assert_allclose(reg["S2L2A"].to_physical(raw), [0.1, 0.35])
    assert pb4["S1RTC"] is reg["S1RTC"] and pb4["S2L2A"].mean == reg["S2L2A"].mean
    with pytest.raises(UsageError, match="LULC is a class map"):
        reg.with_add_offsets({"LULC": 1})

"""The shipped more-real scenes (data/more-real): georeferenced, bands named as in the registry, one grid per
scene, dates in the tags, values in their conventions, and reproduced by the vendoring script (the same bytes,
or under another GDAL the same values and metadata)."""
from __future__ import annotations

import importlib.util
import re
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cogen.native import detect_block_offset

from conftest import ROOT

MORE = ROOT / "data" / "more-real"
SCRIPT = ROOT / "scripts" / "vendor_more_real.py"
FILES = sorted(MORE.rglob("*.tif"))
SCENE_FILES = [f for f in FILES if f.parent.parent == MORE]
SERIES_FILES = [f for f in FILES if f.parent.parent.name == "series"]
OWN_FOLDERS = {"LULC_EOLEARN": ["class"]}  # modality folders that are not (yet) registry modalities
SCENE_ID = re.compile(r"^(slovenia|belgium|germany)_(\d{4}-\d{2}(-\d{2})?)$")


def rel(f: Path) -> str:
    return str(f.relative_to(MORE))


def test_folder_is_complete():
    assert (MORE / "LICENSE.md").is_file() and (MORE / "SOURCES.txt").is_file()
    assert {f.parent.name for f in SCENE_FILES} == {"S2L1C", "S2L2A", "S1GRD", "DEM", "CLOUD", "LULC_EOLEARN"}
    assert {m.group(1) for m in (SCENE_ID.match(f.stem) for f in SCENE_FILES) if m} == {"slovenia", "belgium",
                                                                                         "germany"}
    sources = (MORE / "SOURCES.txt").read_text()
    assert all(f"  {rel(f)}: " in sources for f in FILES), "every file is described in SOURCES.txt"


@pytest.mark.parametrize("f", FILES, ids=rel)
def test_georeferenced_and_compressed(f):
    with rasterio.open(f) as src:
        assert src.crs is not None and src.crs.to_epsg() in (32631, 32633)
        assert not src.transform.is_identity
        assert 9.9 < src.transform.a < 10.1 and -10.1 < src.transform.e < -9.9
        assert src.compression is not None and src.compression.name.lower() == "deflate"


@pytest.mark.parametrize("f", SCENE_FILES, ids=rel)
def test_scene_bands_named_and_dated(f, registry):
    mod = f.parent.name
    m = SCENE_ID.match(f.stem)
    assert m, f"{f.stem}: scene ids are <place>_<date>"
    names = list(registry[mod].bands) if mod in registry else OWN_FOLDERS[mod]
    with rasterio.open(f) as src:
        desc = list(src.descriptions)
        tags = src.tags()
    assert all(desc), "every band is named"
    assert [b for b in names if b in desc] == desc, f"{desc} is not a subset of {names} in registry order"
    date = tags.get("SCENE_DATE") if "TIMELESS" in tags else tags.get("ACQUISITION_DATE")
    assert date and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date) and date.startswith(m.group(2))


@pytest.mark.parametrize("f", SERIES_FILES, ids=rel)
def test_series_bands_are_dates(f, registry):
    assert f.parent.name in registry and registry[f.parent.name].num_bands == 1
    with rasterio.open(f) as src:
        dates = [src.tags(b).get("ACQUISITION_DATE") for b in range(1, src.count + 1)]
        desc = list(src.descriptions)
    assert all(d and s.startswith(d) for d, s in zip(dates, desc)), "band description = the band's timestamp"
    assert desc == sorted(desc) and len(set(desc)) == len(desc)


def test_one_grid_per_scene():
    scenes = defaultdict(list)
    for f in SCENE_FILES:
        scenes[f.stem].append(f)
    for sid, files in scenes.items():
        grids = set()
        for f in files:
            with rasterio.open(f) as src:
                grids.add((src.crs.to_epsg(), tuple(src.transform), src.shape))
        assert len(grids) == 1, f"{sid}: files on different grids"
    assert len(scenes["slovenia_2015-09-09"]) == 4 and len(scenes["belgium_2021-04"]) == 3
    assert "belgium_2020-12" in scenes and not (MORE / "S2L2A" / "belgium_2020-12.tif").exists()


def read(path: str) -> tuple[np.ndarray, dict]:
    with rasterio.open(MORE / path) as src:
        return src.read(), {"nodata": src.nodata, "tags": src.tags(), "descriptions": src.descriptions}


def test_values_follow_the_conventions():
    s1, meta = read("S1GRD/belgium_2021-04.tif")
    assert s1.dtype == np.float32 and np.isnan(meta["nodata"])
    vv, vh = np.nanmedian(s1[0]), np.nanmedian(s1[1])
    assert -14 < vv < -7 and -21 < vh < -13 and vh < vv  # dB over fields, decoded as 20 log10(DN) - 83
    l2a, meta = read("S2L2A/belgium_2021-06.tif")
    assert l2a.dtype == np.uint16 and meta["nodata"] == 65535 and l2a.shape[0] == 9
    assert 200 < np.median(l2a[meta["descriptions"].index("B04")]) < 2000  # red reflectance x 1e4
    l1c, _ = read("S2L1C/slovenia_2015-09-09.tif")
    assert l1c.dtype == np.uint16 and l1c.shape[0] == 13 and l1c.max() < 10000
    cloud, meta = read("CLOUD/slovenia_2015-08-20.tif")
    assert set(np.unique(cloud)) <= {0, 1} and meta["nodata"] == 255
    lulc, meta = read("LULC_EOLEARN/slovenia_2015-09-09.tif")
    assert set(np.unique(lulc)) <= {0, 1, 2, 3, 4, 8} and meta["tags"]["CLASS_8"] == "artificial surface"
    dem, _ = read("DEM/slovenia_2015-09-09.tif")
    assert 600 < dem.min() and dem.max() < 850


def test_coarse_bands_repeat_over_their_native_blocks(registry):
    mod = registry["S2L1C"]
    arr, meta = read("S2L1C/germany_2017-02-16.tif")
    ok = np.ones(arr.shape[1:], bool)
    for b, k in (mod.native_blocks or {}).items():
        band = arr[list(meta["descriptions"]).index(b)]
        assert detect_block_offset(band, ok, k) == (0, 0), b
        assert np.array_equal(band, np.repeat(np.repeat(band[::k, ::k], k, 0), k, 1)), b


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "more-real").is_dir(),
                    reason="the published sources are not beside the repository")
def test_script_reproduces_the_files(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("vendor_more_real", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # its dataclass looks itself up there
    spec.loader.exec_module(script)
    script.main([str(script.DEFAULT_SRC), str(tmp_path)])
    made = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    shipped = sorted(p.relative_to(MORE) for p in MORE.rglob("*") if p.is_file() and p.name != "LICENSE.md")
    assert made == shipped
    for p in made:
        if (tmp_path / p).read_bytes() != (MORE / p).read_bytes():  # another GDAL may lay bytes out otherwise
            assert p.suffix == ".tif" and raster_content(tmp_path / p) == raster_content(MORE / p), f"{p} differs"


def raster_content(path: Path) -> tuple:
    with rasterio.open(path) as src:
        arr = src.read()
        meta = (src.crs.to_wkt(), tuple(src.transform), src.descriptions, str(src.nodata), src.tags(),
                [src.tags(b) for b in range(1, src.count + 1)], arr.dtype.name)
    return meta, arr.tobytes()

"""Bands stored in native-resolution blocks (cogen.native) and generated values kept in the valid range."""
import numpy as np
import pytest
import torch

from cogen.errors import ConfigError
from cogen.native import block_project, detect_block_offset


def blocky(h, w, k, row, col, seed=0):
    """(h,w) values repeated over k x k blocks; pixel (i, j) in block ((i + row) // k, (j + col) // k)."""
    base = np.random.default_rng(seed).integers(0, 5000, ((h + row) // k + 2, (w + col) // k + 2)).astype(float)
    full = np.kron(base, np.ones((k, k)))
    return full[row : row + h, col : col + w]


@pytest.mark.parametrize("k,row,col", [(6, 0, 0), (6, 4, 2), (2, 1, 0), (6, 5, 3)])
def test_detect_block_offset_finds_where_blocks_start(k, row, col):
    a = blocky(40, 50, k, row, col)
    assert detect_block_offset(a, np.ones_like(a, bool), k) == (row, col)


def test_detect_block_offset_ignores_nodata_and_rejects_smooth_bands():
    a = blocky(48, 48, 6, 2, 3)
    ok = np.ones_like(a, bool)
    ok[10:30, 5:40] = False
    a[~ok] = 0.0
    assert detect_block_offset(a, ok, 6) == (2, 3)
    smooth = np.random.default_rng(1).normal(size=(48, 48)).cumsum(0).cumsum(1)  # resampled some other way
    assert detect_block_offset(smooth, np.ones_like(smooth, bool), 6) is None
    assert detect_block_offset(a[:3, :3], ok[:3, :3], 6) is None  # too few pixels to tell


def test_block_project_hand_computed():
    x = torch.arange(16.0).view(1, 4, 4)  # 2x2 blocks starting at (0, 0)
    y = block_project(x, 2, 0, 0)
    assert torch.equal(y[0], torch.tensor([[2.5, 2.5, 4.5, 4.5], [2.5, 2.5, 4.5, 4.5],
                                           [10.5, 10.5, 12.5, 12.5], [10.5, 10.5, 12.5, 12.5]]))
    # window at (1, 1) of the block grid: the corner pixel is a block of its own, edges are half blocks
    y = block_project(x, 2, 1, 1)
    assert y[0, 0, 0] == 0 and y[0, 0, 1] == y[0, 0, 2] == 1.5 and y[0, 1, 1] == y[0, 2, 2] == (5 + 6 + 9 + 10) / 4
    # known pixels win their block and keep their values; a block without any takes the generated mean
    known = torch.full_like(x, 100.0)
    ok = torch.zeros(1, 4, 4, dtype=torch.bool)
    ok[0, 0, 0] = True
    y = block_project(x, 2, 0, 0, known, ok)
    assert y[0, 0, 0] == 100 and y[0, 0, 1] == y[0, 1, 0] == y[0, 1, 1] == 100
    assert y[0, 0, 2] == 4.5


def test_registry_native_blocks_checked():
    from cogen.registry import Registry, default_registry

    reg = default_registry()
    assert reg["S2L2A"].native_blocks["B01"] == 6 and reg["S2L2A"].native_blocks["B11"] == 2
    assert "B02" not in reg["S2L2A"].native_blocks
    entry = reg["S2L2A"].to_dict()
    with pytest.raises(ConfigError, match="B99"):
        Registry({"S2L2A": {**entry, "native_blocks": {"B99": 6}}})
    with pytest.raises(ConfigError, match="whole number"):
        Registry({"S2L2A": {**entry, "native_blocks": {"B01": 1.5}}})


def _blocks_constant(band: np.ndarray, k: int, row: int, col: int) -> bool:
    h, w = band.shape
    ids = ((np.arange(h)[:, None] + row) // k) * 10_000 + (np.arange(w)[None, :] + col) // k
    return all(np.ptp(band[ids == i]) == 0 for i in np.unique(ids))


def test_generated_bands_get_their_native_blocks_and_stay_in_range(tiny_bundle):
    from cogen.data.synthetic import make_scene
    from cogen.pipeline import CogenPipeline

    sc = make_scene(36, 40, seed=2)["rasters"]
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    mod = pipe.registry["S2L2A"]
    b01, b05, b02 = (mod.band_index(b) for b in ("B01", "B05", "B02"))
    kw = dict(steps=2, samples=2, seed=0, tile=48, overlap=0, progress=False)  # one tile: blocks exact
    out = pipe({"S1RTC": sc["S1RTC"]}, ["S2L2A"], grid_offset=(2, 3), **kw)["S2L2A"]
    for arr in (out.sample, out.mean):
        assert _blocks_constant(arr[b01], 6, 2, 3) and _blocks_constant(arr[b05], 2, 2, 3)
        assert not _blocks_constant(arr[b02], 2, 2, 3)  # a 10 m band keeps its detail
    assert out.sample.min() >= 0.0 and out.mean.min() >= 0.0  # reflectance is never negative
    plain = pipe({"S1RTC": sc["S1RTC"]}, ["S2L2A"], **kw)["S2L2A"]  # blocks counted from the top-left pixel
    assert _blocks_constant(plain.sample[b01], 6, 0, 0) and not _blocks_constant(plain.sample[b01], 6, 2, 3)


def test_cloud_removal_fills_blocks_cut_by_the_mask_from_their_clear_pixels(tiny_bundle):
    from cogen.data.synthetic import make_scene
    from cogen.pipeline import CogenPipeline

    sc = make_scene(36, 40, seed=3)["rasters"]
    s2 = sc["S2L2A"].copy()
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    mod = pipe.registry["S2L2A"]
    b01 = mod.band_index("B01")
    s2[b01] = blocky(36, 40, 6, 4, 1, seed=5)  # a 60 m band stored on the 10 m grid, blocks offset (4, 1)
    mask = np.zeros((36, 40), bool)
    mask[5:25, 6:30] = True  # cuts blocks at its edges
    out = pipe({"S2L2A": s2, "S1RTC": sc["S1RTC"]}, ["S2L2A"], regenerate={"S2L2A": mask}, steps=2, seed=0,
               tile=48, overlap=0, progress=False, strength=1.0)["S2L2A"]
    truth = s2 * mod.scale + mod.offset
    assert np.array_equal(out.sample[:, ~mask], truth[:, ~mask].astype(np.float32))
    assert _blocks_constant(out.sample[b01], 6, 4, 1)  # found in the input, not the default (0, 0)
    ids = ((np.arange(36)[:, None] + 4) // 6) * 100 + (np.arange(40)[None, :] + 1) // 6
    cut = np.unique(ids[mask & np.isin(ids, ids[~mask])])
    assert len(cut) > 0
    for i in cut:  # a block cut by the mask edge is measured: its masked pixels take its clear value
        assert np.allclose(out.sample[b01][ids == i], truth[b01][ids == i], atol=1e-6)


def test_a_window_carries_the_native_block_grid(tmp_path, tiny_bundle):
    """--window: the window's top-left pixel lies (row_off, col_off) into the file's grid of native blocks."""
    import rasterio

    import sample
    from cogen.data.synthetic import make_scene
    from cogen.io import write_raster
    from rasterio.transform import from_origin

    s1 = write_raster(tmp_path / "s1.tif", make_scene(30, 34, seed=4)["rasters"]["S1RTC"], "EPSG:32633",
                      from_origin(500000.0, 5000000.0, 10, 10), nodata=None)
    args = ["impute", "--input", f"S1RTC={s1}", "--target", "S2L2A", "--checkpoint", str(tiny_bundle), "--steps", "2",
            "--tile", "48", "--overlap", "0", "--quiet"]
    assert sample.main([*args, "--out", str(tmp_path / "o"), "--window", "5,1,29,29"]) == 0
    with rasterio.open(tmp_path / "o" / "S2L2A.tif") as src:
        b01 = src.read(1).astype(float)
    assert _blocks_constant(b01, 6, 1, 5) and not _blocks_constant(b01, 6, 0, 0)

"""Samples drawn in several dihedral orientations (CogenPipeline.orientations) and turned back."""
import numpy as np
import pytest
import torch

from cogen.errors import UsageError
from cogen.pipeline import orient


def test_orient_is_the_dihedral_group_and_undo_inverts_it():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)  # no symmetry at all
    xs = x.repeat(8, 1, 1, 1)
    turned = orient(xs, list(range(8)))
    assert len({tuple(t.flatten().tolist()) for t in turned}) == 8  # eight different images
    assert torch.equal(turned[1], torch.rot90(x[0], 1, dims=(-2, -1)))
    assert torch.equal(turned[4], torch.flip(x[0], dims=(-1,)))
    assert torch.equal(orient(turned, list(range(8)), undo=True), xs)
    masks = torch.rand(8, 4, 4) > 0.5  # (B, H, W) masks turn the same way
    assert torch.equal(orient(orient(masks, list(range(8))), list(range(8)), undo=True), masks)
    assert orient(xs, [0] * 8) is xs


def test_orientations_setter_checks_its_value(tiny_bundle):
    from cogen.pipeline import CogenPipeline

    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    assert pipe.orientations == 1  # off unless the bundle's sample section asks
    for bad in (0, 9, 2.0, True):
        with pytest.raises(UsageError, match="orientations"):
            pipe.orientations = bad


def test_turned_samples_come_back_upright(tiny_bundle):
    """Cloud removal keeps known cells exact in every sample, so the mean of 8 turned samples equals the input
    on tokens far from the mask only if each sample was turned back the right way."""
    from cogen.data.synthetic import make_scene
    from cogen.pipeline import CogenPipeline

    sc = make_scene(32, 32, seed=4)["rasters"]
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    mod = pipe.registry["S2L2A"]
    mask = np.zeros((32, 32), bool)
    mask[4:12, 20:30] = True
    kw = dict(regenerate={"S2L2A": mask}, steps=2, samples=8, seed=0, tile=32, overlap=0, progress=False,
              start="noise")
    up = pipe({"S2L2A": sc["S2L2A"], "S1RTC": sc["S1RTC"]}, ["S2L2A"], **kw)["S2L2A"]
    pipe.orientations = 8
    out = pipe({"S2L2A": sc["S2L2A"], "S1RTC": sc["S1RTC"]}, ["S2L2A"], **kw)["S2L2A"]
    truth = sc["S2L2A"] * mod.scale + mod.offset
    far = np.zeros((32, 32), bool)
    far[16:, :16] = True  # whole patches, well away from the mask
    assert np.allclose(out.mean[:, far], truth[:, far], atol=1e-4)
    assert np.allclose(out.sample, up.sample, atol=1e-5)  # sample 0 is the upright one
    assert not np.allclose(out.mean[:, mask], up.mean[:, mask], atol=1e-3)  # the others were turned


def test_orientations_for_regenerated_targets_only(tiny_bundle):
    """orientations_regenerate turns the samples of cloud removal as orientations would, and leaves calls that
    generate a target whole upright; 0 means as orientations; the CLI's --orientations applies to both."""
    import argparse

    from cogen.data.synthetic import make_scene
    from cogen.flags import apply_sampling_flags
    from cogen.pipeline import CogenPipeline

    sc = make_scene(32, 32, seed=4)["rasters"]
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    assert pipe.orientations_regenerate == 0
    mask = np.zeros((32, 32), bool)
    mask[4:12, 20:30] = True
    cond = {"S2L2A": sc["S2L2A"], "S1RTC": sc["S1RTC"]}
    kw = dict(steps=2, samples=4, seed=0, tile=32, overlap=0, progress=False)
    cloud = lambda: pipe(cond, ["S2L2A"], regenerate={"S2L2A": mask}, start="noise", **kw)["S2L2A"].mean
    whole = lambda: pipe({"S1RTC": sc["S1RTC"]}, ["S2L2A"], **kw)["S2L2A"].mean
    up_cloud, up_whole = cloud(), whole()
    pipe.orientations = 8
    turned_cloud, turned_whole = cloud(), whole()
    pipe.orientations, pipe.orientations_regenerate = 1, 8
    assert np.array_equal(cloud(), turned_cloud) and not np.allclose(turned_cloud, up_cloud, atol=1e-3)
    assert np.array_equal(whole(), up_whole) and not np.allclose(turned_whole, up_whole, atol=1e-3)
    for bad in (-1, 9, 2.0, True):
        with pytest.raises(UsageError, match="orientations for regenerated"):
            pipe.orientations_regenerate = bad
    ns = argparse.Namespace(no_grid_shift=False, shift_ensemble=None, final_denoise=None, no_native_blocks=False,
                            no_co_targets=False, orientations=2, library_neighbours=None, vote_sigma=None,
                            interpolate_positions=False)
    apply_sampling_flags(pipe, ns)
    assert (pipe.orientations, pipe.orientations_regenerate) == (2, 0)


def test_co_targets_are_generated_jointly_and_dropped(tiny_bundle):
    from cogen.data.synthetic import make_scene
    from cogen.pipeline import CogenPipeline

    sc = make_scene(32, 32, seed=5)["rasters"]
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    assert pipe.co_targets == []  # off unless the bundle's sample section asks
    pipe.co_targets = [{"target": "LULC", "given": ["S2L2A"], "add": ["S1RTC", "DEM", "S2L2A"]}]
    assert pipe.co_generated({"S2L2A": 0}, ["LULC"]) == ["S1RTC", "DEM"]  # a given modality is not generated
    assert pipe.co_generated({"S2L2A": 0}, ["LULC", "DEM"]) == ["S1RTC"]  # nor one asked for
    assert pipe.co_generated({"S2L2A": 0}, ["S1RTC"]) == []  # only for the rule's target
    assert pipe.co_generated({"S1RTC": 0}, ["LULC"]) == []  # only when the rule's inputs are given
    assert pipe.co_generated({"S2L2A": 0, "S1RTC": 0}, ["LULC"]) == ["DEM"]
    pipe.co_targets = [{"target": "LULC", "given": ["S2L2A"], "exact": True, "add": ["S1RTC", "DEM"]}]
    assert pipe.co_generated({"S2L2A": 0, "S1RTC": 0}, ["LULC"]) == []  # exact: S2L2A and nothing else
    assert pipe.co_generated({"S2L2A": 0}, ["LULC"]) == ["S1RTC", "DEM"]
    kw = dict(steps=2, samples=2, seed=0, tile=32, overlap=0, progress=False)
    res = pipe({"S2L2A": sc["S2L2A"]}, ["LULC"], **kw)
    assert list(res) == ["LULC"] and res["LULC"].classes.shape == (32, 32)  # the companions are dropped
    pipe.co_targets = []
    dem_alone = pipe({"S2L2A": sc["S2L2A"]}, ["DEM"], **kw)["DEM"]
    pipe.co_targets = [{"target": "DEM", "add": ["S1RTC"]}]
    dem_joint = pipe({"S2L2A": sc["S2L2A"]}, ["DEM"], **kw)["DEM"]
    assert not np.allclose(dem_joint.mean, dem_alone.mean)  # a different, joint sample


@pytest.mark.parametrize("rules,bad", [([{"target": "LULC", "add": ["S1GRD"]}], "S1GRD"),
                                       ([{"target": "LULC", "given": ["S2L1C"], "add": ["DEM"]}], "S2L1C"),
                                       ([{"target": "LULC"}], "expected keys"),
                                       ([{"target": "LULC", "add": ["DEM"], "exact": "yes"}], "expected keys"),
                                       ([{"target": "LULC", "add": ["DEM"], "when": ["S2L2A"]}], "expected keys")])
def test_co_targets_rules_are_checked(tiny_bundle, rules, bad):
    from cogen.checkpoint import load_bundle
    from cogen.errors import ConfigError
    from cogen.pipeline import CogenPipeline

    b = load_bundle(tiny_bundle)
    b.config.sample.co_targets = rules
    with pytest.raises(ConfigError, match=bad):
        CogenPipeline(b)


def test_cli_orientations_and_no_co_targets(tmp_path, tiny_bundle, capsys):
    import rasterio
    from rasterio.transform import from_origin

    import sample
    from cogen.data.synthetic import make_scene
    from cogen.io import write_raster

    s1 = write_raster(tmp_path / "s1.tif", make_scene(32, 32, seed=6)["rasters"]["S1RTC"], "EPSG:32633",
                      from_origin(500000.0, 5000000.0, 10, 10), nodata=None)
    args = ["impute", "--input", f"S1RTC={s1}", "--target", "DEM", "--checkpoint", str(tiny_bundle), "--steps", "2",
            "--samples", "2", "--tile", "32", "--overlap", "0", "--quiet", "--no-co-targets"]
    means = []
    for n in ("1", "8"):
        assert sample.main([*args, "--out", str(tmp_path / n), "--orientations", n]) == 0
        with rasterio.open(tmp_path / n / "DEM_mean.tif") as src:
            means.append(src.read(1))
    assert not np.allclose(means[0], means[1])  # the second sample was drawn turned
    assert sample.main([*args, "--out", str(tmp_path / "bad"), "--orientations", "9"]) == 2
    assert "orientations 9" in capsys.readouterr().err

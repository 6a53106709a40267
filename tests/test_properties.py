"""Property-based tests (hypothesis) for the math everything relies on. A few seconds in all."""
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cogen.diffusion import ABSENT, CONDITION, TARGET, Diffusion, RoleConfig, sample_roles
from cogen.diffusion.roles import sample_times
from cogen.registry import Registry
from cogen.tiling import blend_weight, coverage_weights, tile_grid, tile_starts

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(scale=st.floats(1e-5, 1e3), offset=st.floats(-1e3, 1e3), mean=st.floats(-1e3, 1e3), std=st.floats(1e-3, 1e3),
       values=st.lists(st.floats(-1e4, 1e4), min_size=1, max_size=20))
def test_value_transform_inverse(scale, offset, mean, std, values):
    reg = Registry({"X": {"kind": "continuous", "bands": ["b"], "transform": {"scale": scale, "offset": offset},
                          "mean": [mean], "std": [std]}})
    raw = torch.tensor(values, dtype=torch.float64).view(1, 1, -1)
    back = reg["X"].denormalize(reg["X"].normalize(raw).double(), physical=False)
    # normalize works in float32: the error scales with the physical magnitudes involved, offset included
    tol = 1e-5 * (1 + raw.abs() + (abs(offset) + abs(mean) + std) / scale)
    assert ((back - raw).abs() <= tol).all()


@FAST
@given(h=st.integers(1, 300), w=st.integers(1, 300), tile=st.integers(2, 96), data=st.data())
def test_tiles_cover_every_pixel_and_weights_sum_to_one(h, w, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    starts = tile_starts(h, tile, overlap)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if h >= tile:
        assert starts[-1] + tile == h  # the last tile ends at the border: no padding needed
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # at least `overlap` shared
    cov = np.zeros((max(h, tile), max(w, tile)), int)
    for r, c in tile_grid(h, w, tile, overlap):
        cov[r : r + tile, c : c + tile] += 1
    assert (cov[:h, :w] >= 1).all()
    assert (blend_weight(tile, overlap) > 0).all()
    np.testing.assert_allclose(coverage_weights(h, w, tile, overlap), 1.0, rtol=1e-9)


_SCENE = {}


def _pattern_dataset(tmp):
    if "root" not in _SCENE:
        from conftest import write_pattern

        for m, b in (("S2L2A", 12), ("DEM", 1), ("LULC", 1)):
            arr = write_pattern(tmp / m / "s.tif", b, 37, 45, dtype="float32")
            if m == "LULC":
                from cogen.io import write_raster
                from rasterio.transform import from_origin

                cls = (1 + (np.indices((37, 45)).sum(0) % 9)).astype(np.uint8)[None]
                write_raster(tmp / m / "s.tif", cls, "EPSG:32633", from_origin(500000.0, 5000000.0, 10, 10))
        _SCENE["root"] = tmp
    return _SCENE["root"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(crop=st.integers(1, 37), seed=st.integers(0, 10_000), augment=st.booleans())
def test_crops_align_across_modalities(tmp_path_factory, crop, seed, augment):
    from cogen.data import SceneDataset
    from cogen.registry import default_registry

    root = _pattern_dataset(tmp_path_factory.getbasetemp() / "prop_scene")
    reg = default_registry()
    it = SceneDataset(root, crop=crop, length=1, seed=seed, augment=augment)[0]
    a = reg["S2L2A"].denormalize(it["values"]["S2L2A"].double(), physical=False)[0]
    b = reg["DEM"].denormalize(it["values"]["DEM"].double(), physical=False)[0]
    assert torch.allclose(a, b, atol=1e-2)
    lulc = reg["LULC"].class_id(it["values"]["LULC"])  # class = 1 + (row + col) % 9 at the same place
    rows, cols = torch.div(b.round().long(), 45, rounding_mode="floor"), b.round().long() % 45
    assert (lulc == 1 + (rows + cols) % 9).all()


@FAST
@given(B=st.integers(1, 40), M=st.integers(1, 6), seed=st.integers(0, 10_000),
       w=st.tuples(st.floats(0.01, 1), st.floats(0.01, 1), st.floats(0.01, 1)),
       p_joint=st.floats(0, 1), p_uncond=st.floats(0, 1), p_shared=st.floats(0, 1))
def test_role_sampling_invariants(B, M, seed, w, p_joint, p_uncond, p_shared):
    g = torch.Generator().manual_seed(seed)
    present = {f"m{i}": torch.rand(B, generator=g) < 0.6 for i in range(M)}
    cfg = RoleConfig(p_joint=p_joint, w_condition=w[0], w_target=w[1], w_absent=w[2], p_uncond=p_uncond,
                     p_shared_t=p_shared)
    roles = sample_roles(present, cfg, g)
    R = torch.stack([roles[m] for m in present], 1)
    P = torch.stack(list(present.values()), 1)
    assert (R[~P] == ABSENT).all()  # missing data is never a condition or a target
    has_data = P.any(1)
    assert ((R == TARGET).sum(1)[has_data] >= 1).all()  # every sample with data has a target
    assert ((R == TARGET).sum(1)[~has_data] == 0).all()
    t = sample_times(roles, Diffusion().sample_t, cfg, g)
    T = torch.stack([t[m] for m in present], 1)
    assert (T[R != TARGET] == 0).all() and (T[R == TARGET] > 0).all() and (T <= 1).all()

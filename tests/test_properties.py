"""Property-based tests (hypothesis) for the math everything relies on. A few seconds in all."""
import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cogen.diffusion import ABSENT, CONDITION, TARGET, Diffusion, RoleConfig, sample_roles
from cogen.diffusion.roles import sample_times
from cogen.registry import Registry
from cogen.tiling import anchored_starts, blend_weight, coverage_weights, tile_grid

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
    starts = anchored_starts(h, tile, overlap)
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


@FAST
@given(h=st.integers(1, 300), tile=st.integers(2, 96), anchor=st.integers(-10**6, 10**6), data=st.data())
def test_anchored_tiles_lie_on_the_map_and_cover_the_scene(h, tile, anchor, data):
    """Tiles on a lattice fixed on the map: all but the first and last start at a multiple of the stride there,
    they cover the scene with at least `overlap` shared, weights still sum to one; anchor 0 is the grid from
    the corner; and a part of the scene (a window `off` px in, `n` px long) cuts every lattice tile inside it."""
    overlap = data.draw(st.integers(0, tile - 1))
    stride = tile - overlap
    starts = anchored_starts(h, tile, overlap, anchor)
    assert starts[0] == 0 and starts == sorted(set(starts))
    if h > tile:  # anchor 0 is the grid counted from the scene's corner: every stride from 0, the last at the border
        assert anchored_starts(h, tile, overlap, 0) == sorted({*range(0, h - tile + 1, stride), h - tile})
    if h >= tile:
        assert starts[-1] + tile == h and all(b - a <= stride for a, b in zip(starts, starts[1:]))
        assert all((anchor + s) % stride == 0 for s in starts[1:-1])
    np.testing.assert_allclose(coverage_weights(h, 7, tile, overlap, (anchor, 0)), 1.0, rtol=1e-9)
    off = data.draw(st.integers(0, h - 1))
    n = data.draw(st.integers(1, h - off))
    part = {off + s for s in anchored_starts(n, tile, overlap, anchor + off)}
    inside = {s for s in range(off, off + n - tile + 1) if (anchor + s) % stride == 0}
    assert inside <= part


@FAST
@given(h=st.integers(1, 400), w=st.integers(1, 400), rows=st.integers(1, 6), cols=st.integers(1, 6),
       overlap=st.integers(0, 200))
def test_planned_parts_cover_the_scene_and_share_the_overlap(h, w, rows, cols, overlap):
    """`cogen parts`: a rows x cols grid of windows inside the scene that cover it, neighbours sharing `overlap`
    px (less only where a part reaches the scene's border)."""
    from cogen.errors import UsageError
    from cogen.join import plan_parts

    if rows > h or cols > w:
        try:
            plan_parts(h, w, rows, cols, overlap)
        except UsageError as e:
            assert "give fewer" in str(e)
            return
        raise AssertionError("a grid finer than the scene was accepted")
    wins = plan_parts(h, w, rows, cols, overlap)
    assert len(wins) == rows * cols
    cov = np.zeros((h, w), int)
    for win in wins:
        r0, c0, hh, ww = int(win.row_off), int(win.col_off), int(win.height), int(win.width)
        assert r0 >= 0 and c0 >= 0 and hh >= 1 and ww >= 1 and r0 + hh <= h and c0 + ww <= w
        cov[r0 : r0 + hh, c0 : c0 + ww] += 1
    assert (cov >= 1).all()
    for i in range(rows - 1):  # vertical neighbours in the first column
        a, b = wins[i * cols], wins[(i + 1) * cols]
        shared = int(a.row_off + a.height - b.row_off)
        assert shared == overlap or (shared < overlap and (b.row_off == 0 or a.row_off + a.height == h))


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
    lulc = torch.tensor(reg["LULC"].class_ids)[it["values"]["LULC"]]  # class = 1 + (row + col) % 9 at the same place
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

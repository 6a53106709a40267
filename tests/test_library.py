"""The clear-pixel library of cloud removal (cogen.library): hand-computed snaps, the seeded draw, the pipeline."""
import numpy as np
import pytest
import torch

from cogen.library import REACH, ClearLibrary


def test_snap_is_the_mean_of_the_k_nearest_spectra():
    lib = ClearLibrary(torch.tensor([[1.0, 1.0], [1.2, 1.2], [10.0, 10.0], [10.0, 12.0]]))
    q = torch.tensor([[1.05, 1.05], [9.0, 9.0]])
    torch.testing.assert_close(lib.snap(q, 1), torch.tensor([[1.0, 1.0], [10.0, 10.0]]))
    torch.testing.assert_close(lib.snap(q, 2), torch.tensor([[1.1, 1.1], [10.0, 11.0]]))
    # no clear spectrum within half its length (|q| = 30, nearest at 20.6): a surface the scene did not measure
    far = torch.tensor([[0.1, 30.0]])
    assert torch.equal(lib.snap(far, 1), far)
    assert lib.snap(far, 1, reach=1.0).tolist() == [[10.0, 12.0]]
    small = ClearLibrary(torch.tensor([[10.0, 10.0], [10.0, 12.0], [12.0, 10.0]]))
    torch.testing.assert_close(small.snap(torch.tensor([[10.5, 10.5]]), 99),  # k capped: the mean of all
                               torch.tensor([[32 / 3, 32 / 3]]))
    with pytest.raises(ValueError, match="spectra"):
        ClearLibrary(torch.empty(0, 2))


def test_snap_tiles_moves_generated_pixels_only(registry):
    mod = registry["S2L2A"]
    g = torch.Generator().manual_seed(0)
    spectra = torch.rand(5, mod.num_bands, generator=g) * 0.3 + 0.05
    lib = ClearLibrary(spectra)
    near = spectra[torch.randint(0, 5, (2 * 16,), generator=g)] + 0.005 * torch.randn(2 * 16, mod.num_bands, generator=g)
    x = mod.normalize(mod.from_physical(near.view(2, 4, 4, -1).permute(0, 3, 1, 2)))
    gen = torch.zeros(2, 4, 4, dtype=torch.bool)
    gen[0, 1:3, 1:3] = True
    out = lib.snap_tiles(x, gen, mod, 1)
    assert torch.equal(out[:, :, ~gen[0]][0], x[:, :, ~gen[0]][0]) and torch.equal(out[1], x[1])
    phys = mod.denormalize(out).permute(0, 2, 3, 1)[gen]  # every generated pixel is one library spectrum
    d = torch.cdist(phys, spectra).min(dim=1).values
    assert float(d.max()) < 1e-5


def test_library_draw_is_seeded_bounded_and_clear_only(registry):
    from cogen.pipeline import ArraySource

    rng = np.random.default_rng(0)
    H, W = 40, 30
    raw = (rng.random((12, H, W)) * 3000 + 1).astype(np.int16)
    raw[:, 0:3, 0:5] = -1  # out of the valid range: invalid
    mask = np.zeros((H, W), bool)
    mask[10:25, 5:20] = True
    src = ArraySource(registry["S2L2A"], raw)
    masked = lambda top, n: mask[top : top + n]
    clear = ~mask & (raw >= 0).all(0)
    truth = {tuple(v) for v in np.round(raw[:, clear].T * 1e-4, 6)}
    as_set = lambda lib: {tuple(v) for v in np.round(lib.spectra.numpy().astype(np.float64), 6)}
    full = ClearLibrary.from_source(src, masked, H, W, size=10_000, seed=0, block=7)  # blocks of 7 rows
    assert len(full) == clear.sum() and as_set(full) == truth
    a = ClearLibrary.from_source(src, masked, H, W, size=100, seed=0, block=7)
    b = ClearLibrary.from_source(src, masked, H, W, size=100, seed=0, block=7)
    c = ClearLibrary.from_source(src, masked, H, W, size=100, seed=1, block=7)
    assert len(a) == 100 and as_set(a) <= truth
    assert torch.equal(a.spectra, b.spectra) and not torch.equal(a.spectra, c.spectra)
    rows = np.nonzero(clear)[0]  # drawn from every part of the scene, not the first rows read
    drawn = np.abs((raw[:, clear].T * 1e-4)[None] - a.spectra.numpy()[:, None]).sum(-1).argmin(1)
    assert rows[drawn].max() > 30 and rows[drawn].min() < 10
    assert ClearLibrary.from_source(src, lambda top, n: np.ones((n, W), bool), H, W, 100, 0) is None


def test_cloud_removal_with_the_library_gives_measured_spectra(tiny_bundle, monkeypatch):
    """With one neighbour, every generated pixel of cloud removal has the 10 m bands of one of the clear spectra of
    the scene once every clear spectrum is within reach (at the default reach, the random model's far-off spectra
    keep their own); the 20 m / 60 m bands are then one value per native block; clear pixels stay exact; off (0)
    it is not; bad values are one-line errors."""
    from cogen.errors import ConfigError
    from cogen.options import SampleOptions
    from cogen.pipeline import CogenPipeline

    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    fine = [pipe.registry["S2L2A"].band_index(b) for b in ("B02", "B03", "B04", "B08")]  # 10 m: no blocks
    rng = np.random.default_rng(3)
    h = w = 32
    s2 = (rng.random((12, h, w)) * 3000 + 200).astype(np.int16)
    s1 = rng.normal(-12, 2, (2, h, w)).astype(np.float32)
    mask = np.zeros((h, w), bool)
    mask[6:20, 4:25] = True
    clear = {tuple(v) for v in s2[fine][:, ~mask].T}
    kw = dict(regenerate={"S2L2A": mask}, steps=3, samples=2, seed=0, tile=16, overlap=0, progress=False)
    got = {}
    for k, reach in ((0, REACH), (1, REACH), (1, 1e9)):
        monkeypatch.setattr("cogen.library.REACH", reach)
        res = pipe({"S2L2A": s2, "S1RTC": s1}, ["S2L2A"], library_neighbours=k, **kw)["S2L2A"]
        assert np.array_equal(res.sample[:, ~mask], (s2 * 1e-4)[:, ~mask].astype(np.float32))
        gen = np.round(res.sample[fine][:, mask] / 1e-4).astype(np.int64).T
        got[k, reach] = np.mean([tuple(v) in clear for v in gen])
    # everything within reach: all measured; the random model's far-off spectra keep their own at the default
    assert got[1, 1e9] == 1.0 and 0.8 < got[1, REACH] < 1.0 and got[0, REACH] < 0.05
    for bad in (-1, 2000, 1.5, True):
        with pytest.raises(ConfigError, match="library_neighbours"):
            SampleOptions(library_neighbours=bad)

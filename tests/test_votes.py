"""Spatial smoothing of class votes (cogen.votes) and its use in the sampler."""
import numpy as np
import pytest
import rasterio

from cogen.io import Grid, write_raster
from cogen.votes import VoteSmoother, radius, smooth_votes


def test_smooth_votes_hand_computed():
    """One isolated vote among its neighbours' is outvoted; a nodata pixel takes no part and is left alone;
    off (0) is the identity."""
    v = np.zeros((2, 5, 5), np.float32)
    v[0] = 1.0  # class 0 everywhere ...
    v[:, 2, 2] = (0.0, 1.0)  # ... but the centre voted class 1
    ok = np.ones((5, 5), bool)
    s = smooth_votes(v, ok, 1.0)
    g = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    g /= g.sum()
    # the centre keeps the weight of itself in the 2-D kernel: g[3]^2 (truncated at 3 sigma, but the 5x5 scene
    # cuts it at 2 px, so the valid weights are renormalised)
    w = g[1:6] / g[1:6].sum()
    assert s[1, 2, 2] == pytest.approx(w[2] ** 2, rel=1e-5)
    assert s[0, 2, 2] == pytest.approx(1 - w[2] ** 2, rel=1e-5)
    assert np.allclose(s.sum(0), 1.0, atol=1e-6)  # still a distribution
    assert s[:, 2, 2].argmax() == 0 and v[:, 2, 2].argmax() == 1
    # nodata: the pixel is left as it was and does not pull its neighbours
    ok2 = ok.copy()
    ok2[2, 2] = False
    s2 = smooth_votes(v, ok2, 1.0)
    assert np.array_equal(s2[:, 2, 2], v[:, 2, 2])
    assert np.allclose(s2[0][ok2], 1.0) and np.allclose(s2[1][ok2], 0.0)
    assert smooth_votes(v, ok, 0.0) is v
    assert radius(1.0) == 3 and radius(0.5) == 2 and radius(0) == 0
    with pytest.raises(ValueError, match="sigma"):
        smooth_votes(v, ok, 100.0)


@pytest.mark.parametrize("bands", [[7, 9, 4, 20], [1] * 40, [40], [3, 37]])
def test_streamed_smoothing_equals_whole_scene(bands):
    """Bands of rows in, each row out once, in order, equal to smoothing the whole scene at once."""
    rng = np.random.default_rng(0)
    H, W, C = sum(bands), 11, 4
    v = rng.dirichlet(np.ones(C), size=(H, W)).transpose(2, 0, 1).astype(np.float32)
    ok = rng.random((H, W)) > 0.1
    whole = smooth_votes(v, ok, 1.5)
    sm = VoteSmoother(1.5, H)
    got, nxt, top = [], 0, 0
    for n in bands:
        r0, s, o = sm.push(top, v[:, top : top + n], ok[top : top + n])
        assert r0 == nxt and s.shape[1] == o.shape[0]
        nxt += s.shape[1]
        got.append(s)
        top += n
    assert nxt == H
    assert np.allclose(np.concatenate(got, axis=1), whole, atol=1e-6)


def test_smoother_rejects_a_gap():
    """Bands that skip rows are a programming error, said as such."""
    sm = VoteSmoother(1.0, 10)
    v = np.full((2, 3, 4), 0.5, np.float32)
    sm.push(0, v, np.ones((3, 4), bool))
    with pytest.raises(ValueError, match="expected row 3"):
        sm.push(4, v, np.ones((3, 4), bool))


def test_pipeline_vote_sigma_matches_smoothing_its_votes(tmp_path, tiny_bundle, monkeypatch):
    """Segmentation with vote_sigma gives the majority of the smoothed votes of the same run without it, the
    same whichever tile and overlap stream it; the setting is checked; the CLI flag reaches the pipeline and the
    output keeps the input's grid."""
    import sample
    from cogen.errors import UsageError
    from cogen.pipeline import CogenPipeline

    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    rng = np.random.default_rng(5)
    h, w = 40, 24
    s2 = (rng.random((12, h, w)) * 3000 + 200).astype(np.int16)
    # the arrays placed where the GeoTIFF below lies on the map (Grid.anchor), so that its CLI run cuts the same
    # tiles and draws the same noise
    kw = dict(steps=2, samples=4, seed=0, progress=False, anchor=(-500000, 50000))
    lulc = pipe.registry["LULC"]
    captured = []
    flush = pipe._flush

    def capture(sources, targets, regenerate, writers, acc, wsum, info, top, n, W, samples, *rest):
        captured.append((acc["LULC"][:, :n, :W] / wsum[:n, :W][None]).copy())
        flush(sources, targets, regenerate, writers, acc, wsum, info, top, n, W, samples, *rest)

    monkeypatch.setattr(pipe, "_flush", capture)
    pipe.vote_sigma = 0.0
    plain = pipe({"S2L2A": s2}, ["LULC"], tile=16, overlap=0, **kw)["LULC"]
    votes = np.concatenate(captured, axis=1)
    assert np.array_equal(np.asarray(lulc.class_ids)[votes.argmax(0)], plain.classes)
    want = smooth_votes(votes, np.ones((h, w), bool), 1.0)
    pipe.vote_sigma = 1.0
    for tile, overlap in ((16, 0), (8, 0)):
        captured.clear()
        res = pipe({"S2L2A": s2}, ["LULC"], tile=tile, overlap=overlap, **kw)["LULC"]
        if tile == 16:
            assert np.array_equal(res.classes, np.asarray(lulc.class_ids)[want.argmax(0)])
            assert np.allclose(res.confidence, want.max(0), atol=1e-6)
            assert (res.classes != plain.classes).any()  # it does something on these random votes
        assert res.classes.shape == (h, w) and np.isfinite(res.confidence).all()
    for bad in (-1, 17, True, "1"):
        with pytest.raises(UsageError, match="vote sigma"):
            pipe.vote_sigma = bad

    tr = rasterio.transform.from_origin(500000.0, 5000000.0, 10, 10)
    p2 = write_raster(tmp_path / "s2.tif", s2, "EPSG:32633", tr)
    out = tmp_path / "seg"
    args = ["segment", "--input", f"S2L2A={p2}", "--checkpoint", tiny_bundle, "--out", out, "--steps", "2",
            "--samples", "4", "--tile", "16", "--overlap", "0", "--quiet", "--vote-sigma", "1"]
    assert sample.main([str(a) for a in args]) == 0
    assert Grid.of(p2).anchor() == kw["anchor"]
    with rasterio.open(out / "LULC.tif") as o:
        assert o.crs.to_string() == "EPSG:32633" and o.transform == tr
        assert np.array_equal(o.read(1), np.asarray(lulc.class_ids)[want.argmax(0)])

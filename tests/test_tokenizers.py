import pytest
import torch

from cogen.tokenizers import CategoricalTokenizer, PatchTokenizer, Tokenizer, tokenizer_for
from cogen.tokenizers.vae import VAETokenizer


def test_patch_round_trip_is_exact(registry):
    tok = tokenizer_for(registry["S2L2A"])
    assert isinstance(tok, PatchTokenizer)
    x = torch.randn(2, 12, 9, 13, generator=torch.Generator().manual_seed(0))
    assert torch.equal(tok.decode(tok.encode(x)), x) and tok.latent_shape(9, 13) == (12, 9, 13)


def test_categorical_round_trip_is_exact_and_nodata_is_masked(registry):
    tok = tokenizer_for(registry["LULC"])
    assert isinstance(tok, CategoricalTokenizer)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, 9, (3, 11, 7), generator=g)
    idx[0, 0, 0] = -1  # nodata
    z = tok.encode(idx)
    assert z.shape == (3, 9, 11, 7) and set(z.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert (z[0, :, 0, 0] == 0).all()  # nodata is no class
    back = tok.decode(z)
    ok = idx >= 0
    assert torch.equal(back[ok], idx[ok])
    assert tok.latent_valid(ok).equal(ok)


@pytest.mark.parametrize("h,w", [(16, 16), (17, 23), (9, 8)])
def test_vae_shapes_follow_the_downsampling(h, w):
    tok = VAETokenizer("S2L2A", 12, latent_channels=3, block_out_channels=(16, 16, 16), norm_num_groups=8).eval()
    assert tok.downsample == 4
    x = torch.randn(2, 12, h, w)
    z = tok.encode(x)
    assert tuple(z.shape[1:]) == tok.latent_shape(h, w) == (3, -(-h // 4), -(-w // 4))
    assert tok.decode(z, (h, w)).shape == x.shape
    valid = torch.ones(2, h, w, dtype=torch.bool)
    valid[0, 0, 0] = False
    lv = tok.latent_valid(valid)
    assert lv.shape == (2, -(-h // 4), -(-w // 4)) and not lv[0, 0, 0] and lv[1].all()


def test_save_load_identical_outputs(tmp_path):
    tok = VAETokenizer("S1RTC", 2, latent_channels=2, block_out_channels=(8, 8), norm_num_groups=4).eval()
    tok.scale_factor.fill_(0.7)
    tok.save(tmp_path)
    back = Tokenizer.load(tmp_path, "S1RTC").eval()
    x = torch.randn(1, 2, 12, 12)
    assert torch.equal(back.encode(x), tok.encode(x)) and torch.equal(back.decode(tok.encode(x)), tok.decode(tok.encode(x)))
    cat = CategoricalTokenizer("LULC", 9)
    cat.save(tmp_path)
    assert isinstance(Tokenizer.load(tmp_path, "LULC"), CategoricalTokenizer)


def test_measured_scale_gives_unit_variance_latents(synth_root, registry):
    from cogen.data import SceneDataset, collate_scenes

    ds = SceneDataset(synth_root, modalities=["S2L2A"], crop=16, length=32, seed=0)
    batches = [collate_scenes([ds[i] for i in range(j, j + 8)], ["S2L2A"])["values"]["S2L2A"] for j in range(0, 32, 8)]
    torch.manual_seed(0)
    tok = VAETokenizer("S2L2A", 12, latent_channels=4, block_out_channels=(16, 16), norm_num_groups=8).eval()
    with torch.no_grad():
        for p in tok.parameters():  # make the raw latents far from unit scale
            p.mul_(3.0)
    tok.measure_scale(batches)
    with torch.no_grad():
        z = torch.cat([tok.encode(b) for b in batches])
    assert 0.8 <= float(z.std()) <= 1.2 and abs(float(z.mean())) < 0.2


def test_linear_path_starts_as_block_pca_and_survives_save_load(tmp_path):
    from cogen.tokenizers.linear import BlockPCA

    g = torch.Generator().manual_seed(0)
    train = [torch.randn(12, 24, 28, generator=g) for _ in range(4)]
    tok = VAETokenizer("S2L2A", 12, latent_channels=8, block_out_channels=(16, 16), norm_num_groups=8, linear=True).eval()
    tok.fit_linear(train)
    x = torch.randn(2, 12, 16, 12, generator=g)
    ref = torch.stack([BlockPCA(train, 2, 8).round_trip(xi) for xi in x])
    torch.testing.assert_close(tok.decode(tok.encode(x)), ref, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # after training the residual branch is not zero: it must travel with the weights
        tok.vae.decoder.conv_out.bias.fill_(0.1)
    tok.measure_scale([x])
    with torch.no_grad():
        z = tok.encode(x)
    assert 0.8 <= float(z.std()) <= 1.2
    tok.save(tmp_path)
    back = Tokenizer.load(tmp_path, "S2L2A").eval()
    with torch.no_grad():
        assert back.linear and torch.equal(back.encode(x), z) and torch.equal(back.decode(z), tok.decode(z))
    with pytest.raises(ValueError, match="linear=True"):
        VAETokenizer("S2L2A", 12, 4, (16, 16), norm_num_groups=8).fit_linear(train)


@pytest.mark.parametrize("extra", [["tokenizer.linear=false"], [],
                                   ["tokenizer.adv_weight=0.1", "tokenizer.adv_start=3", "tokenizer.edge_weight=1.0",
                                    "train.log_every=1"]])
def test_vae_tokenizer_stage_trains_and_resumes(tmp_path, extra):
    """A plain VAE and one with a linear path, and the optional edge and adversarial terms (the critic resumes
    with the rest)."""
    import subprocess
    import sys

    from conftest import ROOT

    cmd = [sys.executable, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "vae_s2l2a.yaml"),
           f"train.out_dir={tmp_path}", "train.steps=4", "train.ckpt_every=2", "tokenizer.scale_batches=1",
           *extra, "optim.batch_size=2", "data.crop=16", "tokenizer.block_out_channels=[8,8]", "tokenizer.norm_num_groups=4"]
    env = {**__import__("os").environ, "WANDB_MODE": "disabled"}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    r = subprocess.run([*cmd, "train.steps=6"], cwd=ROOT, env=env, check=True, capture_output=True, text=True,
                       timeout=300)  # the last override wins
    assert "resumed from" in r.stderr + r.stdout
    tok = Tokenizer.load(tmp_path / "tokenizer", "S2L2A")
    assert isinstance(tok, VAETokenizer) and float(tok.scale_factor) != 1.0
    assert tok.linear == ("tokenizer.linear=false" not in extra)
    if "tokenizer.adv_weight=0.1" in extra:  # the critic trained from step 3 on, in both runs
        import json

        logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert any("critic_loss" in r for r in logged)
    if tok.linear:  # fit on the training split, orthonormal columns
        torch.testing.assert_close(tok.lin_basis.T @ tok.lin_basis, torch.eye(tok.latent_channels), atol=1e-4, rtol=0)


def test_block_pca_reference_is_exact_at_full_rank_and_worse_with_fewer_components():
    from cogen.tokenizers.linear import BlockPCA

    g = torch.Generator().manual_seed(0)
    train = [torch.randn(3, 10, 12, generator=g) for _ in range(4)]
    x = torch.randn(3, 9, 7, generator=g)  # odd sizes: the ragged edge is copied through
    full = BlockPCA(train, factor=2, k=12)
    torch.testing.assert_close(full.round_trip(x), x, atol=1e-5, rtol=1e-5)
    errs = [float(((BlockPCA(train, 2, k).round_trip(x) - x) ** 2).mean()) for k in (12, 8, 4, 1)]
    assert errs[0] < 1e-9 and errs[1] < errs[2] < errs[3], errs
    rough = BlockPCA(train, 2, 1).round_trip(x)
    torch.testing.assert_close(rough[:, 8:, :], x[:, 8:, :])  # last row and column: outside whole blocks
    torch.testing.assert_close(rough[:, :, 6:], x[:, :, 6:])


def test_tokenizer_report_scores_a_linear_vae_at_init_as_its_block_pca_reference(tmp_path):
    """The report's references are computed independently of the tokenizer: a linear-path VAE whose residual
    branch is still zero must score exactly as the block PCA row, and the bicubic row stores as many values."""
    import json

    from conftest import SHIPPED

    from cogen.evaluate import Split
    from cogen.registry import default_registry
    from cogen.tokenizers.evaluate import main

    reg = default_registry()
    arrays = [x for x, _ in Split(SHIPPED, reg, "configs/split.yaml", "train", ["S2L2A"]).model_space("S2L2A")]
    torch.manual_seed(0)
    tok = VAETokenizer("S2L2A", 12, latent_channels=8, block_out_channels=(8, 8), norm_num_groups=4, linear=True)
    tok.fit_linear(arrays)
    tok.save(tmp_path / "lin")
    main(["--tokenizer", str(tmp_path / "lin"), "--modality", "S2L2A", "--data", str(SHIPPED), "--split-file",
          "configs/split.yaml", "--json", str(tmp_path / "r.json"), "--out", str(tmp_path / "r.md"),
          "--figure", str(tmp_path / "r.png")])
    (r,) = json.loads((tmp_path / "r.json").read_text())
    assert abs(r["tokenizer_scores"]["PSNR"] - r["block_pca_scores"]["PSNR"]) < 1e-3
    assert r["compression_tokenizer"] == 6.0 and abs(r["compression_bicubic"] - 6.0) < 0.5
    assert r["tokenizer_scores"]["PSNR"] > r["bicubic_scores"]["PSNR"]  # the linear code beats resampling here
    assert (tmp_path / "r.md").read_text().count("| bicubic down/up |") == 1
    assert (tmp_path / "r.png").stat().st_size > 10_000
    again = ["--tokenizer", str(tmp_path / "lin"), "--modality", "S2L2A", "--data", str(SHIPPED), "--split-file",
             "configs/split.yaml", "--json", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit) as e:  # an existing file is replaced only when asked
        main(again)
    assert e.value.code == 2

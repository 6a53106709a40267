"""train.py end to end with the tiny config: resume after SIGKILL, 2-process accelerate, NaN handling."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT

PY = sys.executable
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_train(out, *over, check=True, timeout=300, config=ROOT / "configs" / "tiny.yaml"):
    cmd = [PY, str(ROOT / "train.py"), "--config", str(config), f"train.out_dir={out}",
           "train.log_every=1", "train.eval_every=0", *over]
    return subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, check=check, timeout=timeout)


def losses(out) -> dict[int, float]:
    d = {}
    for line in (Path(out) / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "loss" in r:
            d[r["step"]] = r["loss"]  # the last record of a step wins (a resumed run rewrites it)
    return d


def test_sigkill_then_resume_continues_exactly(tmp_path):
    steps = ["train.steps=60", "train.ckpt_every=4", "train.keep_last=2"]
    ref = tmp_path / "ref"
    run_train(ref, *steps)
    ref_losses = losses(ref)

    out = tmp_path / "killed"
    cmd = [PY, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.yaml"), f"train.out_dir={out}",
           "train.log_every=1", "train.eval_every=0", *steps]
    p = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.time()
    while not list((out / "checkpoints").glob("step-*")) and time.time() - t0 < 120:
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    cks = sorted((out / "checkpoints").glob("step-*"))
    assert cks, "no checkpoint before the kill"
    from cogen.checkpoint import verify

    for ck in cks:  # every checkpoint that looks finished is complete
        verify(ck)
    r = run_train(out, *steps)
    assert "resumed from" in r.stderr + r.stdout
    resumed_at = int(json.loads((out / "checkpoints" / sorted(p.name for p in (out / "checkpoints").glob("step-*"))[-1]
                                 / "state.json").read_text())["step"])
    assert resumed_at == 60
    got = losses(out)
    assert set(got) == set(ref_losses)
    for s in ref_losses:
        assert got[s] == pytest.approx(ref_losses[s], rel=1e-5, abs=1e-7), s


def test_nonfinite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "nan"
    # an absurd learning rate: the first update makes the weights huge, the next loss overflows
    r = run_train(out, "train.steps=8", "optim.lr=1.0e+30", "optim.warmup_steps=0", "optim.grad_clip=0",
                  "train.ckpt_every=1", check=False)
    assert r.returncode == 2 and "non-finite" in r.stderr and "last good checkpoint" in r.stderr
    good = sorted((out / "checkpoints").glob("step-*"))
    from cogen.checkpoint import load_bundle

    for ck in sorted((out / "checkpoints").glob("step-*")):
        b = load_bundle(ck / "ema")
        import torch

        assert all(torch.isfinite(p).all() for p in b.model.parameters())
    assert good and int(good[-1].name.split("-")[1]) < 8  # stopped early, earlier checkpoints kept

    r = run_train(tmp_path / "skip", "train.steps=6", "optim.lr=1.0e+30", "optim.warmup_steps=0",
                  "optim.grad_clip=0", "train.on_nonfinite=skip", check=False)
    assert r.returncode == 0 and "step skipped" in r.stderr + r.stdout


def test_unknown_config_key_is_an_error(tmp_path):
    r = run_train(tmp_path / "x", "train.stepz=3", check=False)
    assert r.returncode == 2 and "unknown config key train.stepz" in r.stderr


def test_accelerate_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    cmd = [PY, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "train.py"), "--config",
           str(ROOT / "configs" / "tiny.yaml"), f"train.out_dir={out}", "train.steps=4", "train.ckpt_every=2",
           "train.eval_every=2", "train.log_every=1", "train.audit=true"]
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    # each process trained on its own crops and ended every step with the same weights
    audit = [[json.loads(l) for l in (out / "audit" / f"rank-{i}.jsonl").read_text().splitlines()] for i in (0, 1)]
    seen = [{tuple(x) for rec in a for x in rec["samples"]} for a in audit]
    assert len(seen[0]) == len(seen[1]) == 16 and not seen[0] & seen[1]
    assert [rec["weights"] for rec in audit[0]] == [rec["weights"] for rec in audit[1]]
    ck = sorted((out / "checkpoints").glob("step-*"))[-1]
    assert ck.name == "step-000004"
    assert (ck / "state" / "random_states_1.pkl").is_file()  # both processes' RNG states are kept
    recs = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in recs if "loss" in r] == [1, 2, 3, 4]  # one writer: the main process
    from cogen.checkpoint import load_bundle

    load_bundle(ck / "ema")


def test_trains_on_vae_latents_and_the_bundle_carries_the_tokenizer(tmp_path):
    """A modality switched to a VAE tokenizer in a copy of the registry: train.py trains on its latents (patch 1
    on the 1/2-resolution grid) and the EMA bundle holds the tokenizer, so sampling needs nothing else."""
    import torch
    import yaml

    from cogen.checkpoint import load_bundle
    from cogen.tokenizers.vae import VAETokenizer

    torch.manual_seed(0)
    vae = VAETokenizer("S2L2A", 12, latent_channels=6, block_out_channels=(8, 8), norm_num_groups=4, linear=True)
    vae.fit_linear([torch.randn(12, 16, 16, generator=torch.Generator().manual_seed(1)) for _ in range(3)])
    vae.save(tmp_path / "vae")
    reg = yaml.safe_load((ROOT / "configs" / "modalities.yaml").read_text())
    reg["modalities"]["S2L2A"]["tokenizer"] = {"path": str(tmp_path / "vae")}
    (tmp_path / "modalities.yaml").write_text(yaml.safe_dump(reg, sort_keys=False))
    out = tmp_path / "run"
    run_train(out, "train.steps=2", f"data.registry={tmp_path / 'modalities.yaml'}", "model.patch_sizes={S2L2A: 1}")
    assert all(v == v for v in losses(out).values()) and len(losses(out)) == 2
    b = load_bundle(out / "checkpoints" / "step-000002" / "ema")
    tok = b.tokenizers["S2L2A"]
    assert isinstance(tok, VAETokenizer) and tok.linear and torch.equal(tok.lin_basis, vae.lin_basis)
    assert b.model.patch_size("S2L2A") == 1


def test_apply_overrides_parses_and_checks_like_the_command_line():
    from cogen.config import apply_overrides, load_config
    from cogen.errors import ConfigError

    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    out = apply_overrides(cfg, ["sample.tiles={default: [32, 8], S2L2A: [64, 16]}", "sample.strength=0.3"])
    assert out.sample.tiles == {"default": [32, 8], "S2L2A": [64, 16]} and out.sample.strength == 0.3
    assert out.model == cfg.model
    with pytest.raises(ConfigError, match="unknown config key sample.tile_by_target"):
        apply_overrides(cfg, ["sample.tile_by_target={S2L2A: [64, 16]}"])
    with pytest.raises(ConfigError, match="sample.tiles"):
        apply_overrides(cfg, ["sample.tiles=big"])
    for bad, match in [("sample.final_denoise=1.0", "final_denoise=1.0: must be a model time"),
                       ("sample.strength=0", "strength=0.0: must be above 0"),
                       ("sample.tiles={default: [32, 40]}", "tiles.default=.32, 40.: expected .TILE, OVERLAP.")]:
        with pytest.raises(ConfigError, match=match):  # the sample options are checked when the config is read
            apply_overrides(cfg, [bad])


def test_class_balance_weights_the_land_cover_loss(tmp_path):
    """train.class_balance logs the class weights and changes the loss; a negative power is an error."""
    plain = run_train(tmp_path / "a", "train.steps=2", "train.ckpt_every=2")
    bal = run_train(tmp_path / "b", "train.steps=2", "train.ckpt_every=2", "train.class_balance=0.5")
    assert "LULC class weights: water" in bal.stderr + bal.stdout
    assert losses(tmp_path / "a") != losses(tmp_path / "b")
    bad = run_train(tmp_path / "c", "train.steps=1", "train.class_balance=-1", check=False)
    assert bad.returncode != 0 and "train.class_balance=-1" in bad.stderr


def test_dark_weight_weights_the_spectral_loss(tmp_path):
    """train.dark_weight logs the reference brightness of each spectral modality and changes the loss; a cap
    below 1, or the regression objective, is a one-line error."""
    plain = run_train(tmp_path / "a", "train.steps=2", "train.ckpt_every=2")
    dark = run_train(tmp_path / "b", "train.steps=2", "train.ckpt_every=2", "train.dark_weight=8")
    out = dark.stderr + dark.stdout
    assert "dark-pixel weighting (cap 8) for S2L2A (b_ref" in out
    assert "dark-pixel" not in plain.stderr + plain.stdout
    assert losses(tmp_path / "a") != losses(tmp_path / "b")
    bad = run_train(tmp_path / "c", "train.steps=1", "train.dark_weight=0.5", check=False)
    assert bad.returncode != 0 and "train.dark_weight=0.5" in bad.stderr
    reg = run_train(tmp_path / "d", "train.steps=1", "train.dark_weight=8", "train.objective=regression", check=False)
    assert reg.returncode != 0 and "train.dark_weight is for the diffusion objective" in reg.stderr


def test_every_shipped_training_config_loads():
    """A key renamed in cogen.config must not leave a shipped config behind (configs/ holds registry, split and
    statistics files too; those have no `train` section and other loaders)."""
    import yaml

    from cogen.config import load_stages

    trained = [p for p in sorted((ROOT / "configs").glob("*.yaml")) if "train" in (yaml.safe_load(p.read_text()) or {})]
    assert [p.name for p in trained] == ["demo.yaml", "regression.yaml", "tiny.yaml", "vae_s2l2a.yaml"]
    for p in trained:
        for _, cfg in load_stages(p):
            assert cfg.train.steps > 0 and cfg.optim.lr > 0, p.name


def test_demo_config_reproduces_the_shipped_model():
    """Stage `places` of configs/demo.yaml is the config checkpoints/demo was trained and ships with: data,
    model, diffusion, roles, optimiser, training objective and loss weights, and the sampling defaults (only
    the paths and the machine's threads differ: the shipped run wrote elsewhere and started from the bundle then
    shipped; it was stopped by hand at the step the stage's stop_at names). The stage after it, `context`, is
    trained and measured (docs/TRAINING.md) and not shipped yet."""
    from cogen.config import config_from_dict, load_stages

    stages = load_stages(ROOT / "configs" / "demo.yaml")
    assert [n for n, _ in stages] == ["base", "partial", "balanced", "dark", "places", "context"]
    places = dict(stages)["places"]
    got = places.to_dict()
    shipped = json.loads((ROOT / "checkpoints" / "demo" / "cogen.json").read_text())
    want = config_from_dict(shipped["config"]).to_dict()
    assert shipped["step"] == places.train.final_step() == 800
    for d in (got, want):
        for k in ("out_dir", "init_from", "threads", "stop_at"):
            del d["train"][k]
    assert got == want and got["sample"]["tiles"]["S2L2A"] == [64, 16]  # the sampling defaults are in it
    # the chain: each fine-tune starts from the final EMA weights of the stage before (partial stops at 1800)
    assert [c.train.init_from for _, c in stages] == [None, "runs/demo/base/checkpoints/step-005000/ema",
                                                      "runs/demo/partial/checkpoints/step-001800/ema",
                                                      "runs/demo/balanced/checkpoints/step-001500/ema",
                                                      "runs/demo/dark/checkpoints/step-001200/ema",
                                                      "runs/demo/places/checkpoints/step-000800/ema"]


def test_stages_resolve_over_the_base_and_the_command_line():
    from cogen.config import resolve_stages
    from cogen.errors import ConfigError

    d = {"optim": {"lr": 1e-3, "batch_size": 4}, "train": {"out_dir": "runs/x", "seed": 1},
         "stages": [{"name": "a", "steps": 10, "train": {"stop_at": 6}},
                    {"name": "b", "steps": 20, "optim": {"lr": 1e-4}, "train": {"seed": 2}}]}
    (na, a), (nb, b) = resolve_stages(d, ["train.threads=2", "train.out_dir=runs/y"])
    assert (na, nb) == ("a", "b") and (a.train.steps, a.train.final_step(), b.train.steps) == (10, 6, 20)
    assert (a.optim.lr, b.optim.lr, a.optim.batch_size, b.optim.batch_size) == (1e-3, 1e-4, 4, 4)  # over the base
    assert (a.train.seed, b.train.seed, a.train.threads, b.train.threads) == (1, 2, 2, 2)
    assert (a.train.out_dir, b.train.out_dir) == ("runs/y/a", "runs/y/b")
    assert (a.train.init_from, b.train.init_from) == (None, "runs/y/a/checkpoints/step-000006/ema")
    assert resolve_stages(d, ["train.steps=3"])[1][1].train.steps == 3  # the command line wins
    assert [n for n, _ in resolve_stages({"train": {"steps": 5}})] == [None]  # no stages: one plain run
    for bad, match in [([{"steps": 3}], "stages.0.: expected"), ([{"name": "a/b", "steps": 3}], "folder name"),
                       ([{"name": "a", "steps": 3}, {"name": "a", "steps": 3}], "a second stage named 'a'"),
                       ([{"name": "a", "steps": 0}], "stage a: train.steps=0"), ("a", "expected a list")]:
        with pytest.raises(ConfigError, match=match):
            resolve_stages({"stages": bad})


def test_stages_run_in_order_resume_and_skip_when_done(tmp_path):
    """A stage stopped by its time budget ends the command; the same command resumes it to its end (here
    train.stop_at), then runs the next from its final EMA weights; once all are done, running it again trains
    nothing."""
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "tiny.yaml").read_text())
    cfg["stages"] = [{"name": "a", "steps": 3, "train": {"stop_at": 2}}, {"name": "b", "steps": 2, "train": {"seed": 1}}]
    path = tmp_path / "staged.yaml"
    path.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    first = run_train(out, "train.ckpt_every=1", "train.max_minutes=0.00001", config=path)
    assert "stage a stopped at step 1 of 2" in first.stdout and not (out / "b").exists()
    second = run_train(out, "train.ckpt_every=1", config=path)
    assert "resumed from" in second.stdout + second.stderr
    b = json.loads((out / "b" / "config.json").read_text())["train"]
    assert b["init_from"] == str(out / "a" / "checkpoints" / "step-000002" / "ema") and b["seed"] == 1
    for stage in ("a", "b"):  # a stopped at train.stop_at, before the end of its 3-step schedule
        assert sorted(p.name for p in (out / stage / "checkpoints").iterdir())[-1] == "step-000002"
    third = run_train(out, "train.ckpt_every=1", config=path)
    assert "stage a: done" in third.stdout and "stage b: done" in third.stdout and "resumed" not in third.stdout


def test_wandb_run_id_is_the_same_in_every_process(tmp_path):
    """A resumed run reattaches to its wandb run: the id is a digest of the resolved folder, not `hash()` (which
    changes between processes)."""
    from train import wandb_run_id

    code = "import sys; from pathlib import Path; from train import wandb_run_id; print(wandb_run_id(Path(sys.argv[1])))"
    ids = {subprocess.run([PY, "-c", code, str(tmp_path / "run")], cwd=ROOT, capture_output=True, text=True, check=True,
                          env={**ENV, "PYTHONHASHSEED": seed}).stdout.strip() for seed in ("1", "2")}
    assert ids == {wandb_run_id(tmp_path / "run")}
    assert wandb_run_id(tmp_path / "run").startswith("run-") and wandb_run_id(tmp_path / "other") != ids.pop()


def test_the_shipped_bundle_loads_from_any_working_directory(tmp_path, monkeypatch):
    """The demo model trained on several dataset folders (relative paths in its config): loading it for sampling
    elsewhere must not ask for them, while a training config still checks that its folders exist."""
    from cogen.checkpoint import load_bundle
    from cogen.config import load_stages
    from cogen.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    assert isinstance(load_bundle(ROOT / "checkpoints" / "demo").config.data.root, list)
    with pytest.raises(ConfigError, match="a list of files is for Parquet shards"):
        load_stages(ROOT / "configs" / "demo.yaml")


def test_quadrant_batches_train_at_half_the_crop(tmp_path):
    """data.p_quadrants=1: every batch of 16 px crops is cut into 8 px quadrants (four times the batch, the audit
    names each quadrant's window); validation runs on the quadrants' size; values it cannot use are refused."""
    run_train(tmp_path / "q", "train.steps=2", "train.ckpt_every=2", "train.audit=true", "data.p_quadrants=1.0",
              "train.eval_every=2", "optim.batch_size=2")
    steps = [json.loads(x) for x in (tmp_path / "q" / "audit" / "rank-0.jsonl").read_text().splitlines()]
    windows = [s[1:] for s in steps[0]["samples"]]
    assert len(windows) == 8 and all(w[2:] == [8, 8] for w in windows)
    assert {(w[0] - windows[0][0], w[1] - windows[0][1]) for w in windows[:4]} == {(0, 0), (0, 8), (8, 0), (8, 8)}
    assert any("val_loss" in json.loads(x) for x in (tmp_path / "q" / "metrics.jsonl").read_text().splitlines())
    for over, match in [("data.p_quadrants=1.5", "data.p_quadrants=1.5: must be a probability"),
                        ("data.crop=12", "data.crop=12 must be a multiple of twice the patch size")]:
        bad = run_train(tmp_path / "b", "train.steps=1", "data.p_quadrants=0.5", over, check=False)
        assert bad.returncode != 0 and match in bad.stderr

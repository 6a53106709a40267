"""CUDA checks (marker `cuda`): skipped on a machine without a CUDA device; scripts/gpu_check.sh runs them
(`pytest -m cuda`) on a GPU machine. Written without a GPU at hand: the tolerances are first guesses, to be
confirmed by the first run there."""
import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]
MODS = ["S2L2A", "S1RTC", "DEM", "LULC"]


def model_and_inputs(size="small", batch=4, px=32, seed=0):
    """A `size` model over four modalities with perturbed weights (a fresh adaLN-Zero model outputs zeros) on
    cuda, and seeded inputs for it: all four noised at their own times."""
    from cogen.models.transformer import build_model
    from cogen.registry import default_registry

    reg = default_registry()
    torch.manual_seed(seed)
    model = build_model(size, {m: {"channels": reg[m].channels, "patch_size": 4} for m in MODS})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    g = torch.Generator().manual_seed(seed)
    x = {m: torch.randn(batch, reg[m].channels, px, px, generator=g).cuda() for m in MODS}
    t = {m: torch.rand(batch, generator=g).cuda() for m in MODS}
    return model.cuda().eval(), x, t


def rel_err(a: dict, b: dict) -> float:
    num = sum(float((a[m].float() - b[m].float()).pow(2).sum()) for m in a)
    return (num / sum(float(b[m].float().pow(2).sum()) for m in b)) ** 0.5


@torch.no_grad()
def test_forward_in_bf16_autocast_is_close_to_fp32():
    model, x, t = model_and_inputs()
    ref = model(x, t)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = model(x, t)
    assert all(torch.isfinite(v).all() for v in out.values())
    assert rel_err(out, ref) < 0.05  # bf16 keeps 8 bits of mantissa: about 0.4% a value, more through 8 blocks


@torch.no_grad()
def test_sdpa_and_xformers_attention_agree():
    pytest.importorskip("xformers.ops")
    model, x, t = model_and_inputs()
    outs = {}
    for backend in ("sdpa", "xformers"):
        for blk in model.blocks:
            blk.attn.backend = backend
        outs[backend] = model(x, t)
    assert rel_err(outs["xformers"], outs["sdpa"]) < 1e-3


def test_a_bf16_training_step_on_cuda_has_finite_gradients():
    from cogen.diffusion import Diffusion, RoleConfig
    from cogen.diffusion.loss import diffusion_loss

    model, x, _ = model_and_inputs(batch=8)
    model.train()
    ok = {m: torch.ones(8, 32, 32, dtype=torch.bool, device="cuda") for m in MODS}
    present = {m: torch.ones(8, dtype=torch.bool) for m in MODS}
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss, _ = diffusion_loss(model, x, ok, present, Diffusion(), RoleConfig(), torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_the_pipeline_on_cuda_matches_cpu(tiny_bundle):
    """Noise is drawn on the CPU from seeded generators, so both devices sample from the same noise: only float
    arithmetic differs."""
    from cogen.data.synthetic import make_scene
    from cogen.pipeline import CogenPipeline

    sc = make_scene(48, 48, seed=1)["rasters"]
    kw = dict(steps=3, seed=0, tile=16, overlap=4, progress=False)
    out = {d: CogenPipeline.from_checkpoint(tiny_bundle, d)({"S1RTC": sc["S1RTC"]}, ["S2L2A"], **kw)["S2L2A"].sample
           for d in ("cpu", "cuda")}
    assert np.isfinite(out["cuda"]).all()
    assert float(np.abs(out["cuda"] - out["cpu"]).max()) < 1e-3  # reflectance

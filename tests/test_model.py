import pytest
import torch

from cogen.diffusion import ABSENT, CONDITION, TARGET, Diffusion, RoleConfig, sample_roles
from cogen.diffusion.loss import diffusion_loss
from cogen.diffusion.roles import sample_times
from cogen.models.transformer import build_model

SPEC = {"A": {"channels": 3, "patch_size": 2}, "B": {"channels": 2, "patch_size": 2}, "C": {"channels": 4, "patch_size": 4}}


def tiny(seed=0):
    torch.manual_seed(seed)
    m = build_model("tiny", SPEC)
    with torch.no_grad():  # leave the zero-initialised start so outputs depend on inputs
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m.eval()


def inputs(B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"A": torch.randn(B, 3, 8, 8, generator=g), "B": torch.randn(B, 2, 8, 8, generator=g),
            "C": torch.randn(B, 4, 8, 8, generator=g)}


def test_changing_one_time_changes_that_modality_and_the_others():
    m, x = tiny(), inputs()
    t = {"A": torch.zeros(2), "B": torch.full((2,), 0.5), "C": torch.full((2,), 0.5)}
    o1 = m(x, t)
    o2 = m(x, {**t, "B": torch.full((2,), 0.9)})
    assert (o1["B"] - o2["B"]).abs().max() > 1e-3  # its own output
    assert (o1["A"] - o2["A"]).abs().max() > 1e-5  # the others', through attention
    assert (o1["C"] - o2["C"]).abs().max() > 1e-5


def test_absent_modality_has_no_influence():
    m, x = tiny(), inputs()
    t = {k: torch.full((2,), 0.3) for k in x}
    dropped = m({"A": x["A"], "C": x["C"]}, {"A": t["A"], "C": t["C"]})
    assert "B" not in dropped
    present = {"A": torch.ones(2, dtype=torch.bool), "B": torch.zeros(2, dtype=torch.bool), "C": torch.ones(2, dtype=torch.bool)}
    masked = m(x, t, present)
    x2 = {**x, "B": x["B"] * 100 + 7}
    masked2 = m(x2, {**t, "B": torch.full((2,), 0.9)}, present)
    for k in ("A", "C"):
        torch.testing.assert_close(masked[k], dropped[k], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(masked2[k], dropped[k], atol=1e-5, rtol=1e-5)


def test_per_sample_absence_in_a_batch():
    m, x = tiny(), inputs()
    t = {k: torch.full((2,), 0.3) for k in x}
    present = {"A": torch.tensor([True, True]), "B": torch.tensor([True, False]), "C": torch.tensor([True, True])}
    out = m(x, t, present)
    alone = m({"A": x["A"][1:], "C": x["C"][1:]}, {"A": t["A"][1:], "C": t["C"][1:]})
    torch.testing.assert_close(out["A"][1:], alone["A"], atol=1e-5, rtol=1e-5)
    with_b = m({k: v[:1] for k, v in x.items()}, {k: v[:1] for k, v in t.items()})
    torch.testing.assert_close(out["A"][:1], with_b["A"], atol=1e-5, rtol=1e-5)


def test_odd_sizes_and_unknown_modalities_are_errors():
    from cogen.errors import ConfigError

    m = tiny()
    with pytest.raises(ConfigError, match="multiple of its patch"):
        m({"A": torch.randn(1, 3, 7, 8)}, {"A": torch.zeros(1)})
    with pytest.raises(ConfigError, match="does not know"):
        m({"Z": torch.randn(1, 3, 8, 8)}, {"Z": torch.zeros(1)})


def test_save_and_load_pretrained(tmp_path):
    from cogen.models import CogenTransformer

    m, x = tiny(), inputs()
    t = {k: torch.full((2,), 0.3) for k in x}
    m.save_pretrained(tmp_path / "m")
    m2 = CogenTransformer.from_pretrained(tmp_path / "m").eval()
    torch.testing.assert_close(m(x, t)["A"], m2(x, t)["A"])


def test_missing_modality_is_never_condition_or_target():
    g = torch.Generator().manual_seed(0)
    present = {"A": torch.rand(4000, generator=g) < 0.7, "B": torch.rand(4000, generator=g) < 0.5,
               "C": torch.ones(4000, dtype=torch.bool)}
    roles = sample_roles(present, RoleConfig(), g)
    for m in present:
        assert (roles[m][~present[m]] == ABSENT).all()
        assert (roles[m][present[m]] == CONDITION).any() and (roles[m][present[m]] == TARGET).any()
    R = torch.stack(list(roles.values()), 1)
    assert ((R == TARGET).sum(1) >= 1).all()  # every sample learns something
    joint = (R[present["A"] & present["B"]] == TARGET).all(1).float().mean()
    assert joint > 0.08  # joint generation samples are drawn (p_joint = 0.1 plus chance)
    uncond = ((R == CONDITION).sum(1) == 0).float().mean()
    assert uncond > 0.1  # unconditional samples for guidance


def test_times_are_zero_for_conditions_and_shared_in_joint_samples():
    d = Diffusion()
    g = torch.Generator().manual_seed(1)
    roles = {"A": torch.tensor([CONDITION, TARGET, TARGET]), "B": torch.tensor([TARGET, TARGET, ABSENT])}
    t = sample_times(roles, d.sample_t, RoleConfig(p_shared_t=0.0), g)
    assert t["A"][0] == 0 and t["B"][2] == 0 and t["B"][0] > 0
    assert t["A"][1] == t["B"][1]  # no condition: joint generation at one shared time


def test_conditions_never_receive_loss():
    m, x = tiny(), inputs(B=3)
    d, g = Diffusion(), torch.Generator()
    roles = {"A": torch.tensor([CONDITION] * 3), "B": torch.tensor([TARGET] * 3), "C": torch.tensor([ABSENT] * 3)}
    valid = {k: torch.ones(3, 8, 8, dtype=torch.bool) for k in x}
    present = {k: torch.ones(3, dtype=torch.bool) for k in x}
    loss1, _ = diffusion_loss(m, x, valid, present, d, RoleConfig(), g.manual_seed(0), roles)

    class Spoil(torch.nn.Module):  # wreck the predictions of the condition and the absent modality
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, xx, tt, pp=None):
            out = self.inner(xx, tt, pp)
            return {k: (v + 1e3 if k in ("A", "C") else v) for k, v in out.items()}

    loss2, _ = diffusion_loss(Spoil(m), x, valid, present, d, RoleConfig(), g.manual_seed(0), roles)
    torch.testing.assert_close(loss1, loss2)
    # and the condition's own gradient path: the loss has no gradient w.r.t. the condition's output layer
    m.zero_grad()
    loss1, _ = diffusion_loss(m, x, valid, present, d, RoleConfig(), g.manual_seed(0), roles)
    loss1.backward()
    assert m.unembed["A"].weight.grad is None or m.unembed["A"].weight.grad.abs().max() == 0
    assert m.unembed["B"].weight.grad.abs().max() > 0


@pytest.mark.parametrize("prediction", ["v_prediction", "epsilon", "sample", "flow"])
def test_schedule_closed_forms(prediction):
    d = Diffusion(prediction=prediction)
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 5, 5, generator=g), torch.randn(4, 3, 5, 5, generator=g)
    t = torch.tensor([0.0, 0.1, 0.5, 0.9])  # epsilon cannot recover x0 at t = 1 (no signal left)
    xt = d.add_noise(x0, eps, t)
    torch.testing.assert_close(xt[0], x0[0])  # t = 0 is clean
    # the exact target gives back x0 exactly
    torch.testing.assert_close(d.predict_x0(xt[1:], d.target(x0, eps, t)[1:], t[1:]), x0[1:], atol=1e-4, rtol=1e-4)


def test_x0_prediction_loss_is_the_v_space_error():
    """x0-prediction: weight * ||x0_hat - x0||^2 equals ||v(x0_hat) - v||^2 where b is above the cap."""
    d, dv = Diffusion(prediction="sample"), Diffusion(prediction="v_prediction")
    g = torch.Generator().manual_seed(0)
    x0, eps, x0_hat = (torch.randn(3, 2, 4, 4, generator=g) for _ in range(3))
    t = torch.tensor([0.2, 0.5, 0.95])
    xt = d.add_noise(x0, eps, t)
    a, b = (c.view(-1, 1, 1, 1) for c in d.coefficients(t))
    v_hat = (a * xt - x0_hat) / b  # the v implied by x0_hat
    v_err = ((v_hat - dv.target(x0, eps, t)) ** 2).mean(dim=(1, 2, 3))
    x_err = ((x0_hat - d.target(x0, eps, t)) ** 2).mean(dim=(1, 2, 3)) * d.loss_weight(t)
    torch.testing.assert_close(x_err, v_err, rtol=1e-4, atol=1e-5)
    assert float(d.loss_weight(torch.tensor([1e-3]))) == pytest.approx(1 / d.min_noise ** 2)  # capped
    torch.testing.assert_close(dv.loss_weight(t), torch.ones(3))


@pytest.mark.parametrize("sampler", ["ddim", "ddpm", "dpm++", "euler"])
def test_samplers_fed_the_exact_x0_return_it(sampler):
    """Every sampler of an x0-prediction model, fed the true clean signal at every step, ends on it."""
    d = Diffusion(prediction="sample")
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2, 3, 4, 4, generator=g)
    s = d.scheduler(sampler)
    s.set_timesteps(8)
    x = torch.randn(x0.shape, generator=g) * s.init_noise_sigma
    for ts in s.timesteps:
        x = s.step(x0, ts, s.scale_model_input(x, ts), generator=g).prev_sample
    torch.testing.assert_close(x, x0, atol=1e-3, rtol=1e-3)


def test_euler_loop_fed_exact_velocity_returns_the_data():
    """Flow matching: an Euler loop (diffusers scheduler) fed the exact velocity lands on x0."""
    d = Diffusion(prediction="flow")
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, 4, 4, generator=g), torch.randn(2, 3, 4, 4, generator=g)
    s = d.scheduler("euler")
    s.set_timesteps(7)
    x = eps.clone()
    for ts in s.timesteps:
        x = s.step(eps - x0, ts, x).prev_sample
    torch.testing.assert_close(x, x0, atol=1e-5, rtol=1e-5)


def test_tiny_model_overfits_a_single_synthetic_scene(synth_root):
    from cogen.data import SceneDataset, collate_scenes
    from cogen.diffusion.loss import encode_batch
    from cogen.registry import default_registry
    from cogen.tokenizers import tokenizer_for

    reg = default_registry()
    mods = ["S2L2A", "S1RTC", "LULC"]
    ds = SceneDataset(synth_root, modalities=mods, crop=16, length=4, seed=0)
    batch = collate_scenes([ds[i] for i in range(4)], mods)
    toks = {m: tokenizer_for(reg[m]) for m in mods}
    torch.manual_seed(0)
    model = build_model("tiny", {m: {"channels": toks[m].latent_channels, "patch_size": 4} for m in mods},
                        hidden_size=64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    z, ok, present = encode_batch(batch, toks)
    d = Diffusion()
    losses = []
    for step in range(300):
        loss, _ = diffusion_loss(model, z, ok, present, d, RoleConfig(), torch.Generator().manual_seed(7))
        opt.zero_grad(); loss.backward(); opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_max_noise_share_and_shifted_schedule():
    d = Diffusion(p_max_noise=0.25, snr_shift=4.0)
    t = d.sample_t(20000, torch.Generator().manual_seed(0))
    assert abs(float((t == 1).float().mean()) - 0.25 - 0.75 / d.num_train_timesteps) < 0.02
    assert float(t.min()) > 0
    plain = Diffusion()
    snr = lambda ab: ab / (1 - ab)
    k = torch.tensor([10, 300, 700])
    torch.testing.assert_close(snr(d.alphas_cumprod[k].double()), snr(plain.alphas_cumprod[k].double()) / 16, rtol=1e-3, atol=0)
    # every sampler runs on the shifted schedule
    assert torch.allclose(d.scheduler("ddim").alphas_cumprod, d.alphas_cumprod, rtol=1e-4)


def test_grid_shift_offsets_and_shifted_call():
    from cogen.diffusion.sampling import grid_offset, shifted_call

    assert grid_offset(0, 4) == (0, 0) and grid_offset(5, 1) == (0, 0)
    offs = [grid_offset(i, 4) for i in range(1, 40)]
    assert all(0 <= dy < 4 and 0 <= dx < 4 for dy, dx in offs) and len(set(offs)) > 8  # the grid really moves
    assert offs == [grid_offset(i, 4) for i in range(1, 40)]  # a function of the step only
    seen = []

    def per_pixel(x, t):  # a translation-equivariant "model": shifting must not change its output
        seen.append({m: v.shape for m, v in x.items()})
        return {m: 2 * v + 1 for m, v in x.items()}

    x = {"A": torch.randn(2, 3, 8, 8), "B": torch.randn(2, 1, 8, 8)}
    out = shifted_call(per_pixel, x, {}, (1, 3), 4)
    assert seen[-1]["A"] == (2, 3, 12, 12)  # padded to the next multiple of the patch unit
    for m in x:
        torch.testing.assert_close(out[m], 2 * x[m] + 1)


# ---- partial targets: known tokens enter clean ------------------------------------------------------------
def test_all_clean_tokens_equal_the_modality_given_at_t0():
    from cogen.models.transformer import clean_tokens

    m, x = tiny(), inputs()
    t = {"A": torch.zeros(2), "B": torch.full((2,), 0.7), "C": torch.full((2,), 0.5)}
    with torch.no_grad():
        ref = m(x, {**t, "B": torch.zeros(2)})
        all_clean = m(x, t, None, {"B": torch.ones(2, 8, 8, dtype=torch.bool)})
        none_clean = m(x, t, None, {"B": torch.zeros(2, 8, 8, dtype=torch.bool)})
        plain = m(x, t)
    for k in x:
        torch.testing.assert_close(all_clean[k], ref[k])
        torch.testing.assert_close(none_clean[k], plain[k])
    # a token is clean only when all of its cells are: one unknown cell of a 2 x 2 patch makes it unknown
    cells = torch.ones(1, 4, 4, dtype=torch.bool)
    cells[0, 0, 1] = False
    assert clean_tokens(cells, 2).tolist() == [[False, True, True, True]]


def test_partly_clean_modality_differs_from_both_extremes():
    m, x = tiny(), inputs()
    t = {"A": torch.zeros(2), "B": torch.full((2,), 0.7), "C": torch.full((2,), 0.5)}
    half = torch.zeros(2, 8, 8, dtype=torch.bool)
    half[:, :4] = True
    with torch.no_grad():
        part = m(x, t, None, {"B": half})["B"]
        ref0 = m(x, {**t, "B": torch.zeros(2)})["B"]
        ref1 = m(x, t)["B"]
    assert not torch.allclose(part, ref0) and not torch.allclose(part, ref1)


def test_known_regions_are_token_aligned_seeded_blobs():
    from cogen.diffusion.roles import known_regions

    a = known_regions(6, 16, 24, 4, (0.2, 0.8), torch.Generator().manual_seed(3))
    b = known_regions(6, 16, 24, 4, (0.2, 0.8), torch.Generator().manual_seed(3))
    assert a.shape == (6, 16, 24) and a.dtype == torch.bool and torch.equal(a, b)
    tok = a[:, ::4, ::4]
    assert torch.equal(tok.repeat_interleave(4, 1).repeat_interleave(4, 2), a)  # constant on 4 x 4 tokens
    share = tok.float().mean(dim=(1, 2))
    assert ((share >= 0.2 - 1 / 24) & (share <= 0.8 + 1 / 24)).all() and share.std() > 0


def test_partial_targets_take_no_loss_on_their_known_tokens():
    m, x = tiny(), inputs(B=4)
    d = Diffusion()
    roles = {"A": torch.tensor([CONDITION] * 4), "B": torch.tensor([TARGET] * 4), "C": torch.tensor([TARGET] * 4)}
    valid = {k: torch.ones(4, 8, 8, dtype=torch.bool) for k in x}
    present = {k: torch.ones(4, dtype=torch.bool) for k in x}
    cfg = RoleConfig(p_partial=1.0)
    seen = {}

    class Spoil(torch.nn.Module):  # wreck the predictions on the clean (known) cells, record the inputs
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, xx, tt, pp=None, cc=None):
            seen.update(x=xx, clean=cc)
            out = self.inner(xx, tt, pp, cc)
            return {k: (v + 1e3 * cc[k][:, None] if cc and k in cc else v) for k, v in out.items()}

    sizes = {"A": 2, "B": 2, "C": 4}
    loss1, _ = diffusion_loss(m, x, valid, present, d, cfg, torch.Generator().manual_seed(0), roles, sizes)
    loss2, _ = diffusion_loss(Spoil(m), x, valid, present, d, cfg, torch.Generator().manual_seed(0), roles, sizes)
    torch.testing.assert_close(loss1, loss2)
    for k in ("B", "C"):  # known cells enter clean; the rest is noised
        c = seen["clean"][k]
        assert c.any() and (~c).any()
        assert torch.equal(seen["x"][k][c[:, None].expand_as(x[k])], x[k][c[:, None].expand_as(x[k])])
        assert not torch.equal(seen["x"][k], x[k])
    loss0, _ = diffusion_loss(m, x, valid, present, d, RoleConfig(), torch.Generator().manual_seed(0), roles, sizes)
    assert not torch.allclose(loss0, loss1)


@pytest.mark.parametrize("shift", [0, 4])
def test_partial_sampling_feeds_whole_known_tokens_clean_on_the_moved_grid(shift):
    from cogen.diffusion.sampling import denoise

    m = tiny()
    calls = []

    class Record(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def patch_size(self, k):
            return self.inner.patch_size(k)

        def forward(self, xx, tt, pp=None, cc=None):
            calls.append((xx, cc))
            return self.inner(xx, tt, pp, cc)

    known = torch.randn(2, 4, 8, 8)
    km = torch.zeros(2, 8, 8, dtype=torch.bool)
    km[:, :, :5] = True  # columns 0-4: one whole 4-px token column, part of the next
    cond = {"A": torch.randn(2, 3, 8, 8)}
    rec = Record(m)
    out = denoise(rec, Diffusion(), cond, {"C": ((2, 4, 8, 8), known, km)}, steps=3,
                  generator=torch.Generator().manual_seed(0), grid_shift=shift, partial=True)
    assert torch.equal(out["C"][km[:, None].expand_as(known)], known[km[:, None].expand_as(known)])
    for xx, cc in calls:
        c = cc["C"]
        assert c.any()
        tok = c[:, ::4, ::4].repeat_interleave(4, 1).repeat_interleave(4, 2)
        assert torch.equal(tok, c)  # whole tokens of the model's (possibly moved) grid
    if shift == 0:  # unmoved: exactly the known token column, with its clean values
        xx, cc = calls[0]
        assert cc["C"][:, :, :4].all() and not cc["C"][:, :, 4:].any()
        torch.testing.assert_close(xx["C"][..., :4], known[..., :4])
    calls.clear()
    denoise(rec, Diffusion(), cond, {"C": ((2, 4, 8, 8), known, km)}, steps=3,
            generator=torch.Generator().manual_seed(0), grid_shift=shift, partial=False)
    assert all(cc is None for _, cc in calls)


def test_final_denoise_is_one_more_clean_estimate():
    """final_denoise t: the loop's result treated as noised to level t and replaced by the model's clean
    estimate from it (v-prediction: a * x - b * v); known cells stay exact; 0 is the plain loop."""
    from cogen.diffusion.sampling import denoise

    m, d = tiny(), Diffusion()
    cond = {"A": inputs()["A"]}
    noise = {"C": torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))}
    tgt = {"C": ((2, 4, 8, 8), None, None)}
    plain = denoise(m, d, cond, tgt, 2, "ddim", noise=noise)["C"]
    torch.testing.assert_close(denoise(m, d, cond, tgt, 2, "ddim", noise=noise, final_denoise=0.0)["C"], plain)
    got = denoise(m, d, cond, tgt, 2, "ddim", noise=noise, final_denoise=0.08)["C"]
    t = torch.full((2,), 0.08)
    v = m({**cond, "C": plain}, {"A": torch.zeros(2), "C": t})["C"]
    a, b = d.coefficients(t)
    torch.testing.assert_close(got, a.view(-1, 1, 1, 1) * plain - b.view(-1, 1, 1, 1) * v)
    assert not torch.allclose(got, plain)
    f = Diffusion(prediction="flow")  # flow matching: x0 = x_t - t * (noise - x0) prediction
    plain_f = denoise(m, f, cond, tgt, 2, "euler", noise=noise)["C"]
    got_f = denoise(m, f, cond, tgt, 2, "euler", noise=noise, final_denoise=0.08)["C"]
    out_f = m({**cond, "C": plain_f}, {"A": torch.zeros(2), "C": t})["C"]
    torch.testing.assert_close(got_f, plain_f - 0.08 * out_f)
    known = torch.randn(2, 4, 8, 8)
    km = torch.zeros(2, 8, 8, dtype=torch.bool)
    km[:, :4] = True
    out = denoise(m, d, cond, {"C": ((2, 4, 8, 8), known, km)}, 2, "ddim", noise=noise, final_denoise=0.08)["C"]
    torch.testing.assert_close(out[:, :, :4], known[:, :, :4])
    assert not torch.allclose(out[:, :, 4:], plain[:, :, 4:])


# ---- class-balanced loss ----------------------------------------------------------------------------------
def test_balanced_class_weights_by_hand():
    from cogen.diffusion.loss import balanced_class_weights

    # counts 75 / 25 / 0: inverse frequencies 4/3 and 4, rescaled so the pixel-weighted mean is 1:
    # (75 * 4/3 + 25 * 4) / 100 = 2  ->  2/3 and 2; the unseen class gets 0
    w = balanced_class_weights([75, 25, 0], 1.0)
    torch.testing.assert_close(w, torch.tensor([2 / 3, 2.0, 0.0]))
    # square root: 1/sqrt(.75), 1/sqrt(.25) = 1.1547, 2; mean (75*1.1547 + 25*2)/100 = 1.3660
    torch.testing.assert_close(balanced_class_weights([75, 25], 0.5), torch.tensor([1.1547 / 1.3660, 2 / 1.3660]),
                               atol=1e-4, rtol=0)
    # the cap: a class 10^4 times rarer is weighted at most 10 times the most frequent
    w = balanced_class_weights([10_000, 1], 1.0)
    assert float(w[1] / w[0]) == pytest.approx(10.0)
    torch.testing.assert_close(balanced_class_weights([5, 5], 0.0), torch.ones(2))


def test_dark_weight_map_by_hand():
    from cogen.diffusion.loss import dark_weight_map, reference_brightness

    # mean spectrum (0.3, 0.4): RMS over bands sqrt((0.09 + 0.16) / 2)
    assert reference_brightness([0.3, 0.4]) == pytest.approx(0.125 ** 0.5)
    # three valid pixels of RMS 0.2, 0.05 and 0.4 against b_ref 0.2, cap 8: (b_ref / b)^2 = 1, 16 -> 8, 0.25 -> 1;
    # mean over the valid pixels (1 + 8 + 1) / 3 = 10/3, so 0.3, 2.4, 0.3; the fourth, invalid and black, takes
    # no part in the mean (its own weight, the cap, is 8 / (10/3) = 2.4, and the loss masks it anyway)
    rms = torch.tensor([0.2, 0.05, 0.4, 0.0])
    phys = rms.view(1, 1, 2, 2).expand(1, 3, 2, 2).clone()  # every band equal: RMS = the value
    valid = torch.tensor([[[True, True], [True, False]]])
    w = dark_weight_map(phys, valid, 0.2, 8.0)
    torch.testing.assert_close(w, torch.tensor([[[0.3, 2.4], [0.3, 2.4]]]))
    # the RMS is over bands: a spectrum (0.1, 0.1, 0.1, 0.5) has RMS sqrt(0.28 / 4)
    s = torch.tensor([0.1, 0.1, 0.1, 0.5]).view(1, 4, 1, 1)
    two = torch.cat([s, torch.full((1, 4, 1, 1), 0.07 ** 0.5)], dim=3)  # equal RMS: equal weights
    w = dark_weight_map(two, torch.ones(1, 1, 2, dtype=torch.bool), 0.5, 100.0)
    torch.testing.assert_close(w, torch.ones(1, 1, 2))
    # no valid pixel: weight 1
    torch.testing.assert_close(dark_weight_map(phys, torch.zeros_like(valid), 0.2, 8.0), torch.ones(1, 2, 2))


def test_pixel_weights_enter_the_diffusion_loss():
    """Weight 2 on the left half and 0 on the right gives the loss of the left half alone (masked MSE divides
    by the number of valid cells); other targets are untouched."""
    from cogen.diffusion.loss import diffusion_loss
    from cogen.diffusion.roles import CONDITION, TARGET, RoleConfig
    from cogen.diffusion.schedule import Diffusion
    from cogen.models.transformer import build_model

    torch.manual_seed(0)
    model = build_model("tiny", {"A": {"channels": 3, "patch_size": 2}, "B": {"channels": 2, "patch_size": 2}})
    z = {"A": torch.randn(2, 3, 8, 8), "B": torch.randn(2, 2, 8, 8)}
    ones = torch.ones(2, 8, 8, dtype=torch.bool)
    present = {"A": torch.ones(2, dtype=torch.bool), "B": torch.ones(2, dtype=torch.bool)}
    roles = {"A": torch.full((2,), TARGET), "B": torch.full((2,), CONDITION)}
    left = torch.zeros(2, 8, 8, dtype=torch.bool)
    left[..., :4] = True
    diff, cfg = Diffusion(), RoleConfig()

    def loss(valid, weights=None):
        return diffusion_loss(model, z, valid, present, diff, cfg, torch.Generator().manual_seed(5), roles=roles,
                              pixel_weights=weights)[0]

    half = loss({"A": left, "B": ones})
    weighted = loss({"A": ones, "B": ones}, {"A": 2.0 * left.float()})
    plain = loss({"A": ones, "B": ones})
    torch.testing.assert_close(weighted, half)
    assert not torch.isclose(weighted, plain)
    # a weight map for a modality that is only a condition changes nothing
    torch.testing.assert_close(loss({"A": ones, "B": ones}, {"B": torch.zeros(2, 8, 8)}), plain)


def test_class_weighted_loss_weights_each_cell_by_its_true_class():
    from cogen.diffusion.loss import class_weight_map, masked_mse

    code = -torch.ones(1, 3, 2, 2)
    code[0, 0, 0, :] = 1  # top row class 0
    code[0, 2, 1, :] = 1  # bottom row class 2
    wmap = class_weight_map(code, torch.tensor([1.0, 5.0, 3.0]))
    torch.testing.assert_close(wmap, torch.tensor([[[1.0, 1.0], [3.0, 3.0]]]))
    pred, tgt = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)  # error 1 everywhere
    valid = torch.tensor([[[True, True], [True, False]]])
    torch.testing.assert_close(masked_mse(pred, tgt, valid), torch.tensor([1.0]))
    torch.testing.assert_close(masked_mse(pred, tgt, valid, wmap), torch.tensor([(1 + 1 + 3) / 3]))


def test_p_single_keeps_one_condition_and_leaves_the_default_stream_alone():
    present = {m: torch.ones(4000, dtype=torch.bool) for m in "ABCDE"}
    base = sample_roles(present, RoleConfig(), torch.Generator().manual_seed(0))
    off = sample_roles(present, RoleConfig(p_single=0.0), torch.Generator().manual_seed(0))
    assert all(torch.equal(base[m], off[m]) for m in present)  # off: the same draws as before the option
    n_cond = lambda r: (torch.stack(list(r.values()), 1) == CONDITION).sum(1)
    on = sample_roles(present, RoleConfig(p_single=0.5), torch.Generator().manual_seed(0))
    single_off, single_on = (n_cond(base) == 1).float().mean(), (n_cond(on) == 1).float().mean()
    assert single_on > single_off + 0.2  # about half of the samples with several conditions now keep one
    assert (n_cond(on) <= n_cond(base)).all()  # only conditions are dropped, never added
    R = torch.stack(list(on.values()), 1)
    assert ((R == TARGET).sum(1) >= 1).all()

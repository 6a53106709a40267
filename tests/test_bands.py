"""Band subsets: a modality given with some of its bands (a 9-band L2A product, L1C without B10) is a valid input
in training and in sampling; the missing bands are absent, not zeros, and outputs hold every band."""
import json

import numpy as np
import pytest
import torch
from rasterio.transform import from_origin

import sample
from cogen.errors import RasterError
from cogen.io import write_raster

NINE = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]  # Belgium's WorldCereal L2A
TR = from_origin(500000.0, 5000000.0, 10, 10)


def test_bands_come_from_descriptions_or_declared_names(registry):
    m = registry["S2L2A"]
    assert m.file_bands(9, "f.tif", NINE) == (1, 2, 3, 4, 5, 6, 7, 10, 11)
    assert m.file_bands(4, "f.tif", declared=["b2", "B3", "B04", "b8"]) == (1, 2, 3, 7)  # B2 is B02
    assert m.file_bands(12, "f.tif", [None] * 12) == tuple(range(12))  # complete and unnamed: registry order
    assert m.file_bands(12, "f.tif", list(reversed(m.bands))) == tuple(reversed(range(12)))  # names rule order
    assert m.file_bands(9, "f.tif", ["Band 1"] * 9, declared=NINE) == (1, 2, 3, 4, 5, 6, 7, 10, 11)
    with pytest.raises(RasterError, match=r"f.tif: has 9 band.*not named.*--bands S2L2A=B01"):
        m.file_bands(9, "f.tif", [None] * 9)
    with pytest.raises(RasterError, match=r"f.tif: 'B13' is not a band of S2L2A"):
        m.file_bands(2, "f.tif", declared=["B02", "B13"])
    with pytest.raises(RasterError, match="repeat a band"):
        m.file_bands(2, "f.tif", declared=["B02", "b2"])
    with pytest.raises(RasterError, match="2 band name"):
        m.file_bands(3, "f.tif", declared=["B02", "B03"])


def _model():
    from cogen.config import load_config
    from train import build_everything

    cfg = load_config("configs/tiny.yaml")
    torch.manual_seed(0)
    _, _, model = build_everything(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def test_a_missing_band_is_absent_not_a_value():
    model = _model()
    g = torch.Generator().manual_seed(0)
    x = {"S2L2A": torch.randn(2, 12, 16, 16, generator=g), "LULC": torch.randn(2, 9, 16, 16, generator=g)}
    t = {"S2L2A": torch.zeros(2), "LULC": torch.full((2,), 0.5)}
    all_given = {"S2L2A": torch.ones(2, 12, dtype=torch.bool)}
    with torch.no_grad():
        ref = model(x, t)["LULC"]
        assert torch.equal(model(x, t, bands=all_given)["LULC"], ref)  # every band given = no mask
        given = torch.ones(2, 12, dtype=torch.bool)
        given[:, [0, 8, 9]] = False  # no B01, B8A, B09
        a = model(x, t, bands={"S2L2A": given})["LULC"]
        y = {**x, "S2L2A": x["S2L2A"].clone()}
        y["S2L2A"][:, [0, 8, 9]] = 100.0  # whatever the missing bands hold
        b = model(y, t, bands={"S2L2A": given})["LULC"]
        zero = {**x, "S2L2A": x["S2L2A"] * given[:, :, None, None]}
        c = model(zero, t)["LULC"]  # zeros without the mask: another input
    assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(a, c, atol=1e-4)


def test_a_bundle_without_the_band_embedding_loads_with_it_at_zero(tmp_path, tiny_bundle):
    import shutil

    from safetensors.torch import load_file, save_file

    from cogen.checkpoint import load_bundle, write_manifest

    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    for f in (old / "model").glob("*.safetensors"):
        save_file({k: v for k, v in load_file(f).items() if not k.startswith("missing_band_emb.")}, f)
    write_manifest(old)
    b = load_bundle(old)
    assert all(float(v.abs().sum()) == 0 for v in b.model.missing_band_emb.values())
    assert any(float(v.abs().sum()) > 0 for v in load_bundle(tiny_bundle).model.missing_band_emb.values())


def _scene(tmp, h=24, w=24):
    from cogen.data.synthetic import make_scene

    sc = make_scene(h, w, seed=2)["rasters"]
    idx = [registry_bands().index(b) for b in NINE]
    full = write_raster(tmp / "S2L2A_full.tif", sc["S2L2A"], "EPSG:32633", TR)
    named = write_raster(tmp / "S2L2A_9.tif", sc["S2L2A"][idx], "EPSG:32633", TR, descriptions=NINE)
    unnamed = write_raster(tmp / "S2L2A_9_unnamed.tif", sc["S2L2A"][idx], "EPSG:32633", TR)
    s1 = write_raster(tmp / "S1RTC.tif", sc["S1RTC"], "EPSG:32633", TR)
    return full, named, unnamed, s1


def registry_bands():
    from cogen.registry import default_registry

    return list(default_registry()["S2L2A"].bands)


def test_sampling_from_a_band_subset(tmp_path, tiny_bundle):
    from cogen.pipeline import CogenPipeline

    full, named, unnamed, s1 = _scene(tmp_path)
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    kw = dict(steps=2, seed=0, tile=16, overlap=4, progress=False)
    a = pipe({"S2L2A": named, "S1RTC": s1}, ["LULC", "DEM"], **kw)
    b = pipe({"S2L2A": unnamed, "S1RTC": s1}, ["LULC", "DEM"], bands={"S2L2A": NINE}, **kw)
    c = pipe({"S2L2A": full, "S1RTC": s1}, ["LULC", "DEM"], **kw)
    assert np.array_equal(a["DEM"].sample, b["DEM"].sample)  # descriptions and --bands say the same
    assert not np.allclose(a["DEM"].sample, c["DEM"].sample)  # three bands fewer is another condition
    # generated S2L2A holds every band, whichever bands a condition had
    out = pipe({"S1RTC": s1}, ["S2L2A"], **kw)
    assert out["S2L2A"].sample.shape[0] == 12
    with pytest.raises(RasterError, match=r"S2L2A_9_unnamed.tif: has 9 band.*--bands S2L2A="):
        pipe({"S2L2A": unnamed}, ["LULC"], **kw)


def test_cli_bands_flag_and_cloud_removal_needs_every_band(tmp_path, tiny_bundle, capsys):
    full, named, unnamed, s1 = _scene(tmp_path)
    common = ["--checkpoint", tiny_bundle, "--steps", "2", "--tile", "16", "--overlap", "4", "--quiet"]
    rc = sample.main([str(a) for a in ["impute", "--input", f"S2L2A={unnamed}", "--bands", "S2L2A=" + ",".join(NINE),
                                       "--target", "DEM", "--out", tmp_path / "o1", *common]])
    assert rc == 0
    run = json.loads((tmp_path / "o1" / "run.json").read_text())
    assert run["arguments"]["bands"] == ["S2L2A=" + ",".join(NINE)]
    rc = sample.main([str(a) for a in ["impute", "--input", f"S2L2A={unnamed}", "--target", "DEM",
                                       "--out", tmp_path / "o2", *common]])
    err = capsys.readouterr().err
    assert rc == 2 and "--bands S2L2A=" in err and len(err.strip().splitlines()) == 1
    mask = np.zeros((24, 24), np.uint8)
    mask[5:15, 5:15] = 1
    m = write_raster(tmp_path / "mask.tif", mask, "EPSG:32633", TR)
    rc = sample.main([str(a) for a in ["cloud-removal", "--input", f"S2L2A={named}", "--mask", m,
                                       "--out", tmp_path / "o3", *common]])
    assert rc == 2 and "needs every band" in capsys.readouterr().err
    assert not (tmp_path / "o3").exists()


def test_training_items_carry_their_bands_and_targets_lose_nothing_on_missing_ones(tmp_path):
    from cogen.config import load_config
    from cogen.data.dataset import SceneDataset, collate_scenes
    from cogen.data.synthetic import make_scene
    from cogen.diffusion.loss import diffusion_loss, latent_bands
    from cogen.diffusion.roles import CONDITION, TARGET, RoleConfig, sample_band_masks
    from cogen.diffusion.schedule import Diffusion
    from cogen.registry import default_registry

    reg = default_registry()
    for i, sub in enumerate([None, NINE]):
        sc = make_scene(32, 32, seed=i)["rasters"]
        arr = sc["S2L2A"] if sub is None else sc["S2L2A"][[registry_bands().index(b) for b in sub]]
        write_raster(tmp_path / "S2L2A" / f"s{i}.tif", arr, "EPSG:32633", TR, descriptions=sub)
        write_raster(tmp_path / "S1RTC" / f"s{i}.tif", sc["S1RTC"], "EPSG:32633", TR)
    ds = SceneDataset(tmp_path, registry=reg, crop=16, mode="grid")
    items = [ds[j] for j in range(len(ds))]
    nine = [it for it in items if it["scene"] == "s1"][0]
    assert nine["bands"]["S2L2A"].sum() == 9 and not nine["bands"]["S2L2A"][[0, 8, 9]].any()
    assert float(nine["values"]["S2L2A"][[0, 8, 9]].abs().sum()) == 0  # missing bands carry nothing
    batch = collate_scenes(items, ["S2L2A", "S1RTC"], reg)
    assert batch["bands"]["S2L2A"].shape == (len(items), 12)

    # a target's missing bands take no loss: what they hold changes nothing
    cfg = load_config("configs/tiny.yaml")
    model = _model()
    from cogen.tokenizers import tokenizer_for
    toks = {m: tokenizer_for(reg[m]) for m in ["S2L2A", "S1RTC"]}
    from cogen.diffusion.loss import encode_batch
    z, ok, present = encode_batch(batch, toks)
    roles = {"S2L2A": torch.full((len(items),), TARGET), "S1RTC": torch.full((len(items),), CONDITION)}
    bands = latent_bands(batch, toks)
    d = Diffusion(**cfg.diffusion.__dict__)
    la, _ = diffusion_loss(model, z, ok, present, d, RoleConfig(), torch.Generator().manual_seed(0), roles, bands=bands)
    z2 = {**z, "S2L2A": z["S2L2A"].clone()}
    miss = ~bands["S2L2A"]
    z2["S2L2A"][miss[:, :, None, None].expand_as(z2["S2L2A"])] = 50.0
    lb, _ = diffusion_loss(model, z2, ok, present, d, RoleConfig(), torch.Generator().manual_seed(0), roles, bands=bands)
    assert torch.allclose(la, lb, atol=1e-6)

    # band dropout of conditions: subsets of the bands held, never empty, targets untouched
    have = torch.ones(64, 12, dtype=torch.bool)
    have[:8, :3] = False
    r = {"S2L2A": torch.tensor([CONDITION] * 32 + [TARGET] * 32)}
    g = sample_band_masks(r, {"S2L2A": have}, RoleConfig(p_band_subset=1.0), torch.Generator().manual_seed(0))
    m = g["S2L2A"]
    assert (m <= have).all() and m.any(dim=1).all() and torch.equal(m[32:], have[32:])
    assert (m[:32].sum(dim=1) < have[:32].sum(dim=1)).any()
    assert torch.equal(sample_band_masks(r, {"S2L2A": have}, RoleConfig(), None)["S2L2A"], have)


def test_train_runs_on_a_folder_with_a_band_subset_scene(tmp_path):
    import subprocess
    import sys

    from cogen.data.synthetic import make_scene

    for i, sub in enumerate([None, NINE]):
        sc = make_scene(48, 48, seed=i)["rasters"]
        for m in ("S2L2A", "S1RTC", "DEM", "LULC"):
            arr = sc[m]
            desc = None
            if m == "S2L2A" and sub is not None:
                arr, desc = arr[[registry_bands().index(b) for b in sub]], sub
            write_raster(tmp_path / "data" / m / f"s{i}.tif", arr, "EPSG:32633", TR, descriptions=desc,
                         nodata=0 if m == "LULC" else None)
    r = subprocess.run([sys.executable, "train.py", "--config", "configs/tiny.yaml", f"data.root={tmp_path / 'data'}",
                        "data.val_split=null", f"train.out_dir={tmp_path / 'run'}",
                        "train.steps=2", "train.eval_every=0", "roles.p_band_subset=0.5"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-1500:]
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(x["loss"]) for x in rows if "loss" in x)

"""Dates: an input named MOD@YYYY-MM-DD, or dated by its GeoTIFF tags, takes a slot of its modality (MOD at the
target date, MOD@1, MOD@2, ... at the others, in date order) and the model adds an embedding of each slot's date.
Resolution from names and tags, one-line errors, order invariance, absent dates, bundles from before dates, and a
tiny model trained on a generated time series, end to end. Small generated GeoTIFFs, seeded, CPU only."""
import datetime as dt
import json
import shutil

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin

import sample
from cogen.errors import UsageError
from cogen.io import write_raster

from conftest import ROOT

TR = from_origin(500000.0, 5000000.0, 10, 10)
MAY, JUN, JUL = dt.date(2021, 5, 4), dt.date(2021, 6, 8), dt.date(2021, 7, 13)


def write_dated(path, arr, date=None, tag="ACQUISITION_DATE", transform=TR):
    """A GeoTIFF on a real grid whose tag `tag` states `date` (a date or the tag's text); no date tag if None."""
    write_raster(path, arr, "EPSG:32633", transform)
    if date is not None:
        with rasterio.open(path, "r+") as dst:
            dst.update_tags(**{tag: date.isoformat() if isinstance(date, dt.date) else date})
    return path


def rasters(h=32, w=32, seed=0):
    from cogen.data.synthetic import make_scene

    return make_scene(h, w, seed=seed)["rasters"]


def run(*args) -> int:
    return sample.main([str(a) for a in args])


def common(bundle, out):
    return ["--checkpoint", bundle, "--out", out, "--steps", "2", "--tile", "16", "--overlap", "4", "--quiet"]


def one_line_error(fn, *match):
    """fn() raises a UsageError of one line that contains every string of `match`; returns the message."""
    with pytest.raises(UsageError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg.strip(), msg
    for s in match:
        assert s in msg, msg
    return msg


# ---- resolution --------------------------------------------------------------------------------------------
def test_dates_come_from_names_or_from_tags(tmp_path, registry):
    from cogen.data.dataset import parse_date
    from cogen.pipeline.dates import resolve_dates, split_key

    sc = rasters()
    plain = write_dated(tmp_path / "plain.tif", sc["S2L2A"])  # no date anywhere
    s2_may = write_dated(tmp_path / "s2_may.tif", sc["S2L2A"], MAY)
    s2_jun = write_dated(tmp_path / "s2_jun.tif", sc["S2L2A"], JUN)
    s2_jul = write_dated(tmp_path / "s2_jul.tif", sc["S2L2A"], "2021:07:13 10:00:00", tag="TIFFTAG_DATETIME")
    s1_may = write_dated(tmp_path / "s1_may.tif", sc["S1RTC"], "20210504", tag="SCENE_DATE")
    s1_jun = write_dated(tmp_path / "s1_jun.tif", sc["S1RTC"], JUN)
    dem = write_dated(tmp_path / "dem.tif", sc["DEM"], dt.date(2015, 1, 1))  # timeless: its date is no slot's

    assert split_key("S2L2A@2021-05-04") == ("S2L2A", MAY) and split_key("S2L2A") == ("S2L2A", None)
    for text in ("2021-07-13", "2021-07-13T10:20:00Z", "2021:07:13 10:00:00", "20210713"):
        assert parse_date(text) == JUL

    # dates in the names: the target's name gives the target date; an undated input is at it
    d = resolve_dates(registry, {"S2L2A@2021-07-13": plain, "S2L2A@2021-05-04": plain, "S1RTC": plain,
                                 "DEM": dem}, ["S2L2A@2021-06-08"])
    assert d.target_date == JUN and d.targets == ["S2L2A"]
    assert d.dates == {"S2L2A@1": MAY, "S2L2A@2": JUL, "S1RTC": JUN, "DEM": JUN}
    assert d.names == {"S2L2A@1": "S2L2A@2021-05-04", "S2L2A@2": "S2L2A@2021-07-13", "S1RTC": "S1RTC", "DEM": "DEM"}
    assert d.several
    assert d.to_json()["inputs"]["S2L2A@2021-05-04"] == {"slot": "S2L2A@1", "date": "2021-05-04",
                                                         "days_from_target": -35}
    v = d.vectors(2)
    assert v["S2L2A@2"].tolist() == [[35.0, 194.0, 1.0]] * 2  # 13 July: day 194
    assert v["S2L2A"].tolist() == [[0.0, 159.0, 1.0]] * 2  # the target, 8 June: day 159

    # a name's date wins over the file's tags
    d = resolve_dates(registry, {"S2L2A@2021-05-04": s2_jul, "S1RTC": s1_jun}, ["LULC@2021-06-08"])
    assert d.dates == {"S2L2A@1": MAY, "S1RTC": JUN} and d.target_date == JUN

    # in a call with dates in names, an undated input's tags give its date; the target's own undated input (cloud
    # removal's scene) gives the target date
    d = resolve_dates(registry, {"S1RTC": s1_may, "S2L2A": s2_jun, "S2L2A@2021-07-13": plain, "DEM": dem}, ["S2L2A"])
    assert d.target_date == JUN
    assert d.conditions == {"S2L2A": s2_jun, "S2L2A@1": plain, "S1RTC@1": s1_may, "DEM": dem}
    assert d.dates == {"S2L2A": JUN, "S2L2A@1": JUL, "S1RTC@1": MAY, "DEM": JUN}
    # without a date in any name the call is at one date (sensors days apart are one scene): every input at the
    # target date, whose day is the target's own input's tag date ...
    d = resolve_dates(registry, {"S1RTC": s1_may, "S2L2A": s2_jun, "DEM": dem}, ["S2L2A"])
    assert d.target_date == JUN and not d.several
    assert d.conditions == {"S2L2A": s2_jun, "S1RTC": s1_may, "DEM": dem}
    assert d.dates == {"S2L2A": JUN, "S1RTC": JUN, "DEM": JUN}
    # ... or the one date every dated input shares (TIFFTAG_DATETIME's "YYYY:MM:DD HH:MM:SS" parses)
    d = resolve_dates(registry, {"S2L2A": s2_jul, "DEM": dem}, ["LULC"])
    assert d.target_date == JUL and d.dates == {"S2L2A": JUL, "DEM": JUL} and not d.several
    d = resolve_dates(registry, {"S2L2A": s2_may, "S1RTC": s1_may}, ["LULC"])
    assert d.target_date == MAY and set(d.conditions) == {"S2L2A", "S1RTC"}
    # arrays and undated files have no date: no target date, no slot of another date
    d = resolve_dates(registry, {"S2L2A": sc["S2L2A"], "S1RTC": plain}, ["LULC"])
    assert d.target_date is None and set(d.conditions) == {"S2L2A", "S1RTC"}


def test_an_input_without_a_date_where_one_is_needed_is_refused_in_one_line(tmp_path, registry, tiny_bundle,
                                                                              capsys):
    from cogen.pipeline.dates import resolve_dates

    sc = rasters()
    plain = write_dated(tmp_path / "plain.tif", sc["S2L2A"])
    dem = write_dated(tmp_path / "dem.tif", sc["DEM"])
    res = lambda conditions, targets: (lambda: resolve_dates(registry, conditions, targets))

    one_line_error(res({"S2L2A@2021-13-40": plain}, ["LULC"]), "'2021-13-40' is not a date", "MOD@YYYY-MM-DD")
    one_line_error(res({"S1RTC": plain}, ["S2L2A@2021-6-8x"]), "is not a date", "MOD@YYYY-MM-DD")
    one_line_error(res({"S2L2A@2021-05-04": plain, "S2L2A@2021-07-13": plain}, ["LULC"]),
                   "several dates", "--target LULC@YYYY-MM-DD")
    one_line_error(res({"S2L2A": plain}, ["LULC@2021-05-04", "DEM@2021-06-08"]), "one date a call")
    one_line_error(res({"S2L2A@2021-05-04": plain, "S2L2A@20210504": plain}, ["LULC@2021-06-08"]), "twice at one date")
    one_line_error(res({"DEM": dem, "DEM@2021-05-04": dem}, ["S2L2A"]), "give it once")

    # the command line says it in one line, exit code 2, and writes nothing
    out = tmp_path / "o"
    assert run("impute", "--input", f"S2L2A@2021-13-40={plain}", "--target", "LULC", *common(tiny_bundle, out)) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "MOD@YYYY-MM-DD" in err
    assert not out.exists()


def test_an_undated_input_beside_a_dated_one_of_its_modality_is_told_to_date_it(tmp_path, registry, tiny_bundle,
                                                                                 capsys):
    """Two S2L2A inputs, one with neither a date in its name nor a tag, and no target date named: the undated
    one needs a date (the refusal names --input S2L2A@YYYY-MM-DD=PATH), whether the call is imputation or cloud
    removal."""
    from cogen.pipeline.dates import resolve_dates

    sc = rasters()
    plain = write_dated(tmp_path / "plain.tif", sc["S2L2A"])
    other = write_dated(tmp_path / "other.tif", sc["S2L2A"])
    mask = write_dated(tmp_path / "mask.tif", (sc["CLOUD"][0] > 0).astype(np.uint8))
    out = tmp_path / "cr"
    rc = run("cloud-removal", "--input", f"S2L2A={plain}", "--mask", mask, "--input", f"S2L2A@2021-05-04={other}",
             *common(tiny_bundle, out))
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and not out.exists()
    assert "@YYYY-MM-DD" in err, err
    one_line_error(lambda: resolve_dates(registry, {"S2L2A": plain, "S2L2A@2021-05-04": other}, ["LULC"]),
                   "@YYYY-MM-DD")
    # cloud-removal --date gives the untagged scene its date
    assert run("cloud-removal", "--input", f"S2L2A={plain}", "--mask", mask, "--input", f"S2L2A@2021-05-04={other}",
               "--date", "2021-06-08", *common(tiny_bundle, out)) == 0
    dates = json.loads((out / "run.json").read_text())["dates"]
    assert dates["target"] == "2021-06-08" and dates["inputs"]["S2L2A@2021-05-04"]["days_from_target"] == -35


# ---- sampling ----------------------------------------------------------------------------------------------
def test_the_order_in_which_dates_are_given_changes_nothing(tmp_path, tiny_bundle):
    from cogen.pipeline import CogenPipeline

    sc = rasters(seed=1)
    may = write_dated(tmp_path / "may.tif", (sc["S2L2A"] * 0.8).astype(np.int16), MAY)
    jul = write_dated(tmp_path / "jul.tif", (sc["S2L2A"] * 1.2).astype(np.int16), JUL)
    s1 = write_dated(tmp_path / "s1.tif", sc["S1RTC"], JUN)
    dem = write_dated(tmp_path / "dem.tif", sc["DEM"])
    pipe = CogenPipeline.from_checkpoint(tiny_bundle)
    go = lambda inputs: pipe(inputs, ["S2L2A@2021-06-08"], steps=2, seed=0, samples=1, tile=16, overlap=4,
                             progress=False)["S2L2A"].sample
    given = {"S2L2A@2021-07-13": jul, "S1RTC": s1, "DEM": dem, "S2L2A@2021-05-04": may}
    a = go(given)
    b = go(dict(reversed(given.items())))
    assert a.shape == (12, 32, 32) and np.array_equal(a, b)
    # the test can fail: the other dates and their dates are conditions of the output
    assert not np.array_equal(a, go({"S1RTC": s1, "DEM": dem}))
    swapped = {"S2L2A@2021-05-04": jul, "S1RTC": s1, "DEM": dem, "S2L2A@2021-07-13": may}
    assert not np.array_equal(a, go(swapped))


def _dated_model():
    """A tiny transformer with random nonzero weights, its date embedding's last layer included."""
    from cogen.models.transformer import build_model

    torch.manual_seed(0)
    model = build_model("tiny", {"S2L2A": {"channels": 12, "patch_size": 4}, "S1RTC": {"channels": 2, "patch_size": 4}})
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
        torch.nn.init.normal_(model.date_mlp[-1].weight, std=0.2)  # starts at zero: make dates matter
    return model.eval()


def test_an_absent_date_changes_nothing():
    model = _dated_model()
    g = torch.Generator().manual_seed(0)
    x = {"S2L2A": torch.randn(2, 12, 16, 16, generator=g), "S1RTC": torch.randn(2, 2, 16, 16, generator=g)}
    t = {"S2L2A": torch.full((2,), 0.6), "S1RTC": torch.zeros(2)}
    dates = {"S2L2A": torch.tensor([[0.0, 159.0, 1.0]] * 2), "S1RTC": torch.tensor([[0.0, 159.0, 1.0]] * 2)}
    other = torch.randn(2, 12, 16, 16, generator=g)
    may = torch.tensor([[-35.0, 124.0, 1.0]] * 2)
    with torch.no_grad():
        alone = model(x, t, dates=dates)
        absent = model({**x, "S2L2A@1": other}, {**t, "S2L2A@1": torch.zeros(2)},
                       present={"S2L2A@1": torch.zeros(2, dtype=torch.bool)}, dates={**dates, "S2L2A@1": may})
        # what an absent slot holds, and its date, change nothing either
        absent2 = model({**x, "S2L2A@1": other * 50 + 3}, {**t, "S2L2A@1": torch.full((2,), 0.9)},
                        present={"S2L2A@1": torch.zeros(2, dtype=torch.bool)},
                        dates={**dates, "S2L2A@1": torch.tensor([[300.0, 10.0, 1.0]] * 2)})
        # present for the first sample only: the second is the model without it
        mixed = model({**x, "S2L2A@1": other}, {**t, "S2L2A@1": torch.zeros(2)},
                      present={"S2L2A@1": torch.tensor([True, False])}, dates={**dates, "S2L2A@1": may})
        # the test can fail: a present other date, and its date, change the output
        present = model({**x, "S2L2A@1": other}, {**t, "S2L2A@1": torch.zeros(2)}, dates={**dates, "S2L2A@1": may})
        moved = model({**x, "S2L2A@1": other}, {**t, "S2L2A@1": torch.zeros(2)},
                      dates={**dates, "S2L2A@1": torch.tensor([[-300.0, 224.0, 1.0]] * 2)})
        undated = model(x, t)  # the target's own date matters too
    assert set(absent) == {"S2L2A", "S1RTC", "S2L2A@1"}
    for m in ("S2L2A", "S1RTC"):
        torch.testing.assert_close(absent[m], alone[m], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(absent2[m], alone[m], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mixed[m][1:], alone[m][1:], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mixed[m][:1], present[m][:1], atol=1e-5, rtol=1e-5)
    assert (present["S2L2A"] - alone["S2L2A"]).abs().max() > 1e-3
    assert (moved["S2L2A"] - present["S2L2A"]).abs().max() > 1e-3
    assert (undated["S2L2A"] - alone["S2L2A"]).abs().max() > 1e-3


def test_a_bundle_without_the_date_weights_loads_with_them_at_zero(tmp_path, tiny_bundle):
    from safetensors.torch import load_file, save_file

    from cogen.checkpoint import load_bundle, write_manifest
    from cogen.models.transformer import DATE_FEATURES

    feats = torch.randn(5, DATE_FEATURES, generator=torch.Generator().manual_seed(0))
    # the shipped demo model trained with dates: finite, and its date embedding is not zero
    demo = load_bundle(ROOT / "checkpoints" / "demo")
    assert all(torch.isfinite(p).all() for p in demo.model.parameters())
    with torch.no_grad():
        assert demo.model.date_mlp(feats).abs().max() > 0

    # a bundle that has the band embedding but not the date embedding
    old = tmp_path / "old"
    shutil.copytree(tiny_bundle, old)
    for f in (old / "model").glob("*.safetensors"):
        save_file({k: v for k, v in load_file(f).items() if not k.startswith("date_mlp.")}, f)
    write_manifest(old)
    new, b = load_bundle(tiny_bundle).model, load_bundle(old).model
    assert all(torch.isfinite(p).all() for p in b.parameters())
    with torch.no_grad():
        assert torch.equal(b.date_mlp(feats), torch.zeros(5, b.config.hidden_size))
        assert new.date_mlp(feats).abs().max() > 0
    # every weight the bundle holds is the bundle's own (its band embedding, which is not zero, included)
    mine = dict(new.named_parameters())
    for k, p in b.named_parameters():
        if not k.startswith("date_mlp."):
            assert torch.equal(p, mine[k]), f"{k} is not the bundle's"


# ---- a time series, end to end -----------------------------------------------------------------------------
SERIES = {MAY: 0.8, JUN: 1.0, JUL: 1.2}  # dates of one place and their brightness


def write_series(root):
    """Three dated scenes of one place (S2L2A, S1GRD, DEM on one grid) and a single-date scene elsewhere."""
    sc = rasters(32, 32, seed=3)
    for d, k in SERIES.items():
        sid = f"place_{d.isoformat()}"
        write_dated(root / "S2L2A" / f"{sid}.tif", (sc["S2L2A"] * k).astype(np.int16), d)
        write_dated(root / "S1GRD" / f"{sid}.tif", sc["S1RTC"] - 2 * k, d)
        write_dated(root / "DEM" / f"{sid}.tif", sc["DEM"])
    solo = rasters(32, 32, seed=4)
    far = from_origin(600000.0, 5100000.0, 10, 10)
    for m, src in (("S2L2A", "S2L2A"), ("S1GRD", "S1RTC"), ("DEM", "DEM")):
        write_dated(root / m / "solo.tif", solo[src], dt.date(2020, 9, 1), transform=far)


def test_a_series_trains_a_tiny_model_that_imputes_from_another_date(tmp_path, registry):
    from cogen.checkpoint import load_bundle
    from cogen.config import load_config
    from cogen.data.dataset import SceneDataset, collate_scenes, date_vector
    from train import train

    root = tmp_path / "data"
    write_series(root)
    mods = ["S2L2A", "S1GRD", "DEM"]
    ds = SceneDataset(root, registry=registry, modalities=mods, crop=16, length=24, seed=0, max_dates=2)
    place = [f"place_{d.isoformat()}" for d in SERIES]
    assert ds.places == [place, ["solo"]]
    items = [ds[i] for i in range(len(ds))]
    several = [it for it in items if "S2L2A@1" in it["values"]]
    assert several and any("@" not in "".join(it["values"]) for it in items)
    for it in items:
        target = ds.dates[it["scene"]]
        assert it["dates"]["S2L2A"].tolist() == date_vector(target, target).tolist()
        assert not any(k.startswith("DEM@") for k in it["values"])  # timeless: the target date's only
        row, col, h, w = it["window"]
        offsets = []
        for k in (1, 2):
            if f"S2L2A@{k}" not in it["values"]:
                continue
            assert f"S1GRD@{k}" in it["values"]
            off, doy, known = it["dates"][f"S2L2A@{k}"].tolist()
            when = target + dt.timedelta(days=int(off))
            assert known == 1 and off != 0 and when in SERIES and doy == when.timetuple().tm_yday
            assert it["dates"][f"S1GRD@{k}"].tolist() == [off, doy, known]
            other, _ = ds.load(f"place_{when.isoformat()}", "S2L2A", row, col, h, w)  # that date, the same window
            assert torch.equal(it["values"][f"S2L2A@{k}"], other)
            offsets.append(off)
        assert offsets == sorted(offsets)  # other dates in date order
    batch = collate_scenes(items, mods, registry)
    assert set(batch["dates"]) == set(batch["values"]) and "S2L2A@1" in batch["values"]
    absent = ~batch["present"]["S2L2A@1"]
    assert absent.any() and float(batch["dates"]["S2L2A@1"][absent].abs().sum()) == 0

    out = tmp_path / "run"
    cfg = load_config(ROOT / "configs" / "tiny.yaml", [
        f"data.root={root}", "data.modalities=[S2L2A, S1GRD, DEM]", "data.max_dates=2", "data.val_split=null",
        f"train.out_dir={out}", "train.steps=2", "train.ckpt_every=2", "train.log_every=1", "train.eval_every=0"])
    last = train(cfg)
    assert last["step"] == 2 and np.isfinite(last["loss"])
    bundle = out / "checkpoints" / "step-000002" / "ema"
    model = load_bundle(bundle).model
    assert sorted(model.names) == sorted(mods) and model.date_mlp[-1].weight.abs().max() > 0  # the date embedding was trained

    may_s2 = root / "S2L2A" / "place_2021-05-04.tif"
    jun_s1 = root / "S1GRD" / "place_2021-06-08.tif"
    dem = root / "DEM" / "place_2021-06-08.tif"
    res = tmp_path / "impute"
    assert run("impute", "--input", f"S2L2A@2021-05-04={may_s2}", "--input", f"S1GRD={jun_s1}", "--input",
               f"DEM={dem}", "--target", "S2L2A@2021-06-08", *common(bundle, res)) == 0
    with rasterio.open(may_s2) as ref, rasterio.open(res / "S2L2A.tif") as o:
        assert o.crs == ref.crs and o.transform == ref.transform and o.shape == ref.shape and o.count == 12
        assert o.tags()["ACQUISITION_DATE"] == "2021-06-08"
        assert np.isfinite(o.read().astype(float)).all()
    run_json = json.loads((res / "run.json").read_text())
    assert run_json["dates"] == {"target": "2021-06-08", "inputs": {
        "S2L2A@2021-05-04": {"slot": "S2L2A@1", "date": "2021-05-04", "days_from_target": -35},
        "S1GRD": {"slot": "S1GRD", "date": "2021-06-08", "days_from_target": 0},
        "DEM": {"slot": "DEM", "date": "2021-06-08", "days_from_target": 0}}}


def test_cloud_removal_with_another_date_keeps_every_clear_pixel(tmp_path, tiny_bundle):
    sc = rasters(32, 32, seed=5)
    cloudy = write_dated(tmp_path / "cloudy.tif", sc["S2L2A_cloudy"], JUN)
    other = write_dated(tmp_path / "may.tif", (sc["S2L2A"] * 0.9).astype(np.int16))  # its date in its name
    s1 = write_dated(tmp_path / "s1.tif", sc["S1RTC"], JUN)
    mask = (sc["CLOUD"][0] > 0).astype(np.uint8)
    mpath = write_dated(tmp_path / "mask.tif", mask)
    assert mask.any() and (~mask.astype(bool)).any()

    def remove(out, *extra):
        assert run("cloud-removal", "--input", f"S2L2A={cloudy}", "--mask", mpath, "--input", f"S1RTC={s1}",
                   *extra, *common(tiny_bundle, out)) == 0
        with rasterio.open(out / "S2L2A.tif") as o:
            return o.read(), o.tags()

    filled, tags = remove(tmp_path / "cr", "--input", f"S2L2A@2021-05-04={other}")
    clear, cloud = mask == 0, mask == 1
    assert np.array_equal(filled[:, clear], sc["S2L2A_cloudy"][:, clear])
    assert not np.array_equal(filled[:, cloud], sc["S2L2A_cloudy"][:, cloud])
    assert tags["ACQUISITION_DATE"] == "2021-06-08"
    dates = json.loads((tmp_path / "cr" / "run.json").read_text())["dates"]
    assert dates == {"target": "2021-06-08", "inputs": {
        "S2L2A": {"slot": "S2L2A", "date": "2021-06-08", "days_from_target": 0},
        "S1RTC": {"slot": "S1RTC", "date": "2021-06-08", "days_from_target": 0},
        "S2L2A@2021-05-04": {"slot": "S2L2A@1", "date": "2021-05-04", "days_from_target": -35}}}
    without, _ = remove(tmp_path / "cr0")  # the other date is a condition of the filled pixels
    assert not np.array_equal(filled[:, cloud], without[:, cloud])

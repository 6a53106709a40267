"""Major TOM-layout shards: the converter's round trip, the stream's split over ranks and workers, its resume,
products on other grids, train.py with data.source=majortom (resume, two processes) and the bad inputs."""
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
import torch
from rasterio.io import MemoryFile
from rasterio.transform import from_origin
from torch.utils.data import DataLoader

from cogen.data import SceneDataset, collate_scenes
from cogen.data.shards import LINEAR_NODATA, ShardStream, convert, geotiff_bytes, main
from cogen.errors import ConfigError, DatasetError, OutputExistsError
from cogen.io import read_raster
from conftest import ROOT, SHIPPED

PY = sys.executable
ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
COLUMNS = {"Core-S2L2A": [f"B{b}" for b in ("01", "02", "03", "04", "05", "06", "07", "08", "8A", "09", "11", "12")],
           "Core-S2L1C": [f"B{b}" for b in ("01", "02", "03", "04", "05", "06", "07", "08", "8A", "09", "10", "11", "12")],
           "Core-S1RTC": ["vv", "vh"], "Core-DEM": ["DEM"], "NDVI": ["NDVI"], "LULC": ["class"]}


@pytest.fixture(scope="session")
def shards(tmp_path_factory):
    """The shipped scenes as shards, written by the converter (two cells per part file)."""
    out = tmp_path_factory.mktemp("shards") / "majortom"
    convert(SHIPPED, out, rows_per_file=2, log=lambda s: None)
    return out


def _bands(shards, folder):
    """{cell: {column: (array, CRS, transform)}} of the band GeoTIFF bytes of a product's part files."""
    out = {}
    for part in sorted((shards / folder / "images").glob("*.parquet")):
        for row in pq.read_table(part, columns=["grid_cell", *COLUMNS[folder]]).to_pylist():
            out[row["grid_cell"]] = {}
            for col in COLUMNS[folder]:
                with MemoryFile(row[col]) as mem, mem.open() as src:
                    out[row["grid_cell"]][col] = (src.read(1), src.crs, src.transform)
    return out


def test_layout_is_major_toms(shards):
    """Product folders, columns and metadata as Major TOM names them; one row group per cell."""
    assert sorted(p.name for p in shards.iterdir()) == sorted(COLUMNS)
    for folder, cols in COLUMNS.items():
        parts = sorted((shards / folder / "images").glob("part_*.parquet"))
        assert [p.name for p in parts] == ["part_00000.parquet", "part_00001.parquet", "part_00002.parquet"]
        pf = pq.ParquetFile(parts[0])
        assert pf.schema_arrow.names == ["grid_cell", "product_id", "product_datetime", "thumbnail", *cols]
        assert pf.num_row_groups == pf.metadata.num_rows == 2
        meta = pq.read_table(shards / folder / "metadata.parquet").to_pylist()
        assert [m["grid_cell"] for m in meta] == sorted(p.stem for p in (SHIPPED / "DEM").glob("*.tif"))
        m = next(r for r in meta if r["grid_cell"] == "433D_629L_3_1")
        assert (m["grid_row_u"], m["grid_col_r"], m["crs"]) == (-433, -629, "EPSG:32718")
        assert m["parquet_url"] == "images/part_00001.parquet" and m["parquet_row"] == 0
        assert -90 < m["centre_lat"] < 0 and m["nodata"] == 0.0
        assert pq.read_table(parts[0], columns=["thumbnail"]).column(0)[0].as_py()[:4] == b"\x89PNG"


def test_round_trip_keeps_arrays_crs_and_transform(shards, registry):
    """Every band of every scene comes back with its values, CRS and transform; radar goes through Major TOM's
    linear power and back to decibels within float32 rounding; the items equal the folder's."""
    for folder, cols in COLUMNS.items():
        mod = {"Core-S2L2A": "S2L2A", "Core-S2L1C": "S2L1C", "Core-S1RTC": "S1RTC", "Core-DEM": "DEM"}.get(folder, folder)
        bands = _bands(shards, folder)
        assert sorted(bands) == sorted(p.stem for p in (SHIPPED / mod).glob("*.tif"))
        for tif in sorted((SHIPPED / mod).glob("*.tif")):
            want, prof = read_raster(tif)
            for i, col in enumerate(cols):
                got, crs, transform = bands[tif.stem][col]
                assert crs == prof["crs"] and transform == prof["transform"], (folder, col)
                if mod == "S1RTC":  # linear power, as Major TOM stores Sentinel-1
                    np.testing.assert_allclose(got, 10 ** (want[i] / 10.0), rtol=1e-6)
                else:
                    assert got.dtype == want.dtype and np.array_equal(got, want[i]), (folder, col)
    folder_items = SceneDataset(SHIPPED, mode="grid")
    stream = ShardStream(shards, mode="grid")
    got = list(stream)
    assert [(it["scene"], it["window"]) for it in got] == [(folder_items[i]["scene"], folder_items[i]["window"])
                                                           for i in range(len(folder_items))]
    for i, it in enumerate(got):
        ref = folder_items[i]
        assert set(it["values"]) == set(ref["values"]) == set(registry.check(stream.modalities))
        for m in ref["values"]:
            assert torch.equal(it["valid"][m], ref["valid"][m])
            if m == "S1RTC":
                assert torch.allclose(it["values"][m], ref["values"][m], rtol=0, atol=1e-6)
            else:
                assert torch.equal(it["values"][m], ref["values"][m]), m


def test_converter_refuses_an_existing_output_and_writes_atomically(tmp_path, shards):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputExistsError, match="out: exists; remove it or pass --overwrite"):
        convert(SHIPPED, out, modalities=["DEM"])
    convert(SHIPPED, out, modalities=["DEM"], overwrite=True, log=lambda s: None)
    assert [p.name for p in out.iterdir()] == ["Core-DEM"]
    # a scene that fails half-way leaves neither a partial output nor a temporary folder behind
    bad = tmp_path / "bad"
    (bad / "DEM").mkdir(parents=True)
    (bad / "DEM" / "a.tif").write_bytes((SHIPPED / "DEM" / "433D_629L_3_1.tif").read_bytes())
    (bad / "DEM" / "b.tif").write_bytes(b"not a tiff")
    with pytest.raises(Exception, match="b.tif"):
        convert(bad, tmp_path / "never", log=lambda s: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "out"]
    code = subprocess.run([PY, "-m", "cogen.data.shards", "--data", str(SHIPPED), "--out", str(out)], cwd=ROOT,
                          env=ENV, capture_output=True, text=True)
    assert code.returncode == 2 and code.stderr.strip().endswith("exists; remove it or pass --overwrite")


def test_ranks_and_workers_split_the_visits_disjointly_and_completely(shards):
    """Visit g of the endless sequence goes to exactly one of world x workers consumers; without a buffer each
    epoch (5 cells) is every cell once; the buffer only reorders each consumer's visits."""
    n, world, workers, epochs = 5, 2, 3, 12
    for buffer in (0, 7):
        seen = {}
        for rank in range(world):
            s = ShardStream(shards, seed=4, shuffle_buffer=buffer, rank=rank, world=world)
            for w in range(workers):
                it = s.visits(w, workers)
                seen[(rank, w)] = [next(it) for _ in range(n * epochs // (world * workers))]
        gs = [g for v in seen.values() for g, _ in v]
        assert len(gs) == len(set(gs)), "a visit went to two consumers"
        if buffer == 0:
            assert sorted(gs) == list(range(n * epochs))
            by_g = dict(v for vs in seen.values() for v in vs)
            for e in range(epochs):
                assert sorted(by_g[g] for g in range(e * n, (e + 1) * n)) == list(range(n))
        else:  # each consumer's visits, in another order than without the buffer
            for (rank, w), v in seen.items():
                plain = ShardStream(shards, seed=4, shuffle_buffer=0, rank=rank, world=world).visits(w, workers)
                head = [next(plain) for _ in range(len(v) + buffer)]
                assert set(v) <= set(head) and v != head[: len(v)]
    a = ShardStream(shards, seed=4).visits()
    b = ShardStream(shards, seed=5).visits()
    assert [next(a) for _ in range(10)] != [next(b) for _ in range(10)]  # seeded


def _batches(stream, n, workers, registry):
    dl = DataLoader(stream, batch_size=stream.batch_size, num_workers=workers,
                    collate_fn=lambda items: collate_scenes(items, registry=registry))
    it = iter(dl)
    return [next(it) for _ in range(n)]


def _key(batch):
    return [(s, w) for s, w in zip(batch["scene"], batch["window"])]


def test_dataloader_workers_read_their_share_and_resume_exactly(shards, registry):
    """Two DataLoader workers hand out batches in turn, each from its own visits; after a saved position a fresh
    loader continues with exactly the batches the uninterrupted one gave (values included)."""
    kw = dict(modalities=["S2L2A", "S1RTC", "LULC"], crop=16, seed=1, augment=True, shuffle_buffer=4, batch_size=3)
    for workers in (0, 2):
        ref = _batches(ShardStream(shards, **kw, num_workers=workers), 7, workers, registry)
        if workers:  # batch j comes from worker j mod 2, whose k-th batch holds its visits 3k .. 3k+2
            s = ShardStream(shards, **kw, num_workers=workers)
            for j, b in enumerate(ref):
                vis = s.visits(j % 2, 2)
                mine = [next(vis) for _ in range(3 * (j // 2 + 1))][-3:]
                assert _key(b) == [(s.item(g, str(s.index.cells[i]))["scene"], s.item(g, str(s.index.cells[i]))["window"])
                                   for g, i in mine]
        for cut in (3, 4):
            s = ShardStream(shards, **kw, num_workers=workers)
            s.load_state_dict(ShardStream(shards, **kw, num_workers=workers).state_dict(cut))
            got = _batches(s, 7 - cut, workers, registry)
            for a, b in zip(got, ref[cut:]):
                assert _key(a) == _key(b)
                for m in b["values"]:
                    assert torch.equal(a["values"][m], b["values"][m])
        state = ShardStream(shards, **kw, num_workers=workers).state_dict(3)
        other = ShardStream(shards, **kw, num_workers=workers + 1)
        with pytest.raises(DatasetError, match=f"num_workers={workers}, this run {workers + 1}"):
            other.load_state_dict(state)


def _write_part(path, rows, columns):
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("grid_cell", pa.string())] + [(c, pa.binary()) for c in columns])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=1)


def test_coarse_bands_and_products_on_other_grids(tmp_path, registry):
    """As in Major TOM: S2's 60 m band stored at its own resolution is repeated over 6 x 6 blocks of the 10 m grid;
    a 30 m DEM is resampled onto it (a plane stays a plane under bilinear); a cell without radar has none."""
    crs, h = "EPSG:32633", 48
    fine, coarse = from_origin(500000, 5000000, 10, 10), from_origin(500000, 5000000, 60, 60)
    rng = np.random.default_rng(0)
    s2 = {b: rng.integers(1, 5000, (h, h)).astype(np.uint16) for b in COLUMNS["Core-S2L2A"]}
    s2["B01"] = rng.integers(1, 5000, (h // 6, h // 6)).astype(np.uint16)
    row = {"grid_cell": "1U_1R"}
    for b, arr in s2.items():
        row[b] = geotiff_bytes(arr, crs, coarse if b == "B01" else fine)
    _write_part(tmp_path / "Core-S2L2A" / "images" / "part_00000.parquet", [row, {**row, "grid_cell": "2U_1R"}],
                COLUMNS["Core-S2L2A"])
    yy, xx = np.mgrid[0:h // 3, 0:h // 3]
    plane = (100.0 + 3.0 * yy + 2.0 * xx).astype(np.float32)  # elevation at 30 m pixel centres
    _write_part(tmp_path / "Core-DEM" / "images" / "part_00000.parquet",
                [{"grid_cell": "1U_1R", "DEM": geotiff_bytes(plane, crs, from_origin(500000, 5000000, 30, 30))}], ["DEM"])
    vv = np.full((h, h), 0.01, np.float32)
    vv[0, 0] = LINEAR_NODATA
    _write_part(tmp_path / "Core-S1RTC" / "images" / "part_00000.parquet",
                [{"grid_cell": "2U_1R", "vv": geotiff_bytes(vv, crs, fine, nodata=LINEAR_NODATA),
                  "vh": geotiff_bytes(vv, crs, fine, nodata=LINEAR_NODATA)}], ["vv", "vh"])
    s = ShardStream(tmp_path, modalities=["S2L2A", "S1RTC", "DEM"], mode="grid")
    items = {it["scene"]: it for it in s}
    a, b = items["1U_1R"], items["2U_1R"]
    assert set(a["values"]) == {"S2L2A", "DEM"} and set(b["values"]) == {"S2L2A", "S1RTC"}
    s2m = registry["S2L2A"]
    raw = s2m.denormalize(a["values"]["S2L2A"].double(), physical=False).round().numpy()
    assert np.array_equal(raw[0], np.repeat(np.repeat(s2["B01"], 6, 0), 6, 1))
    assert np.array_equal(raw[1], s2["B02"])
    dem = registry["DEM"].denormalize(a["values"]["DEM"].double())[0].numpy()
    r, c = np.mgrid[0:h, 0:h]
    want = 100.0 + 3.0 * ((r + 0.5) / 3 - 0.5) + 2.0 * ((c + 0.5) / 3 - 0.5)  # the plane at 10 m pixel centres
    inner = (slice(2, -2), slice(2, -2))
    assert a["valid"]["DEM"][inner].all() and np.allclose(dem[inner], want[inner], atol=1e-3)
    s1 = registry["S1RTC"].denormalize(b["values"]["S1RTC"].double()).numpy()
    assert not b["valid"]["S1RTC"][0, 0] and b["valid"]["S1RTC"].sum() == h * h - 1
    assert np.allclose(s1[:, 1:, 1:], -20.0, atol=1e-4)  # 0.01 linear power is -20 dB
    batch = collate_scenes(list(items.values()), registry=registry)
    assert batch["present"]["S1RTC"].tolist() == [False, True]


def test_bad_shards_and_configs_fail_with_one_line(tmp_path, shards):
    from cogen.config import load_config

    with pytest.raises(DatasetError, match="shards folder not found; make one with"):
        ShardStream(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no shards of .*expected <root>/<PRODUCT>/images/part_"):
        ShardStream(tmp_path / "empty")
    _write_part(tmp_path / "x" / "Core-DEM" / "images" / "part_00000.parquet", [{"grid_cell": "a"}], [])
    with pytest.raises(DatasetError, match="part_00000.parquet: no column 'DEM'; a shard of DEM holds grid_cell and DEM"):
        ShardStream(tmp_path / "x", modalities=["DEM"])
    dem = sorted((shards / "Core-DEM" / "images").glob("*.parquet"))
    twice = tmp_path / "y" / "Core-DEM" / "images"
    twice.mkdir(parents=True)
    for i in (0, 1):
        (twice / f"part_{i}.parquet").write_bytes(dem[0].read_bytes())
    with pytest.raises(DatasetError, match="grid cell .* appears 2 times in the DEM shards"):
        ShardStream(tmp_path / "y", modalities=["DEM"])
    # a list of part files works (here two of the three) and a file outside a product folder is refused
    s = ShardStream([str(p) for p in dem[:2]], modalities=["DEM"])
    assert len(s.index) == 4 and s.modalities == ["DEM"]
    with pytest.raises(DatasetError, match="not inside a product folder"):
        ShardStream([str(tmp_path / "part.parquet")], modalities=["DEM"])
    with pytest.raises(DatasetError, match="smaller than crop 300"):
        next(iter(ShardStream(shards, modalities=["DEM"], crop=300)))
    tiny = ROOT / "configs" / "tiny.yaml"
    for over, match in [(["data.source=zarr"], "data.source='zarr': must be folder or majortom"),
                        (["data.root=[a.parquet]"], "a list of files is for Parquet shards; set data.source=majortom"),
                        (["data.source=majortom", "data.manifest=m.json"], "a manifest lists GeoTIFFs"),
                        (["data.shuffle_buffer=-1"], "data.shuffle_buffer=-1: must be 0")]:
        with pytest.raises(ConfigError, match=match):
            load_config(tiny, over)
    with pytest.raises(SystemExit):
        main(["--data", str(SHIPPED), "--out", str(tmp_path / "z"), "--rows-per-file", "0"])


def test_compute_options_are_checked_before_training(monkeypatch):
    import shutil

    from cogen.config import load_config
    from cogen.errors import CogenError
    from train import check_compute

    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["model.attention=xformers"])
    if not torch.cuda.is_available():
        with pytest.raises(CogenError, match="model.attention=xformers needs CUDA and xformers"):
            check_compute(cfg)
        cfg = load_config(ROOT / "configs" / "tiny.yaml", ["train.compile=true"])
        monkeypatch.setattr(shutil, "which", lambda name: None)
        with pytest.raises(CogenError, match="train.compile=true on a CPU needs a C.. compiler"):
            check_compute(cfg)
    with pytest.raises(CogenError, match="model.attention='flash'"):
        check_compute(load_config(ROOT / "configs" / "tiny.yaml", ["model.attention=flash"]))


def _run(out, *over, launch=(), check=True):
    cmd = [PY, *launch, str(ROOT / "train.py"), "--config", str(ROOT / "configs" / "tiny.yaml"), f"train.out_dir={out}",
           "train.log_every=1", "train.eval_every=0", "train.audit=true", *over]
    r = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert not check or r.returncode == 0, r.stderr[-2000:]
    return r


def _log(out, name):
    recs = [json.loads(line) for line in (out / name).read_text().splitlines()]
    return {r["step"]: r for r in recs if "step" in r and ("loss" in r or "samples" in r)}


def test_train_streams_shards_and_resumes_exactly(tmp_path, shards):
    """train.py data.source=majortom with two loader workers: stopped at step 3 and resumed, it takes the same
    samples and losses as the run that was not stopped; the checkpoint keeps the stream's position."""
    common = [f"data.root={shards}", "data.source=majortom", "data.num_workers=2", "data.shuffle_buffer=3",
              "train.steps=6", "train.ckpt_every=3"]
    _run(tmp_path / "ref", *common)
    _run(tmp_path / "cut", *common, "train.stop_at=3")
    state = json.loads((tmp_path / "cut" / "checkpoints" / "step-000003" / "state.json").read_text())
    assert state["data"] == {"batches": 3, "batch_size": 4, "num_workers": 2, "world": 1, "seed": 0, "cells": 5}
    r = _run(tmp_path / "cut", *common)
    assert "resumed from" in r.stderr + r.stdout
    ref, cut = _log(tmp_path / "ref", "metrics.jsonl"), _log(tmp_path / "cut", "metrics.jsonl")
    assert sorted(ref) == sorted(cut) == [1, 2, 3, 4, 5, 6]
    assert all(ref[s]["loss"] == cut[s]["loss"] for s in ref)
    a, b = _log(tmp_path / "ref", "audit/rank-0.jsonl"), _log(tmp_path / "cut", "audit/rank-0.jsonl")
    assert [a[s]["samples"] for s in a] == [b[s]["samples"] for s in b]
    assert len({tuple(x) for s in a for x in a[s]["samples"]}) == 24  # 24 distinct crops
    bad = _run(tmp_path / "cut", *common, "data.num_workers=1", "train.steps=8", check=False)
    assert bad.returncode == 2 and "num_workers=2, this run 1" in bad.stderr


def test_two_processes_read_disjoint_shards_and_end_each_step_with_equal_weights(tmp_path, shards):
    out = tmp_path / "ddp"
    launch = ["-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no"]
    _run(out, f"data.root={shards}", "data.source=majortom", "train.steps=3", launch=launch)
    r0, r1 = _log(out, "audit/rank-0.jsonl"), _log(out, "audit/rank-1.jsonl")
    assert sorted(r0) == sorted(r1) == [1, 2, 3]
    seen0 = {tuple(x) for s in r0 for x in r0[s]["samples"]}
    seen1 = {tuple(x) for s in r1 for x in r1[s]["samples"]}
    assert len(seen0) == len(seen1) == 12 and not seen0 & seen1
    assert all(r0[s]["weights"] == r1[s]["weights"] for s in r0)
    assert len({r0[s]["weights"] for s in r0}) == 3  # the weights did change every step


@pytest.mark.slow
def test_compiled_model_trains_like_the_eager_one(tmp_path):
    """train.compile=true (inductor, about two minutes on a CPU) gives the eager run's losses."""
    _run(tmp_path / "eager", "train.steps=3")
    _run(tmp_path / "compiled", "train.steps=3", "train.compile=true")
    a, b = _log(tmp_path / "eager", "metrics.jsonl"), _log(tmp_path / "compiled", "metrics.jsonl")
    assert sorted(a) == sorted(b) == [1, 2, 3]
    assert all(b[s]["loss"] == pytest.approx(a[s]["loss"], rel=1e-4) for s in a)


NINE = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B11", "B12"]  # a 9-band L2A product: no B01, B8A, B09


def test_a_band_subset_is_null_in_its_columns_and_streams_as_the_folder_reads_it(tmp_path, registry):
    """A scene whose S2L2A file holds 9 bands (named by its band descriptions) converts with null B01, B8A, B09,
    a thumbnail still; the stream's items (values, valid, bands) equal the folder's, the missing bands absent."""
    from cogen.data.synthetic import make_scene
    from cogen.io import write_raster

    tr, s2 = from_origin(500000.0, 5000000.0, 10, 10), registry["S2L2A"]
    for i, sub in enumerate([None, NINE]):
        sc = make_scene(32, 32, seed=i)["rasters"]
        arr = sc["S2L2A"] if sub is None else sc["S2L2A"][[s2.band_index(b) for b in sub]]
        write_raster(tmp_path / "data" / "S2L2A" / f"1U_{i}R.tif", arr, "EPSG:32633", tr, descriptions=sub)
        write_raster(tmp_path / "data" / "S1RTC" / f"1U_{i}R.tif", sc["S1RTC"], "EPSG:32633", tr)
    convert(tmp_path / "data", tmp_path / "mt", log=lambda s: None)
    rows = {r["grid_cell"]: r for r in pq.read_table(tmp_path / "mt" / "Core-S2L2A" / "images" / "part_00000.parquet")
            .to_pylist()}
    assert [c for c in COLUMNS["Core-S2L2A"] if rows["1U_1R"][c] is None] == ["B01", "B8A", "B09"]
    assert all(rows["1U_0R"][c] is not None for c in COLUMNS["Core-S2L2A"])
    assert rows["1U_1R"]["thumbnail"][:4] == b"\x89PNG"
    ref = SceneDataset(tmp_path / "data", crop=16, mode="grid")
    got = list(ShardStream(tmp_path / "mt", crop=16, mode="grid"))
    assert [(it["scene"], it["window"]) for it in got] == [(ref[i]["scene"], ref[i]["window"]) for i in range(len(ref))]
    for i, it in enumerate(got):
        want = ref[i]
        for key in ("values", "valid", "bands"):
            assert set(it[key]) == set(want[key]) == {"S2L2A", "S1RTC"}
            for m in want[key]:
                tol = 1e-6 if key == "values" and m == "S1RTC" else 0  # S1RTC's float32 trip through linear power
                assert torch.allclose(it[key][m].double(), want[key][m].double(), rtol=0, atol=tol), (key, m)
    nine = got[-1]
    assert nine["scene"] == "1U_1R" and nine["bands"]["S2L2A"].tolist() == [b in NINE for b in s2.bands]
    assert nine["valid"]["S2L2A"].all() and float(nine["values"]["S2L2A"][[0, 8, 9]].abs().sum()) == 0


def test_a_row_with_every_band_null_is_refused_in_one_line(tmp_path):
    part = tmp_path / "Core-S2L2A" / "images" / "part_00000.parquet"
    _write_part(part, [{"grid_cell": "1U_1R"}], COLUMNS["Core-S2L2A"])
    with pytest.raises(DatasetError) as e:
        next(iter(ShardStream(tmp_path, modalities=["S2L2A"], mode="grid")))
    assert "\n" not in str(e.value) and str(e.value).startswith(f"{part}: cell 1U_1R: every S2L2A band column is null")
    assert "re-convert that cell" in str(e.value)

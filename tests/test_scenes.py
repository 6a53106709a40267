"""`--manifest scenes.csv`: many scenes in one job (cogen/scenes.py), with the tiny model on the shipped scenes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

import sample
from conftest import ROOT, SHIPPED
from cogen.scenes import deal, is_complete

SCENES = sorted(p.stem for p in (SHIPPED / "S1RTC").glob("*.tif"))
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
FAST = ["--steps", "2", "--tile", "16", "--overlap", "4"]


def run(*args) -> int:
    return sample.main([str(a) for a in args])


def write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def impute_csv(tmp: Path, window: str | None = '"0,0,32,32"', scenes=SCENES) -> Path:
    """The shipped scenes, S1RTC and DEM in, paths relative to the CSV's folder."""
    rel = Path(os.path.relpath(SHIPPED, tmp))
    rows = [f"{s},{rel / 'S1RTC' / s}.tif,{rel / 'DEM' / s}.tif" + (f",{window}" if window else "") for s in scenes]
    return write_csv(tmp / "scenes.csv", "scene,S1RTC,DEM" + (",window" if window else ""), rows)


def impute(csv, out, bundle, *extra) -> int:
    return run("impute", "--manifest", csv, "--target", "S2L2A", "--checkpoint", bundle, "--out", out, "--quiet",
               *FAST, *extra)


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_each_scene_is_written_as_its_own_run(tmp_path, tiny_bundle):
    """Five shipped scenes: one folder each, complete, listed in summary.json; a scene's output is bit-identical to
    a single --input run of it."""
    out = tmp_path / "out"
    assert impute(impute_csv(tmp_path), out, tiny_bundle) == 0
    s = summary(out)
    assert s["counts"] == {"written": 5, "skipped": 0, "failed": 0} and s["processes"] == 1
    assert [r["scene"] for r in s["written"]] == SCENES and all(r["line"] == i + 2 for i, r in enumerate(s["written"]))
    for sid in SCENES:
        assert is_complete(out / sid)[0] and (out / sid / "quicklook.png").is_file()
        with rasterio.open(out / sid / "S2L2A.tif") as f:
            assert f.shape == (32, 32)
    assert sorted(p.name for p in out.iterdir()) == sorted([*SCENES, "job.json", "summary.json"])  # no leftovers
    one = tmp_path / "one"
    sid = SCENES[2]
    assert run("impute", "--input", f"S1RTC={SHIPPED / 'S1RTC' / sid}.tif", "--input", f"DEM={SHIPPED / 'DEM' / sid}.tif",
               "--target", "S2L2A", "--window", "0,0,32,32", "--checkpoint", tiny_bundle, "--out", one, "--quiet",
               *FAST) == 0
    with rasterio.open(one / "S2L2A.tif") as a, rasterio.open(out / sid / "S2L2A.tif") as b:
        assert np.array_equal(a.read(), b.read()) and a.transform == b.transform
    run_json = json.loads((out / sid / "run.json").read_text())
    assert run_json["arguments"]["window"] == "0,0,32,32" and "pipeline" not in run_json["arguments"]


def test_a_killed_job_reruns_only_what_is_left(tmp_path, tiny_bundle, monkeypatch):
    """Killed during its third scene: the rerun skips the two complete ones, redoes a folder without run.json, and
    removes what the killed processes left behind."""
    from cogen.pipeline import CogenPipeline

    csv, out = impute_csv(tmp_path), tmp_path / "out"
    real, calls = CogenPipeline.__call__, []

    def killed_on_the_third(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(CogenPipeline, "__call__", killed_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        impute(csv, out, tiny_bundle)
    monkeypatch.setattr(CogenPipeline, "__call__", real)
    assert [is_complete(out / s)[0] for s in SCENES] == [True, True, False, False, False]
    assert not (out / "summary.json").exists()
    (out / f".{SCENES[3]}.partial-999999").mkdir()  # a hard kill leaves its staging folder
    (out / SCENES[1] / "run.json").unlink()  # and a scene without run.json is not complete
    kept = (out / SCENES[0] / "S2L2A.tif").stat().st_mtime_ns
    assert impute(csv, out, tiny_bundle) == 0
    s = summary(out)
    assert [r["scene"] for r in s["skipped"]] == SCENES[:1] and "complete" in s["skipped"][0]["reason"]
    assert [r["scene"] for r in s["written"]] == SCENES[1:]
    assert (out / SCENES[0] / "S2L2A.tif").stat().st_mtime_ns == kept  # not rewritten
    assert all(is_complete(out / sd)[0] for sd in SCENES) and not [p for p in out.iterdir() if p.name.startswith(".")]
    assert impute(csv, out, tiny_bundle) == 0 and summary(out)["counts"] == {"written": 0, "skipped": 5, "failed": 0}
    assert impute(csv, out, tiny_bundle, "--overwrite") == 0 and summary(out)["counts"]["written"] == 5


def test_a_bad_scene_is_reported_and_the_others_go_on(tmp_path, tiny_bundle, capsys):
    csv = impute_csv(tmp_path, scenes=SCENES[:2])
    csv.write_text(csv.read_text() + '# comments and blank lines are skipped\n\nlost,missing/s1.tif,,"0,0,32,32"\n')
    out = tmp_path / "out"
    assert impute(csv, out, tiny_bundle) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("scene lost (line 6) failed:") and "missing/s1.tif: file not found" in err[0]
    assert err[-1].startswith("error: 1 of 3 scenes failed") and "line 6" in err[-1] and "s1.tif" in err[-1]
    s = summary(out)
    assert s["counts"] == {"written": 2, "skipped": 0, "failed": 1}
    assert s["failed"][0]["scene"] == "lost" and s["failed"][0]["line"] == 6 and "missing/s1.tif" in s["failed"][0]["error"]
    csv.write_text(csv.read_text().replace("missing/s1.tif", os.path.relpath(SHIPPED / "S1RTC" / f"{SCENES[0]}.tif", tmp_path)))
    assert impute(csv, out, tiny_bundle) == 0  # fixed: only that scene runs
    assert summary(out)["counts"] == {"written": 1, "skipped": 2, "failed": 0}


@pytest.mark.parametrize("header,row,expect", [
    ("S1RTC,DEM", "a.tif,b.tif", "line 1: no 'scene' column"),
    ("scene,S1RTC,S1RTC", "x,a.tif,b.tif", "line 1: column S1RTC twice"),
    ("scene,S1RTC,window", "x,a.tif,0,0,8,8", "line 2: 6 cells for the header's 3 columns (a window's commas"),
    ("scene,S1RTC,window", 'x,a.tif,"0,0,8"', "line 2: window '0,0,8': expected four whole numbers"),
    ("scene,S1RTC,DEM", "x,,", "line 2: scene x has no input"),
    ("scene,S1RTC", "../x,a.tif", "line 2: scene id '../x' must be"),
    ("scene,S1RTC", "x,a.tif\nx,b.tif", "line 3: scene x is also on line 2"),
    ("scene,S1RTC,mask", "x,a.tif,m.tif", "line 1: a 'mask' column is for cloud-removal only"),
    ("scene,S1RTC,cloud", "x,a.tif,c.tif", "column 'cloud' is neither scene, mask, window nor a modality"),
    ("scene,S1RTC,S2L2A", "x,a.tif,b.tif", "column S2L2A is a target of this command"),
    ("scene,S1RTC", "", "no scene; add one row per scene"),
])
def test_a_bad_manifest_is_one_line_naming_the_line(tmp_path, tiny_bundle, capsys, header, row, expect):
    csv = write_csv(tmp_path / "scenes.csv", header, [row] if row else [])
    out = tmp_path / "out"
    assert impute(csv, out, tiny_bundle) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {csv}") and expect in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("header,row,extra,expect", [
    ("scene,S2L2A,S1RTC", "x,a.tif,b.tif", [], "no 'mask' column"),
    ("scene,S2L2A,mask", "x,a.tif,", [], "line 2: scene x has no mask"),
    ("scene,S1RTC,mask", "x,a.tif,m.tif", [], "line 2: scene x needs exactly one Sentinel-2 input"),
    ("scene,S2L2A,mask", "x,a.tif,m.tif", ["--mask", "m.tif"], "not --mask"),
    ("scene,S2L2A,mask,window", 'x,a.tif,m.tif,"0,0,8,8"', ["--window", "0,0,8,8"], "not both"),
])
def test_cloud_removal_manifest_rows(tmp_path, tiny_bundle, capsys, header, row, extra, expect):
    csv = write_csv(tmp_path / "clouds.csv", header, [row])
    assert run("cloud-removal", "--manifest", csv, "--checkpoint", tiny_bundle, "--out", tmp_path / "o", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err
    assert run("cloud-removal", "--input", "S2L2A=a.tif", "--checkpoint", tiny_bundle, "--out", tmp_path / "o") == 2
    assert "cloud-removal needs --mask" in capsys.readouterr().err


def test_cloud_removal_and_segment_over_a_manifest(tmp_path, tiny_bundle):
    from cogen.io import read_raster, write_raster

    rows = []
    for sid in SCENES[:2]:
        s2, prof = read_raster(SHIPPED / "S2L2A" / f"{sid}.tif")
        mask = np.zeros((1, *s2.shape[1:]), np.uint8)
        mask[:, 4:12, 4:12] = 1
        write_raster(tmp_path / f"{sid}_mask.tif", mask, prof["crs"], prof["transform"], nodata=None)
        rows.append(f'{sid},{SHIPPED / "S2L2A" / sid}.tif,{SHIPPED / "S1RTC" / sid}.tif,{sid}_mask.tif,"0,0,16,16"')
    csv = write_csv(tmp_path / "clouds.csv", "scene,S2L2A,S1RTC,mask,window", rows)
    out = tmp_path / "clouds"
    assert run("cloud-removal", "--manifest", csv, "--checkpoint", tiny_bundle, "--out", out, "--quiet", *FAST) == 0
    for sid in SCENES[:2]:
        filled, _ = read_raster(out / sid / "S2L2A.tif")
        s2, _ = read_raster(SHIPPED / "S2L2A" / f"{sid}.tif")
        clear = np.ones((16, 16), bool)
        clear[4:12, 4:12] = False
        assert np.array_equal(filled[:, clear], s2[:, :16, :16][:, clear])
    csv = write_csv(tmp_path / "seg.csv", "scene,S2L2A", [f"{s},{SHIPPED / 'S2L2A' / s}.tif" for s in SCENES[:2]])
    out = tmp_path / "seg"
    assert run("segment", "--manifest", csv, "--samples", "2", "--window", "8,8,16,16", "--checkpoint", tiny_bundle,
               "--out", out, "--quiet", *FAST) == 0
    assert summary(out)["written"][0]["outputs"] == [f"{SCENES[0]}/LULC.tif", f"{SCENES[0]}/LULC_confidence.tif"]
    with rasterio.open(out / SCENES[1] / "LULC.tif") as f:
        assert f.shape == (16, 16)


def test_an_out_of_something_else_or_other_settings_needs_overwrite(tmp_path, tiny_bundle, capsys):
    csv, out = impute_csv(tmp_path, scenes=SCENES[:1]), tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("user file")
    assert impute(csv, out, tiny_bundle) == 2
    assert "holds no --manifest job" in capsys.readouterr().err
    assert impute(csv, out, tiny_bundle, "--overwrite") == 0 and (out / "notes.txt").exists()
    assert impute(csv, out, tiny_bundle, "--seed", "3") == 2
    assert "other settings (options.seed 0 there, 3 now)" in capsys.readouterr().err
    assert summary(out)["counts"]["written"] == 1  # untouched


def test_scenes_are_dealt_round_robin_in_row_order():
    items = list(range(7))
    assert [deal(items, r, 3) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum((deal(items, r, 2) for r in range(2)), [])) == items
    assert deal(items, 0, 1) == items


def launch(csv, out, bundle, *extra, **popen):
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
           "1", "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "sample.py"), "impute", "--manifest",
           str(csv), "--target", "S2L2A", "--checkpoint", str(bundle), "--out", str(out), "--quiet", *FAST, *extra]
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_two_processes_write_each_scene_exactly_once(tmp_path, tiny_bundle):
    """`accelerate launch --num_processes 2` (gloo on CPU) over the five shipped scenes."""
    out = tmp_path / "out"
    p = launch(impute_csv(tmp_path), out, tiny_bundle)
    stdout, stderr = p.communicate(timeout=300)
    assert p.returncode == 0, stderr[-3000:]
    s = summary(out)
    assert s["processes"] == 2 and s["counts"] == {"written": 5, "skipped": 0, "failed": 0}
    assert [(r["scene"], r["rank"]) for r in s["written"]] == [(sid, i % 2) for i, sid in enumerate(SCENES)]
    assert all(is_complete(out / sid)[0] for sid in SCENES)
    assert stdout.count("5 scenes: 5 written") == 1  # one summary, from the main process


@pytest.mark.slow
def test_two_processes_killed_midway_then_rerun_complete_the_rest(tmp_path, tiny_bundle):
    """SIGKILL to the launcher and both processes once a scene is complete; the same command then writes the
    scenes that were not, and skips the ones that were (their files untouched)."""
    out, csv = tmp_path / "out", impute_csv(tmp_path, window=None)  # whole 224 px scenes: about 5 s each
    p = launch(csv, out, tiny_bundle, "--steps", "20")
    t = time.time()
    while not any(is_complete(out / sid)[0] for sid in SCENES):
        assert p.poll() is None and time.time() - t < 240, p.communicate()[1][-3000:]
        time.sleep(0.2)
    import psutil

    for proc in [*psutil.Process(p.pid).children(recursive=True), psutil.Process(p.pid)]:  # torchrun's workers too
        os.kill(proc.pid, signal.SIGKILL)
    p.communicate()
    done = [sid for sid in SCENES if is_complete(out / sid)[0]]
    assert 1 <= len(done) < 5 and not (out / "summary.json").exists()
    mtimes = {sid: (out / sid / "S2L2A.tif").stat().st_mtime_ns for sid in done}
    p = launch(csv, out, tiny_bundle, "--steps", "20")
    _, stderr = p.communicate(timeout=600)
    assert p.returncode == 0, stderr[-3000:]
    s = summary(out)
    assert sorted(r["scene"] for r in s["skipped"]) == done
    assert sorted(r["scene"] for r in s["written"]) == sorted(set(SCENES) - set(done))
    assert all(is_complete(out / sid)[0] for sid in SCENES)
    assert {sid: (out / sid / "S2L2A.tif").stat().st_mtime_ns for sid in done} == mtimes
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]

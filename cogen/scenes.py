"""Many scenes in one job: `impute`, `cloud-removal` and `segment` with `--manifest scenes.csv --out DIR`.

The manifest is a CSV file (UTF-8, comma-separated), one row per scene after a header line:

    scene,S1RTC,DEM,window
    433D_629L_3_1,S1RTC/433D_629L_3_1.tif,DEM/433D_629L_3_1.tif,
    282D_485L_3_3,S1RTC/282D_485L_3_3.tif,DEM/282D_485L_3_3.tif,"0,0,128,128"

- `scene` (required): the scene's id, which names its output folder `DIR/<scene>/`: letters, digits, `.`, `_`, `-`,
  not starting with `.`, each id once.
- one column per input modality, named as in the checkpoint (`cogen info`): a GeoTIFF path, relative to the
  CSV's folder or absolute; an empty cell: the scene lacks that modality (a scene needs at least one).
- `mask` (cloud-removal, required there): the scene's cloud mask, a path like the inputs (`--mask-values` applies
  to every scene).
- `window` (optional): `COL,ROW,WIDTH,HEIGHT` in pixels, quoted because of its commas; empty: the whole scene.
  Without the column, `--window` / `--bounds` (if given) apply to every scene.
- Blank lines and lines starting with `#` are skipped.

Each scene is one run of the command, written as a single run is (`DIR/<scene>/` with its rasters, run.json and
quicklook.png, staged and renamed into place when complete, run.json last), with the same settings and seed for
every scene. A scene is complete when its run.json exists and every output it lists exists; complete scenes are
skipped, so running the same command again finishes a killed job. `DIR/job.json` records the job's settings (a
rerun must use the same ones, or `--overwrite` to redo every scene). Under `accelerate launch --num_processes N`
the scenes still to do are dealt round-robin in row order to the N processes (`PartialState`), each of which loads
the model once. A scene that fails is reported and the others go on; `DIR/summary.json` lists the scenes written,
skipped and failed (with the reason), written by the main process when every process is done, and the command
exits with 2 if any scene failed.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import re
import shutil
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import CogenError, DatasetError, OutputExistsError, UsageError
from .io import write_json

SCENE_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
RESERVED = ("scene", "mask", "window")  # columns that are not modalities
OPTICAL = ("S2L2A", "S2L1C")  # cloud removal's target: the scene's Sentinel-2 input
STATUS = ("written", "skipped", "failed")
STATUS_DIR = ".scenes"  # DIR/.scenes/<status>/<scene>.<rank>.json: one record a scene, merged into summary.json


class ScenesFailedError(CogenError):
    """Some scenes of a --manifest job failed (the others were written)."""


@dataclass
class Scene:
    id: str
    line: int  # line of the CSV file
    inputs: dict[str, str]  # modality -> path
    mask: str | None = None
    window: str | None = None


@dataclass
class Manifest:
    path: Path
    columns: list[str]
    scenes: list[Scene] = field(default_factory=list)

    @property
    def modalities(self) -> list[str]:
        return [c for c in self.columns if c not in RESERVED]


def read_manifest(path: str | Path, cloud_removal: bool = False) -> Manifest:
    """Parse and check a manifest CSV (format above); any bad line is a DatasetError naming the file, the line and
    the fix. Paths are made absolute against the CSV's folder; the files themselves are checked when run."""
    from .workflows import window_arg

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"--manifest {path}: not found; give a CSV file with a header line and one row per scene")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"--manifest {path}: cannot be read as UTF-8 text ({e}); save it as a UTF-8 CSV") from None
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, list[str]]] = []
    for cells in reader:
        if not cells or not "".join(cells).strip() or cells[0].lstrip().startswith("#"):
            continue
        rows.append((reader.line_num, [c.strip() for c in cells]))
    if not rows:
        raise DatasetError(f"{path}: empty; the first line names the columns (e.g. scene,S1RTC,DEM), then one row "
                           f"per scene")
    hline, header = rows[0]
    bad = [c for c in header if not c]
    if bad or len(set(header)) != len(header):
        dup = next((c for c in header if header.count(c) > 1), "")
        raise DatasetError(f"{path}, line {hline}: {'an empty column name' if bad else f'column {dup} twice'} in the "
                           f"header; name each column once, e.g. scene,S1RTC,DEM")
    if "scene" not in header:
        raise DatasetError(f"{path}, line {hline}: no 'scene' column; the first line names the columns, e.g. "
                           f"scene,S1RTC,DEM (scene: the id that names the scene's output folder)")
    if cloud_removal and "mask" not in header:
        raise DatasetError(f"{path}, line {hline}: no 'mask' column; cloud-removal needs each scene's cloud mask, "
                           f"e.g. scene,S2L2A,S1RTC,mask")
    if not cloud_removal and "mask" in header:
        raise DatasetError(f"{path}, line {hline}: a 'mask' column is for cloud-removal only; drop it")
    man = Manifest(path, header)
    if not man.modalities:
        raise DatasetError(f"{path}, line {hline}: no input column; add one per input modality, e.g. "
                           f"scene,S1RTC,DEM")
    seen: dict[str, int] = {}
    for n, cells in rows[1:]:
        where = f"{path}, line {n}"
        if len(cells) != len(header):
            hint = (" (a window's commas must be inside quotes: \"0,0,512,512\")" if len(cells) > len(header)
                    else "; leave a cell empty for a modality the scene lacks")
            raise DatasetError(f"{where}: {len(cells)} cells for the header's {len(header)} columns{hint}")
        row = dict(zip(header, cells))
        sid = row["scene"]
        if not SCENE_ID.fullmatch(sid) or sid in ("job.json", "summary.json"):
            raise DatasetError(f"{where}: scene id {sid!r} must be letters, digits, '.', '_' or '-' (not starting "
                               f"with '.'; not job.json or summary.json): it names the scene's output folder")
        if sid in seen:
            raise DatasetError(f"{where}: scene {sid} is also on line {seen[sid]}; give each scene one row")
        seen[sid] = n
        resolve = lambda p: str(path.parent.absolute() / Path(p).expanduser())  # an absolute path stays itself
        inputs = {m: resolve(row[m]) for m in man.modalities if row[m]}
        if not inputs:
            raise DatasetError(f"{where}: scene {sid} has no input; give a path in at least one of the columns "
                               f"{', '.join(man.modalities)}")
        sc = Scene(sid, n, inputs)
        if cloud_removal:
            optical = [m for m in inputs if m in OPTICAL]
            if len(optical) != 1:
                raise DatasetError(f"{where}: scene {sid} needs exactly one Sentinel-2 input (S2L2A or S2L1C) for "
                                   f"cloud-removal, has {len(optical)}")
            if not row["mask"]:
                raise DatasetError(f"{where}: scene {sid} has no mask; give the path of its cloud mask in the mask "
                                   f"column")
            sc.mask = resolve(row["mask"])
        if row.get("window"):
            try:
                window_arg(row["window"])
            except UsageError:
                raise DatasetError(f"{where}: window {row['window']!r}: expected four whole numbers "
                                   f"COL,ROW,WIDTH,HEIGHT in pixels, in quotes, e.g. \"0,0,512,512\"; or leave it "
                                   f"empty for the whole scene") from None
            sc.window = row["window"]
        man.scenes.append(sc)
    if not man.scenes:
        raise DatasetError(f"{path}: no scene; add one row per scene under the header line")
    return man


def check_against(man: Manifest, modalities, targets: list[str], args) -> None:
    """The manifest's columns against the checkpoint's modalities and the command's targets and flags."""
    for m in man.modalities:
        if m not in modalities:
            raise DatasetError(f"{man.path}: column {m!r} is neither scene, mask, window nor a modality of the "
                               f"checkpoint ({', '.join(modalities)}); rename or drop it")
        if m in targets:
            raise DatasetError(f"{man.path}: column {m} is a target of this command; drop the column, or the "
                               f"target")
    if "window" in man.columns and (getattr(args, "window", None) or getattr(args, "bounds", None)):
        raise UsageError(f"{man.path} has a window column: give windows there or --window/--bounds, not both")
    if getattr(args, "mask", None):
        raise UsageError("with --manifest, give each scene's cloud mask in the manifest's mask column, not --mask")


def is_complete(d: Path) -> tuple[bool, str]:
    """Whether a scene's output folder is complete: its run.json exists and every output it lists exists."""
    try:
        doc = json.loads((d / "run.json").read_text())
    except FileNotFoundError:
        return False, "no run.json"
    except (OSError, ValueError):
        return False, "run.json unreadable"
    outs = doc.get("outputs") if isinstance(doc, dict) else None
    names = [n for f in outs.values() for n in f.values()] if isinstance(outs, dict) else []
    if not names:
        return False, "run.json lists no output"
    missing = [n for n in names if not (d / n).is_file()]
    if missing:
        return False, f"{missing[0]} missing"
    return True, f"complete: run.json and its {len(names)} output{'s' if len(names) > 1 else ''} exist"


def deal(items: list, rank: int, processes: int) -> list:
    """Process `rank`'s share of `items`: round-robin in their order."""
    return items[rank::processes]


def job_settings(args, pipe) -> dict[str, Any]:
    """What makes two runs of a job the same job: the command, checkpoint, sampling options and flags."""
    from .workflows import _options, _parse_add_offsets

    s = {"command": args.command, "checkpoint_sha256": pipe.bundle.digest,
         "options": _options(pipe, args).to_dict(), "add_offsets": _parse_add_offsets(getattr(args, "add_offset", None))}
    for k in ("target", "mask_values", "window", "bounds", "bounds_crs", "bands"):
        if hasattr(args, k):
            s[k] = getattr(args, k)
    return json.loads(json.dumps(s, default=str))


def _flat(d: dict, pre: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flat(v, f"{pre}{k}.") if isinstance(v, dict) else {f"{pre}{k}": v})
    return out


def check_job(out: Path, settings: dict, overwrite: bool) -> None:
    """An --out may be new, empty, or this job's own (its job.json has the same settings); else --overwrite."""
    job = out / "job.json"
    if job.is_file():
        try:
            old = json.loads(job.read_text()).get("settings", {})
        except (OSError, ValueError, AttributeError):
            old = {}
        if old != settings and not overwrite:
            a, b = _flat(old), _flat(settings)
            diff = [f"{k} {a.get(k)!r} there, {b.get(k)!r} now" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
            raise OutputExistsError(f"{out} holds a --manifest job with other settings ({'; '.join(diff[:3])}); "
                                    f"rerun it with its own settings to finish it, pass --overwrite to redo every "
                                    f"scene, or choose another --out")
    elif out.exists() and (not out.is_dir() or any(out.iterdir())) and not overwrite:
        raise OutputExistsError(f"{out}: exists, is not empty and holds no --manifest job (job.json); pass "
                                f"--overwrite or choose another --out")


def _prepare(out: Path, settings: dict, man: Manifest) -> None:
    """Main process, before any scene runs: job.json, stale staging folders of killed runs and records removed."""
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "job.json", {"settings": settings, "manifest": str(man.path.resolve()),
                                  "command": " ".join(sys.argv)})
    for d in out.glob(".*"):
        if d.is_dir() and (".partial-" in d.name or ".old-" in d.name or d.name == STATUS_DIR):
            shutil.rmtree(d, ignore_errors=True)


class _Records:
    """The scenes' records under DIR/.scenes/<status>/, one file each, written by whichever process ran it."""

    def __init__(self, out: Path):
        self.root = out / STATUS_DIR

    def write(self, status: str, rec: dict) -> None:
        write_json(self.root / status / f"{rec['scene']}.{rec.get('rank', 0)}.json", {"status": status, **rec})

    def counts(self) -> dict[str, int]:
        return {s: len(list((self.root / s).glob("*.json"))) if (self.root / s).is_dir() else 0 for s in STATUS}

    def read(self) -> list[dict]:
        return [json.loads(p.read_text()) for s in STATUS if (self.root / s).is_dir()
                for p in sorted((self.root / s).glob("*.json"))]


class _Progress:
    """One bar on the main process over every process's scenes, refreshed from the records each second."""

    def __init__(self, total: int, records: _Records, enabled: bool):
        from tqdm.auto import tqdm

        self.records, self.enabled = records, enabled
        self.bar = tqdm(total=total, desc="scenes", unit="scene", disable=not enabled, dynamic_ncols=True,
                        file=sys.stderr)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        if enabled:
            self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            self.refresh()

    def refresh(self) -> int:
        c = self.records.counts()
        done = sum(c.values())
        if self.enabled:
            self.bar.set_postfix(c, refresh=False)
            self.bar.update(done - self.bar.n)
        return done

    def write(self, line: str) -> None:
        (self.bar.write if self.enabled else lambda s: print(s, file=sys.stderr))(line)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.refresh()
        self.bar.close()


def _process_state():
    """accelerate's PartialState: under `accelerate launch` this process's index among several (gloo on a machine
    without CUDA), else process 0 of 1."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def _run_scene(fn: Callable, args, sc: Scene, pipe, out: Path, rank: int) -> tuple[str, dict]:
    """One scene as one run of the command (its own output folder); any error is the scene's record."""
    a = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "scene_window"})
    a.input = [f"{m}={p}" for m, p in sc.inputs.items()]
    a.manifest, a.out, a.overwrite, a.quiet, a.pipeline = None, str(out / sc.id), True, True, pipe
    if sc.mask:
        a.mask = sc.mask
    if sc.window:
        a.window, a.bounds = sc.window, None
    rec: dict[str, Any] = {"scene": sc.id, "line": sc.line, "rank": rank}
    t = time.time()
    err = io.StringIO()
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            files = fn(a)
        status = "written"
        rec["outputs"] = sorted(f"{sc.id}/{Path(p).name}" for f in files.values() for p in f.values())
    except Exception as e:  # a bad scene is reported; the others go on
        status = "failed"
        rec["error"] = str(e) if isinstance(e, CogenError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, CogenError):
            rec["traceback"] = traceback.format_exc(limit=-4)
    rec["seconds"] = round(time.time() - t, 2)
    warnings = [w for w in err.getvalue().splitlines() if w.strip()]
    if warnings:
        rec["warnings"] = warnings
    return status, rec


def run_manifest(args, fn: Callable) -> dict | None:
    """Run the workflow `fn` (impute, cloud_removal or segment) over every scene of `args.manifest` into
    `args.out/<scene>/`; this process's share of them. Returns the summary on the main process (None elsewhere);
    raises ScenesFailedError there if any scene failed."""
    from .pipeline import CogenPipeline

    t0 = time.time()
    cloud = args.command == "cloud-removal"
    man = read_manifest(args.manifest, cloud_removal=cloud)
    targets = {"impute": list(getattr(args, "target", [])), "segment": [getattr(args, "target", "LULC")]}.get(
        args.command, [])
    state = _process_state()
    rank, n = state.process_index, state.num_processes
    device = args.device
    if device == "cuda" and n > 1:  # one GPU per process
        device = f"cuda:{state.local_process_index}"
    pipe = CogenPipeline.from_checkpoint(args.checkpoint, device)
    check_against(man, list(pipe.model.names), targets, args)
    out = Path(args.out)
    settings = job_settings(args, pipe)
    check_job(out, settings, args.overwrite)
    done = {} if args.overwrite else {sc.id: is_complete(out / sc.id) for sc in man.scenes}
    pending = [sc for sc in man.scenes if not done.get(sc.id, (False,))[0]]
    records = _Records(out)
    state.wait_for_everyone()  # every process has seen --out as it was before the main process writes into it
    if state.is_main_process:
        _prepare(out, settings, man)
        for sc in man.scenes:
            if done.get(sc.id, (False,))[0]:
                records.write("skipped", {"scene": sc.id, "line": sc.line, "rank": rank, "reason": done[sc.id][1]})
    state.wait_for_everyone()  # and nothing is written into a scene's folder before it is ready
    bar = _Progress(len(man.scenes), records, state.is_main_process and not args.quiet)
    try:
        for sc in deal(pending, rank, n):
            status, rec = _run_scene(fn, args, sc, pipe, out, rank)
            records.write(status, rec)
            for w in rec.get("warnings", []):
                bar.write(f"scene {sc.id}: {w}")
            if status == "failed":
                bar.write(f"scene {sc.id} (line {sc.line}) failed: {rec['error']}")
        if not state.is_main_process:
            return None
        while bar.refresh() < len(man.scenes):  # the other processes' scenes; files, not a collective (no timeout)
            time.sleep(1.0)
    finally:
        bar.close()
    return _summarise(out, man, records, n, t0)


def _summarise(out: Path, man: Manifest, records: _Records, processes: int, t0: float) -> dict:
    order = {sc.id: i for i, sc in enumerate(man.scenes)}
    recs = sorted(records.read(), key=lambda r: (order.get(r["scene"], len(order)), r.get("rank", 0)))
    summary: dict[str, Any] = {"manifest": str(man.path.resolve()), "command": " ".join(sys.argv),
                               "processes": processes, "scenes": len(man.scenes),
                               "counts": {s: sum(r["status"] == s for r in recs) for s in STATUS},
                               "seconds": round(time.time() - t0, 1)}
    for s in STATUS:
        summary[s] = [{k: v for k, v in r.items() if k != "status"} for r in recs if r["status"] == s]
    write_json(out / "summary.json", summary)
    shutil.rmtree(records.root, ignore_errors=True)
    c = summary["counts"]
    print(f"{len(man.scenes)} scenes: {c['written']} written, {c['skipped']} skipped (complete), {c['failed']} failed; "
          f"{out / 'summary.json'}")
    if c["failed"]:
        first = summary["failed"][0]
        raise ScenesFailedError(f"{c['failed']} of {len(man.scenes)} scenes failed (first: scene {first['scene']}, "
                                f"line {first['line']} of {man.path}: {first['error']}); the others are in {out}. Fix "
                                f"them and run the same command again: complete scenes are skipped")
    return summary

"""Output folders of sample.py: staged under a temporary name, moved into place when complete."""
from __future__ import annotations

import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from .errors import OutputExistsError
from .io import write_json


class OutputDir:
    """`with OutputDir(path, overwrite) as d:` -> d.path is a staging folder; on success it becomes `path`.

    An existing non-empty `path` is an error unless `overwrite`; an interrupted run leaves `path` as it was
    (or absent) and at most a hidden `.NAME.partial-PID` folder, never a result that looks finished."""

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.final = Path(path)
        if self.final.exists() and (not self.final.is_dir() or any(self.final.iterdir())) and not overwrite:
            raise OutputExistsError(f"{self.final}: output folder exists and is not empty; pass --overwrite or "
                                    f"choose another --out")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.final.parent / f".{self.final.name}.partial-{os.getpid()}"

    def __enter__(self) -> "OutputDir":
        if self.path.exists():
            shutil.rmtree(self.path)
        self.path.mkdir(parents=True)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)
            return
        if self.final.exists():
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}"
            os.replace(self.final, old)
            os.replace(self.path, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.path, self.final)


def versions() -> dict[str, str]:
    import diffusers
    import rasterio
    import torch

    from . import __version__

    return {"cogen": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "rasterio": rasterio.__version__, "platform": platform.platform()}


def peak_rss_mb() -> float:
    """This process's peak resident memory. On Linux the high-water mark of its own address space (VmHWM):
    getrusage's ru_maxrss survives exec and so also counts the parent's memory copied at fork."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024 if sys.platform != "darwin" else r / 2**20


def write_run_json(directory: Path, args: dict[str, Any], bundle, seed: int, t0: float, extra: dict | None = None):
    doc = {"command": " ".join(sys.argv), "arguments": args,
           "checkpoint": {"path": str(bundle.path), "sha256": bundle.digest},
           "versions": versions(), "seed": seed,
           "timings": {"total_s": round(time.time() - t0, 2)}, "peak_rss_mb": round(peak_rss_mb(), 1),
           **(extra or {})}
    write_json(directory / "run.json", doc)
    return doc

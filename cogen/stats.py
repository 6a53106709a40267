r"""Per-band mean/std of continuous modalities over a dataset: streaming, windowed, nodata excluded.

    python -m cogen.stats --data data/terramind-examples --split-file configs/split.yaml --split train \
        --out configs/stats.yaml

The output is in the registry's format (`modalities: {NAME: {mean: [...], std: [...]}}`) and is overlaid on
configs/modalities.yaml when the registry is loaded.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable

import numpy as np
import yaml
from rasterio.windows import Window

from .data.dataset import Region, Regions, discover, load_split
from .errors import cli_exit
from .io import atomic_path, file_valid, open_raster
from .registry import Modality, Registry, default_registry


class RunningStats:
    """Per-band count, sum and sum of squared deviations, merged block by block (Chan et al.)."""

    def __init__(self, bands: int):
        self.n = np.zeros(bands)
        self.mean = np.zeros(bands)
        self.m2 = np.zeros(bands)

    def update(self, x: np.ndarray, ok: np.ndarray, bands=None) -> None:
        """x: (C,H,W) physical values, ok: (H,W) valid mask; `bands`: the indices of the bands x holds (a file
        with some of the modality's bands), None = all."""
        b = slice(None) if bands is None else list(bands)
        v = x[b][:, ok].astype(np.float64)  # (C', N)
        nb = v.shape[1]
        if nb == 0:
            return
        mb = v.mean(axis=1)
        m2b = ((v - mb[:, None]) ** 2).sum(axis=1)
        n = self.n[b] + nb
        delta = mb - self.mean[b]
        self.mean[b] = self.mean[b] + delta * nb / n
        self.m2[b] = self.m2[b] + m2b + delta**2 * self.n[b] * nb / n
        self.n[b] = n

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / np.maximum(self.n, 1))


def _windows(win: Window, block: int) -> Iterable[Window]:
    for r in range(int(win.row_off), int(win.row_off + win.height), block):
        for c in range(int(win.col_off), int(win.col_off + win.width), block):
            yield Window(c, r, min(block, int(win.col_off + win.width) - c), min(block, int(win.row_off + win.height) - r))


def compute_stats(files: dict[str, dict[str, Path]], registry: Registry, regions: dict[str, Region] | None = None,
                  default: Region | None = None, block: int = 512) -> dict[str, RunningStats]:
    out: dict[str, RunningStats] = {}
    regions = Regions(regions or {})
    for sid, mods in files.items():
        if regions.excluded(sid, default):
            continue
        for m, path in mods.items():
            mod: Modality = registry[m]
            if mod.is_categorical:
                continue
            rs = out.setdefault(m, RunningStats(mod.num_bands))
            with open_raster(path) as src:
                idx = mod.file_bands(src.count, str(path), src.descriptions)
                win = (regions or {}).get(sid, default or Region()).window(src.height, src.width)
                for w in _windows(win, block):
                    raw = src.read(window=w)
                    ok = mod.valid_mask(raw) & file_valid(path, raw, w)
                    rs.update(mod.to_physical(mod.expand_bands(raw, idx).astype(np.float64)), ok, idx)
    return out


@cli_exit
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Compute per-band mean/std in the registry's format.")
    p.add_argument("--data", required=True, help="dataset root: <root>/<MODALITY>/<scene_id>.tif")
    p.add_argument("--split-file", default=None, help="split YAML (e.g. configs/split.yaml)")
    p.add_argument("--split", default=None, help="split name in the split file (e.g. train)")
    p.add_argument("--registry", default=None, help="modalities YAML (default: configs/modalities.yaml)")
    p.add_argument("--out", required=True, help="stats YAML to write")
    p.add_argument("--overwrite", action="store_true")
    a = p.parse_args(argv)
    reg = Registry.from_yaml(a.registry, stats=None) if a.registry else default_registry()
    default, regions = (Region(), {})
    if a.split:
        default, regions = load_split(a.split_file or "configs/split.yaml", a.split)
    stats = compute_stats(discover(a.data, reg), reg, regions, default)
    doc = {"source": {"data": str(a.data), "split": a.split, "pixels": {m: int(s.n.max()) for m, s in stats.items()}},
           "modalities": {m: {"mean": [round(float(v), 6) for v in s.mean], "std": [round(float(v), 6) for v in s.std]}
                          for m, s in sorted(stats.items())}}
    with atomic_path(a.out, overwrite=a.overwrite) as tmp:
        tmp.write_text("# Written by `python -m cogen.stats`; per-band mean/std in physical units.\n"
                       + yaml.safe_dump(doc, sort_keys=False))
    print(f"wrote {a.out} ({', '.join(sorted(stats))})")


if __name__ == "__main__":
    main()

"""What the cloud-removal probes on training columns share: their options, and cloud removal run on each strip as
the evaluation runs it (mean of N samples from the interpolation at the bundle's strength, the bundle's sampling
settings), on training columns 96-159 with synthetic masks from another seed than the evaluation's."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cogen.evaluate import Split, _phys, cloud_masks  # noqa: E402
from cogen.pipeline import CogenPipeline, TargetResult, default_tiling  # noqa: E402


def parser(doc: str, samples: int = 8) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/demo")
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--cols", default="96,160", help="training columns to use")
    p.add_argument("--cover", type=float, default=0.3)
    p.add_argument("--samples", type=int, default=samples)
    p.add_argument("--seed", type=int, default=1, help="mask seed (the evaluation uses 0)")
    p.add_argument("--tiling", default=None, metavar="T,O",
                   help="tile and overlap of cloud removal (default: the bundle's; the results page uses 32,0)")
    return p


def tiling(pipe: CogenPipeline, a: argparse.Namespace) -> tuple[int, int]:
    if getattr(a, "tiling", None):
        tile, overlap = (int(v) for v in a.tiling.split(","))
        return tile, overlap
    return default_tiling(pipe.bundle.config.sample, ["S2L2A"], regenerate=True)


def strips(pipe: CogenPipeline, a: argparse.Namespace) -> Iterator[tuple[str, np.ndarray, np.ndarray, TargetResult]]:
    """(strip id, true S2L2A reflectance (C, H, W), cloud mask (H, W), cloud removal's S2L2A result) per strip."""
    sc = pipe.bundle.config.sample
    c0, c1 = (int(v) for v in a.cols.split(","))
    split = Split(a.data, pipe.registry, None, None, ["S2L2A", "S1RTC", "DEM"], cols=(c0, c1))
    masks = cloud_masks(split, [a.cover], a.seed)
    tile, overlap = tiling(pipe, a)
    for sid in split.with_all(["S2L2A", "S1RTC", "DEM"]):
        arr, mask = split.arrays[sid], masks[(sid, a.cover)]
        truth = _phys(pipe.registry, "S2L2A", arr["S2L2A"])
        res = pipe({m: arr[m] for m in ("S2L2A", "S1RTC", "DEM")}, ["S2L2A"], regenerate={"S2L2A": mask},
                   samples=a.samples, seed=0, tile=tile, overlap=overlap, progress=False, start="interpolate",
                   strength=sc.strength, grid_offset=split.offsets.get(sid))["S2L2A"]
        yield sid, truth, mask, res


def describe(pipe: CogenPipeline, a: argparse.Namespace) -> str:
    sc = pipe.bundle.config.sample
    tile, overlap = tiling(pipe, a)
    c0, c1 = (int(v) for v in a.cols.split(","))
    return (f"columns {c0}-{c1 - 1}, cover {a.cover:.0%}, mask seed {a.seed}, mean of {a.samples} samples from the "
            f"interpolation at strength {sc.strength}, {sc.steps} steps, tile {tile}/{overlap}")

"""Seams and memory of tiled sampling on large synthetic scenes.

    python scripts/large_scene_check.py seams  [--checkpoint CKPT]   # 512 x 512, tile 64, overlap 16
    python scripts/large_scene_check.py memory [--checkpoint CKPT]   # 2048 x 2048 through sample.py, peak RSS

Seams: the mean absolute difference between horizontally adjacent pixels whose pair straddles a tile border
(a column where one tile ends and the next begins) against the same figure for pairs inside tiles.
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_scene(tmp: Path, size: int, seed: int = 0) -> dict[str, Path]:
    from cogen.data.synthetic import make_scene
    from cogen.io import write_raster

    sc = make_scene(size, size, seed=seed)
    return {m: write_raster(tmp / f"{m}.tif", sc["rasters"][m], sc["crs"], sc["transform"]) for m in ("S1RTC", "DEM")}


def seams(checkpoint, size=512, tile=64, overlap=16, steps=10) -> None:
    from cogen.io import Grid, read_raster
    from cogen.pipeline import CogenPipeline
    from cogen.tiling import anchored_starts

    with tempfile.TemporaryDirectory() as td:
        paths = write_scene(Path(td), size)
        pipe = CogenPipeline.from_checkpoint(checkpoint)
        t = time.time()
        out = pipe({"S1RTC": str(paths["S1RTC"]), "DEM": str(paths["DEM"])}, ["S2L2A"], steps=steps, tile=tile,
                   overlap=overlap, seed=0)
        secs = time.time() - t
        anchor = Grid.of(paths["S1RTC"]).anchor()[1]
    img = out["S2L2A"].sample  # (C, H, W) reflectance
    d = np.abs(np.diff(img, axis=2)).mean(axis=(0, 1))  # (W-1,): pair (c, c+1)
    starts = anchored_starts(size, tile, overlap, anchor)  # the columns the pipeline cut
    border = set()
    for s in starts[1:]:
        border.add(s - 1)  # where the next tile begins
    for s in starts[:-1]:
        border.add(s + tile - 1)  # where a tile ends
    border = sorted(b for b in border if 0 <= b < size - 1)
    inside = [c for c in range(size - 1) if c not in border]
    # the model's own 4 px patch grid makes every patch boundary a little sharper than pixels inside a patch;
    # tile borders fall on patch boundaries, so the like-for-like reference is pairs on patch boundaries
    p = pipe.model.patch_size("S2L2A")
    inside_pb = [c for c in inside if (c + 1) % p == 0]
    ratio = d[border].mean() / d[inside].mean()
    ratio_pb = d[border].mean() / d[inside_pb].mean()
    print(f"scene {size}x{size}, tile {tile}, overlap {overlap}, {steps} steps, {secs:.0f} s")
    print(f"mean |x[c+1]-x[c]| across tile borders: {d[border].mean():.5f} (columns {len(border)})")
    print(f"  within tiles, all pairs: {d[inside].mean():.5f} -> ratio {ratio:.3f}")
    print(f"  within tiles, pairs on {p} px patch boundaries: {d[inside_pb].mean():.5f} -> ratio {ratio_pb:.3f}")
    print(f"  within tiles, pairs inside patches: {d[[c for c in inside if (c + 1) % p]].mean():.5f}")


def memory(checkpoint, size=2048, tile=64, overlap=16, steps=1) -> None:
    """The scene is made in its own process: a child forked from a parent that holds the scene in memory would
    count the parent's pages in its own peak (ru_maxrss survives fork + exec)."""
    with tempfile.TemporaryDirectory() as td:
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "_write", "--size", str(size), "--dir", td],
                       check=True, cwd=ROOT)
        paths = {m: Path(td) / f"{m}.tif" for m in ("S1RTC", "DEM")}
        cmd = [sys.executable, str(ROOT / "sample.py"), "impute", "--input", f"S1RTC={paths['S1RTC']}", "--target",
               "DEM", "--out", str(Path(td) / "out"), "--steps", str(steps), "--tile", str(tile), "--overlap",
               str(overlap), "--quiet"]
        if checkpoint:
            cmd += ["--checkpoint", str(checkpoint)]
        t = time.time()
        subprocess.run(cmd, check=True, cwd=ROOT)
        secs = time.time() - t
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # max over both children
        import json

        rj = json.loads((Path(td) / "out" / "run.json").read_text())
    print(f"scene {size}x{size} (S1RTC -> DEM), tile {tile}, overlap {overlap}, {steps} step(s): {secs:.0f} s, "
          f"peak RSS of sample.py {rj['peak_rss_mb']:.0f} MB (its own VmHWM, from run.json; largest child "
          f"by getrusage, scene writer included: {rss:.0f} MB)")
    print("command: " + " ".join(Path(c).name if "/tmp" in c else c for c in cmd))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("check", choices=["seams", "memory", "_write"])
    ap.add_argument("--dir", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--size", type=int, default=None)
    ap.add_argument("--steps", type=int, default=None)
    a = ap.parse_args()
    if a.check == "_write":  # internal: the memory check's scene, written by a process of its own
        write_scene(Path(a.dir), a.size)
    elif a.check == "seams":
        seams(a.checkpoint, size=a.size or 512, steps=a.steps or 10)
    else:
        memory(a.checkpoint, size=a.size or 2048, steps=a.steps or 1)


if __name__ == "__main__":
    main()

"""Compare sampling settings (tile, overlap, steps, sampler, guidance,
patch-grid ensemble) for one direction on training pixels.

Like scripts/select_cloud_start.py, the test strips (columns 160-223) are never used: the settings are scored
on the 64 training columns next to them (96-159). The model has seen these pixels in training (as random
crops), so absolute figures are optimistic; the comparison between settings is what this is for. One line
per setting: for continuous targets the PSNR of one sample and of the mean of N, SAM of the mean and the
high-frequency power ratio of single samples; for class maps mIoU, accuracy and ECE.

    python scripts/select_sampling.py --direction "S1RTC->S2L2A" --setting tile=32,overlap=0 --setting tile=64,overlap=16
    python scripts/select_sampling.py --direction "S2L2A->LULC" --setting tile=32,overlap=0 --setting tile=64,overlap=0
    python scripts/select_sampling.py --direction "S1RTC->S2L2A" --setting native_blocks=false --setting native_blocks=true
    python scripts/select_sampling.py --direction "S2L2A->LULC" --setting co_targets=none --setting co_targets=S1RTC+DEM
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cogen.errors import UsageError  # noqa: E402
from cogen.evaluate import Evaluator, Split, cogen_predictor, parse_direction  # noqa: E402
from cogen.pipeline import CogenPipeline  # noqa: E402

KEYS = {"tile": int, "overlap": int, "steps": int, "sampler": str, "guidance": float, "shift_ensemble": int, "final_denoise": float,
        "native_blocks": bool, "orientations": int, "co_targets": str, "interpolate_positions": bool}


def parse_setting(s: str) -> dict:
    out = {}
    for kv in s.split(","):
        k, _, v = kv.partition("=")
        if k.strip() not in KEYS or not v:
            raise UsageError(f"--setting {s!r}: expected key=value pairs among {', '.join(KEYS)}, e.g. tile=64,overlap=16")
        out[k.strip()] = KEYS[k.strip()](yaml.safe_load(v))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default="checkpoints/demo")
    p.add_argument("--data", default="data/terramind-examples")
    p.add_argument("--cols", default="96,160", help="training columns to use")
    p.add_argument("--direction", required=True, help="e.g. 'S1RTC->S2L2A'")
    p.add_argument("--setting", action="append", default=[], help="e.g. tile=64,overlap=16,steps=10 (repeatable)")
    p.add_argument("--samples", type=int, default=8)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    cond, tgt = parse_direction(a.direction)
    settings = [parse_setting(s) for s in a.setting] or [{}]
    pipe = CogenPipeline.from_checkpoint(a.checkpoint)
    c0, c1 = (int(v) for v in a.cols.split(","))
    split = Split(a.data, pipe.registry, None, None, cond + tgt, cols=(c0, c1))
    print(f"{a.direction}, columns {c0}-{c1 - 1}, {a.samples} samples, seed {a.seed}")
    for s in settings:
        sc = {"tile": 32, "overlap": 0, "steps": a.steps, "sampler": "ddim", "guidance": 1.0, "shift_ensemble": 1, "final_denoise": 0.0,
              "native_blocks": True, "orientations": 1, "co_targets": "", "interpolate_positions": False, **s}
        pipe.shift_ensemble = sc["shift_ensemble"]
        pipe.native_blocks = sc["native_blocks"]
        pipe.final_denoise = sc["final_denoise"]
        pipe.orientations = sc["orientations"]
        pipe.interpolate_positions = sc["interpolate_positions"]
        co = [m for m in str(sc["co_targets"]).split("+") if m and m != "none"]
        if any(m not in pipe.model.names for m in co):
            raise UsageError(f"co_targets={sc['co_targets']}: name modalities of the checkpoint joined by +, "
                             f"among {'+'.join(pipe.model.names)}, or none")
        pipe.co_targets = [{"target": t, "add": co} for t in tgt]
        ev = Evaluator(split, pipe.registry, a.samples, sc["steps"], sc["sampler"], sc["tile"], sc["overlap"], a.seed,
                       16, None)

        t0 = time.time()
        out = ev.run(cogen_predictor(pipe, ev, guidance=sc["guidance"]), cond, tgt, a.direction)
        label = ", ".join(f"{k} {v}" for k, v in sc.items())
        for m in tgt:
            o = out[m]
            if "mIoU" in o:
                fig = f"mIoU {o['mIoU']:.3f}  accuracy {o['pixel_accuracy']:.3f}  ECE {o.get('ECE', float('nan')):.3f}"
            else:
                mean = o.get("mean", o["sample"])
                fig = (f"PSNR one {o['sample']['PSNR']:.2f} dB, mean {mean['PSNR']:.2f} dB  "
                       f"SAM (mean) {mean.get('SAM', float('nan')):.2f} deg  HF ratio {o['hf_power_ratio']:.2f}")
            print(f"  {label}: {m} {fig}  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

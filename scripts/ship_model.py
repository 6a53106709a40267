r"""Turn a training checkpoint's EMA weights into a compact bundle to ship (fp16, safetensors shards < 20 MB),
and plot its training curve.

    python scripts/ship_model.py runs/demo/dark checkpoints/demo --curve docs/figures/demo_dark_curve.png

The bundle samples by default as its run's config says: the config's `sample:` section (cogen.options.SampleOptions;
for the demo model the last stage of configs/demo.yaml) ships with the weights.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from cogen.checkpoint import atomic_dir, load_bundle
from cogen.registry import Registry


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", help="training folder (its newest checkpoint is taken) or a checkpoint folder")
    ap.add_argument("out", help="bundle folder to write")
    ap.add_argument("--curve", default=None, help="PNG of the training curve from metrics.jsonl")
    ap.add_argument("--registry", default="configs/modalities.yaml")
    ap.add_argument("--stats", default="configs/stats.yaml")
    a = ap.parse_args()
    run = Path(a.run)
    ck = sorted((run / "checkpoints").glob("step-*"))[-1] if (run / "checkpoints").is_dir() else run
    b = load_bundle(ck / "ema" if (ck / "ema").is_dir() else ck)
    reg = Registry.from_yaml(a.registry, a.stats)
    step = json.loads((ck / "state.json").read_text())["step"] if (ck / "state.json").is_file() else None
    source = str(ck)
    if (ck / "cogen.json").is_file() and step is None:  # a shipped bundle again (e.g. with a newer registry)
        old = json.loads((ck / "cogen.json").read_text())
        step, source = old.get("step"), old.get("source", source)

    def build(d: Path) -> None:
        model = b.model.to(torch.float16)
        model.save_pretrained(d / "model", safe_serialization=True, max_shard_size="12MB")
        for tok in b.tokenizers.values():
            tok.save(d / "tokenizers")
        doc = {"format": "cogen-bundle/1", "config": b.config.to_dict(),
               "registry": {m: reg[m].to_dict() for m in b.model.names},
               "tokenizers": {m: t.config() for m, t in b.tokenizers.items()}, "step": step,
               "source": source, "weights": "EMA, stored as float16"}
        (d / "cogen.json").write_text(json.dumps(doc, indent=2))
        metrics = run / "metrics.jsonl"
        if metrics.is_file():
            shutil.copy(metrics, d / "metrics.jsonl")

    atomic_dir(Path(a.out), build)
    print(f"wrote {a.out} (step {step}); sampling defaults: {b.config.sample.to_dict()}")
    if a.curve and (run / "metrics.jsonl").is_file():
        plot_curve(run / "metrics.jsonl", Path(a.curve))


def plot_curve(metrics: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    recs = [json.loads(l) for l in metrics.read_text().splitlines()]
    tr = {r["step"]: r["loss"] for r in recs if "loss" in r}
    va = {r["step"]: r["val_loss"] for r in recs if "val_loss" in r}
    steps = np.array(sorted(tr))
    loss = np.array([tr[s] for s in steps])
    k = 10
    smooth = np.convolve(loss, np.ones(k) / k, mode="valid") if len(loss) > k else loss
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(steps, loss, alpha=0.25, color="C0")
    ax.plot(steps[len(steps) - len(smooth):], smooth, color="C0", label="train loss (every 10 steps, smoothed)")
    if va:
        ax.plot(sorted(va), [va[s] for s in sorted(va)], "o-", color="C1", label="validation loss (EMA, test strips)")
    ax.set_xlabel("step"); ax.set_ylabel("diffusion loss"); ax.set_yscale("log"); ax.legend(fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

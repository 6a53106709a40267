"""Training from Parquet shards against training from the folder they were made of, and the loader's speed.

    OMP_NUM_THREADS=1 python scripts/shards_check.py [--steps 200] [--out docs/shards_check.json]
        [--figure docs/figures/shards_check_loss.png]

(a) The shipped scenes are converted (`cogen.data.shards`) into a temporary folder, then train.py trains a small
    model twice for `--steps` steps with the same seed and the same samples: once reading every crop from the
    shards (data.source=majortom), once reading the same crops from the GeoTIFF folder through SceneDataset.
    Both runs take the shard stream's sequence of (grid cell, crop, augmentation); only where the pixels come
    from differs. Prints both loss curves' summary and their largest difference (training and validation loss).
(b) Samples per second the streaming loader delivers (one process, DataLoader without workers, the demo's data:
    six modalities, 32 px crops, batch 16) against samples per second the demo model (configs/demo.yaml, model
    `small`) trains at on batches already in memory, in the same run and with the same threads.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

import train as train_py  # noqa: E402
from cogen.config import load_config, load_stages  # noqa: E402
from cogen.data import SceneDataset, collate_scenes, load_split  # noqa: E402
from cogen.data.dataset import make_item, random_window  # noqa: E402
from cogen.data.shards import ShardStream, convert  # noqa: E402
from cogen.diffusion.loss import diffusion_loss, encode_batch  # noqa: E402
from cogen.diffusion.schedule import Diffusion  # noqa: E402

SHIPPED = ROOT / "data" / "terramind-examples"
SMALL = ["model.size=mini", "data.modalities=[S2L2A, S2L1C, S1RTC, DEM, NDVI, LULC]", "data.crop=16",
         "optim.batch_size=8", "optim.warmup_steps=20", "train.eval_every=50", "train.val_batches=4",
         "train.ckpt_every=1000", "train.log_every=1", "train.log=none", "data.shuffle_buffer=64"]


class FolderReplay(ShardStream):
    """The shard stream's visits, each crop read from the GeoTIFF folder (SceneDataset) instead of the shards."""

    def __init__(self, folder: SceneDataset, **kw):
        super().__init__(**kw)
        self.folder = folder

    def item(self, g: int, cell: str) -> dict:
        rng = np.random.default_rng((self.seed, 1, g))  # as ShardStream.item draws them
        row, col, h, w = random_window(rng, self.folder.windows[cell], self.crop)
        raw = {m: self.folder.raw_crop(cell, m, row, col, h, w) for m in self.folder.files[cell]}
        return make_item(self.registry, cell, (row, col, h, w), raw, rng if self.augment else None)


def curves(out: Path) -> tuple[dict[int, float], dict[int, float]]:
    loss, val = {}, {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)
        (loss if "loss" in r else val)[r["step"]] = r.get("loss", r.get("val_loss"))
    return loss, val


def compare(shards: Path, steps: int, tmp: Path) -> dict:
    common = SMALL + [f"train.steps={steps}", "data.source=majortom", f"data.root={shards}"]
    cfg_s = load_config(ROOT / "configs" / "tiny.yaml", common + [f"train.out_dir={tmp / 'shards'}"])
    cfg_f = load_config(ROOT / "configs" / "tiny.yaml", common + [f"train.out_dir={tmp / 'folder'}"])
    d, registry = cfg_f.data, train_py.Registry.from_yaml(cfg_f.data.registry, cfg_f.data.stats)
    region, regions = load_split(d.split_file, d.train_split)
    vr, vrs = load_split(d.split_file, d.val_split)
    folder = SceneDataset(SHIPPED, registry=registry, modalities=d.modalities, crop=d.crop, region=region,
                          regions=regions, mode="grid")
    replay = FolderReplay(folder, root=shards, registry=registry, modalities=d.modalities, crop=d.crop,
                          region=region, regions=regions, seed=cfg_f.train.seed, augment=d.augment,
                          shuffle_buffer=d.shuffle_buffer, batch_size=cfg_f.optim.batch_size)
    val = SceneDataset(SHIPPED, registry=registry, modalities=d.modalities, crop=d.crop, region=vr, regions=vrs,
                       mode="grid")
    t = time.perf_counter()
    train_py.train(cfg_s, resume=False)
    t_shards = time.perf_counter() - t
    t = time.perf_counter()
    train_py.train(cfg_f, resume=False, data=(replay, val))
    t_folder = time.perf_counter() - t
    (ls, vs), (lf, vf) = curves(tmp / "shards"), curves(tmp / "folder")
    assert sorted(ls) == sorted(lf) == list(range(1, steps + 1)), "both runs must log every step"
    diff = max(abs(ls[s] - lf[s]) for s in ls)
    vdiff = max(abs(vs[s] - vf[s]) for s in vs)
    return {"config": "configs/tiny.yaml " + " ".join(SMALL), "steps": steps,
            "loss_shards": [ls[s] for s in sorted(ls)], "loss_folder": [lf[s] for s in sorted(lf)],
            "max_abs_diff_loss": diff, "max_rel_diff_loss": max(abs(ls[s] - lf[s]) / abs(lf[s]) for s in ls),
            "val_loss_shards": vs, "val_loss_folder": vf, "max_abs_diff_val_loss": vdiff,
            "seconds_shards": round(t_shards, 1), "seconds_folder": round(t_folder, 1)}


def throughput(shards: Path, batches: int, steps: int) -> dict:
    cfg = load_stages(ROOT / "configs" / "demo.yaml", ["train.log=none"])[0][1]
    d, o = cfg.data, cfg.optim
    registry, tokenizers, model = train_py.build_everything(cfg)
    region, regions = load_split(d.split_file, d.train_split)
    stream = ShardStream(shards, registry=registry, modalities=d.modalities, crop=d.crop, region=region,
                         regions=regions, seed=0, augment=d.augment, shuffle_buffer=d.shuffle_buffer,
                         batch_size=o.batch_size)
    loader = iter(DataLoader(stream, batch_size=o.batch_size, num_workers=0,
                             collate_fn=partial(collate_scenes, modalities=d.modalities, registry=registry)))
    next(loader)  # opens the part files
    t = time.perf_counter()
    kept = [next(loader) for _ in range(batches)]
    loader_sps = batches * o.batch_size / (time.perf_counter() - t)

    diffusion = Diffusion(**cfg.diffusion.__dict__)
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr)
    patch = {m: model.patch_size(m) for m in model.names}

    def step(i: int) -> None:
        z, ok, present = encode_batch(kept[i % len(kept)], tokenizers)
        loss, _ = diffusion_loss(model, z, ok, present, diffusion, cfg.roles, train_py.step_generator(0, i, 0, 0),
                                 patch_sizes=patch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step(0)  # warm-up
    t = time.perf_counter()
    for i in range(1, steps + 1):
        step(i)
    model_sps = steps * o.batch_size / (time.perf_counter() - t)
    n_params = sum(p.numel() for p in model.parameters())
    return {"threads": torch.get_num_threads(), "batch": o.batch_size, "crop": d.crop, "modalities": d.modalities,
            "model": cfg.model.size, "parameters_M": round(n_params / 1e6, 1), "loader_batches": batches,
            "model_steps": steps, "loader_samples_per_s": round(loader_sps, 1),
            "model_samples_per_s": round(model_sps, 2), "ratio": round(loader_sps / model_sps, 1)}


def plot(res: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.arange(1, res["steps"] + 1)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, res["loss_folder"], lw=2.5, color="#bbbbbb", label="folder (GeoTIFFs)")
    ax.plot(steps, res["loss_shards"], lw=0.9, color="#c4281b", label="shards (Parquet, streamed)")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_title(f"same seed and samples: max |difference| {res['max_abs_diff_loss']:.1e}", fontsize=9)
    ax.legend(frameon=False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--loader-batches", type=int, default=40)
    p.add_argument("--model-steps", type=int, default=5)
    p.add_argument("--out", default=None, help="write the figures to this JSON file")
    p.add_argument("--figure", default=None, help="write the two loss curves to this PNG")
    a = p.parse_args()
    load_before = os.getloadavg()[0]  # other work on the machine slows both figures of (b)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        convert(SHIPPED, tmp / "shards", log=lambda s: None)
        res = compare(tmp / "shards", a.steps, tmp)
        print(f"(a) {a.steps} steps, folder vs shards: max |loss difference| {res['max_abs_diff_loss']:.3g} "
              f"(relative {res['max_rel_diff_loss']:.3g}), validation {res['max_abs_diff_val_loss']:.3g}; final loss "
              f"folder {res['loss_folder'][-1]:.4f}, shards {res['loss_shards'][-1]:.4f}; "
              f"{res['seconds_folder']} s / {res['seconds_shards']} s", flush=True)
        speed = throughput(tmp / "shards", a.loader_batches, a.model_steps)
        print(f"(b) streaming loader {speed['loader_samples_per_s']} samples/s, demo model trains "
              f"{speed['model_samples_per_s']} samples/s ({speed['threads']} threads): loader / model "
              f"{speed['ratio']}", flush=True)
    doc = {"compare": res, "throughput": speed, "cpu_count": os.cpu_count(),
           "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
    if a.figure:
        plot(res, Path(a.figure))
    if a.out:
        Path(a.out).write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()

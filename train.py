"""Train cogen's per-modality-time diffusion transformer.

    python train.py --config configs/demo.yaml [key=value ...]
    python train.py --config configs/demo.yaml data.source=majortom data.root=SHARDS   # streamed Parquet shards
    accelerate launch --multi_gpu --num_processes 2 train.py --config configs/demo.yaml train.out_dir=runs/ddp
    (on a CPU-only machine `--multi_gpu` starts the processes through torchrun; they train with gloo DDP)

Runs the same on a laptop CPU and on many GPUs. Re-running the same command resumes from the newest complete
checkpoint in `train.out_dir` (pass --no-resume to refuse a folder that already holds checkpoints). A config
with `stages:` (configs/demo.yaml) runs its stages in order, each in `<train.out_dir>/<name>` from the previous
one's final EMA weights; re-running it skips the finished stages and resumes the one under way.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import set_seed
from diffusers.training_utils import EMAModel
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from cogen.checkpoint import verify, write_bundle_files, write_manifest
from cogen.config import Config, checkpoint_dir, load_stages
from cogen.data import SceneDataset, collate_scenes, load_split
from cogen.data.dataset import split_quadrants
from cogen.data.shards import ShardStream
from cogen.diffusion.loss import (balanced_class_weights, dark_weight_map, diffusion_loss, encode_batch,
                                  latent_bands, reference_brightness, regression_loss)
from cogen.diffusion.schedule import Diffusion
from cogen.errors import CheckpointError, CogenError
from cogen.models.transformer import ADDED_WEIGHTS, CogenTransformer, build_model
from cogen.registry import Registry, base_modality
from cogen.tokenizers import tokenizer_for


def get_lr(step: int, cfg: Config) -> float:
    """Linear warm-up, then cosine decay to min_lr_ratio * lr at the last step (a multiplier of lr)."""
    o = cfg.optim
    if step < o.warmup_steps:
        return (step + 1) / o.warmup_steps
    progress = min(1.0, (step - o.warmup_steps) / max(1, cfg.train.steps - o.warmup_steps))
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    """Roles, times and noise of a step depend on (seed, step, micro-batch, rank) only: resume is exact."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 97 + micro) * 131 + rank)


def quadrants_step(seed: int, step: int, micro: int, rank: int, p: float) -> bool:
    """Whether this micro-batch is cut into quadrants (data.p_quadrants): a draw of its own, fixed by the step, so
    that resuming repeats it and the roles' random stream is untouched."""
    g = torch.Generator().manual_seed((seed * 1_000_003 + step * 131 + micro * 7 + rank + 0x5EED) % 2**63)
    return bool(torch.rand(1, generator=g).item() < p)


def build_everything(cfg: Config):
    registry = Registry.from_yaml(cfg.data.registry, cfg.data.stats)
    mods = registry.check(cfg.data.modalities)
    tokenizers = {m: tokenizer_for(registry[m]) for m in mods}
    spec = {m: {"channels": tokenizers[m].latent_channels,
                "patch_size": cfg.model.patch_sizes.get(m, cfg.model.patch_size)} for m in mods}
    model = build_model(cfg.model.size, spec, hidden_size=cfg.model.hidden_size, depth=cfg.model.depth,
                        num_heads=cfg.model.num_heads, mlp_ratio=cfg.model.mlp_ratio, attention=cfg.model.attention)
    return registry, tokenizers, model


def datasets(cfg: Config, registry: Registry, total_samples: int, rank: int = 0, world: int = 1):
    """(training, validation) data of `cfg.data`: a folder's `total_samples` seeded crops, or (data.source=majortom)
    a stream of crops of Parquet shards, this process's share of it when there are `world` of them."""
    d = cfg.data
    region, regions = load_split(d.split_file, d.train_split)
    if d.source == "majortom":
        common = dict(root=d.root, registry=registry, modalities=d.modalities, crop=d.crop)
        train = ShardStream(**common, region=region, regions=regions, seed=cfg.train.seed, augment=d.augment,
                            shuffle_buffer=d.shuffle_buffer, rank=rank, world=world,
                            batch_size=cfg.optim.batch_size, num_workers=d.num_workers)
        kind = ShardStream
    else:
        common = dict(root=d.root if not d.manifest else None, manifest=d.manifest, registry=registry,
                      modalities=d.modalities, crop=d.crop)
        train = SceneDataset(**common, region=region, regions=regions, mode="random", length=total_samples,
                             seed=cfg.train.seed, augment=d.augment, max_dates=d.max_dates)
        kind = SceneDataset
    val = None
    if d.val_split:
        vr, vrs = load_split(d.split_file, d.val_split)
        if d.p_quadrants > 0:  # validation on the quadrants' size: comparable with runs on those crops, and it
            common["crop"] = d.crop // 2  # fits test regions narrower than the large crop
        val = kind(**common, region=vr, regions=vrs, mode="grid",
                   **({"max_dates": d.max_dates} if kind is SceneDataset else {}))
    return train, val


def find_checkpoints(out_dir: Path) -> list[Path]:
    return sorted((out_dir / "checkpoints").glob("step-*"), key=lambda p: p.name)


def latest_valid_checkpoint(out_dir: Path, log) -> Path | None:
    for ck in reversed(find_checkpoints(out_dir)):
        try:
            verify(ck)
            return ck
        except CheckpointError as e:
            log(f"skipping checkpoint {ck.name}: {e}")
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/demo.yaml")
    ap.add_argument("--no-resume", action="store_true", help="error out if out_dir already holds checkpoints")
    ap.add_argument("--stage", default=None, help="run this stage of the config only (with train.init_from=BUNDLE "
                                                  "when the stage before it is not on this machine)")
    ap.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.steps=100 model.size=tiny")
    args = ap.parse_args()
    try:
        stages = load_stages(args.config, args.overrides)
        if args.stage is not None:
            names = [n for n, _ in stages]
            if args.stage not in names:
                raise CogenError(f"--stage {args.stage}: {args.config} has no such stage; its stages are "
                                 f"{', '.join(str(n) for n in names)}")
            stages = [s for s in stages if s[0] == args.stage]
        run_stages(stages, resume=not args.no_resume)
    except CogenError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def last_checkpoint_step(out_dir: Path) -> int:
    """The step of the newest checkpoint in `out_dir` (0 when none); a checkpoint folder appears whole or not at all."""
    ckpts = find_checkpoints(out_dir)
    return int(ckpts[-1].name.removeprefix("step-")) if ckpts else 0


def run_stages(stages: list[tuple[str | None, Config]], resume: bool = True) -> dict:
    """Train each (name, config) of `cogen.config.load_stages` in turn; one unnamed stage is a plain run. A stage
    whose newest checkpoint is at its final step is skipped; one that stops before it (train.max_minutes) ends
    the command, and running the same command again continues it."""
    say = print if os.environ.get("RANK", "0") == "0" else (lambda *a: None)
    last: dict = {}
    for name, cfg in stages:
        out_dir, end = Path(cfg.train.out_dir), cfg.train.final_step()
        if name is not None and last_checkpoint_step(out_dir) >= end:
            say(f"stage {name}: done ({out_dir}, step {end})")
            continue
        if name is not None:
            say(f"stage {name}: {out_dir}, to step {end}" + (f", from {cfg.train.init_from}" if cfg.train.init_from else ""))
        last = train(cfg, resume)
        if name is not None and last_checkpoint_step(out_dir) < end:
            say(f"stage {name} stopped at step {last_checkpoint_step(out_dir)} of {end}; run the same command again "
                f"to continue")
            break
    return last


def init_weights(model: CogenTransformer, bundle: str, log) -> None:
    """Fine-tuning: copy the weights of a cogen bundle into a model of the same size and of the same modalities or
    more (the new ones start from their initial weights)."""
    from cogen.checkpoint import load_bundle

    src = load_bundle(bundle).model
    try:
        missing, unexpected = model.load_state_dict(src.state_dict(), strict=False)
    except RuntimeError:  # same names, other shapes
        missing, unexpected = ["(shapes differ)"], []
    # weights added to the model since the bundle, and those of modalities the bundle does not know (a sensor added
    # to data.modalities): their initial values
    new = [m for m in model.names if m not in src.names]
    missing = [k for k in missing if not k.startswith(ADDED_WEIGHTS) and k.split(".")[1:2] not in ([m] for m in new)]
    if new:
        log(f"new modalities {', '.join(new)}: their weights start from their initial values")
    if missing or unexpected:
        raise CheckpointError(f"train.init_from={bundle}: its model does not match this config (missing "
                              f"{list(missing)[:3]}, unexpected {list(unexpected)[:3]}); use a bundle trained with the "
                              f"same data.modalities, model.size and patch sizes")
    log(f"initialised from the weights of {bundle}")


def train(cfg: Config, resume: bool = True, data: tuple | None = None) -> dict:
    """Train the run `cfg` describes (resuming from its newest checkpoint); `data`: (training, validation)
    datasets to take instead of those of cfg.data (scripts/shards_check.py), each process's own."""
    if cfg.train.threads:  # both stages
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.stage == "tokenizer":
        return train_tokenizer(cfg, resume)
    if cfg.train.stage != "model":
        raise CogenError(f"train.stage={cfg.train.stage!r}: use model or tokenizer")
    t_cfg, o = cfg.train, cfg.optim
    mp = t_cfg.mixed_precision
    if mp == "auto":
        mp = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    check_compute(cfg)
    # cpu=True on machines without CUDA so that a torchrun/accelerate multi-process launch uses gloo DDP; with
    # train.compile accelerate compiles the prepared (DDP-wrapped) model with inductor
    acc = Accelerator(mixed_precision=mp, gradient_accumulation_steps=o.grad_accum, cpu=not torch.cuda.is_available(),
                      dynamo_backend="inductor" if t_cfg.compile else "no")
    rank, world = acc.process_index, acc.num_processes
    out_dir = Path(t_cfg.out_dir)
    log = (lambda s: tqdm.write(s)) if acc.is_main_process else (lambda s: None)
    set_seed(t_cfg.seed)

    registry, tokenizers, model = build_everything(cfg)
    diffusion = Diffusion(**cfg.diffusion.__dict__)
    if t_cfg.objective not in ("diffusion", "regression"):
        raise CogenError(f"train.objective={t_cfg.objective!r}: use diffusion or regression")
    categorical = {m: registry[m].is_categorical for m in cfg.data.modalities}
    patch_sizes = {m: model.patch_size(m) for m in model.names}

    ckpts = find_checkpoints(out_dir)
    if t_cfg.init_from and not ckpts:
        init_weights(model, t_cfg.init_from, log)
    samples_per_step = o.batch_size * o.grad_accum * world
    train_ds, val_ds = data or datasets(cfg, registry, t_cfg.steps * samples_per_step, rank, world)
    stream = isinstance(train_ds, ShardStream)
    class_weights = {}
    if t_cfg.class_balance < 0:
        raise CogenError(f"train.class_balance={t_cfg.class_balance}: use 0 (off) or a positive power such as 0.5")
    if t_cfg.class_balance > 0:
        for m in (m for m, c in categorical.items() if c):
            class_weights[m] = balanced_class_weights(train_ds.class_counts(m), t_cfg.class_balance)
            log(f"{m} class weights: " + ", ".join(f"{n} {w:.2f}" for n, w in
                                                    zip((c.name for c in registry[m].classes), class_weights[m].tolist())))

    dark = {}  # {spectral modality: reference brightness}: the dark-pixel weighting of train.dark_weight
    if t_cfg.dark_weight != 0 and not t_cfg.dark_weight >= 1:
        raise CogenError(f"train.dark_weight={t_cfg.dark_weight}: use 0 (off) or a cap of at least 1, such as 8")
    if t_cfg.dark_weight >= 1:
        if t_cfg.objective != "diffusion":
            raise CogenError("train.dark_weight is for the diffusion objective; set train.dark_weight=0")
        dark = {m: reference_brightness(registry[m].mean) for m in cfg.data.modalities
                if registry[m].spectral and not categorical[m]}
        if not dark:
            raise CogenError("train.dark_weight: no modality of data.modalities is marked spectral in the registry")
        log("dark-pixel weighting (cap %g) for %s" % (t_cfg.dark_weight, ", ".join(f"{m} (b_ref {b:.3f})"
                                                                                 for m, b in dark.items())))

    def pixel_weights(batch, z) -> dict:
        out = {}
        for m in z:  # every date's slots of a weighted modality
            b_ref = dark.get(base_modality(m))
            if b_ref is None:
                continue
            w = dark_weight_map(registry[m].denormalize(batch["values"][m]), batch["valid"][m], b_ref,
                                t_cfg.dark_weight)
            if w.shape[-2:] != z[m].shape[-2:]:  # a downsampling tokenizer: the mean weight of each cell
                w = F.adaptive_avg_pool2d(w[:, None], tuple(z[m].shape[-2:]))[:, 0]
            out[m] = w
        return out

    def loss_fn(net, z, ok, present, gen, weights=None, bands=None, dates=None):
        if t_cfg.objective == "regression":
            return regression_loss(net, z, ok, present, cfg.roles, gen, categorical, class_weights=class_weights,
                                   bands=bands, dates=dates)
        return diffusion_loss(net, z, ok, present, diffusion, cfg.roles, gen, patch_sizes=patch_sizes,
                              class_weights=class_weights, pixel_weights=weights, bands=bands, dates=dates)
    opt = torch.optim.AdamW(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: get_lr(s, cfg))
    model, opt, sched = acc.prepare(model, opt, sched)
    for tok in tokenizers.values():
        tok.to(acc.device)
    ema = EMAModel(acc.unwrap_model(model).parameters(), decay=t_cfg.ema_decay, use_ema_warmup=True,
                   power=2 / 3, model_cls=CogenTransformer, model_config=acc.unwrap_model(model).config)
    ema.to(acc.device)

    start, state = 0, {}
    if ckpts and not resume:
        raise CheckpointError(f"{out_dir}: holds checkpoints; remove the folder, pick another train.out_dir, or resume")
    if ckpts:
        ck = latest_valid_checkpoint(out_dir, log)
        if ck is not None:
            state = json.loads((ck / "state.json").read_text())
            acc.load_state(str(ck / "state"))
            ema.load_state_dict(torch.load(ck / "ema_state.pt", weights_only=False))
            start = int(state["step"])
            log(f"resumed from {ck} at step {start}")
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))

    # data: sample index i of the run is always the same crop (a folder), or visit g of the stream (shards, whose
    # position is in the checkpoint), so resuming skips exactly the seen samples
    per_rank = o.batch_size * o.grad_accum
    collate = partial(collate_scenes, modalities=cfg.data.modalities, registry=registry)
    if stream:  # each process reads its own share of the shards (ShardStream's rank and world)
        train_ds.load_state_dict(state.get("data") or {"batches": start * o.grad_accum})
        loader = DataLoader(train_ds, batch_size=o.batch_size, collate_fn=collate, num_workers=cfg.data.num_workers)
        batches = (to_device(b, acc.device) for b in loader)
    else:  # accelerate hands each process its own batches of the one sequence
        remaining = Subset(train_ds, range(start * samples_per_step + rank * per_rank * 0, len(train_ds)))
        loader = DataLoader(remaining, batch_size=o.batch_size, shuffle=False, collate_fn=collate,
                            num_workers=cfg.data.num_workers, drop_last=True)
        batches = iter(acc.prepare_data_loader(loader, device_placement=True))
    audit = (out_dir / "audit" / f"rank-{rank}.jsonl") if t_cfg.audit else None
    if audit is not None:
        audit.parent.mkdir(parents=True, exist_ok=True)

    logger = make_logger(t_cfg, out_dir, cfg, acc.is_main_process)
    metrics_path = out_dir / "metrics.jsonl"
    t0, t_last, seen_last = time.time(), time.time(), 0
    step, end = start, t_cfg.final_step()
    bar = tqdm(total=end, initial=start, desc="train", disable=not acc.is_main_process, dynamic_ncols=True)
    last = {}
    stop_reason = None
    while step < end:
        model.train()
        losses, seen = [], []
        for micro in range(o.grad_accum):
            batch = next(batches)
            if cfg.data.p_quadrants > 0 and quadrants_step(t_cfg.seed, step, micro, rank, cfg.data.p_quadrants):
                batch = split_quadrants(batch)  # this step trains at half the crop size, four times the batch
            seen += [[s, *w] for s, w in zip(batch["scene"], batch["window"])]
            gen = step_generator(t_cfg.seed, step, micro, rank)
            with acc.accumulate(model):
                z, ok, present = encode_batch(batch, tokenizers)
                with acc.autocast():
                    loss, info = loss_fn(model, z, ok, present, gen, pixel_weights(batch, z) if dark else None,
                                         latent_bands(batch, tokenizers), batch.get("dates"))
                if not torch.isfinite(loss):
                    if t_cfg.on_nonfinite == "skip":
                        log(f"step {step}: non-finite loss ({loss.item()}), step skipped")
                        opt.zero_grad(set_to_none=True)
                        losses.append(float("nan"))
                        continue
                    acc.wait_for_everyone()
                    raise CogenError(
                        f"step {step}: loss is {loss.item()} (non-finite); stopped without saving, the last good "
                        f"checkpoint in {out_dir}/checkpoints is kept; lower optim.lr or set train.on_nonfinite=skip"
                    )
                acc.backward(loss)
                if acc.sync_gradients and o.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), o.grad_clip)
                opt.step()
                sched.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
        ema.step(acc.unwrap_model(model).parameters())
        step += 1
        bar.update(1)
        if audit is not None:
            with open(audit, "a") as f:
                f.write(json.dumps({"step": step, "samples": seen, "weights": weights_digest(model)}) + "\n")
        finite = [v for v in losses if math.isfinite(v)]
        loss_v = sum(finite) / len(finite) if finite else float("nan")
        bar.set_postfix(loss=f"{loss_v:.4f}", lr=f"{sched.get_last_lr()[0]:.2e}")
        last = {"step": step, "loss": loss_v, "lr": sched.get_last_lr()[0], "ema_decay": ema.cur_decay_value}
        if step % t_cfg.log_every == 0 or step == end:
            now = time.time()
            last["samples_per_s"] = (step - start - seen_last) * samples_per_step / max(now - t_last, 1e-9)
            t_last, seen_last = now, step - start
            last["elapsed_min"] = (now - t0) / 60
            logger(last)
            if acc.is_main_process:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(last) + "\n")
        if val_ds is not None and t_cfg.eval_every and (step % t_cfg.eval_every == 0 or step == end):
            vl = validate(acc, model, ema, tokenizers, val_ds, cfg, loss_fn, collate)
            rec = {"step": step, "val_loss": vl, "elapsed_min": (time.time() - t0) / 60}
            logger(rec)
            log(f"step {step}: val loss (EMA) {vl:.4f}")
            if acc.is_main_process:
                with open(metrics_path, "a") as f:
                    f.write(json.dumps(rec) + "\n")
        if t_cfg.max_minutes and (time.time() - t0) / 60 >= t_cfg.max_minutes:
            stop_reason = f"time budget of {t_cfg.max_minutes} min reached at step {step}"
        if step % t_cfg.ckpt_every == 0 or step == end or stop_reason:
            save_checkpoint(acc, model, ema, tokenizers, registry, cfg, step, out_dir,
                            train_ds.state_dict(step * o.grad_accum) if stream else None)
        if stop_reason:
            log(stop_reason)
            break
    bar.close()
    acc.end_training()
    return last


def validate(acc, model, ema, tokenizers, val_ds, cfg: Config, loss_fn, collate) -> float:
    """Mean diffusion loss of the EMA weights on the held-out split, with fixed roles/times/noise."""
    raw = acc.unwrap_model(model)
    ema.store(raw.parameters())
    ema.copy_to(raw.parameters())
    raw.eval()
    total, n = 0.0, 0
    loader = DataLoader(val_ds, batch_size=cfg.optim.batch_size, shuffle=False, collate_fn=collate)
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if i >= cfg.train.val_batches:
                break
            batch = to_device(batch, acc.device)
            z, ok, present = encode_batch(batch, tokenizers)
            with acc.autocast():
                loss, _ = loss_fn(raw, z, ok, present, torch.Generator().manual_seed(1234 + i),
                                  bands=latent_bands(batch, tokenizers), dates=batch.get("dates"))
            total, n = total + loss.item(), n + 1
    ema.restore(raw.parameters())
    return total / max(n, 1)


def to_device(batch: dict, device) -> dict:
    """A batch of `collate_scenes` with its tensors on `device` (scene ids and windows as they are)."""
    return {k: ({m: v.to(device) for m, v in b.items()} if isinstance(b, dict) else b) for k, b in batch.items()}


def weights_digest(model) -> str:
    """A short digest of a model's parameters: equal in every process after a synchronised step."""
    h = hashlib.sha256()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def check_compute(cfg: Config) -> None:
    """Refuse, before anything starts, an attention backend or torch.compile this machine cannot run."""
    import cogen.models.transformer as transformer

    attn = cfg.model.attention
    if attn not in ("auto", "sdpa", "xformers"):
        raise CogenError(f"model.attention={attn!r}: use auto (xformers where installed on CUDA, else PyTorch SDPA), "
                         f"sdpa or xformers")
    if attn == "xformers" and (transformer.xops is None or not torch.cuda.is_available()):
        raise CogenError("model.attention=xformers needs CUDA and xformers (pip install 'cogen[cuda]'); use "
                         "model.attention=auto")
    if cfg.train.compile and not torch.cuda.is_available():
        if not any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++")):
            raise CogenError("train.compile=true on a CPU needs a C++ compiler for inductor (e.g. apt-get install "
                             "g++); or set train.compile=false")


def save_checkpoint(acc, model, ema, tokenizers, registry, cfg: Config, step: int, out_dir: Path,
                    data_state: dict | None = None) -> None:
    """The model's checkpoint: accelerate's state, the EMA state, a ready-to-sample EMA bundle and, for streamed
    data, this stream's position (state.json's `data`)."""

    def extra(tmp: Path) -> None:
        torch.save(ema.state_dict(), tmp / "ema_state.pt")
        raw = acc.unwrap_model(model)
        ema_model = CogenTransformer.from_config(raw.config)
        ema.copy_to(ema_model.parameters())
        write_bundle_files(tmp / "ema", ema_model, tokenizers, registry, cfg, {"step": step})
        write_manifest(tmp / "ema")

    atomic_checkpoint(acc, cfg, step, out_dir, extra, {"data": data_state} if data_state else None)


def atomic_checkpoint(acc, cfg: Config, step: int, out_dir: Path, extra=None, state: dict | None = None) -> None:
    """Everything goes into a temporary folder (accelerate's state of every process, then `extra(tmp)` and
    state.json on the main process), the manifest is written last, then one rename; keeps the last K."""
    final = checkpoint_dir(out_dir, step)
    tmp = final.parent / f".{final.name}.tmp"
    if acc.is_main_process:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp / "state"))  # model, optimizer, LR scheduler, RNG states of every process
    if acc.is_main_process:
        if extra is not None:
            extra(tmp)
        (tmp / "state.json").write_text(json.dumps({"step": step, "config": cfg.to_dict(), **(state or {})}, indent=2))
        write_manifest(tmp, {"step": step})
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in find_checkpoints(out_dir)[: -cfg.train.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def train_tokenizer(cfg: Config, resume: bool = True) -> dict:
    """The tokenizer stage: a VAE for one modality, reconstruction (L1 + MSE) + a small KL term, optionally an
    image-gradient term (`tokenizer.edge_weight`) and a PatchGAN hinge term from `tokenizer.adv_start` on
    (`tokenizer.adv_weight`; the critic is checkpointed with the rest). Checkpoints
    are atomic and resumable like the model's; at the end the latent scale factor is measured on the
    training crops and the tokenizer is saved to `<out_dir>/tokenizer/`."""
    from cogen.tokenizers.vae import PatchDiscriminator, VAETokenizer, edge_loss

    t_cfg, o, k = cfg.train, cfg.optim, cfg.tokenizer
    if cfg.data.source != "folder":
        raise CogenError(f"data.source={cfg.data.source}: the tokenizer stage reads a folder dataset; set "
                         f"data.source=folder and data.root=FOLDER")
    acc = Accelerator(cpu=not torch.cuda.is_available())
    if acc.num_processes > 1:
        raise CogenError("the tokenizer stage runs in one process; launch it without --num_processes")
    set_seed(t_cfg.seed)
    log = (lambda s: tqdm.write(s)) if acc.is_main_process else (lambda s: None)
    registry = Registry.from_yaml(cfg.data.registry, cfg.data.stats)
    mod = registry[k.modality]
    if mod.is_categorical:
        raise CogenError(f"{k.modality} is a class map: it uses the categorical tokenizer, not a VAE")
    tok = VAETokenizer(mod.name, mod.channels, k.latent_channels, tuple(k.block_out_channels), k.layers_per_block,
                       k.norm_num_groups, linear=k.linear)
    if k.linear:  # the linear path is fit on whole training strips (a resumed run loads it with its state)
        from cogen.evaluate import Split

        pairs = Split(cfg.data.root, registry, cfg.data.split_file, cfg.data.train_split, [mod.name]).model_space(mod.name)
        tok.fit_linear([x for x, _ in pairs], [ok for _, ok in pairs])
    cfg.data.modalities = [mod.name]
    out_dir = Path(t_cfg.out_dir)
    train_ds, _ = datasets(cfg, registry, t_cfg.steps * o.batch_size * acc.num_processes)
    opt = torch.optim.AdamW(tok.parameters(), lr=o.lr, betas=(o.beta1, o.beta2), weight_decay=o.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: get_lr(s, cfg))
    tok, opt, sched = acc.prepare(tok, opt, sched)
    disc = opt_d = None
    if k.adv_weight > 0:  # the critic and its optimizer are part of the checkpointed state
        disc = PatchDiscriminator(mod.channels)
        opt_d = torch.optim.AdamW(disc.parameters(), lr=o.lr, betas=(0.5, 0.9), weight_decay=0.0)
        disc, opt_d = acc.prepare(disc, opt_d)
    start = 0
    ck = latest_valid_checkpoint(out_dir, log) if find_checkpoints(out_dir) and resume else None
    if ck is not None:
        acc.load_state(str(ck / "state"))
        start = int(json.loads((ck / "state.json").read_text())["step"])
        log(f"resumed from {ck} at step {start}")
    collate = partial(collate_scenes, modalities=[mod.name], registry=registry)
    loader = acc.prepare_data_loader(DataLoader(Subset(train_ds, range(start * o.batch_size * acc.num_processes, len(train_ds))),
                                                batch_size=o.batch_size, collate_fn=collate, drop_last=True))
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
    t0, step, end, last = time.time(), start, t_cfg.final_step(), {}
    bar = tqdm(total=end, initial=start, desc=f"vae {mod.name}", disable=not acc.is_main_process)
    it = iter(loader)
    raw = lambda: acc.unwrap_model(tok)
    while step < end:
        batch = next(it)
        x, ok = batch["values"][mod.name], batch["valid"][mod.name][:, None].float()
        post = raw().posterior(x)
        rec = raw().decode_unscaled(post.sample(generator=step_generator(t_cfg.seed, step, 0, 0)))
        rec = rec[..., : x.shape[-2], : x.shape[-1]]
        err = ((rec - x).abs() + (rec - x) ** 2) * ok
        loss = err.sum() / (ok.sum() * x.shape[1]).clamp(min=1) + k.kl_weight * post.kl().mean()
        if k.edge_weight > 0:
            loss = loss + k.edge_weight * edge_loss(rec, x, ok)
        adv_on = disc is not None and step >= k.adv_start
        if adv_on:  # generator side of the hinge loss; the critic is frozen for this term
            disc.requires_grad_(False)
            loss = loss - k.adv_weight * disc(rec).mean()
            disc.requires_grad_(True)
        if not torch.isfinite(loss):
            raise CogenError(f"step {step}: non-finite tokenizer loss; lower optim.lr (the last good checkpoint is kept)")
        acc.backward(loss)
        if o.grad_clip > 0:
            acc.clip_grad_norm_(tok.parameters(), o.grad_clip)
        opt.step(); sched.step(); opt.zero_grad(set_to_none=True)
        d_loss = None
        if adv_on:  # critic: real crops against the reconstructions
            d_loss = F.relu(1 - disc(x)).mean() + F.relu(1 + disc(rec.detach())).mean()
            acc.backward(d_loss)
            opt_d.step(); opt_d.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        last = {"step": step, "loss": loss.item(), "elapsed_min": (time.time() - t0) / 60}
        if d_loss is not None:
            last["critic_loss"] = d_loss.item()
        if acc.is_main_process and step % t_cfg.log_every == 0:
            with open(out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(last) + "\n")
        stop = t_cfg.max_minutes and (time.time() - t0) / 60 >= t_cfg.max_minutes
        if step % t_cfg.ckpt_every == 0 or step == end or stop:
            atomic_checkpoint(acc, cfg, step, out_dir)
        if stop:
            log(f"time budget of {t_cfg.max_minutes} min reached at step {step}")
            break
    bar.close()
    if acc.is_main_process:  # measure the latent scale on training crops, then save the tokenizer
        scale_ds = SceneDataset(root=cfg.data.root, registry=registry, modalities=[mod.name], crop=cfg.data.crop,
                                region=load_split(cfg.data.split_file, cfg.data.train_split)[0], mode="random",
                                length=k.scale_batches * o.batch_size, seed=t_cfg.seed + 1)
        dl = DataLoader(scale_ds, batch_size=o.batch_size, collate_fn=collate)
        tk = raw().eval()
        scale = tk.measure_scale(b["values"][mod.name] for b in dl)
        from cogen.checkpoint import atomic_dir

        atomic_dir(out_dir / "tokenizer", lambda d: tk.save(d))
        log(f"latent scale factor {scale:.4f}; tokenizer saved to {out_dir / 'tokenizer'}")
        last["scale_factor"] = scale
    return last


def wandb_run_id(out_dir: Path) -> str:
    """The wandb run id of a training folder: its name and a digest of its resolved path, the same in every
    process and session, so that a resumed run reattaches to its wandb run."""
    path = str(Path(out_dir).resolve())
    return f"{Path(path).name}-{hashlib.sha256(path.encode()).hexdigest()[:8]}"


def make_logger(t_cfg, out_dir: Path, cfg: Config, main: bool):
    """Console + wandb (offline by default) or tensorboard or nothing."""
    if not main or t_cfg.log == "none":
        return lambda rec: None
    if t_cfg.log in ("wandb", "wandb-offline"):
        try:
            import wandb
        except ImportError:
            raise CogenError("train.log=wandb needs wandb, a dependency of cogen: pip install wandb, or set "
                             "train.log=none") from None
        mode = "offline" if t_cfg.log == "wandb-offline" else "online"
        run = wandb.init(project="cogen", dir=str(out_dir), mode=mode, config=cfg.to_dict(), resume="allow",
                         id=wandb_run_id(out_dir))
        return lambda rec: run.log({k: v for k, v in rec.items() if k != "step"}, step=rec["step"])
    if t_cfg.log == "tensorboard":
        from torch.utils.tensorboard import SummaryWriter

        w = SummaryWriter(str(out_dir / "tb"))
        return lambda rec: [w.add_scalar(k, v, rec["step"]) for k, v in rec.items() if k != "step"]
    raise CogenError(f"train.log={t_cfg.log!r}: use wandb-offline, wandb, tensorboard or none")


if __name__ == "__main__":
    main()

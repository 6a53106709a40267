"""Typed configs built from YAML plus `key=value` overrides. Unknown keys are an error.

A file may also list `stages:`, runs that follow one another (configs/demo.yaml); see `resolve_stages`.
"""
from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .diffusion.roles import RoleConfig
from .errors import ConfigError
from .options import SampleOptions


@dataclass
class DataConfig:
    # folder: <root>/<MODALITY>/<scene_id>.tif (or `manifest`); majortom: Major TOM-layout Parquet shards, `root` their
    # folder or a list of part files (cogen.data.shards), streamed
    source: str = "folder"
    root: str | list[str] = "data/terramind-examples"  # a folder, several folders, or (majortom) shard files
    manifest: str | None = None
    split_file: str = "configs/split.yaml"
    train_split: str = "train"
    val_split: str | None = "test"
    modalities: list[str] = field(default_factory=lambda: ["S2L2A", "S2L1C", "S1RTC", "DEM", "NDVI", "LULC"])
    crop: int = 32
    # each batch is, with this probability, cut into the four quadrants of its crops (crop/2 px, 4x the batch):
    # one run trains at two tile sizes, e.g. 64 px crops batch 4 and 32 px crops batch 16, the same pixels a step
    p_quadrants: float = 0.0
    max_dates: int = 0  # time series: each crop also holds up to this many other dates of its place (cogen.data)
    augment: bool = True
    registry: str = "configs/modalities.yaml"
    stats: str = "configs/stats.yaml"
    num_workers: int = 0
    shuffle_buffer: int = 256  # majortom: each loader worker's shuffle buffer, in grid-cell visits (0: file order)


@dataclass
class ModelConfig:
    size: str = "small"
    patch_size: int = 4
    patch_sizes: dict[str, int] = field(default_factory=dict)  # per-modality override
    hidden_size: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    mlp_ratio: float = 4.0
    attention: str = "auto"  # auto | sdpa | xformers


@dataclass
class DiffusionConfig:
    prediction: str = "v_prediction"  # epsilon | v_prediction | sample (x0, v-space loss) | flow
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    flow_time: str = "logit_normal"
    min_noise: float = 0.05  # x0-prediction only: caps the v-space loss weight at 1 / min_noise^2
    snr_shift: float = 1.0  # > 1 moves the schedule towards noise: SNR / snr_shift^2 (large patches, big tiles)
    p_max_noise: float = 0.0  # share of training target times set to exactly 1 (pure noise, where sampling starts)


@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.99
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    grad_accum: int = 1
    batch_size: int = 16


@dataclass
class TrainConfig:
    stage: str = "model"  # model | tokenizer (trains the VAE of `tokenizer.modality`)
    objective: str = "diffusion"  # diffusion | regression (the deterministic same-backbone baseline)
    steps: int = 1000
    max_minutes: float | None = None  # stop (with a checkpoint) after this wall-clock budget
    stop_at: int | None = None  # stop (with a checkpoint) at this step, before the end of the `steps` schedule
    seed: int = 0
    mixed_precision: str = "auto"  # auto | no | bf16 | fp16
    ema_decay: float = 0.999
    eval_every: int = 200
    val_batches: int = 8
    ckpt_every: int = 100
    keep_last: int = 3
    out_dir: str = "runs/demo"
    log: str = "wandb-offline"  # wandb-offline | wandb | tensorboard | none
    log_every: int = 10
    on_nonfinite: str = "stop"  # stop | skip
    threads: int | None = None
    init_from: str | None = None  # start from the weights of this cogen bundle (fine-tuning); ignored on resume
    compile: bool = False  # torch.compile the model (inductor; on a CPU it needs a C++ compiler)
    audit: bool = False  # each process logs its samples (scene, window) and a digest of its weights per step
    # class maps as targets: weight each pixel's loss by (training frequency of its class) ^ -class_balance,
    # normalised to mean 1 over the training pixels (0 = off, 0.5 = inverse square root, 1 = inverse);
    # rare classes (built area, bare ground) then count in the loss, not only the dominant ones
    class_balance: float = 0.0
    # spectral targets (registry `spectral: true`): weight each pixel's loss by (b_ref / b) ^ 2, clipped to
    # [1, dark_weight], with b the pixel's RMS reflectance over its bands and b_ref that of the training mean
    # spectrum (the registry's per-band means), normalised to mean 1 over the batch's valid pixels. An error
    # of a given size turns a dark spectrum (water, shade) much further than a bright one; this makes the
    # loss count it so (0 = off; 8 = up to 8x for pixels at 1/sqrt(8) of the typical brightness or darker)
    dark_weight: float = 0.0

    def final_step(self) -> int:
        """The step the run ends at: `steps`, or `stop_at` when that comes first."""
        return min(self.steps, self.stop_at or self.steps)


@dataclass
class TokenizerConfig:
    """The tokenizer stage of train.py (train.stage=tokenizer): a VAE for one modality."""

    modality: str = "S2L2A"
    latent_channels: int = 8
    block_out_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    layers_per_block: int = 1
    norm_num_groups: int = 16
    kl_weight: float = 1.0e-6
    linear: bool = False  # add a block-PCA path (fit on the training split); the VAE learns the residual
    edge_weight: float = 0.0  # weight of an image-gradient (structure) term; 0 = off
    adv_weight: float = 0.0  # weight of a PatchGAN hinge adversarial term; 0 = off
    adv_start: int = 1000  # the adversarial term starts after this many steps
    scale_batches: int = 16  # batches of training crops the latent scale factor is measured on


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    roles: RoleConfig = field(default_factory=RoleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sample: SampleOptions = field(default_factory=SampleOptions)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _check_type(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errs = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(value, a, where)
            except ConfigError as e:
                errs.append(str(e))
        raise ConfigError(errs[0] if errs else f"{where}: bad value {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected float, got {value!r}")
    if tp in (int, str, bool):
        if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_type(v, args[0], f"{where}[]") for v in value] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {k: _check_type(v, args[1], f"{where}.{k}") for k, v in value.items()} if args else value
    return value


def _build(cls: type, d: dict[str, Any] | None, where: str) -> Any:
    d = d or {}
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected a mapping, got {d!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kw = {}
    for k, v in d.items():
        if k not in fields:
            raise ConfigError(f"unknown config key {where + '.' if where else ''}{k}; "
                              f"valid keys here: {', '.join(fields)}")
        tp = hints[k]
        if dataclasses.is_dataclass(tp):
            kw[k] = _build(tp, v, f"{where + '.' if where else ''}{k}")
        else:
            kw[k] = _check_type(v, tp, f"{where + '.' if where else ''}{k}")
    return cls(**kw)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """['train.steps=10', 'model.size=tiny'] -> nested dict; values parsed as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for o in overrides:
        if "=" not in o:
            raise ConfigError(f"override {o!r} is not key=value (e.g. train.steps=100)")
        key, val = o.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = yaml.safe_load(val) if val != "" else None
    return out


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def checkpoint_dir(out_dir: str | Path, step: int) -> Path:
    """Where a training run in `out_dir` keeps its checkpoint of `step` (train.py writes it there)."""
    return Path(out_dir) / "checkpoints" / f"step-{step:06d}"


def _read(path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The config of a file and `overrides`; for a file with stages, that of its last stage (the model it makes)."""
    cfg = resolve_stages(_read(path), overrides)[-1][1]
    check_data_roots(cfg.data)
    return cfg


def load_stages(path: str | Path | None, overrides: list[str] | None = None) -> list[tuple[str | None, Config]]:
    """The runs a config file describes, in order (`resolve_stages`)."""
    stages = resolve_stages(_read(path), overrides)
    for _, cfg in stages:
        check_data_roots(cfg.data)
    return stages


def resolve_stages(d: dict[str, Any], overrides: list[str] | None = None) -> list[tuple[str | None, Config]]:
    """[(stage name, config)] of a config dict. Without `stages:`, one unnamed run: `d` with the `key=value`
    `overrides`. With `stages: [{name: NAME, steps: N, <section overrides>}, ...]`, one run a stage: the stage's
    section overrides merged over the rest of `d`, `train.steps: N`, then the command line's `overrides` (they
    apply to every stage). Stage NAME writes to `<train.out_dir>/NAME`, and each stage after the first starts
    from the EMA weights of the previous stage's last checkpoint (`train.init_from`, set here, unless the command
    line sets it: a stage can start from a bundle when the previous stage's run is not on the machine). Pure:
    nothing is read or run."""
    d = dict(d)
    stages = d.pop("stages", None)
    cli = parse_overrides(overrides or [])
    if stages is None:
        return [(None, config_from_dict(_merge(d, cli)))]
    if not isinstance(stages, list) or not stages:
        raise ConfigError(f"stages: expected a list of {{name: NAME, steps: N, <section overrides>}}, got {stages!r}")
    root = Path(config_from_dict(_merge(d, cli)).train.out_dir)
    out: list[tuple[str | None, Config]] = []
    for i, entry in enumerate(stages):
        entry = dict(entry) if isinstance(entry, dict) else {}
        name, steps = entry.pop("name", None), entry.pop("steps", None)
        if not isinstance(name, str) or not re.fullmatch(r"[\w.-]+", name) or steps is None:
            raise ConfigError(f"stages[{i}]: expected {{name: NAME, steps: N, <section overrides>}} with NAME a "
                              f"folder name, got {stages[i]!r}")
        if name in (n for n, _ in out):
            raise ConfigError(f"stages[{i}]: a second stage named {name!r}; each stage needs its own name")
        paths = {"out_dir": str(root / name)}
        if out and "init_from" not in cli.get("train", {}):  # a command line's train.init_from replaces it
            prev = out[-1][1].train
            paths["init_from"] = str(checkpoint_dir(prev.out_dir, prev.final_step()) / "ema")
        merged = d
        for layer in (entry, {"train": {"steps": steps}}, cli, {"train": paths}):  # later layers win
            merged = _merge(merged, layer)
        try:
            out.append((name, config_from_dict(merged)))
        except ConfigError as e:
            raise ConfigError(f"stage {name}: {e}") from None
    return out


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """`cfg` with ['sample.tile=64', ...] applied, parsed and type-checked as on the command line."""
    return config_from_dict(_merge(cfg.to_dict(), parse_overrides(overrides)))


# (key, test, what it must be, an example): numbers a run cannot use, refused when the config is read rather than
# as a traceback (or a run that does nothing) later
RANGES: list[tuple[str, Any, str, str]] = [
    ("data.source", lambda v: v in ("folder", "majortom"), "folder or majortom", "majortom"),
    ("data.num_workers", lambda v: v >= 0, "0 (load in the training process) or above", "4"),
    ("data.shuffle_buffer", lambda v: v >= 0, "0 (no shuffling) or above", "256"),
    ("data.crop", lambda v: v >= 1, "a number of pixels >= 1", "32"),
    ("data.p_quadrants", lambda v: 0 <= v <= 1, "a probability from 0 to 1", "0.5"),
    ("model.patch_size", lambda v: v >= 1, "a number of pixels >= 1", "4"),
    ("optim.lr", lambda v: v > 0, "above 0", "3e-4"),
    ("optim.weight_decay", lambda v: v >= 0, "0 or above", "0.01"),
    ("optim.warmup_steps", lambda v: v >= 0, "0 or above", "100"),
    ("optim.min_lr_ratio", lambda v: 0 <= v <= 1, "from 0 to 1", "0.1"),
    ("optim.grad_clip", lambda v: v >= 0, "0 (off) or above", "1.0"),
    ("optim.grad_accum", lambda v: v >= 1, "a whole number >= 1", "1"),
    ("optim.batch_size", lambda v: v >= 1, "a whole number >= 1", "16"),
    ("train.steps", lambda v: v >= 1, "a whole number >= 1", "1000"),
    ("train.max_minutes", lambda v: v is None or v >= 0, "0 (no limit) or above", "45"),
    ("train.stop_at", lambda v: v is None or v >= 1, "a step >= 1", "1800"),
    ("train.ema_decay", lambda v: 0 <= v < 1, "from 0 to below 1", "0.999"),
    ("train.eval_every", lambda v: v >= 0, "0 (off) or above", "200"),
    ("train.val_batches", lambda v: v >= 0, "0 or above", "8"),
    ("train.ckpt_every", lambda v: v >= 1, "a whole number >= 1", "100"),
    ("train.keep_last", lambda v: v >= 1, "a whole number >= 1", "3"),
    ("train.log_every", lambda v: v >= 1, "a whole number >= 1", "10"),
    ("train.threads", lambda v: v is None or v >= 1, "a whole number >= 1", "2"),
]


def _check_ranges(cfg: Config) -> Config:
    for key, ok, rule, example in RANGES:
        sec, name = key.split(".")
        v = getattr(getattr(cfg, sec), name)
        if not ok(v):
            raise ConfigError(f"{key}={v!r}: must be {rule} (e.g. {key}={example})")
    d = cfg.data
    if d.source == "majortom" and d.max_dates:
        raise ConfigError(f"data.max_dates={d.max_dates}: shards hold one date a grid cell; use data.source=folder "
                          f"for time series, or data.max_dates=0")
    if d.source == "majortom" and d.manifest:
        raise ConfigError(f"data.manifest={d.manifest}: a manifest lists GeoTIFFs (data.source=folder); shards are read "
                          f"from data.root")
    patches = {cfg.model.patch_size, *cfg.model.patch_sizes.values()}
    if d.p_quadrants > 0 and any(d.crop % (2 * p) for p in patches):
        unit = math.lcm(*patches)  # every modality's patch size
        step = 2 * unit
        raise ConfigError(f"data.p_quadrants={d.p_quadrants}: data.crop={d.crop} must be a multiple of twice the patch "
                          f"size {unit} to cut quadrants (e.g. data.crop={max(step, d.crop // step * step)})")
    bad = [p for p in sorted(patches) if p < 1 or cfg.data.crop % p]
    if bad:
        raise ConfigError(f"data.crop={cfg.data.crop}: must be a multiple of the patch size {bad[0]} "
                          f"(e.g. data.crop={max(bad[0], cfg.data.crop // bad[0] * bad[0])})")
    return cfg


def check_data_roots(d: DataConfig) -> None:
    """A folder dataset's roots must be folders (checked when a run reads its data, not when a bundle that
    trained on them is loaded elsewhere)."""
    if d.source == "folder" and not isinstance(d.root, str) and not all(Path(r).is_dir() for r in d.root):
        raise ConfigError(f"data.root={d.root!r}: a list of files is for Parquet shards; set data.source=majortom, "
                          f"or give dataset folders only")


def config_from_dict(d: dict[str, Any]) -> Config:
    return _check_ranges(_build(Config, d, ""))

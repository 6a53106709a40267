"""Model bundles and training checkpoints: atomic on disk, verified on load.

A *bundle* is everything sampling needs, rebuilt from the folder alone:
    model/ (diffusers save_pretrained: config.json + diffusion_pytorch_model.safetensors)
    tokenizers/<MOD>.json|.safetensors, cogen.json (config, registry entries, diffusion), MANIFEST.json
MANIFEST.json holds the sha256 and size of every file and is written last, so a truncated or corrupted
bundle is detected before anything is loaded. Folders are written under a temporary name and renamed.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from .config import Config, config_from_dict
from .diffusion.schedule import Diffusion
from .errors import CheckpointError
from .models.transformer import ADDED_WEIGHTS, CogenTransformer
from .registry import Registry
from .tokenizers import Tokenizer

MANIFEST = "MANIFEST.json"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CHECKPOINT = REPO_ROOT / "checkpoints" / "demo"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: Path, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    files = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            files[str(p.relative_to(directory))] = {"sha256": sha256(p), "bytes": p.stat().st_size}
    doc = {"files": files, **(extra or {})}
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, directory / MANIFEST)
    return doc


def verify(directory: str | Path) -> dict[str, Any]:
    """Check every file against MANIFEST.json; raise CheckpointError naming the first bad file."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint folder not found; pass --checkpoint with a cogen bundle")
    man = directory / MANIFEST
    if not man.is_file():
        raise CheckpointError(f"{directory}: no {MANIFEST} (incomplete or not a cogen checkpoint); use another checkpoint")
    try:
        doc = json.loads(man.read_text())
    except json.JSONDecodeError:
        raise CheckpointError(f"{man}: corrupted manifest; use another checkpoint") from None
    for rel, info in doc.get("files", {}).items():
        p = directory / rel
        if not p.is_file():
            raise CheckpointError(f"{p}: missing from checkpoint {directory}; use another checkpoint")
        if p.stat().st_size != info["bytes"] or sha256(p) != info["sha256"]:
            raise CheckpointError(f"{p}: truncated or corrupted (checksum mismatch); use another checkpoint")
    return doc


def atomic_dir(final: Path, build: Callable[[Path], None], overwrite: bool = True) -> Path:
    """Build a folder at a temporary name with `build(tmp)`, write its manifest, then rename it to `final`."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        build(tmp)
        write_manifest(tmp)
        if final.exists():
            if not overwrite:
                raise CheckpointError(f"{final}: exists; remove it or allow overwriting")
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


@dataclass
class Bundle:
    model: CogenTransformer
    tokenizers: dict[str, Tokenizer]
    registry: Registry
    diffusion: Diffusion
    config: Config
    path: Path | None = None
    digest: str | None = None

    @property
    def modalities(self) -> list[str]:
        return list(self.model.names)

    def to(self, device: str | torch.device) -> "Bundle":
        self.model.to(device)
        for t in self.tokenizers.values():
            t.to(device)
        return self


def write_bundle_files(directory: Path, model: CogenTransformer, tokenizers: dict[str, Tokenizer],
                       registry: Registry, cfg: Config, extra: dict[str, Any] | None = None) -> None:
    model.save_pretrained(directory / "model", safe_serialization=True)
    for tok in tokenizers.values():
        tok.save(directory / "tokenizers")
    doc = {"format": "cogen-bundle/1", "config": cfg.to_dict(),
           "registry": {m: registry[m].to_dict() for m in model.names},
           "tokenizers": {m: t.config() for m, t in tokenizers.items()}, **(extra or {})}
    (directory / "cogen.json").write_text(json.dumps(doc, indent=2))


def save_bundle(path: str | Path, model: CogenTransformer, tokenizers: dict[str, Tokenizer], registry: Registry,
                cfg: Config, extra: dict[str, Any] | None = None) -> Path:
    return atomic_dir(Path(path), lambda d: write_bundle_files(d, model, tokenizers, registry, cfg, extra))


def _quiet_from_pretrained(path: Path) -> CogenTransformer:
    """Load the transformer without diffusers' shard-loading progress bar (a bundle loads in well under a
    second); the caller's own progress-bar setting is restored afterwards. Weights added to the model after a
    bundle was written (ADDED_WEIGHTS: the band and date embeddings, zero for a model trained without them) get
    their initial values; any other
    weight the bundle lacks is an error."""
    from diffusers.utils import logging as dlog

    was_on, level = dlog.is_progress_bar_enabled(), dlog.get_verbosity()
    dlog.disable_progress_bar()
    dlog.set_verbosity_error()  # bundles from before band subsets lack ADDED_WEIGHTS: they keep their initial values
    try:
        # not on the meta device, so that weights a bundle lacks keep their initial values
        model, info = CogenTransformer.from_pretrained(str(path), torch_dtype=torch.float32, low_cpu_mem_usage=False,
                                                       output_loading_info=True)
    finally:
        dlog.set_verbosity(level)
        if was_on:
            dlog.enable_progress_bar()
    missing = list(info.get("missing_keys", []))
    lacking = [k for k in missing if not k.startswith(ADDED_WEIGHTS)]
    if lacking:
        raise CheckpointError(f"{path}: the weights lack {', '.join(lacking[:3])}; the bundle is incomplete, "
                              f"restore or re-export it")
    if missing:  # diffusers skips the initialisers while loading: weights the file lacks hold arbitrary memory
        model.init_added_weights(missing)
    return model


def load_bundle(path: str | Path | None = None, modalities: Iterable[str] | None = None,
                device: str | torch.device = "cpu") -> Bundle:
    """Verify and load a bundle (default: the shipped demo model); `modalities` must all be known to it."""
    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    doc_m = verify(path)
    try:
        doc = json.loads((path / "cogen.json").read_text())
        cfg = config_from_dict(doc["config"])
        registry = Registry(doc["registry"])
        model = _quiet_from_pretrained(path / "model")
        tokenizers = {m: Tokenizer.load(path / "tokenizers", m) for m in doc["tokenizers"]}
    except CheckpointError:
        raise
    except Exception as e:
        raise CheckpointError(f"{path}: cannot load this checkpoint ({type(e).__name__}: {str(e)[:160]})") from None
    model.eval()
    if modalities is not None:
        missing = [m for m in modalities if m not in model.names]
        if missing:
            raise CheckpointError(
                f"{path}: this checkpoint was trained for {', '.join(model.names)}, not {', '.join(missing)}; "
                f"pass a checkpoint trained with those modalities"
            )
    # the digest names what makes the outputs (weights, tokenizers, config), not the novelty calibration beside them
    made_by = {k: v for k, v in doc_m["files"].items() if not Path(k).name.startswith("novelty.")}
    digest = hashlib.sha256(json.dumps(made_by, sort_keys=True).encode()).hexdigest()
    b = Bundle(model, tokenizers, registry, Diffusion(**cfg.diffusion.__dict__), cfg, path, digest)
    return b.to(device)


def describe(bundle: Bundle) -> dict[str, Any]:
    """What a bundle is and knows, as plain data (`cogen info`): its hash, training, size, every modality (bands,
    units, raw-value transform, nodata, classes, tokenizer) and the sampling defaults it was shipped with."""
    doc = json.loads((bundle.path / "cogen.json").read_text()) if bundle.path else {}
    cfg = bundle.config
    mods = {}
    for m in bundle.modalities:
        mod, tok = bundle.registry[m], bundle.tokenizers[m]
        d: dict[str, Any] = {"kind": mod.kind, "bands": list(mod.bands), "units": mod.units,
                             "description": mod.description, "dtype": mod.dtype, "nodata": mod.nodata,
                             "tokenizer": tok.kind, "patch_size": cfg.model.patch_sizes.get(m, cfg.model.patch_size)}
        if mod.is_categorical:
            d["classes"] = {c.id: c.name for c in mod.classes}
        else:
            d.update(scale=mod.scale, offset=mod.offset, nodata_all_bands=mod.nodata_all_bands,
                     valid_range=list(mod.valid_range) if mod.valid_range else None)
        mods[m] = d
    return {"checkpoint": str(bundle.path), "sha256": bundle.digest, "format": doc.get("format"),
            "objective": cfg.train.objective, "step": doc.get("step"), "source": doc.get("source"),
            "weights": doc.get("weights"), "parameters": sum(p.numel() for p in bundle.model.parameters()),
            "model": {"size": cfg.model.size, "patch_size": cfg.model.patch_size},
            "modalities": mods, "sample": dict(cfg.sample.__dict__)}

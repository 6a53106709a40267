"""Per-modality tokenizers: one interface (encode, decode, latent shape, save/load)."""
from __future__ import annotations

from typing import Any, Mapping

from ..errors import ConfigError
from ..registry import Modality
from .base import Tokenizer
from .patch import CategoricalTokenizer, PatchTokenizer


def build_tokenizer(cfg: Mapping[str, Any]) -> Tokenizer:
    """Build a tokenizer from its saved config (`type`, `modality`, `channels`, ...)."""
    cfg = dict(cfg)
    kind = cfg.pop("type", "patch")
    if kind == "patch":
        return PatchTokenizer(cfg["modality"], cfg["channels"])
    if kind == "categorical":
        return CategoricalTokenizer(cfg["modality"], cfg["channels"], cfg.get("scale", 1.0))
    if kind == "vae":
        from .vae import VAETokenizer

        return VAETokenizer.from_config(cfg)
    raise ConfigError(f"unknown tokenizer type {kind!r} for {cfg.get('modality')}; use patch, categorical or vae")


def tokenizer_for(mod: Modality) -> Tokenizer:
    """The tokenizer a registry entry asks for (untrained VAEs are built from their config)."""
    cfg = dict(mod.tokenizer)
    if cfg.get("path"):
        return Tokenizer.load(cfg["path"], mod.name)
    cfg.setdefault("type", "categorical" if mod.is_categorical else "patch")
    if cfg["type"] == "categorical" and not mod.is_categorical:
        raise ConfigError(f"{mod.name}: a continuous modality cannot use the categorical tokenizer")
    cfg.update(modality=mod.name, channels=mod.channels)
    return build_tokenizer(cfg)


__all__ = ["Tokenizer", "PatchTokenizer", "CategoricalTokenizer", "build_tokenizer", "tokenizer_for"]

"""The tokenizer interface: model-space pixels of one modality <-> a latent grid for the transformer."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from ..errors import CheckpointError
from ..io import atomic_path


class Tokenizer(nn.Module):
    """encode: model space -> latent (B, c, h, w); decode: latent -> model space.

    Continuous modalities: model space is (B, C, H, W) float. Categorical: (B, H, W) long class indices
    (-1 = nodata). `downsample` is the pixel-to-latent factor; `latent_channels` is c.
    """

    kind: str = "base"

    def __init__(self, modality: str, channels: int, latent_channels: int, downsample: int = 1):
        super().__init__()
        self.modality = modality
        self.channels = channels
        self.latent_channels = latent_channels
        self.downsample = downsample

    def encode(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(c, h, w) of the latent of a (height, width) input; sizes are rounded up (inputs are padded)."""
        d = self.downsample
        return self.latent_channels, -(-height // d), -(-width // d)

    def latent_valid(self, valid: torch.Tensor) -> torch.Tensor:
        """(B,H,W) pixel mask -> (B,h,w) latent mask: a latent cell is valid only if all its pixels are."""
        if self.downsample == 1:
            return valid
        inv = torch.nn.functional.max_pool2d((~valid).float()[:, None], self.downsample, ceil_mode=True)
        return inv[:, 0] < 0.5

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "modality": self.modality, "channels": self.channels,
                "latent_channels": self.latent_channels, "downsample": self.downsample}

    # ---- persistence ----------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write `<dir>/<modality>.json` (config) and `<dir>/<modality>.safetensors` (weights, buffers)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(directory / f"{self.modality}.safetensors") as tmp:
            save_file(tensors, str(tmp))
        with atomic_path(directory / f"{self.modality}.json") as tmp:
            tmp.write_text(json.dumps(self.config(), indent=2))
        return directory

    @staticmethod
    def load(directory: str | Path, modality: str) -> "Tokenizer":
        from . import build_tokenizer

        directory = Path(directory)
        cfg_path, w_path = directory / f"{modality}.json", directory / f"{modality}.safetensors"
        if not cfg_path.is_file():
            raise CheckpointError(f"{cfg_path}: tokenizer config not found for {modality}")
        cfg = json.loads(cfg_path.read_text())
        tok = build_tokenizer(cfg)
        if w_path.is_file():
            try:
                state = load_file(str(w_path))
            except Exception as e:  # safetensors raises several types on corruption
                raise CheckpointError(f"{w_path}: corrupted tokenizer weights ({e}); retrain or restore it") from None
            tok.load_state_dict(state)
        return tok

"""Pixel tokenizers that need no training: the identity for continuous values, one-hot codes for classes."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Tokenizer


class PatchTokenizer(Tokenizer):
    """The identity on normalised values; patching is left to the transformer's patch embedding."""

    kind = "patch"

    def __init__(self, modality: str, channels: int):
        super().__init__(modality, channels, channels, 1)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def config(self):
        return {"type": self.kind, "modality": self.modality, "channels": self.channels}


class CategoricalTokenizer(Tokenizer):
    """Class indices (B,H,W) -> one-hot code scaled to [-scale, +scale] (B,K,H,W); decoded by argmax.

    Nodata (-1) encodes to all zeros (no class) and must be masked out of losses.
    """

    kind = "categorical"

    def __init__(self, modality: str, channels: int, scale: float = 1.0):
        super().__init__(modality, channels, channels, 1)
        self.scale = scale

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        valid = x >= 0
        onehot = F.one_hot(x.clamp(min=0).long(), self.channels).permute(0, 3, 1, 2).float()  # (B,K,H,W)
        code = (2 * onehot - 1) * self.scale
        return code * valid[:, None]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.argmax(dim=1)

    def config(self):
        return {"type": self.kind, "modality": self.modality, "channels": self.channels, "scale": self.scale}

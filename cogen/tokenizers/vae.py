"""A learned, compressing tokenizer: diffusers' AutoencoderKL sized by config, with a latent scale measured
on data so that scaled latents have unit variance.

With `linear: true` the latent also has a linear path: the block PCA of the input (see `linear.py`), fit on
the training split before training, is added to the encoder's posterior mean, and its inverse to the decoder's
output. The AutoencoderKL's last encoder and decoder layers start at zero, so training starts from the best
linear code of the latent's shape and learns only the residual. Levels (per-tile band means) take the linear
path; the VAE's GroupNorms, over a small tile, otherwise make it carry them through nonlinearities."""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

from .base import Tokenizer
from .linear import fit_block_pca, pca_decode, pca_encode


class VAETokenizer(Tokenizer):
    """encode: (B,C,H,W) model space -> (B,c,ceil(H/d),ceil(W/d)) scaled posterior means; decode: back.

    Inputs whose size is not a multiple of d are padded (reflect) before encoding; `decode(z, size)` crops."""

    kind = "vae"

    def __init__(self, modality: str, channels: int, latent_channels: int = 8, block_out_channels=(32, 64, 64),
                 layers_per_block: int = 1, norm_num_groups: int = 16, scale_factor: float = 1.0,
                 shift: float = 0.0, linear: bool = False):
        n = len(block_out_channels)
        super().__init__(modality, channels, latent_channels, 2 ** (n - 1))
        self.block_out_channels = tuple(block_out_channels)
        self.layers_per_block = layers_per_block
        self.norm_num_groups = norm_num_groups
        self.vae = AutoencoderKL(in_channels=channels, out_channels=channels, latent_channels=latent_channels,
                                 down_block_types=("DownEncoderBlock2D",) * n, up_block_types=("UpDecoderBlock2D",) * n,
                                 block_out_channels=self.block_out_channels, layers_per_block=layers_per_block,
                                 norm_num_groups=norm_num_groups)
        self.register_buffer("scale_factor", torch.tensor(float(scale_factor)))
        self.register_buffer("shift", torch.tensor(float(shift)))
        self.linear = bool(linear)
        if self.linear:  # block PCA path; set by fit_linear (or loaded with the weights)
            n_block = channels * self.downsample**2
            self.register_buffer("lin_mean", torch.zeros(n_block))
            self.register_buffer("lin_basis", torch.zeros(n_block, latent_channels))

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> "VAETokenizer":
        keys = ("latent_channels", "block_out_channels", "layers_per_block", "norm_num_groups", "scale_factor", "shift", "linear")
        return cls(cfg["modality"], cfg["channels"], **{k: cfg[k] for k in keys if k in cfg})

    def config(self) -> dict[str, Any]:
        return {"type": self.kind, "modality": self.modality, "channels": self.channels,
                "latent_channels": self.latent_channels, "block_out_channels": list(self.block_out_channels),
                "layers_per_block": self.layers_per_block, "norm_num_groups": self.norm_num_groups,
                "scale_factor": float(self.scale_factor), "shift": float(self.shift), "downsample": self.downsample,
                "linear": self.linear}

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        d = self.downsample
        ph, pw = (-x.shape[-2]) % d, (-x.shape[-1]) % d
        if ph or pw:
            mode = "reflect" if min(x.shape[-2:]) > max(ph, pw) else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        return x

    @torch.no_grad()
    def fit_linear(self, arrays, masks=None) -> None:
        """Fit the linear path on training arrays ((C,H,W) model space, optional (H,W) valid masks) and zero the
        AutoencoderKL's last layers, so that the tokenizer starts as the block PCA code."""
        if not self.linear:
            raise ValueError(f"{self.modality}: fit_linear needs a tokenizer built with linear=True")
        mean, basis = fit_block_pca(arrays, self.downsample, self.latent_channels, masks)
        self.lin_mean.copy_(mean)
        self.lin_basis.copy_(basis)
        c = self.latent_channels
        qc, out = self.vae.quant_conv, self.vae.decoder.conv_out
        for p in (qc.weight, qc.bias, out.weight, out.bias):
            p.zero_()
        qc.bias[c:] = -12.0  # posterior log-variance: a sampling noise far below the code's resolution

    def posterior(self, x: torch.Tensor):
        x = self._pad(x)
        post = self.vae.encode(x).latent_dist
        if not self.linear:
            return post
        mean = post.mean + pca_encode(x, self.lin_mean, self.lin_basis, self.downsample)
        return DiagonalGaussianDistribution(torch.cat([mean, post.logvar], dim=1))

    def decode_unscaled(self, u: torch.Tensor) -> torch.Tensor:
        """Posterior-space latent (before shift/scale) -> model space (padded size)."""
        x = self.vae.decode(u).sample
        return x + pca_decode(u, self.lin_mean, self.lin_basis, self.downsample) if self.linear else x

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return (self.posterior(x).mean - self.shift) * self.scale_factor

    def decode(self, z: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        x = self.decode_unscaled(z / self.scale_factor + self.shift)
        return x if size is None else x[..., : size[0], : size[1]]

    @torch.no_grad()
    def measure_scale(self, batches) -> float:
        """Set shift/scale from the unscaled posterior means of `batches` (iterable of (B,C,H,W)): unit variance."""
        s, s2, n = 0.0, 0.0, 0
        for x in batches:
            m = self.posterior(x).mean.double()
            s, s2, n = s + m.sum().item(), s2 + (m**2).sum().item(), n + m.numel()
        mean = s / n
        std = max((s2 / n - mean**2) ** 0.5, 1e-8)
        self.shift.fill_(mean)
        self.scale_factor.fill_(1.0 / std)
        return 1.0 / std


class PatchDiscriminator(torch.nn.Module):
    """A small PatchGAN critic for the tokenizer stage's optional adversarial term: (B,C,H,W) model space ->
    (B,1,H/4,W/4) realness scores (hinge loss). Spectral norm keeps it tame at small batch sizes."""

    def __init__(self, channels: int, width: int = 64):
        super().__init__()
        sn = torch.nn.utils.parametrizations.spectral_norm
        self.net = torch.nn.Sequential(
            sn(torch.nn.Conv2d(channels, width, 4, 2, 1)), torch.nn.LeakyReLU(0.2),
            sn(torch.nn.Conv2d(width, width * 2, 4, 2, 1)), torch.nn.LeakyReLU(0.2),
            sn(torch.nn.Conv2d(width * 2, width * 2, 3, 1, 1)), torch.nn.LeakyReLU(0.2),
            torch.nn.Conv2d(width * 2, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def edge_loss(rec: torch.Tensor, x: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of horizontal and vertical image gradients over pairs of valid pixels: a
    structure term for multispectral data (ImageNet perceptual networks do not apply to 12 bands)."""
    total, n = rec.new_zeros(()), rec.new_zeros(())
    for dim in (-1, -2):
        d = lambda t: t.diff(dim=dim)
        pair = ok.narrow(dim, 1, ok.shape[dim] - 1) * ok.narrow(dim, 0, ok.shape[dim] - 1)
        total = total + ((d(rec) - d(x)).abs() * pair).sum()
        n = n + pair.sum() * x.shape[1]
    return total / n.clamp(min=1)

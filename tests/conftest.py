"""Shared fixtures: small generated GeoTIFFs with a real CRS, and a tiny model bundle. All seeded, CPU only."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")
torch.set_num_threads(min(2, os.cpu_count() or 1))

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "data" / "terramind-examples"


@pytest.fixture(scope="session")
def registry():
    from cogen.registry import default_registry

    return default_registry()


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """Three 64 px synthetic scenes in the dataset layout."""
    from cogen.data.synthetic import write_scenes

    root = tmp_path_factory.mktemp("synth")
    write_scenes(root, n=3, size=64, seed=0)
    return root


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """An untrained-but-random tiny bundle over S2L2A, S1RTC, DEM, LULC (weights perturbed so outputs vary)."""
    from cogen.config import load_config
    from train import build_everything

    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    torch.manual_seed(0)
    registry, tokenizers, model = build_everything(cfg)
    return _save_perturbed(tmp_path_factory.mktemp("bundle") / "tiny", model, tokenizers, registry, cfg)


@pytest.fixture(scope="session")
def partial_bundle(tmp_path_factory):
    """tiny_bundle's weights, with a config that says the model was trained with partial targets."""
    from cogen.config import load_config
    from train import build_everything

    cfg = load_config(ROOT / "configs" / "tiny.yaml", ["roles.p_partial=0.4"])
    torch.manual_seed(0)
    registry, tokenizers, model = build_everything(cfg)
    return _save_perturbed(tmp_path_factory.mktemp("bundle") / "partial", model, tokenizers, registry, cfg)


def _save_perturbed(path: Path, model, tokenizers, registry, cfg) -> Path:
    """Perturb a freshly built model's weights (so outputs vary) and save it as a bundle at `path`."""
    from cogen.checkpoint import save_bundle

    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    save_bundle(path, model, tokenizers, registry, cfg)
    return path


def write_pattern(path: Path, bands: int, h: int, w: int, crs="EPSG:32633", origin=(500000.0, 5000000.0),
                  dtype="float32", nodata=None, offset: float = 0.0) -> np.ndarray:
    """A raster whose value encodes (band, row, col): reveals any misalignment."""
    from rasterio.transform import from_origin

    from cogen.io import write_raster

    b, r, c = np.indices((bands, h, w))
    arr = (offset + b * 1e-3 + r * w + c).astype(dtype)
    write_raster(path, arr, crs, from_origin(origin[0], origin[1], 10, 10), nodata=nodata)
    return arr


@pytest.fixture(scope="session")
def vae_bundle(tmp_path_factory):
    """Like tiny_bundle, but S2L2A goes through a small VAE tokenizer (linear path, 2x downsampling, patch 2)."""
    from cogen.config import load_config
    from cogen.models.transformer import build_model
    from cogen.registry import Registry
    from cogen.tokenizers import tokenizer_for
    from cogen.tokenizers.vae import VAETokenizer

    cfg = load_config(ROOT / "configs" / "tiny.yaml")
    cfg.model.patch_sizes = {"S2L2A": 2}
    registry = Registry.from_yaml(cfg.data.registry, cfg.data.stats)
    torch.manual_seed(0)
    vae = VAETokenizer("S2L2A", 12, latent_channels=6, block_out_channels=(8, 8), norm_num_groups=4, linear=True)
    g = torch.Generator().manual_seed(1)
    vae.fit_linear([torch.randn(12, 16, 16, generator=g) for _ in range(4)])
    toks = {m: vae if m == "S2L2A" else tokenizer_for(registry[m]) for m in cfg.data.modalities}
    spec = {m: {"channels": toks[m].latent_channels, "patch_size": cfg.model.patch_sizes.get(m, cfg.model.patch_size)}
            for m in cfg.data.modalities}
    model = build_model(cfg.model.size, spec)
    return _save_perturbed(tmp_path_factory.mktemp("bundle") / "vae", model, toks, registry, cfg)

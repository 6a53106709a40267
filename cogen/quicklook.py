"""Quicklook PNGs: modalities rendered the way people look at them, side by side."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io import atomic_path  # noqa: E402
from .registry import Modality  # noqa: E402


def _stretch(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    finite = x[np.isfinite(x)]
    if lo is None or hi is None:
        if finite.size == 0:
            return np.zeros_like(x)
        lo, hi = np.percentile(finite, [2, 98])
    out = (x - lo) / max(hi - lo, 1e-12)
    return np.clip(np.nan_to_num(out, nan=0.0), 0, 1)


def render(mod: Modality, raw: np.ndarray) -> np.ndarray:
    """(C,H,W) raw values (or (H,W) class ids) -> (H,W,3) float RGB in [0, 1]."""
    raw = np.asarray(raw)
    if raw.ndim == 2:
        raw = raw[None]
    if mod.is_categorical:
        lut = np.zeros((max(max(mod.class_ids), int(np.nanmax(raw)) if raw.size else 0) + 1, 3))
        for c in mod.classes:
            lut[c.id] = c.rgb
        ids = np.nan_to_num(raw[0], nan=0).astype(np.int64).clip(0, len(lut) - 1)
        return lut[ids]
    phys = mod.to_physical(raw.astype(np.float64))
    lo, hi = mod.display_range if mod.display_range else (None, None)
    if raw.shape[0] != mod.num_bands:  # bands not known by name (read_preview without its modality): the first
        return plt.get_cmap("gray")(_stretch(phys[0], lo, hi))[..., :3]
    if mod.rgb:
        idx = [mod.band_index(b) for b in mod.rgb]
        return np.stack([_stretch(phys[i], lo, hi) for i in idx], axis=-1)
    if mod.num_bands == 2:  # radar: VV, VH, VV-VH (dB) false colour
        a, b = _stretch(phys[0], lo, hi), _stretch(phys[1], lo, hi)
        return np.stack([a, b, _stretch(phys[0] - phys[1])], axis=-1)
    cmap = {"m": "terrain", "index": "RdYlGn"}.get(mod.units, "viridis")
    return plt.get_cmap(cmap)(_stretch(phys[0], lo, hi))[..., :3]


def save_grid(path: str | Path, rows: Sequence[Sequence[tuple[str, np.ndarray | None]]], dpi: int = 100,
              cell: float = 2.4) -> Path:
    """rows of (title, HxWx3 image or HxW map in [0,1] or None) -> one PNG, written atomically."""
    nr, nc = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nr, nc, figsize=(cell * nc, cell * nr + 0.3), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(nc):
            ax = axes[i][j]
            ax.axis("off")
            if j < len(row) and row[j][1] is not None:
                title, img = row[j]
                if img.ndim == 2:
                    ax.imshow(img, cmap="magma", vmin=0, vmax=1)
                else:
                    ax.imshow(np.clip(img, 0, 1))
                ax.set_title(title, fontsize=8)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    plt.close(fig)
    return Path(path)


def read_preview(path: str | Path, max_size: int = 512, window=None, modality: Modality | None = None,
                 bands: Sequence[str] | None = None) -> np.ndarray:
    """A decimated read of a raster, or of a pixel `window` of it (bounded memory for big scenes): (C,h,w). With
    its `modality`, a file holding some of its bands (named by its descriptions or `bands`) comes back with every
    band of the modality, the missing ones 0."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        h, w = (src.height, src.width) if window is None else (int(window.height), int(window.width))
        f = max(1, int(np.ceil(max(h, w) / max_size)))
        arr = src.read(out_shape=(src.count, max(1, h // f), max(1, w // f)), window=window,
                       resampling=Resampling.nearest, masked=False).astype(np.float64)
        if modality is None or modality.is_categorical:
            return arr
        return modality.expand_bands(arr, modality.file_bands(src.count, str(path), src.descriptions, bands))

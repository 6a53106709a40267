"""Scores in physical units. Standard image metrics come from torchmetrics; the rest is small numpy.

All functions take numpy arrays: continuous (C,H,W) (or (C,N) pixels), class maps (H,W) of class ids.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def mae_np(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(pred, np.float64) - np.asarray(true, np.float64))))


def rmse_np(pred: np.ndarray, true: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, np.float64) - np.asarray(true, np.float64)) ** 2)))


def psnr_np(pred: np.ndarray, true: np.ndarray, data_range: float) -> float:
    """10 log10(range^2 / MSE) over all values."""
    mse = np.mean((np.asarray(pred, np.float64) - np.asarray(true, np.float64)) ** 2)
    return float(10 * np.log10(data_range**2 / max(mse, 1e-20)))


def ssim_np(pred: np.ndarray, true: np.ndarray, data_range: float) -> float:
    """Mean SSIM over bands (torchmetrics, Gaussian window 11, sigma 1.5); (C,H,W) inputs."""
    from torchmetrics.functional.image import structural_similarity_index_measure as ssim

    p = torch.from_numpy(np.asarray(pred, np.float64))[:, None]
    t = torch.from_numpy(np.asarray(true, np.float64))[:, None]
    k = 11 if min(p.shape[-2:]) >= 11 else (min(p.shape[-2:]) // 2) * 2 - 1
    return float(ssim(p, t, data_range=data_range, kernel_size=k))


def sam_map(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Spectral angle in degrees of every pixel; (C, ...) inputs, bands first -> (...)."""
    p = np.asarray(pred, np.float64).reshape(pred.shape[0], -1)
    t = np.asarray(true, np.float64).reshape(true.shape[0], -1)
    cos = (p * t).sum(0) / np.maximum(np.linalg.norm(p, axis=0) * np.linalg.norm(t, axis=0), 1e-20)
    return np.degrees(np.arccos(np.clip(cos, -1, 1))).reshape(np.shape(pred)[1:])


def sam_np(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean spectral angle in degrees between per-pixel spectra; (C, ...) inputs, bands first."""
    return float(sam_map(pred, true).mean())


def confusion(pred: np.ndarray, true: np.ndarray, class_ids: Sequence[int]) -> np.ndarray:
    """(K,K) counts, rows = truth, columns = prediction, over pixels whose truth is a class."""
    ids = np.asarray(class_ids)
    lut = np.full(max(int(ids.max()), int(np.max(pred)), int(np.max(true))) + 1, -1)
    lut[ids] = np.arange(len(ids))
    t, p = lut[np.asarray(true).ravel().astype(np.int64)], lut[np.asarray(pred).ravel().astype(np.int64)]
    ok = (t >= 0) & (p >= 0)
    return np.bincount(t[ok] * len(ids) + p[ok], minlength=len(ids) ** 2).reshape(len(ids), len(ids))


def iou_per_class(cm: np.ndarray) -> np.ndarray:
    """IoU per class; NaN for classes absent from both truth and prediction."""
    tp = np.diag(cm).astype(np.float64)
    denom = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, tp / denom, np.nan)


def miou_np(pred: np.ndarray, true: np.ndarray, class_ids: Sequence[int]) -> float:
    """Mean IoU over classes present in the truth or the prediction."""
    return float(np.nanmean(iou_per_class(confusion(pred, true, class_ids))))


def ece_np(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error: sum over confidence bins of |accuracy - confidence| x bin weight."""
    c, k = np.asarray(confidence, np.float64).ravel(), np.asarray(correct, np.float64).ravel()
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(c, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            ece += sel.mean() * abs(k[sel].mean() - c[sel].mean())
    return float(ece)


def wasserstein_per_band(pred: np.ndarray, true: np.ndarray) -> float:
    """Mean over bands of the 1-D Wasserstein distance between value histograms (scipy)."""
    from scipy.stats import wasserstein_distance

    p = np.asarray(pred).reshape(pred.shape[0], -1)
    t = np.asarray(true).reshape(true.shape[0], -1)
    return float(np.mean([wasserstein_distance(p[i], t[i]) for i in range(p.shape[0])]))


def radial_power(img: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum of a (H,W) image (mean removed); index = radius in frequency bins."""
    x = np.asarray(img, np.float64)
    f = np.abs(np.fft.fftshift(np.fft.fft2(x - x.mean()))) ** 2
    h, w = x.shape
    yy, xx = np.indices((h, w))
    r = np.hypot(yy - h // 2, xx - w // 2).astype(np.int64)
    return np.bincount(r.ravel(), f.ravel()) / np.maximum(np.bincount(r.ravel()), 1)


def hf_power_per_band(img: np.ndarray, frac: float = 0.5) -> np.ndarray:
    """(C,H,W) -> (C,) power above `frac` of the Nyquist radius of each band."""
    n = min(img.shape[-2:]) // 2
    lo = int(frac * n)
    return np.array([radial_power(img[b])[lo:n].sum() for b in range(img.shape[0])])


def hf_power_ratios(pred: np.ndarray, true: np.ndarray, frac: float = 0.5) -> tuple[float, list[float]]:
    """High-frequency power of the samples over the truth's (1 = same texture): all bands pooled, and per band.
    One spectrum per band and image.

    The pooled figure sums power over bands before the ratio: Sentinel-2's 20 m and 60 m bands are resampled to
    10 m and have almost no power near Nyquist, so a per-band ratio is a ratio of near-zero numbers that would
    swamp a mean over bands."""
    hp, ht = hf_power_per_band(pred, frac), hf_power_per_band(true, frac)
    return float(hp.sum() / max(ht.sum(), 1e-20)), [float(a / max(b, 1e-20)) for a, b in zip(hp, ht)]

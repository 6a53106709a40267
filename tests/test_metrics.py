"""Each metric against a case computed by hand."""
import numpy as np
import pytest

from cogen.metrics import (confusion, ece_np, hf_power_per_band, hf_power_ratios, iou_per_class, mae_np, miou_np, psnr_np, rmse_np,
                           sam_map, sam_np, ssim_np, wasserstein_per_band)


def test_psnr_of_a_known_mse():
    t = np.zeros((1, 10, 10))
    p = t + 0.1  # MSE = 0.01 -> PSNR = 10 log10(1 / 0.01) = 20 dB
    assert psnr_np(p, t, 1.0) == pytest.approx(20.0)
    assert psnr_np(p, t, 2.0) == pytest.approx(20.0 + 20 * np.log10(2))


def test_mae_rmse():
    p, t = np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.0, 0.0, 3.0, 8.0])
    assert mae_np(p, t) == pytest.approx(1.5)
    assert rmse_np(p, t) == pytest.approx(np.sqrt((4 + 16) / 4))


def test_sam_of_orthogonal_and_parallel_spectra():
    assert sam_np(np.array([[1.0], [0.0]]), np.array([[0.0], [1.0]])) == pytest.approx(90.0)
    assert sam_np(np.array([[1.0], [1.0]]), np.array([[3.0], [3.0]])) == pytest.approx(0.0, abs=1e-6)
    assert sam_np(np.array([[1.0], [0.0]]), np.array([[1.0], [1.0]])) == pytest.approx(45.0)
    # per pixel, keeping the spatial shape: 90, 0 and 45 degrees in one (2, 1, 3) image
    p, t = np.array([[[1.0, 1.0, 1.0]], [[0.0, 1.0, 0.0]]]), np.array([[[0.0, 3.0, 1.0]], [[1.0, 3.0, 1.0]]])
    np.testing.assert_allclose(sam_map(p, t), [[90.0, 0.0, 45.0]], atol=1e-6)
    assert sam_np(p, t) == pytest.approx(45.0)


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    x = rng.random((2, 32, 32))
    assert ssim_np(x, x, 1.0) == pytest.approx(1.0, abs=1e-6)
    assert ssim_np(x + rng.normal(0, 0.3, x.shape), x, 1.0) < 0.75


def test_miou_of_a_small_confusion_matrix():
    true = np.array([1, 1, 1, 2, 2, 4, 0])  # 0 = nodata, ignored
    pred = np.array([1, 1, 2, 2, 2, 4, 1])
    cm = confusion(pred, true, [1, 2, 4])
    assert cm.tolist() == [[2, 1, 0], [0, 2, 0], [0, 0, 1]]
    iou = iou_per_class(cm)  # class 1: 2/(3+2-2)=2/3; class 2: 2/(2+3-2)=2/3; class 4: 1
    np.testing.assert_allclose(iou, [2 / 3, 2 / 3, 1.0])
    assert miou_np(pred, true, [1, 2, 4]) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    # a class absent from both truth and prediction does not count
    assert miou_np(pred, true, [1, 2, 4, 5]) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_ece_by_hand():
    conf = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1, 1, 0, 1])
    # bin 0.9-1.0: acc 1, conf .95 -> .05 x 1/2 ; bin 0.5-0.6: acc .5, conf .55 -> .05 x 1/2
    assert ece_np(conf, correct) == pytest.approx(0.05)


def test_wasserstein_of_shifted_values():
    a = np.arange(100, dtype=float).reshape(1, 10, 10)
    assert wasserstein_per_band(a + 3, a) == pytest.approx(3.0)


def test_high_frequency_power_ratio():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 64, 64))
    assert hf_power_ratios(x, x)[0] == pytest.approx(1.0)
    assert hf_power_ratios(2 * x, x)[0] == pytest.approx(4.0)
    from scipy.ndimage import gaussian_filter

    assert hf_power_ratios(gaussian_filter(x, (0, 2, 2)), x)[0] < 0.05  # blurred samples lose texture
    # bands pool their power: [2x, y] against [x, y] with equal power per band -> (4 + 1) / 2
    y = rng.normal(size=(1, 64, 64))
    y *= np.sqrt(hf_power_per_band(x)[0] / hf_power_per_band(y)[0])
    pooled, per_band = hf_power_ratios(np.concatenate([2 * x, y]), np.concatenate([x, y]))
    assert pooled == pytest.approx(2.5) and per_band == pytest.approx([4.0, 1.0])

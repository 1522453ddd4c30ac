"""Pixel-wise image-quality measures of a real image (amplitude or phase) against the truth.

The data range of PSNR and SSIM is taken from the **truth** over the compared pixels
(``max - min``), never a fixed 255 (an upstream defect on radians). Every function accepts an
optional boolean ``mask`` selecting the compared pixels; all results are plain Python floats.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

DEFAULT_SSIM_WINDOW = 7


def _pair(truth: np.ndarray, recon: np.ndarray, mask: np.ndarray | None):
    truth = np.asarray(truth, np.float64)
    recon = np.asarray(recon, np.float64)
    if truth.shape != recon.shape:
        raise ValueError(f"truth {truth.shape} and reconstruction {recon.shape} differ in shape")
    if mask is None:
        mask = np.ones(truth.shape, bool)
    mask = np.asarray(mask, bool)
    if mask.shape != truth.shape:
        raise ValueError(f"mask {mask.shape} does not match the images {truth.shape}")
    if not mask.any():
        raise ValueError("the mask selects no pixels")
    return truth, recon, mask


def data_range(truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """``max - min`` of ``truth`` over the masked pixels (same units as the image)."""
    truth = np.asarray(truth, np.float64)
    values = truth if mask is None else truth[np.asarray(mask, bool)]
    return float(values.max() - values.min())


def mae(truth: np.ndarray, recon: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error ``mean |recon - truth|`` over the masked pixels (image units).

    Parameters
    ----------
    truth, recon : ndarray, shape (h, w), real
    mask : ndarray, shape (h, w), bool, optional
    """
    truth, recon, mask = _pair(truth, recon, mask)
    return float(np.mean(np.abs(recon - truth)[mask]))


def psnr(truth: np.ndarray, recon: np.ndarray, mask: np.ndarray | None = None,
         data_range_value: float | None = None) -> float:
    """Peak signal-to-noise ratio ``10 log10(R**2 / MSE)`` in dB over the masked pixels.

    Parameters
    ----------
    truth, recon : ndarray, shape (h, w), real
    mask : ndarray, shape (h, w), bool, optional
    data_range_value : float, optional
        ``R``; default :func:`data_range` of the truth over the mask.

    Returns
    -------
    float
        ``inf`` for identical images, ``nan`` when the truth is constant (``R = 0``).
    """
    truth, recon, mask = _pair(truth, recon, mask)
    peak = data_range(truth, mask) if data_range_value is None else float(data_range_value)
    mse = float(np.mean((recon - truth)[mask] ** 2))
    if not peak > 0:
        return math.nan
    if mse == 0:
        return math.inf
    return float(10.0 * np.log10(peak ** 2 / mse))


def ssim_window(shape: tuple[int, int], win_size: int = DEFAULT_SSIM_WINDOW) -> int:
    """Largest odd SSIM window ``<= win_size`` that fits in ``shape`` (0 if below 3 pixels)."""
    side = min(int(win_size), *(int(s) for s in shape))
    side -= 1 - side % 2
    return side if side >= 3 else 0


def ssim(truth: np.ndarray, recon: np.ndarray, mask: np.ndarray | None = None,
         data_range_value: float | None = None, win_size: int = DEFAULT_SSIM_WINDOW) -> float:
    """Mean structural similarity (:func:`skimage.metrics.structural_similarity`).

    Uniform ``win_size`` x ``win_size`` windows (scikit-image defaults otherwise). Without a
    mask (or with an all-True one) this is exactly scikit-image's value. With a mask the local
    means, variances and covariance of each window are taken over its masked pixels only
    (:func:`masked_ssim_map`), and the map is averaged over the masked pixels whose whole
    window lies inside the mask; when no window fits (a sparse mask, e.g. stitching crops
    smaller than the scan step), over every masked pixel whose window holds at least two
    masked pixels. Unmasked pixels never enter the result.

    Parameters
    ----------
    truth, recon : ndarray, shape (h, w), real
    mask : ndarray, shape (h, w), bool, optional
    data_range_value : float, optional
        Default :func:`data_range` of the truth over the mask.
    win_size : int, odd
        Reduced to the largest odd size that fits the image.

    Returns
    -------
    float
        In [-1, 1]; ``nan`` when the truth is constant or the image is smaller than 3 pixels.
    """
    from skimage.metrics import structural_similarity

    truth, recon, mask = _pair(truth, recon, mask)
    peak = data_range(truth, mask) if data_range_value is None else float(data_range_value)
    window = ssim_window(truth.shape, win_size)
    if not peak > 0 or window == 0:
        return math.nan
    if mask.all():
        return float(structural_similarity(truth, recon, data_range=peak, win_size=window))
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    truth, recon, mask = truth[box], recon[box], mask[box]
    window = ssim_window(truth.shape, win_size)
    if window == 0:
        return math.nan
    ssim_map, count = masked_ssim_map(truth, recon, mask, peak, window)
    selected = mask & (count > window * window - 0.5)  # the whole window inside the mask
    if not selected.any():
        selected = mask & (count > 1.5)
    if not selected.any():
        return math.nan
    return float(np.mean(ssim_map[selected]))


def masked_ssim_map(truth: np.ndarray, recon: np.ndarray, mask: np.ndarray, peak: float,
                    window: int) -> tuple[np.ndarray, np.ndarray]:
    """SSIM map with window statistics over the masked pixels only (normalised convolution).

    scikit-image's formula (K1 = 0.01, K2 = 0.03, sample covariance) with every uniform window
    average replaced by the average over the window's masked pixels; where a window lies wholly
    inside the mask the value equals scikit-image's.

    Parameters
    ----------
    truth, recon : ndarray, shape (h, w), float64
    mask : ndarray, shape (h, w), bool
    peak : float
        Data range L (C1 = (0.01 L)^2, C2 = (0.03 L)^2).
    window : int
        Odd window side in pixels.

    Returns
    -------
    ssim_map : ndarray, shape (h, w), float64
        Undefined (nan) where a window holds fewer than two masked pixels.
    count : ndarray, shape (h, w), float64
        Number of masked pixels in each window.
    """
    weight = mask.astype(np.float64)

    def window_sum(image: np.ndarray) -> np.ndarray:
        return ndimage.uniform_filter(image, size=window, mode="constant") * window * window

    count = np.rint(window_sum(weight))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_t = window_sum(weight * truth) / count
        mean_r = window_sum(weight * recon) / count
        sample = count / (count - 1)
        var_t = (window_sum(weight * truth * truth) / count - mean_t ** 2) * sample
        var_r = (window_sum(weight * recon * recon) / count - mean_r ** 2) * sample
        cov = (window_sum(weight * truth * recon) / count - mean_t * mean_r) * sample
        c1, c2 = (0.01 * peak) ** 2, (0.03 * peak) ** 2
        ssim_map = ((2 * mean_t * mean_r + c1) * (2 * cov + c2)
                    / ((mean_t ** 2 + mean_r ** 2 + c1) * (var_t + var_r + c2)))
    ssim_map[count < 2] = np.nan
    return ssim_map, count

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
    mask (or with an all-True one) this is exactly scikit-image's value. With a mask the SSIM
    map is averaged over the pixels whose whole window lies inside the mask (the masked pixels
    themselves when none does).

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
    fill = float(truth[mask].mean())
    _, ssim_map = structural_similarity(np.where(mask, truth, fill), np.where(mask, recon, fill),
                                        data_range=peak, win_size=window, full=True)
    inner = ndimage.binary_erosion(mask, structure=np.ones((window, window), bool), border_value=0)
    if not inner.any():
        inner = mask
    return float(np.mean(ssim_map[inner]))

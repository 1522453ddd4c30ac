"""Fourier ring correlation (FRC) of two real images, written with NumPy (rings on the 2-D FFT).

Definitions
-----------
Both images are mean-subtracted and Tukey-windowed (the same window), then Fourier transformed.
Ring ``k`` holds the frequencies whose radius ``sqrt(fy**2 + fx**2)`` (cycles/px) rounds to
``k / L`` with ``L = min(h, w)``; rings run from 0 to ``L // 2`` (Nyquist, 0.5 cycles/px)::

    FRC_k = Re sum_k F1 conj(F2) / sqrt(sum_k |F1|**2 * sum_k |F2|**2)

Thresholds: the constant 0.5 and the 1/2-bit curve of van Heel & Schatz (2005),
``T(n) = (0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n))`` with ``n`` the number of
pixels in the ring. The resolution is the period ``1 / f`` (pixels) at the first crossing below
the threshold (ring 1 onward; DC is ignored), interpolated linearly between the last ring above
and the first ring below it; a crossing at ring 1 reports ``L`` (the field of view); no crossing
reports the Nyquist limit, 2.0 px.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptycho.evaluation._window import taper

NYQUIST_PERIOD_PX = 2.0
FRC50_THRESHOLD = 0.5


@dataclass
class FRCCurve:
    """One FRC curve and its resolution estimates.

    Attributes
    ----------
    frequency : ndarray, shape (K,), float64
        Ring spatial frequency in cycles per pixel, ``k / L`` for k = 0 .. L // 2.
    frc : ndarray, shape (K,), float64
        Correlation per ring in [-1, 1] (``nan`` for a ring where an image has no power).
    n_pixels : ndarray, shape (K,), int64
        Fourier pixels per ring.
    half_bit : ndarray, shape (K,), float64
        The 1/2-bit threshold curve :func:`half_bit_threshold` of ``n_pixels``.
    frc50_px : float
        Resolution (period in pixels) at the 0.5 threshold.
    frc_half_bit_px : float
        Resolution (period in pixels) at the 1/2-bit threshold.
    """

    frequency: np.ndarray
    frc: np.ndarray
    n_pixels: np.ndarray
    half_bit: np.ndarray
    frc50_px: float
    frc_half_bit_px: float


def half_bit_threshold(n_pixels) -> np.ndarray:
    """The 1/2-bit threshold (van Heel & Schatz 2005) for rings of ``n_pixels`` pixels.

    ``T(n) = (0.2071 + 1.9102 / sqrt(n)) / (1.2071 + 0.9102 / sqrt(n))``; tends to 0.1716 for
    large rings and is 1 for a single pixel. Returns float64 of the shape of ``n_pixels``.
    """
    root = np.sqrt(np.maximum(np.asarray(n_pixels, np.float64), 1.0))
    return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)


def ring_index(shape: tuple[int, int]) -> tuple[np.ndarray, int]:
    """Ring number of every (unshifted) FFT pixel of an image of ``shape``; return ``(index, L)``.

    ``index`` has shape ``shape`` (int64); pixels beyond ring ``L // 2`` get ``-1``.
    """
    height, width = shape
    side = min(height, width)
    radius = np.hypot(np.fft.fftfreq(height)[:, None], np.fft.fftfreq(width)[None, :])
    index = np.rint(radius * side).astype(np.int64)
    index[index > side // 2] = -1
    return index, side


def threshold_crossing_px(frequency: np.ndarray, frc: np.ndarray, threshold) -> float:
    """Period (pixels) at the first crossing of ``frc`` below ``threshold`` (see module doc).

    Parameters
    ----------
    frequency : ndarray, shape (K,), cycles/px (``frequency[0] = 0``)
    frc : ndarray, shape (K,)
    threshold : float or ndarray of shape (K,)

    Returns
    -------
    float
        ``1 / f_cross`` in pixels; 2.0 if the curve never crosses; ``nan`` if it has no finite
        ring beyond DC.
    """
    frequency = np.asarray(frequency, np.float64)
    excess = np.asarray(frc, np.float64) - np.broadcast_to(threshold, frequency.shape)
    previous = None
    seen = False
    for k in range(1, len(frequency)):
        if not np.isfinite(excess[k]):
            continue
        seen = True
        if excess[k] < 0:
            if previous is None:
                return float(1.0 / frequency[k])
            f_lo, f_hi = frequency[previous], frequency[k]
            weight = excess[previous] / (excess[previous] - excess[k])
            return float(1.0 / (f_lo + weight * (f_hi - f_lo)))
        previous = k
    return NYQUIST_PERIOD_PX if seen else math.nan


def frc_curve(image1: np.ndarray, image2: np.ndarray, mask: np.ndarray | None = None,
              apodize: bool = True) -> FRCCurve:
    """Fourier ring correlation of two real images of the same shape.

    Parameters
    ----------
    image1, image2 : ndarray, shape (h, w), real
        E.g. truth and reconstruction amplitude (or phase) on the same pixels.
    mask : ndarray, shape (h, w), bool, optional
        Pixels to use: the images are cropped to its bounding box and pixels outside it are
        set to each image's mean over the mask (so they carry no structure).
    apodize : bool
        Mean-subtract and Tukey-window both images before the FFT (recommended for crops).

    Returns
    -------
    FRCCurve
    """
    image1 = np.asarray(image1, np.float64)
    image2 = np.asarray(image2, np.float64)
    if image1.shape != image2.shape or image1.ndim != 2:
        raise ValueError(f"FRC needs two 2-D images of one shape (got {image1.shape}, "
                         f"{image2.shape})")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if not mask.any():
            raise ValueError("the mask selects no pixels")
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        mask = mask[box]
        image1 = np.where(mask, image1[box], image1[box][mask].mean())
        image2 = np.where(mask, image2[box], image2[box][mask].mean())
    # a ring is usable only if both images have power there above round-off of the input
    energy_floors = [1e-20 * image.size * float(np.sum(image ** 2)) for image in (image1, image2)]
    if apodize:
        image1, image2 = taper(image1), taper(image2)
    index, side = ring_index(image1.shape)
    spectrum1 = np.fft.fft2(image1)
    spectrum2 = np.fft.fft2(image2)
    inside = index >= 0
    rings = index[inside]
    n_rings = side // 2 + 1
    cross = np.bincount(rings, (spectrum1 * np.conj(spectrum2)).real[inside], n_rings)
    power1 = np.bincount(rings, (np.abs(spectrum1) ** 2)[inside], n_rings)
    power2 = np.bincount(rings, (np.abs(spectrum2) ** 2)[inside], n_rings)
    n_pixels = np.bincount(rings, minlength=n_rings).astype(np.int64)
    usable = (power1 > energy_floors[0]) & (power2 > energy_floors[1])
    denominator = np.sqrt(np.where(usable, power1 * power2, 1.0))
    frc = np.where(usable, cross / denominator, np.nan)
    frc = np.clip(frc, -1.0, 1.0)
    frequency = np.arange(n_rings, dtype=np.float64) / side
    half_bit = half_bit_threshold(n_pixels)
    return FRCCurve(
        frequency=frequency,
        frc=frc,
        n_pixels=n_pixels,
        half_bit=half_bit,
        frc50_px=threshold_crossing_px(frequency, frc, FRC50_THRESHOLD),
        frc_half_bit_px=threshold_crossing_px(frequency, frc, half_bit),
    )

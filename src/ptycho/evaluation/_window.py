"""Apodisation shared by the FFT-based measures (registration and FRC)."""

from __future__ import annotations

import numpy as np

TUKEY_FRACTION = 0.25


def taper(image: np.ndarray, fraction: float = TUKEY_FRACTION) -> np.ndarray:
    """Subtract the mean and multiply by a separable Tukey window.

    Cropped, non-periodic images have sharp edges that dominate their FFT (a bright cross in
    the spectrum that is the same for any two images of the same size); the taper removes it.

    Parameters
    ----------
    image : ndarray, shape (h, w), real or complex
    fraction : float in [0, 1]
        Fraction of each axis inside the cosine tapers (0 = box, 1 = Hann).

    Returns
    -------
    ndarray, shape (h, w), float64 or complex128
    """
    from scipy.signal.windows import tukey

    image = np.asarray(image)
    image = image.astype(np.complex128 if np.iscomplexobj(image) else np.float64)
    image = image - image.mean()
    windows = [tukey(n, fraction) if n > 2 else np.ones(n) for n in image.shape]
    return image * windows[0][:, None] * windows[1][None, :]

"""Synthetic complex objects (ground truth) for simulated scans.

Every kind first builds two real maps ``a`` and ``p`` with values in [0, 1] (shape (H, W),
float64) and then returns the transmission function

    amplitude = 0.5 + 0.5 * a          in [0.5, 1]        (AMPLITUDE_RANGE)
    phase     = -pi/2 + pi * p         in [-pi/2, pi/2]   (PHASE_RANGE, radians)
    O         = amplitude * exp(1j * phase)

Kinds
-----
``'lines'``
    Random anti-aliased straight lines blurred by a Gaussian (sigma 1 px). The amplitude map has
    a transparent background (amplitude 1) with absorbing lines down to 0.5; the phase map has
    a zero-phase background with lines of random sign up to +-pi/2. Amplitude and phase use
    independent sets of lines.
``'grf'`` or ``'grf:SIGMA_PX'``
    Gaussian random fields: white noise filtered in Fourier space by a Gaussian of correlation
    length ``SIGMA_PX`` pixels (default ``GRF_CORRELATION_PX``), standardised and mapped
    through the normal CDF (so the values spread evenly over the whole range). Independent
    fields for amplitude and phase; texture everywhere, no flat background.
``'image:NAME'`` or ``'image:NAME:PHASE_NAME'``
    scikit-image sample images (``skimage.data.NAME()``, colour converted to grey), resized to
    the object size with anti-aliasing and min-max scaled to [0, 1]. The amplitude uses
    ``NAME``; the phase uses ``PHASE_NAME`` when given, otherwise ``NAME`` rotated by 90 degrees
    (so that amplitude and phase features do not coincide). Only images shipped with
    scikit-image (``SAMPLE_IMAGES``) are accepted: nothing is downloaded.
"""

from __future__ import annotations

import math

import numpy as np

from ptycho.errors import InputError

OBJECT_KINDS = ("lines", "grf", "grf:SIGMA_PX", "image:NAME")
AMPLITUDE_RANGE = (0.5, 1.0)
PHASE_RANGE = (-math.pi / 2, math.pi / 2)

#: Correlation length (Gaussian filter sigma, object pixels) of the ``'grf'`` fields.
GRF_CORRELATION_PX = 3.0
#: Blur (Gaussian sigma, pixels) applied to the ``'lines'`` drawings.
LINES_BLUR_PX = 1.0
#: Object area (pixels) per line drawn for ``'lines'``.
LINES_AREA_PER_LINE = 2000.0

#: Sample images bundled with scikit-image (2-D grey or RGB/RGBA; no download needed).
SAMPLE_IMAGES = (
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
    "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
    "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
    "shepp_logan_phantom", "text",
)

Size = int | tuple[int, int]


def _shape(size: Size) -> tuple[int, int]:
    if isinstance(size, (tuple, list)):
        if len(size) != 2:
            raise InputError("invalid size", "object size", "an int or (height, width)", repr(size))
        height, width = size
    else:
        height = width = size
    if isinstance(height, bool) or isinstance(width, bool) or int(height) != height \
            or int(width) != width or height < 1 or width < 1:
        raise InputError("invalid size", "object size", "positive integer pixels", repr(size))
    return int(height), int(width)


def compose_object(a: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Map unit-range maps to a complex transmission (see module docstring).

    Parameters
    ----------
    a, p : ndarray, shape (H, W), float, values in [0, 1]
        Amplitude and phase maps.

    Returns
    -------
    ndarray, shape (H, W), complex128
        ``(0.5 + 0.5 a) * exp(1j * (-pi/2 + pi p))``.
    """
    a = np.clip(np.asarray(a, np.float64), 0.0, 1.0)
    p = np.clip(np.asarray(p, np.float64), 0.0, 1.0)
    amplitude = AMPLITUDE_RANGE[0] + (AMPLITUDE_RANGE[1] - AMPLITUDE_RANGE[0]) * a
    phase = PHASE_RANGE[0] + (PHASE_RANGE[1] - PHASE_RANGE[0]) * p
    return amplitude * np.exp(1j * phase)


# ---------------------------------------------------------------------------------------------
# lines
# ---------------------------------------------------------------------------------------------

def _line_drawing(shape: tuple[int, int], rng: np.random.Generator, signed: bool) -> np.ndarray:
    """Blurred random lines, normalised so that max |value| = 1. Shape ``shape``, float64."""
    from scipy.ndimage import gaussian_filter
    from skimage.draw import line_aa

    height, width = shape
    canvas = np.zeros(shape, np.float64)
    n_lines = max(4, round(height * width / LINES_AREA_PER_LINE))
    rows = rng.integers(0, height, size=(n_lines, 2))
    cols = rng.integers(0, width, size=(n_lines, 2))
    weights = rng.uniform(0.3, 1.0, size=n_lines)
    if signed:
        weights *= rng.choice(np.array([-1.0, 1.0]), size=n_lines)
    for (r0, r1), (c0, c1), weight in zip(rows, cols, weights):
        rr, cc, value = line_aa(int(r0), int(c0), int(r1), int(c1))
        inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        np.add.at(canvas, (rr[inside], cc[inside]), weight * value[inside])
    canvas = gaussian_filter(canvas, LINES_BLUR_PX, mode="constant")
    peak = float(np.max(np.abs(canvas)))
    return canvas / peak if peak > 0 else canvas


def lines_object(size: Size, rng: np.random.Generator) -> np.ndarray:
    """Random blurred lines in amplitude (absorbing) and phase (signed). Shape (H, W), complex128."""
    shape = _shape(size)
    a = 1.0 - np.clip(_line_drawing(shape, rng, signed=False), 0.0, 1.0)
    p = 0.5 + 0.5 * _line_drawing(shape, rng, signed=True)
    return compose_object(a, p)


# ---------------------------------------------------------------------------------------------
# grf
# ---------------------------------------------------------------------------------------------

def gaussian_random_field(shape: tuple[int, int], rng: np.random.Generator,
                          correlation_px: float = GRF_CORRELATION_PX) -> np.ndarray:
    """Stationary Gaussian random field with values mapped to [0, 1] by the normal CDF.

    Parameters
    ----------
    shape : (H, W)
    rng : numpy.random.Generator
    correlation_px : float
        Standard deviation (pixels) of the Gaussian smoothing kernel applied in Fourier space.

    Returns
    -------
    ndarray, shape (H, W), float64, in (0, 1), roughly uniform marginal distribution.
    """
    from scipy.special import ndtr

    height, width = shape
    noise = rng.standard_normal(shape)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    kernel = np.exp(-2.0 * (math.pi * correlation_px) ** 2 * (fx ** 2 + fy ** 2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=shape)
    std = float(field.std())
    if std > 0:
        field = (field - field.mean()) / std
    return ndtr(field)


def grf_object(size: Size, rng: np.random.Generator,
               correlation_px: float = GRF_CORRELATION_PX) -> np.ndarray:
    """Independent Gaussian random fields in amplitude and phase. Shape (H, W), complex128."""
    shape = _shape(size)
    a = gaussian_random_field(shape, rng, correlation_px)
    p = gaussian_random_field(shape, rng, correlation_px)
    return compose_object(a, p)


def _grf_correlation(kind: str) -> float:
    """The SIGMA_PX of ``'grf:SIGMA_PX'`` (a number > 0, pixels)."""
    text = kind[len("grf:"):]
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise InputError("invalid object", "--object", "grf:SIGMA_PX with a correlation length "
                         "> 0 pixels, e.g. grf:8", repr(kind))
    return value


# ---------------------------------------------------------------------------------------------
# image:NAME
# ---------------------------------------------------------------------------------------------

def load_sample_image(name: str) -> np.ndarray:
    """A scikit-image sample image as grey float64 in [0, 1], shape (h, w).

    Raises
    ------
    ptycho.errors.InputError
        ``name`` is not one of :data:`SAMPLE_IMAGES`.
    """
    if name not in SAMPLE_IMAGES:
        raise InputError("unknown sample image", f"--object image:{name}",
                         "one of the scikit-image images " + ", ".join(SAMPLE_IMAGES), repr(name))
    import skimage.data
    from skimage.color import rgb2gray, rgba2rgb

    image = np.asarray(getattr(skimage.data, name)())
    if image.ndim == 3 and image.shape[-1] == 4:
        image = rgba2rgb(image)
    if image.ndim == 3:
        image = rgb2gray(image)
    image = image.astype(np.float64)
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.zeros_like(image)


def _fit(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    from skimage.transform import resize

    out = resize(image, shape, order=1, mode="reflect", anti_aliasing=True)
    low, high = float(out.min()), float(out.max())
    return (out - low) / (high - low) if high > low else np.zeros_like(out)


def image_object(spec: str, size: Size) -> np.ndarray:
    """Object from sample images; ``spec`` is ``'NAME'`` or ``'NAME:PHASE_NAME'``.

    Returns
    -------
    ndarray, shape (H, W), complex128
    """
    shape = _shape(size)
    names = spec.split(":")
    if len(names) not in (1, 2) or not all(names):
        raise InputError("invalid object", "--object", "image:NAME or image:NAME:PHASE_NAME",
                         repr(f"image:{spec}"))
    amplitude_image = load_sample_image(names[0])
    if len(names) == 2:
        phase_image = load_sample_image(names[1])
    else:
        phase_image = np.rot90(amplitude_image)
    return compose_object(_fit(amplitude_image, shape), _fit(phase_image, shape))


def make_object(kind: str, size: Size, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Build a ground-truth object by name.

    Parameters
    ----------
    kind : str
        ``'lines'``, ``'grf'``, ``'grf:SIGMA_PX'``, ``'image:NAME'`` or ``'image:NAME:PHASE_NAME'``
        (module docstring).
    size : int or (int, int)
        Object size in pixels, square or (height, width).
    rng : numpy.random.Generator or int, optional
        Randomness for ``'lines'`` and ``'grf'`` (images are deterministic).

    Returns
    -------
    ndarray, shape (H, W), complex128
        Amplitude in [0.5, 1], phase in [-pi/2, pi/2] radians.

    Raises
    ------
    ptycho.errors.InputError
        Unknown kind, unknown image or invalid size.
    """
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    kind = str(kind)
    if kind == "lines":
        return lines_object(size, rng)
    if kind == "grf":
        return grf_object(size, rng)
    if kind.startswith("grf:"):
        return grf_object(size, rng, _grf_correlation(kind))
    if kind.startswith("image:"):
        return image_object(kind[len("image:"):], size)
    raise InputError("unknown object kind", "--object", "lines, grf, grf:SIGMA_PX or image:NAME",
                     repr(kind))

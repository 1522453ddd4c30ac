"""Bring a reconstruction onto the ground-truth grid: placement, sub-pixel registration, and
removal of the global phase offset and amplitude scale (the ambiguities ptychography cannot fix)
and, optionally, of a linear phase ramp (free between object and probe when the probe is
refined).

Geometry
--------
A reconstruction ``recon`` (H, W) is placed by its origin: ``recon[0, 0]`` sits at truth pixel
(row ``y0_px``, column ``x0_px``), the convention of :class:`ptycho.stitching.StitchedObject`.
Shifts are ``[dy, dx]`` in pixels (rows, columns). A *displacement* ``[dy, dx]`` of the
reconstruction relative to the truth means ``recon(r, c) ~ truth(r - dy, c - dx)``: the content
of the reconstruction sits ``dy`` rows lower and ``dx`` columns further right.

Everything is NumPy / SciPy / scikit-image, computed in float64 / complex128.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ptycho.evaluation._window import taper

_INTEGER_TOL = 1e-6


@dataclass
class Placement:
    """A reconstruction resampled onto the truth grid.

    Attributes
    ----------
    image : ndarray, shape (Ht, Wt), complex128
        Reconstruction values on truth pixels; pixels it does not cover hold the value of the
        nearest covered pixel (so that later interpolation does not ring), see ``valid``.
    valid : ndarray, shape (Ht, Wt), bool
        Truth pixels covered by the reconstruction (and by its ``valid`` mask).
    """

    image: np.ndarray
    valid: np.ndarray


def fill_invalid(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace pixels outside ``valid`` by the value of the nearest valid pixel.

    Parameters
    ----------
    image : ndarray, shape (H, W), real or complex
    valid : ndarray, shape (H, W), bool
        At least one pixel must be True (otherwise ``image`` is returned unchanged).

    Returns
    -------
    ndarray, shape (H, W), dtype of ``image``
    """
    valid = np.asarray(valid, bool)
    if valid.all() or not valid.any():
        return np.array(image, copy=True)
    indices = ndimage.distance_transform_edt(~valid, return_distances=False, return_indices=True)
    return np.asarray(image)[tuple(indices)]


def shift_image(image: np.ndarray, shift_rc, order: int = 3) -> np.ndarray:
    """Move the content of ``image`` by ``shift_rc = [dy, dx]`` pixels (spline interpolation).

    ``out(r, c) = image(r - dy, c - dx)``; real and imaginary parts are interpolated separately
    with :func:`scipy.ndimage.shift` (edge values extended outward, no wrap-around).

    Parameters
    ----------
    image : ndarray, shape (H, W), real or complex
    shift_rc : sequence of 2 floats, ``[dy, dx]`` in pixels
    order : int
        Spline order (3 = cubic).

    Returns
    -------
    ndarray, shape (H, W), float64 or complex128
    """
    image = np.asarray(image)
    shift_rc = tuple(float(s) for s in shift_rc)

    def _shift(part: np.ndarray) -> np.ndarray:
        return ndimage.shift(np.asarray(part, np.float64), shift_rc, order=order, mode="nearest")

    if np.iscomplexobj(image):
        return _shift(image.real) + 1j * _shift(image.imag)
    return _shift(image)


def shift_mask(valid: np.ndarray, shift_rc) -> np.ndarray:
    """Move a validity mask like :func:`shift_image` moves an image, conservatively.

    A pixel stays valid only if every input pixel that the cubic interpolation reads around its
    source position was valid (linear shift, threshold at 1, then a 1-pixel erosion); pixels
    arriving from outside the array are invalid.

    Parameters
    ----------
    valid : ndarray, shape (H, W), bool
    shift_rc : sequence of 2 floats, ``[dy, dx]`` in pixels

    Returns
    -------
    ndarray, shape (H, W), bool
    """
    moved = ndimage.shift(np.asarray(valid, np.float64), tuple(float(s) for s in shift_rc),
                          order=1, mode="constant", cval=0.0)
    moved = moved > 1.0 - 1e-6
    return ndimage.binary_erosion(moved, iterations=1, border_value=0)


def place_on_grid(recon: np.ndarray, x0_px: float, y0_px: float, truth_shape: tuple[int, int],
                  valid: np.ndarray | None = None) -> Placement:
    """Resample ``recon`` onto the truth grid using its origin ``(x0_px, y0_px)``.

    Integer origins are placed exactly; a fractional origin is handled by a cubic-spline shift
    of the fractional part.

    Parameters
    ----------
    recon : ndarray, shape (H, W), complex
    x0_px, y0_px : float
        Truth column and row of ``recon[0, 0]`` in pixels (may be negative or fractional).
    truth_shape : (Ht, Wt)
    valid : ndarray, shape (H, W), bool, optional
        Reconstruction pixels that hold data (e.g. ``weight > 0`` of the stitched object).

    Returns
    -------
    Placement
    """
    recon = np.asarray(recon, np.complex128)
    height, width = recon.shape
    recon_valid = np.ones(recon.shape, bool) if valid is None else np.asarray(valid, bool)
    if recon_valid.shape != recon.shape:
        raise ValueError(f"valid mask {recon_valid.shape} does not match the reconstruction "
                         f"{recon.shape}")
    origin = []
    fraction = []
    for value in (float(y0_px), float(x0_px)):
        nearest = round(value)
        if abs(value - nearest) < _INTEGER_TOL:
            origin.append(int(nearest))
            fraction.append(0.0)
        else:
            origin.append(int(np.floor(value)))
            fraction.append(value - np.floor(value))
    if any(fraction):
        # one extra row/column receives the content moved by the fractional part
        padded = np.zeros((height + 1, width + 1), np.complex128)
        padded[:height, :width] = recon
        padded_valid = np.zeros((height + 1, width + 1), bool)
        padded_valid[:height, :width] = recon_valid
        padded = fill_invalid(padded, padded_valid)
        recon = shift_image(padded, fraction)
        recon_valid = shift_mask(padded_valid, fraction)
        height, width = recon.shape

    t_height, t_width = truth_shape
    image = np.zeros((t_height, t_width), np.complex128)
    grid_valid = np.zeros((t_height, t_width), bool)
    row0, col0 = origin
    r_lo, r_hi = max(0, row0), min(t_height, row0 + height)
    c_lo, c_hi = max(0, col0), min(t_width, col0 + width)
    if r_lo < r_hi and c_lo < c_hi:
        source = (slice(r_lo - row0, r_hi - row0), slice(c_lo - col0, c_hi - col0))
        image[r_lo:r_hi, c_lo:c_hi] = recon[source]
        grid_valid[r_lo:r_hi, c_lo:c_hi] = recon_valid[source]
    if grid_valid.any():
        image = fill_invalid(image, grid_valid)
    return Placement(image=image, valid=grid_valid)


def scanned_region(scan_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask of the bounding box of the scan positions on a grid of ``shape``.

    Parameters
    ----------
    scan_xy : ndarray, shape (M, 2), float
        ``[x, y]`` = (column, row) of each scan position in truth pixels.
    shape : (Ht, Wt)

    Returns
    -------
    ndarray, shape (Ht, Wt), bool
        True for rows ``ceil(min y) .. floor(max y)`` and columns ``ceil(min x) .. floor(max x)``
        (inclusive), clipped to the grid.
    """
    scan_xy = np.asarray(scan_xy, np.float64).reshape(-1, 2)
    mask = np.zeros(shape, bool)
    if len(scan_xy) == 0:
        return mask
    x_lo, y_lo = np.ceil(scan_xy.min(axis=0) - _INTEGER_TOL).astype(int)
    x_hi, y_hi = np.floor(scan_xy.max(axis=0) + _INTEGER_TOL).astype(int)
    mask[max(0, y_lo):max(0, y_hi + 1), max(0, x_lo):max(0, x_hi + 1)] = True
    return mask


def estimate_displacement(truth: np.ndarray, recon: np.ndarray, upsample_factor: int = 50,
                          space: str = "amplitude") -> np.ndarray:
    """Sub-pixel displacement ``[dy, dx]`` of ``recon`` relative to ``truth``.

    Uses :func:`skimage.registration.phase_cross_correlation` (upsampled DFT refinement) on
    mean-subtracted, Tukey-windowed images, so ``recon(r, c) ~ truth(r - dy, c - dx)``.

    Parameters
    ----------
    truth, recon : ndarray, shape (h, w), complex
        Same region of both (e.g. the scanned region).
    upsample_factor : int
        Precision is ``1 / upsample_factor`` pixels.
    space : {'amplitude', 'complex'}
        Correlate the amplitudes, or the complex fields (insensitive to a global phase; use it
        for phase-only objects whose amplitude has no contrast).

    Returns
    -------
    ndarray, shape (2,), float64, pixels
    """
    from skimage.registration import phase_cross_correlation

    if space == "amplitude":
        reference, moving = np.abs(truth), np.abs(recon)
    elif space == "complex":
        reference, moving = np.asarray(truth, np.complex128), np.asarray(recon, np.complex128)
    else:
        raise ValueError(f"space must be 'amplitude' or 'complex' (got {space!r})")
    shift, _, _ = phase_cross_correlation(taper(reference), taper(moving),
                                          upsample_factor=int(upsample_factor),
                                          normalization=None)
    # skimage returns the shift that moves `moving` onto `reference`: the opposite of ours
    return -np.asarray(shift, np.float64)


def global_phase_offset(truth: np.ndarray, recon: np.ndarray) -> float:
    """Least-squares global phase ``phi`` minimising ``sum |truth - recon * exp(i phi)|**2``.

    ``phi = angle(sum(truth * conj(recon)))`` in radians, in (-pi, pi].

    Parameters
    ----------
    truth, recon : ndarray, same shape, complex
        The compared pixels only.
    """
    return float(np.angle(np.sum(np.asarray(truth) * np.conj(recon))))


def fit_phase_ramp(truth: np.ndarray, recon: np.ndarray, mask: np.ndarray | None = None,
                   max_iterations: int = 10) -> np.ndarray:
    """Linear phase ramp ``[a, b]`` of ``recon`` relative to ``truth`` (rad/px along rows, cols).

    The least-squares fit of ``recon ~ truth * exp(i (a r + b c + phi))`` in the complex field,
    the extension of :func:`global_phase_offset` by a ramp: ``(a, b, phi)`` maximise
    ``|sum z exp(-i (a r + b c))|`` with ``z = recon * conj(truth)`` over the ``mask`` pixels,
    so each pixel is weighted by ``|truth| * |recon|`` (dark pixels, whose phase is noise, count
    little). ``(r, c)`` are pixel row and column; the slopes do not depend on their origin.

    The ramp is first located on the peak of the 2x zero-padded FFT of ``z`` (so ramps that wrap
    the phase many times over the region are found), then refined by Gauss-Newton steps: a
    least-squares plane, weighted by ``|z|``, through the residual phase about its mean.

    Parameters
    ----------
    truth, recon : ndarray, shape (h, w), complex
        Both on the same pixels (e.g. the compared region after registration).
    mask : ndarray, shape (h, w), bool, optional
        Pixels to fit on (default: all).
    max_iterations : int, >= 1
        Gauss-Newton steps at most; they stop once a step changes the slopes by < 1e-12 rad/px.

    Returns
    -------
    ndarray, shape (2,), float64
        ``[a, b]`` in radians per pixel along rows and columns; zeros when ``recon`` or
        ``truth`` vanish on the mask.
    """
    z = np.asarray(recon, np.complex128) * np.conj(np.asarray(truth, np.complex128))
    if mask is not None:
        z = np.where(np.asarray(mask, bool), z, 0.0)
    weight = np.abs(z)
    if not weight.sum() > 0:
        return np.zeros(2)
    size = [2 * n for n in z.shape]
    spectrum = np.abs(np.fft.fft2(z, s=size))
    peak = np.unravel_index(int(np.argmax(spectrum)), spectrum.shape)
    slopes = np.array([2 * np.pi * np.fft.fftfreq(n)[k] for n, k in zip(size, peak)])

    used = weight > 0
    rows, cols = np.nonzero(used)
    rows, cols = rows - rows.mean(), cols - cols.mean()
    z, root = z[used], np.sqrt(weight[used])
    design = np.column_stack([rows, cols, np.ones(len(z))]) * root[:, None]
    for _ in range(max(1, int(max_iterations))):
        residual = z * np.exp(-1j * (slopes[0] * rows + slopes[1] * cols))
        phase = np.angle(residual * np.conj(np.sum(residual)))
        step = np.linalg.lstsq(design, phase * root, rcond=None)[0][:2]
        slopes = slopes + step
        if np.max(np.abs(step)) < 1e-12:
            break
    return slopes


def phase_ramp(shape: tuple[int, int], slopes_rc, origin_rc: tuple[int, int] = (0, 0)
               ) -> np.ndarray:
    """The phase ``a r + b c`` (radians) of the ramp ``slopes_rc = [a, b]`` on a grid.

    Parameters
    ----------
    shape : (h, w)
    slopes_rc : sequence of 2 floats
        Radians per pixel along rows and columns (as from :func:`fit_phase_ramp`).
    origin_rc : (int, int)
        Truth row and column of pixel ``[0, 0]``: ``r``, ``c`` are truth-grid indices.

    Returns
    -------
    ndarray, shape (h, w), float64, radians
    """
    rows = np.arange(shape[0]) + origin_rc[0]
    cols = np.arange(shape[1]) + origin_rc[1]
    return float(slopes_rc[0]) * rows[:, None] + float(slopes_rc[1]) * cols[None, :]


def amplitude_scale(truth_amplitude: np.ndarray, recon_amplitude: np.ndarray) -> float:
    """Least-squares scalar ``s`` minimising ``sum (truth_amp - s * recon_amp)**2``.

    Returns ``sum(truth_amp * recon_amp) / sum(recon_amp**2)`` (1.0 if the reconstruction is
    all zero).
    """
    truth_amplitude = np.asarray(truth_amplitude, np.float64)
    recon_amplitude = np.asarray(recon_amplitude, np.float64)
    denominator = float(np.sum(recon_amplitude ** 2))
    if not denominator > 0:
        return 1.0
    return float(np.sum(truth_amplitude * recon_amplitude) / denominator)


def register_to_truth(truth: np.ndarray, image: np.ndarray, box: tuple[slice, slice],
                      upsample_factor: int = 50, space: str = "amplitude",
                      max_iterations: int = 5) -> np.ndarray:
    """Displacement ``[dy, dx]`` of ``image`` relative to ``truth``, refined iteratively.

    A single windowed cross-correlation is biased towards zero shift for smooth objects (the
    window does not move with the content). Each iteration therefore undoes the displacement
    found so far (:func:`shift_image` of the whole ``image``), re-estimates the residual on
    ``box`` (:func:`estimate_displacement`) and adds it; the loop stops when the residual is
    below the precision ``1 / upsample_factor``.

    Parameters
    ----------
    truth, image : ndarray, shape (Ht, Wt), complex
        Truth and reconstruction on the same grid (uncovered pixels of ``image`` filled, see
        :func:`place_on_grid`).
    box : (slice, slice)
        Region used for the correlation (e.g. the scanned region).
    upsample_factor : int
    space : {'amplitude', 'complex'}
    max_iterations : int, >= 1

    Returns
    -------
    ndarray, shape (2,), float64, pixels
    """
    total = np.zeros(2)
    moved = image
    for _ in range(max(1, int(max_iterations))):
        residual = estimate_displacement(truth[box], moved[box], upsample_factor, space)
        total = total + residual
        if np.max(np.abs(residual)) < 1.0 / upsample_factor:
            break
        moved = shift_image(image, -total)
    return total

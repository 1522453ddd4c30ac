"""NumPy reference of the forward model: the single definition every backend is tested against.

Conventions (design section 2)
------------------------------
- Object ``O`` is complex ``(H, W)``; a probe ``P`` is complex ``(N, N)``; all lengths in object
  pixels. ``xcoords`` is the column, ``ycoords`` the row.
- The patch at scan position (x, y) is ``patch[r, c] = O(y - N/2 + r, x - N/2 + c)``, sampled
  bilinearly with zeros outside the object.
- Exit wave ``psi = P * patch``; far-field amplitude ``A = |fftshift(fft2(psi))| / N``
  (orthonormal: Parseval holds, DC at ``(N/2, N/2)``); expected counts ``I = A**2``.
- A mixed-state probe is M incoherent modes (M, N, N): ``I = sum_k |F(P_k * patch)|**2``
  (:func:`mixed_state_intensity`); a single-mode probe stays (N, N).

Everything is computed in float64 / complex128.

Valid-pixel masks (design section 4b)
-------------------------------------
A pattern's pixel is *valid* unless the detector marks it bad (``bad_pixels`` (N, N), True =
dead, hot, gap, beamstop; the same in every pattern) or its measured count is at or above
``saturation_counts`` in that pattern. Masked pixels are left out of every data term
(:func:`poisson_nll`, :func:`amplitude_mae`: means over the valid pixels), of the dataset
normalisation and of the photon count (:func:`mask_statistics`,
:func:`diffraction_norm_factor`, :func:`mean_photons_per_pattern`), and the network input
fills them (:func:`masked_input`). With neither a bad pixel nor a saturation level there is no
mask (:func:`has_pixel_mask`) and every function computes exactly what it did without one.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

POISSON_EPS = 1e-12


# ---------------------------------------------------------------------------------------------
# Sampling and translation
# ---------------------------------------------------------------------------------------------

def bilinear_sample(image: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Sample ``image`` at fractional ``(rows, cols)`` bilinearly; out-of-range corners count 0.

    Parameters
    ----------
    image : ndarray, shape (H, W), real or complex
    rows, cols : ndarray, any shape (broadcastable to each other), float
        Row and column coordinates in pixels.

    Returns
    -------
    ndarray, shape of ``rows``/``cols`` broadcast, dtype of ``image`` promoted to 64-bit.
    """
    image = np.asarray(image)
    out_dtype = np.complex128 if np.iscomplexobj(image) else np.float64
    height, width = image.shape
    rows, cols = np.broadcast_arrays(np.asarray(rows, np.float64), np.asarray(cols, np.float64))
    r0 = np.floor(rows)
    c0 = np.floor(cols)
    fr = rows - r0
    fc = cols - c0
    r0 = r0.astype(np.int64)
    c0 = c0.astype(np.int64)
    out = np.zeros(rows.shape, dtype=out_dtype)
    for dr, wr in ((0, 1.0 - fr), (1, fr)):
        for dc, wc in ((0, 1.0 - fc), (1, fc)):
            rr = r0 + dr
            cc = c0 + dc
            inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
            values = image[np.clip(rr, 0, height - 1), np.clip(cc, 0, width - 1)]
            out += np.where(inside, values, 0) * (wr * wc)
    return out


def extract_patches(obj: np.ndarray, xcoords, ycoords, N: int) -> np.ndarray:
    """Extract the N x N object patch centred at each scan position.

    Parameters
    ----------
    obj : ndarray, shape (H, W), complex
    xcoords, ycoords : array_like, shape (M,), float
        Scan positions in object pixels (x = column, y = row).
    N : int
        Patch size in pixels.

    Returns
    -------
    ndarray, shape (M, N, N), complex128
        ``patch[m, r, c] = O(y_m - N/2 + r, x_m - N/2 + c)``, bilinear, zero outside.
    """
    x = np.asarray(xcoords, np.float64).reshape(-1, 1, 1)
    y = np.asarray(ycoords, np.float64).reshape(-1, 1, 1)
    grid = np.arange(N, dtype=np.float64) - N / 2
    rows = y + grid[None, :, None]
    cols = x + grid[None, None, :]
    return bilinear_sample(np.asarray(obj, np.complex128), rows, cols).astype(np.complex128)


def translate(images: np.ndarray, shifts_xy: np.ndarray) -> np.ndarray:
    """Move the content of each image by ``(dx, dy)`` pixels (bilinear, zero fill).

    ``out[b, r, c] = images[b, r - dy, c - dx]``: content moves +dx along columns, +dy along rows.

    Parameters
    ----------
    images : ndarray, shape (B, H, W), real or complex
    shifts_xy : ndarray, shape (B, 2), float, ``[dx, dy]`` in pixels

    Returns
    -------
    ndarray, shape (B, H, W)
    """
    images = np.asarray(images)
    shifts_xy = np.asarray(shifts_xy, np.float64)
    _, height, width = images.shape
    rr, cc = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64),
                         indexing="ij")
    return np.stack([
        bilinear_sample(image, rr - dy, cc - dx) for image, (dx, dy) in zip(images, shifts_xy)
    ])


# ---------------------------------------------------------------------------------------------
# Object-big merge (overlap constraint inside a group)
# ---------------------------------------------------------------------------------------------

def centre_mask(N: int) -> np.ndarray:
    """Ones in the central N/2 x N/2 box of an N x N patch, zeros elsewhere. Shape (N, N), float64."""
    mask = np.zeros((N, N))
    mask[N // 4: N // 4 + N // 2, N // 4: N // 4 + N // 2] = 1.0
    return mask


def merge_padding_px(relative_offsets_xy: np.ndarray) -> int:
    """Canvas margin (pixels per side) that holds every patch shifted by its relative offset.

    ``ceil(max |offset|) + 1`` so that bilinear shifts never leave the canvas: the merge and
    re-extraction below are then exact, whatever canvas size a backend uses beyond this.
    """
    offsets = np.asarray(relative_offsets_xy, np.float64)
    largest = float(np.max(np.abs(offsets))) if offsets.size else 0.0
    return int(math.ceil(largest)) + 1


def merge_and_extract(patches: np.ndarray, relative_offsets_xy: np.ndarray,
                      pad_object: bool = True) -> np.ndarray:
    """Merge the C patches of each sample on one canvas and re-extract them (object_big).

    Patch c sits at its true position relative to the group centre, ``coord_c - mean``; since
    the legacy ``coords_relative`` is ``-(coord_c - mean)``, the merge shifts patch c by
    ``-rel_c`` and the re-extraction reads the canvas shifted by ``+rel_c``. The canvas is the
    shifted sum of the patches divided by the number of patch centres (central N/2 boxes when
    ``pad_object`` else whole patches) covering each pixel, clamped below at 1, so that
    uncovered border pixels are never amplified.

    Parameters
    ----------
    patches : ndarray, shape (B, C, N, N), complex
    relative_offsets_xy : ndarray, shape (B, C, 2), float
        ``coords_relative`` per patch, ``[x, y]`` in pixels.
    pad_object : bool
        Whether predicted patches are confined to their central N/2 box.

    Returns
    -------
    ndarray, shape (B, C, N, N), complex128
    """
    patches = np.asarray(patches, np.complex128)
    rel = np.asarray(relative_offsets_xy, np.float64)
    batch, channels, n, _ = patches.shape
    pad = merge_padding_px(rel)
    size = n + 2 * pad
    weight_patch = centre_mask(n) if pad_object else np.ones((n, n))
    out = np.empty_like(patches)
    for b in range(batch):
        canvas_in = np.zeros((channels, size, size), np.complex128)
        canvas_in[:, pad:pad + n, pad:pad + n] = patches[b]
        weight_in = np.zeros((channels, size, size))
        weight_in[:, pad:pad + n, pad:pad + n] = weight_patch
        numerator = translate(canvas_in, -rel[b]).sum(axis=0)
        weight = translate(weight_in, -rel[b]).sum(axis=0)
        canvas = numerator / np.maximum(weight, 1.0)
        shifted = translate(np.repeat(canvas[None], channels, axis=0), rel[b])
        out[b] = shifted[:, pad:pad + n, pad:pad + n]
    return out


# ---------------------------------------------------------------------------------------------
# Probe
# ---------------------------------------------------------------------------------------------

def probe_mask(N: int) -> np.ndarray:
    """Hard disk of radius N/4 centred between pixels N/2-1 and N/2. Shape (N, N), float64."""
    axis = np.arange(N, dtype=np.float64) - N / 2 + 0.5
    distance = np.hypot(axis[:, None], axis[None, :])
    return (distance < N / 4).astype(np.float64)


def normalize_probe(probe: np.ndarray, probe_scale: float = 4.0) -> np.ndarray:
    """Return ``P / (probe_scale * mean_{N x N} |M * P|)`` with M = :func:`probe_mask`.

    A mixed-state probe (M, N, N) is normalised by its total power: ``|P|`` is then
    ``sqrt(sum_k |P_k|**2)`` (:func:`total_probe_amplitude`) and every mode is divided by the
    same factor, so the relative mode powers are kept.

    Parameters
    ----------
    probe : ndarray, shape (N, N) or (M, N, N), complex
    probe_scale : float, > 0

    Returns
    -------
    ndarray, shape of ``probe``, complex128
    """
    probe = np.asarray(probe, np.complex128)
    if probe.ndim == 3:
        norm = probe_scale * np.mean(probe_mask(probe.shape[-1]) * total_probe_amplitude(probe))
    else:
        norm = probe_scale * np.mean(np.abs(probe_mask(probe.shape[-1]) * probe))
    if not norm > 0:
        raise ValueError("probe is zero inside the central disk; cannot normalise it")
    return probe / norm


def default_probe(N: int) -> np.ndarray:
    """A smooth, real, disk-like probe of radius about N/6 (zero phase). Shape (N, N), complex128."""
    from scipy.ndimage import gaussian_filter
    from scipy.signal.windows import gaussian

    profile = gaussian(N, std=N / (0.7 * math.pi ** 2), sym=True)
    profile /= profile.max()
    disk = (np.outer(profile, profile) > 0.5).astype(np.float64)
    return (gaussian_filter(disk, sigma=1.0) + 1e-9).astype(np.complex128)


def gaussian_kernel_1d(sigma: float) -> np.ndarray:
    """3-tap smoothing kernel ``softmax(-x**2 / (2 sigma**2))`` for x in (-1, 0, 1). Shape (3,)."""
    x = np.array([-1.0, 0.0, 1.0])
    logits = -(x ** 2) / (2.0 * sigma ** 2)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def smooth_field(field: np.ndarray, sigma: float) -> np.ndarray:
    """Smooth real and imaginary parts with the separable 3x3 kernel, reflect padding.

    Parameters
    ----------
    field : ndarray, shape (..., N, N), complex
    sigma : float, > 0
    """
    from scipy.ndimage import correlate1d

    kernel = gaussian_kernel_1d(sigma)
    field = np.asarray(field, np.complex128)

    def _smooth(part: np.ndarray) -> np.ndarray:
        part = correlate1d(part, kernel, axis=-1, mode="mirror")
        return correlate1d(part, kernel, axis=-2, mode="mirror")

    return _smooth(field.real) + 1j * _smooth(field.imag)


def illuminate(patches: np.ndarray, probe: np.ndarray, mask: bool = False,
               smoothing_sigma: float = 0.0) -> np.ndarray:
    """Exit wave ``P * patch``, optionally smoothed and then multiplied by :func:`probe_mask`.

    Parameters
    ----------
    patches : ndarray, shape (..., N, N), complex
    probe : ndarray, shape (N, N), complex

    Returns
    -------
    ndarray, shape (..., N, N), complex128
    """
    field = np.asarray(patches, np.complex128) * np.asarray(probe, np.complex128)
    if smoothing_sigma > 0:
        field = smooth_field(field, smoothing_sigma)
    if mask:
        field = field * probe_mask(field.shape[-1])
    return field


# ---------------------------------------------------------------------------------------------
# Mixed-state probe (design section 4b)
# ---------------------------------------------------------------------------------------------
#
# A partially coherent beam is M mutually incoherent modes P_k (M, N, N); each illuminates the
# same object and the detector adds their intensities, ``I = sum_k |F(P_k * O)|**2``
# (:func:`mixed_state_intensity`). Only the probe's density matrix ``sum_k P_k P_k^*`` enters
# ``I``: any unitary mixing of the modes predicts the same counts, so the modes are kept in a
# canonical form, orthogonal and ordered by decreasing power (:func:`orthogonalize_modes`). A
# single-mode probe stays (N, N) everywhere and computes exactly what it did before modes.

#: Power of each mode added by :func:`initial_probe_modes`, as a fraction of the total power of
#: the modes given (before orthogonalisation and normalisation).
EXTRA_MODE_POWER = 0.05

#: Modes with less than this fraction of the total power are "no mode at all": a stack whose
#: kept modes fall below it is linearly dependent (:func:`initial_probe_modes`).
MODE_POWER_FLOOR = 1e-9


def probe_shape(N: int, modes: int = 1) -> tuple[int, ...]:
    """The shape of a probe of ``modes`` modes: (N, N) for one, (M, N, N) for M > 1."""
    return (N, N) if modes == 1 else (modes, N, N)


def total_probe_amplitude(probe: np.ndarray) -> np.ndarray:
    """``sqrt(sum_k |P_k|**2)``: the amplitude of the summed mode intensity.

    Parameters
    ----------
    probe : ndarray, shape (N, N) or (M, N, N), complex

    Returns
    -------
    ndarray, shape (N, N), float64 (``|P|`` for an (N, N) probe)
    """
    probe = np.asarray(probe, np.complex128)
    if probe.ndim == 2:
        return np.abs(probe)
    return np.sqrt(np.sum(probe.real ** 2 + probe.imag ** 2, axis=0))


def mode_powers(probe: np.ndarray) -> np.ndarray:
    """Power ``sum_xy |P_k|**2`` of each mode, shape (M,) float64 ((1,) for an (N, N) probe)."""
    probe = np.asarray(probe, np.complex128)
    stack = probe[None] if probe.ndim == 2 else probe
    return np.sum(stack.real ** 2 + stack.imag ** 2, axis=(-2, -1))


def orthogonalize_modes(modes: np.ndarray) -> np.ndarray:
    """The modes made orthogonal and ordered by decreasing power, same density matrix.

    With the stack as a matrix ``A`` (M, N*N) and its SVD ``A = U S V^H``, the new modes are
    the rows of ``U^H A = S V^H``: orthogonal, of powers ``S**2`` in decreasing order, and
    ``sum_k P_k P_k^*`` (hence every predicted intensity, and the total power) unchanged. Each
    new mode's free global phase is fixed so that its weight on the input mode it draws most
    from is real and positive: already orthogonal modes ordered by power come back as they
    were (to rounding).

    Parameters
    ----------
    modes : ndarray, shape (M, N, N), complex

    Returns
    -------
    ndarray, shape (M, N, N), complex128
    """
    modes = np.asarray(modes, np.complex128)
    count = modes.shape[0]
    u, s, vh = np.linalg.svd(modes.reshape(count, -1), full_matrices=False)
    weights = np.conj(u[np.argmax(np.abs(u), axis=0), np.arange(count)])
    phase = np.abs(weights) / weights
    return ((s * phase)[:, None] * vh).reshape(modes.shape)


def hermite_pattern(mode0: np.ndarray, order_x: int, order_y: int) -> np.ndarray:
    """``He_{order_x}(u) He_{order_y}(v)`` on the frame of ``mode0`` (N, N) float64.

    ``u = (x - cx) / sx`` and ``v = (y - cy) / sy`` with ``(cx, cy)`` the centroid and
    ``(sx, sy)`` the RMS widths of ``|mode0|**2`` (x = column, y = row, pixels); ``He_n`` are
    the probabilists' Hermite polynomials (``He_1(u) = u``, ``He_2(u) = u**2 - 1``, ...).
    ``mode0 * pattern`` is a Hermite-Gauss-like higher mode of a Gaussian-like ``mode0``.
    """
    weight = np.abs(np.asarray(mode0, np.complex128)) ** 2
    weight = weight / weight.sum()
    rows, cols = np.indices(weight.shape, dtype=np.float64)

    def axis(coords: np.ndarray, order: int) -> np.ndarray:
        centre = float(np.sum(weight * coords))
        width = math.sqrt(float(np.sum(weight * (coords - centre) ** 2))) or 1.0
        t = (coords - centre) / width
        previous, current = np.zeros_like(t), np.ones_like(t)
        for n in range(order):          # He_{n+1} = t He_n - n He_{n-1}
            previous, current = current, t * current - n * previous
        return current

    return axis(cols, order_x) * axis(rows, order_y)


def _hermite_orders():
    """(order_x, order_y) by total degree 1, 2, ... up to 16: (1, 0), (0, 1), (2, 0), (1, 1),
    (0, 2), (3, 0), ..."""
    for degree in range(1, 17):
        for j in range(degree + 1):
            yield degree - j, j


def initial_probe_modes(probe: np.ndarray, modes: int) -> np.ndarray:
    """The starting M-mode probe made from the modes a file gave, orthogonalised.

    Rule (documented in docs/probe-modes.md):

    - ``modes == 1``: mode 0 exactly as given, shape (N, N) (a single-mode model keeps the
      probe it always used, not the strongest orthogonal mode);
    - K given modes, K >= M: the K modes are orthogonalised (:func:`orthogonalize_modes`)
      and the M strongest kept;
    - K < M: M - K modes are added, each ``mode 0 * hermite_pattern`` with the next Hermite
      order of (1, 0), (0, 1), (2, 0), (1, 1), (0, 2), ... made orthogonal to every mode
      already there (an order that adds nothing new is skipped) and scaled to
      :data:`EXTRA_MODE_POWER` of the total power given; then all M are orthogonalised. The
      given modes keep ``1 / (1 + 0.05 (M - K))`` of the power, each added mode
      ``0.05 / (1 + 0.05 (M - K))``; training with ``probe_trainable`` (or the solver's
      probe refinement) then finds the real mode powers.

    The scale is free (normalise with :func:`normalize_probe` afterwards).

    Parameters
    ----------
    probe : ndarray, shape (N, N) or (K, N, N), complex
    modes : int, >= 1

    Returns
    -------
    ndarray, shape (N, N) for ``modes == 1``, else (M, N, N), complex128

    Raises
    ------
    ValueError
        A kept mode carries less than :data:`MODE_POWER_FLOOR` of the power: the modes given
        are linearly dependent (e.g. two copies of one mode).
    """
    probe = np.asarray(probe, np.complex128)
    stack = probe[None] if probe.ndim == 2 else probe
    if modes == 1:
        return stack[0]
    if len(stack) < modes:
        total = float(mode_powers(stack).sum())
        _, singular, vh = np.linalg.svd(stack.reshape(len(stack), -1), full_matrices=False)
        basis = list(vh[singular > math.sqrt(MODE_POWER_FLOOR) * singular[0]])
        added = []
        orders = _hermite_orders()
        while len(stack) + len(added) < modes:
            order = next(orders, None)
            if order is None:
                raise ValueError(f"mode 0 is too small to make {modes} independent modes")
            candidate = (stack[0] * hermite_pattern(stack[0], *order)).reshape(-1)
            residual = candidate - sum(np.vdot(unit, candidate) * unit for unit in basis)
            if np.linalg.norm(residual) <= 1e-3 * np.linalg.norm(candidate):
                continue
            basis.append(residual / np.linalg.norm(residual))
            added.append(basis[-1] * math.sqrt(EXTRA_MODE_POWER * total))
        stack = np.concatenate([stack, np.stack(added).reshape(-1, *stack.shape[1:])])
    result = orthogonalize_modes(stack)[:modes]
    powers = mode_powers(result)
    if not powers[-1] > MODE_POWER_FLOOR * powers.sum():
        weak = int(np.argmin(powers > MODE_POWER_FLOOR * powers.sum()))
        raise ValueError(f"orthogonalised mode {weak} of {modes} has no power of its own")
    return result


def mixed_state_intensity(patches: np.ndarray, probe: np.ndarray, mask: bool = False,
                          smoothing_sigma: float = 0.0) -> np.ndarray:
    """Far-field intensity of incoherent modes, ``I = sum_k |F(P_k * patch)|**2``.

    ``F`` and the exit wave as in :func:`far_field_amplitude` and :func:`illuminate` (each
    mode's field smoothed and masked on its own). An (N, N) probe gives
    ``far_field_amplitude(illuminate(...)) ** 2``.

    Parameters
    ----------
    patches : ndarray, shape (..., N, N), complex
    probe : ndarray, shape (N, N) or (M, N, N), complex

    Returns
    -------
    ndarray, shape of ``patches``, float64, in the units of ``|P * patch|**2``
    """
    probe = np.asarray(probe, np.complex128)
    if probe.ndim == 2:
        return far_field_amplitude(illuminate(patches, probe, mask, smoothing_sigma)) ** 2
    return sum(far_field_amplitude(illuminate(patches, mode, mask, smoothing_sigma)) ** 2
               for mode in probe)


# ---------------------------------------------------------------------------------------------
# Far field, noise model, scaling
# ---------------------------------------------------------------------------------------------

def far_field_amplitude(psi: np.ndarray) -> np.ndarray:
    """``|fftshift(fft2(psi))| / N`` over the last two axes (orthonormal; DC at (N/2, N/2)).

    Parameters
    ----------
    psi : ndarray, shape (..., N, N), complex

    Returns
    -------
    ndarray, shape (..., N, N), float64
    """
    psi = np.asarray(psi, np.complex128)
    n = psi.shape[-1]
    spectrum = np.fft.fftshift(np.fft.fft2(psi, axes=(-2, -1)), axes=(-2, -1))
    return np.abs(spectrum) / n


def masked_mean(values: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Mean of ``values`` over the valid entries: ``sum(values[valid]) / max(count(valid), 1)``.

    Parameters
    ----------
    values : ndarray, float
    valid : ndarray of bool, broadcastable to ``values``, optional
        None: the plain mean over every entry. Masked entries contribute nothing (whatever
        their value); with no valid entry at all the result is 0.
    """
    values = np.asarray(values, np.float64)
    if valid is None:
        return float(np.mean(values))
    valid = np.broadcast_to(np.asarray(valid, bool), values.shape)
    return float(np.sum(np.where(valid, values, 0.0)) / max(int(np.count_nonzero(valid)), 1))


def poisson_nll(pred_intensity: np.ndarray, counts: np.ndarray, eps: float = POISSON_EPS,
                valid: np.ndarray | None = None) -> float:
    """Mean Poisson negative log-likelihood ``y_pred - y_true * log(y_pred + eps)`` (no log k!).

    Parameters
    ----------
    pred_intensity : ndarray, expected counts (>= 0)
    counts : ndarray, same shape, measured counts (>= 0)
    valid : ndarray of bool, broadcastable to the counts, optional
        Valid pixels (:func:`valid_pixels`): the mean runs over them only (:func:`masked_mean`).
    """
    pred = np.asarray(pred_intensity, np.float64)
    counts = np.asarray(counts, np.float64)
    return masked_mean(pred - counts * np.log(pred + eps), valid)


def amplitude_mae(pred_amplitude: np.ndarray, amplitude: np.ndarray,
                  valid: np.ndarray | None = None) -> float:
    """Mean absolute difference of predicted and measured amplitudes over the valid pixels.

    The diffraction MAE term of training (``mae_weight``). Shapes as :func:`poisson_nll`.
    """
    difference = np.asarray(pred_amplitude, np.float64) - np.asarray(amplitude, np.float64)
    return masked_mean(np.abs(difference), valid)


def intensity_scale(nphotons: float, N: int) -> float:
    """Intensity scale ``s = sqrt(nphotons) / (N/2)``.

    With normalised diffraction (``mean sum X**2 = (N/2)**2``) the counts ``(s X)**2`` average
    ``nphotons`` per pattern.
    """
    if not nphotons > 0:
        raise ValueError(f"nphotons must be > 0 (got {nphotons})")
    return math.sqrt(nphotons) / (N / 2)


def diffraction_norm_factor(diffraction: np.ndarray, bad_pixels: np.ndarray | None = None,
                            saturation_counts: float | None = None) -> float:
    """Scalar f with ``mean_i sum_xy (f * diff_i)**2 = (N/2)**2``, computed in float64.

    With a mask (:func:`has_pixel_mask`) the sum runs over each pattern's valid pixels only
    (:func:`mask_statistics`), the same pixels as the photon count
    (:func:`mean_photons_per_pattern`): with ``nphotons`` measured, ``s * f = 1`` and the
    counts ``(s X)**2`` of the valid pixels are the measured ones, mask or not.

    Parameters
    ----------
    diffraction : ndarray, shape (..., N, N), amplitudes (any real dtype; uint16 does not wrap)
        or a lazy (M, N, N) stack (:class:`ptycho.data.lazy.LazyPatterns`): read in chunks.
    bad_pixels : ndarray, shape (N, N), bool, optional
    saturation_counts : float, optional
        See :func:`valid_pixels`.
    """
    from ptycho.data.lazy import pattern_power

    if not hasattr(diffraction, "shape"):
        diffraction = np.asarray(diffraction)
    if has_pixel_mask(bad_pixels, saturation_counts):
        power = mask_statistics(diffraction, bad_pixels, saturation_counts).power
    else:
        power = pattern_power(diffraction)
    return norm_factor_from_power(power, diffraction.shape[-1])


def norm_factor_from_power(power: np.ndarray, N: int) -> float:
    """``sqrt((N/2)**2 / mean(power))`` for per-pattern powers ``sum amplitude**2`` (M,) float64.

    Raises ValueError when the mean power is not > 0 (all-zero or fully masked data).
    """
    power = np.asarray(power, np.float64)
    mean_power = float(np.mean(power)) if power.size else float("nan")
    if not mean_power > 0:
        raise ValueError("diffraction data are all zero; cannot normalise them")
    return math.sqrt((N / 2) ** 2 / mean_power)


def mean_photons_per_pattern(diffraction: np.ndarray, bad_pixels: np.ndarray | None = None,
                             saturation_counts: float | None = None) -> float:
    """Mean over patterns of the counts ``sum amplitude**2`` on each pattern's valid pixels.

    The measured ``nphotons`` of training. Without a mask: every pixel, exactly
    ``Scan.mean_photons_per_pattern()``. Arguments as :func:`diffraction_norm_factor`.
    """
    from ptycho.data.lazy import pattern_power

    if has_pixel_mask(bad_pixels, saturation_counts):
        return float(mask_statistics(diffraction, bad_pixels, saturation_counts).power.mean())
    return float(pattern_power(diffraction).mean())


# ---------------------------------------------------------------------------------------------
# Valid-pixel masks
# ---------------------------------------------------------------------------------------------

def has_pixel_mask(bad_pixels: np.ndarray | None, saturation_counts: float | None) -> bool:
    """True when a valid-pixel mask applies: a saturation level is set or some pixel is bad.

    An all-False ``bad_pixels`` (ptychodus exports always carry one) without a saturation level
    is no mask: training then runs exactly the unmasked computation.
    """
    return saturation_counts is not None or (bad_pixels is not None
                                             and bool(np.any(bad_pixels)))


def saturation_amplitude(saturation_counts: float, dtype=np.float32) -> np.generic:
    """The amplitude ``sqrt(saturation_counts)`` rounded to ``dtype`` (a NumPy scalar).

    Saturation is tested on amplitudes as ``amplitude >= saturation_amplitude``. For amplitudes
    converted from counts by ``sqrt`` (in float64, then rounded to ``dtype``, as the readers do)
    this is exactly ``counts >= saturation_counts``: rounding is monotone, so no count at or
    above the level escapes, and integer counts below it stay valid while their square roots
    differ by more than the rounding (float32: levels up to about 4e6 counts).
    """
    return np.asarray(math.sqrt(float(saturation_counts)), dtype=np.float64).astype(dtype)[()]


def valid_pixels(amplitude: np.ndarray, bad_pixels: np.ndarray | None = None,
                 saturation_counts: float | None = None) -> np.ndarray | None:
    """Valid detector pixels of each pattern: ``~bad_pixels & (counts < saturation_counts)``.

    Parameters
    ----------
    amplitude : ndarray, shape (..., N, N), float
        Measured amplitudes ``sqrt(counts)`` (raw, before any normalisation).
    bad_pixels : ndarray, shape (N, N), bool, optional
        True = not to use in any pattern.
    saturation_counts : float, optional
        Counts at or above this level are not used, in that pattern only
        (tested as in :func:`saturation_amplitude`).

    Returns
    -------
    ndarray of bool, shape of ``amplitude``, or None
        None when :func:`has_pixel_mask` is False (nothing is masked).
    """
    if not has_pixel_mask(bad_pixels, saturation_counts):
        return None
    amplitude = np.asarray(amplitude)
    valid = np.ones(amplitude.shape, bool)
    if bad_pixels is not None:
        valid &= ~np.asarray(bad_pixels, bool)
    if saturation_counts is not None:
        valid &= amplitude < saturation_amplitude(saturation_counts, amplitude.dtype)
    return valid


class MaskStatistics(NamedTuple):
    """What :func:`mask_statistics` measures in one pass over the patterns.

    Attributes
    ----------
    power : ndarray, shape (M,), float64
        ``sum amplitude**2`` over each pattern's valid pixels (its counts).
    fill : ndarray, shape (N, N), float32, or None
        The network-input value of the bad pixels (:func:`masked_input`); None without bad
        pixels.
    """

    power: np.ndarray
    fill: np.ndarray | None


def mask_statistics(diffraction, bad_pixels: np.ndarray | None = None,
                    saturation_counts: float | None = None) -> MaskStatistics:
    """Valid counts per pattern and the bad-pixel fill, in one chunked pass (float64).

    The fill is the mean pattern of the network input: each pixel that is not bad averages
    its amplitudes over all patterns (a saturated value counts at the saturation level, as
    :func:`masked_input` clips it); each bad pixel takes the mean of its already-filled
    neighbours (3 x 3), filled ring by ring inwards from the valid pixels around it, so a dead
    pixel, a module gap or a beamstop shows the local level of the mean pattern instead of 0.

    Parameters
    ----------
    diffraction : ndarray or LazyPatterns, shape (M, N, N), raw amplitudes (read in chunks)
    bad_pixels, saturation_counts : see :func:`valid_pixels`

    Raises
    ------
    ValueError
        Every pixel of every pattern is masked.
    """
    from ptycho.data.lazy import iter_chunks

    if not hasattr(diffraction, "shape"):
        diffraction = np.asarray(diffraction)
    n = diffraction.shape[-1]
    bad = (np.zeros((n, n), bool) if bad_pixels is None
           else np.asarray(bad_pixels, bool))
    power = np.empty(diffraction.shape[0], np.float64)
    total = np.zeros((n, n), np.float64)
    any_valid = False
    for lo, chunk in iter_chunks(diffraction):
        valid = valid_pixels(chunk, bad, saturation_counts)
        if valid is None:
            valid = np.ones(chunk.shape, bool)
        any_valid = any_valid or bool(valid.any())
        power[lo:lo + len(chunk)] = np.square(np.where(valid, chunk, 0), dtype=np.float64
                                              ).sum(axis=(-2, -1))
        total += np.sum(masked_input(chunk, None, saturation_counts), axis=0, dtype=np.float64)
    if not any_valid:
        raise ValueError("every detector pixel of every pattern is masked")
    fill = None
    if bad.any():
        fill = _fill_from_neighbours(total / max(diffraction.shape[0], 1), ~bad).astype(np.float32)
    return MaskStatistics(power=power, fill=fill)


def _fill_from_neighbours(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """``values`` (N, N) with the pixels where ``known`` is False filled from their neighbours.

    Ring by ring: every unknown pixel with a known 3 x 3 neighbour takes their mean and
    becomes known. All pixels unknown: zeros.
    """
    values = np.where(known, values, 0.0)
    known = known.copy()
    if not known.any():
        return values
    while not known.all():
        sums = np.zeros_like(values)
        counts = np.zeros_like(values)
        padded_values = np.pad(values * known, 1)
        padded_known = np.pad(known.astype(np.float64), 1)
        n_rows, n_cols = values.shape
        for dr in range(3):
            for dc in range(3):
                sums += padded_values[dr:dr + n_rows, dc:dc + n_cols]
                counts += padded_known[dr:dr + n_rows, dc:dc + n_cols]
        grow = ~known & (counts > 0)
        values[grow] = sums[grow] / counts[grow]
        known |= grow
    return values


def masked_input(amplitude: np.ndarray, bad_pixels: np.ndarray | None = None,
                 saturation_counts: float | None = None,
                 fill: np.ndarray | None = None) -> np.ndarray:
    """Raw amplitudes as the network sees them: bad pixels filled, saturated pixels clipped.

    Bad pixels take ``fill`` (:func:`mask_statistics`: the local level of the mean pattern);
    a saturated pixel keeps the saturation level ``sqrt(saturation_counts)`` (its count is at
    least that; hot or rolled-over values do not reach the network). The loss ignores both
    (:func:`valid_pixels`); the fill only keeps masked pixels from looking like zeros or
    spikes to the network. Without a mask the amplitudes are returned unchanged.

    Parameters
    ----------
    amplitude : ndarray, shape (..., N, N), float (raw amplitudes)
    bad_pixels : ndarray, shape (N, N), bool, optional
    saturation_counts : float, optional
    fill : ndarray, shape (N, N), optional
        Required when ``bad_pixels`` has a True pixel.

    Returns
    -------
    ndarray, shape and dtype of ``amplitude``
    """
    amplitude = np.asarray(amplitude)
    if saturation_counts is not None:
        amplitude = np.minimum(amplitude, saturation_amplitude(saturation_counts, amplitude.dtype))
    if bad_pixels is not None and np.any(bad_pixels):
        if fill is None:
            raise ValueError("masked_input needs the fill of the bad pixels (mask_statistics)")
        amplitude = np.where(np.asarray(bad_pixels, bool), np.asarray(fill, amplitude.dtype),
                             amplitude)
    return amplitude


def normalize_diffraction(diffraction: np.ndarray) -> np.ndarray:
    """Return ``diff * diffraction_norm_factor(diff)`` as float32 (one scalar per dataset)."""
    factor = diffraction_norm_factor(diffraction)
    return (np.asarray(diffraction, np.float64) * factor).astype(np.float32)


def simulate_amplitude(obj: np.ndarray, probe: np.ndarray, xcoords, ycoords) -> np.ndarray:
    """Noise-free far-field amplitude of every scan position. Shape (M, N, N), float64.

    ``probe`` (N, N), or (K, N, N) incoherent modes: ``sqrt`` of :func:`mixed_state_intensity`.
    """
    probe = np.asarray(probe)
    n = probe.shape[-1]
    patches = extract_patches(obj, xcoords, ycoords, n)
    if probe.ndim == 3:
        return np.sqrt(mixed_state_intensity(patches, probe))
    return far_field_amplitude(illuminate(patches, probe))

"""NumPy reference of the forward model: the single definition every backend is tested against.

Conventions (design section 2)
------------------------------
- Object ``O`` is complex ``(H, W)``; a probe ``P`` is complex ``(N, N)``; all lengths in object
  pixels. ``xcoords`` is the column, ``ycoords`` the row.
- The patch at scan position (x, y) is ``patch[r, c] = O(y - N/2 + r, x - N/2 + c)``, sampled
  bilinearly with zeros outside the object.
- Exit wave ``psi = P * patch``; far-field amplitude ``A = |fftshift(fft2(psi))| / N``
  (orthonormal: Parseval holds, DC at ``(N/2, N/2)``); expected counts ``I = A**2``.

Everything is computed in float64 / complex128.
"""

from __future__ import annotations

import math

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

    Parameters
    ----------
    probe : ndarray, shape (N, N), complex
    probe_scale : float, > 0

    Returns
    -------
    ndarray, shape (N, N), complex128
    """
    probe = np.asarray(probe, np.complex128)
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


def poisson_nll(pred_intensity: np.ndarray, counts: np.ndarray, eps: float = POISSON_EPS) -> float:
    """Mean Poisson negative log-likelihood ``y_pred - y_true * log(y_pred + eps)`` (no log k!).

    Parameters
    ----------
    pred_intensity : ndarray, expected counts (>= 0)
    counts : ndarray, same shape, measured counts (>= 0)
    """
    pred = np.asarray(pred_intensity, np.float64)
    counts = np.asarray(counts, np.float64)
    return float(np.mean(pred - counts * np.log(pred + eps)))


def intensity_scale(nphotons: float, N: int) -> float:
    """Intensity scale ``s = sqrt(nphotons) / (N/2)``.

    With normalised diffraction (``mean sum X**2 = (N/2)**2``) the counts ``(s X)**2`` average
    ``nphotons`` per pattern.
    """
    if not nphotons > 0:
        raise ValueError(f"nphotons must be > 0 (got {nphotons})")
    return math.sqrt(nphotons) / (N / 2)


def diffraction_norm_factor(diffraction: np.ndarray) -> float:
    """Scalar f with ``mean_i sum_xy (f * diff_i)**2 = (N/2)**2``, computed in float64.

    Parameters
    ----------
    diffraction : ndarray, shape (..., N, N), amplitudes (any real dtype; uint16 does not wrap)
        or a lazy (M, N, N) stack (:class:`ptycho.data.lazy.LazyPatterns`): read in chunks.
    """
    from ptycho.data.lazy import pattern_power

    if not hasattr(diffraction, "shape"):
        diffraction = np.asarray(diffraction)
    n = diffraction.shape[-1]
    power = pattern_power(diffraction)
    mean_power = float(np.mean(power)) if power.size else float("nan")
    if not mean_power > 0:
        raise ValueError("diffraction data are all zero; cannot normalise them")
    return math.sqrt((n / 2) ** 2 / mean_power)


def normalize_diffraction(diffraction: np.ndarray) -> np.ndarray:
    """Return ``diff * diffraction_norm_factor(diff)`` as float32 (one scalar per dataset)."""
    factor = diffraction_norm_factor(diffraction)
    return (np.asarray(diffraction, np.float64) * factor).astype(np.float32)


def simulate_amplitude(obj: np.ndarray, probe: np.ndarray, xcoords, ycoords) -> np.ndarray:
    """Noise-free far-field amplitude of every scan position. Shape (M, N, N), float64."""
    n = np.asarray(probe).shape[-1]
    patches = extract_patches(obj, xcoords, ycoords, n)
    return far_field_amplitude(illuminate(patches, probe))

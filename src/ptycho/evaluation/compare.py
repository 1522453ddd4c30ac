"""Compare a reconstruction with the ground truth: the evaluation pipeline behind ``metrics.json``.

Steps (all on the truth pixel grid)
-----------------------------------
1. Place the reconstruction by its origin ``(x0_px, y0_px)`` (``recon[0, 0]`` is truth pixel
   ``(y0_px, x0_px)``); keep the pixels it covers (and its optional ``valid`` mask).
2. Intersect with the scanned region (bounding box of the scan positions), if given.
3. Estimate the sub-pixel displacement of the reconstruction on that region
   (:func:`~ptycho.evaluation.registration.register_to_truth`, iterated phase cross-correlation)
   and undo it with a cubic spline shift; pixels whose interpolation reads uncovered data are
   dropped. A shift beyond a quarter of the region's smaller side is implausible (a failed
   registration): it is discarded with a warning and the images are compared as placed.
4. Crop to the compared pixels; optionally (``remove_phase_ramp``) remove the linear phase ramp
   of the reconstruction relative to the truth
   (:func:`~ptycho.evaluation.registration.fit_phase_ramp`, least squares in the complex field
   on the compared pixels, weighted by ``|truth| |recon|``); remove the global phase offset
   ``angle(sum(truth * conj(recon)))`` and the least-squares amplitude scale.
5. Amplitude and phase metrics: PSNR (dB, data range of the truth), SSIM, MAE, FRC at 0.5 and
   1/2-bit (:mod:`ptycho.evaluation.frc`). The reconstructed phase is taken as
   ``phase(truth) + wrap(phase(recon) - phase(truth))`` with the wrap into (-pi, pi], so phase
   wrapping never counts as error.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from ptycho.errors import InputError
from ptycho.evaluation import frc as frc_module
from ptycho.evaluation import metrics as metrics_module
from ptycho.evaluation import registration as reg
from ptycho.evaluation.report import COMPONENTS

log = logging.getLogger(__name__)

REGISTRATION_MODES = ("auto", "amplitude", "complex", "none")
#: relative amplitude contrast (std / mean) below which 'auto' registers the complex field
AMPLITUDE_CONTRAST_MIN = 1e-3
#: a registration shift beyond this fraction of the region's smaller side is discarded
MAX_SHIFT_FRACTION = 0.25


@dataclass
class EvaluationResult:
    """Everything the evaluation computed: the metrics and the aligned images behind them.

    Attributes
    ----------
    metrics : dict
        ``{"amplitude": {psnr_db, ssim, mae, frc50_px, frc_half_bit_px}, "phase": {...},
        "registration_shift_px": [dy, dx]}``, plain Python floats (``inf``/``nan`` possible),
        plus ``"phase_ramp_rad_per_px": [a, b]`` when the phase ramp was removed.
    truth : ndarray, shape (h, w), complex128
        Ground truth over the bounding box of the compared pixels.
    recon : ndarray, shape (h, w), complex128
        Reconstruction on the same pixels after registration, phase-ramp (optional),
        phase-offset and scale removal.
    mask : ndarray, shape (h, w), bool
        The compared pixels.
    origin_rc : tuple of int
        Truth row and column of ``truth[0, 0]``.
    displacement_px : ndarray, shape (2,), float64
        ``[dy, dx]`` displacement of the reconstruction that was undone (pixels).
    phase_offset_rad : float
        Global phase added to the reconstruction (radians).
    amplitude_scale : float
        Factor applied to the reconstruction's amplitude.
    images : dict
        ``{"amplitude": (truth, recon), "phase": (truth, recon)}``, real (h, w) float64 images
        as compared (phase in radians, reconstruction unwrapped onto the truth).
    frc : dict
        ``{"amplitude": FRCCurve, "phase": FRCCurve}``.
    phase_ramp_rad_per_px : ndarray, shape (2,), float64
        ``[a, b]``: the phase ramp ``a r + b c`` (radians per pixel along truth rows and
        columns) removed from the reconstruction; zeros unless ``remove_phase_ramp``.
    """

    metrics: dict
    truth: np.ndarray
    recon: np.ndarray
    mask: np.ndarray
    origin_rc: tuple[int, int]
    displacement_px: np.ndarray
    phase_offset_rad: float
    amplitude_scale: float
    images: dict = field(default_factory=dict)
    frc: dict = field(default_factory=dict)
    phase_ramp_rad_per_px: np.ndarray = field(default_factory=lambda: np.zeros(2))


def _as_image(array, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = np.squeeze(array)
    if array.ndim != 2 or min(array.shape) == 0:
        raise InputError("wrong shape", name, "a 2-D complex image (H, W)",
                         f"shape {tuple(array.shape)}")
    if array.dtype.kind not in "iufc":
        raise InputError("wrong dtype", name, "a numeric (complex) image", str(array.dtype))
    array = array.astype(np.complex128)
    if not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError("non-finite values", name, "finite numbers", f"{bad} NaN/Inf values")
    return array


def _bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _registration_space(mode: str, truth_region: np.ndarray) -> str | None:
    if mode not in REGISTRATION_MODES:
        raise InputError("invalid value", "registration", "one of " + ", ".join(REGISTRATION_MODES),
                         repr(mode))
    if mode == "none":
        return None
    if mode != "auto":
        return mode
    amplitude = np.abs(truth_region)
    mean = float(amplitude.mean())
    contrast = float(amplitude.std()) / mean if mean > 0 else 0.0
    return "amplitude" if contrast > AMPLITUDE_CONTRAST_MIN else "complex"


def _component_metrics(truth: np.ndarray, recon: np.ndarray, mask: np.ndarray):
    curve = frc_module.frc_curve(truth, recon, mask)
    values = {
        "psnr_db": metrics_module.psnr(truth, recon, mask),
        "ssim": metrics_module.ssim(truth, recon, mask),
        "mae": metrics_module.mae(truth, recon, mask),
        "frc50_px": curve.frc50_px,
        "frc_half_bit_px": curve.frc_half_bit_px,
    }
    return {key: float(value) for key, value in values.items()}, curve


def compare_reconstruction(recon: np.ndarray, x0_px: float, y0_px: float, truth: np.ndarray, *,
                           scan_xy: np.ndarray | None = None, valid: np.ndarray | None = None,
                           registration: str = "auto", upsample_factor: int = 50,
                           normalize: bool = True,
                           remove_phase_ramp: bool = False) -> EvaluationResult:
    """Align ``recon`` to ``truth`` and compute the metrics; keep the aligned images.

    Parameters
    ----------
    recon : ndarray, shape (H, W), complex
        Reconstructed object (e.g. ``StitchedObject.object``).
    x0_px, y0_px : float
        Truth column and row of ``recon[0, 0]`` in pixels (``StitchedObject.x0_px/y0_px``).
    truth : ndarray, shape (Ht, Wt), complex
        Ground-truth object (the scan's ``objectGuess``).
    scan_xy : ndarray, shape (M, 2), float, optional
        ``[x, y]`` scan positions in truth pixels; only their bounding box is compared.
    valid : ndarray, shape (H, W), bool, optional
        Reconstruction pixels holding data, e.g. ``weight > 0`` of the stitched object.
    registration : {'auto', 'amplitude', 'complex', 'none'}
        Sub-pixel registration on the amplitudes, on the complex field, or not at all. 'auto'
        uses the amplitudes unless the truth amplitude has no contrast (std/mean <= 1e-3,
        a phase-only object), then the complex field.
    upsample_factor : int
        Registration precision ``1 / upsample_factor`` px.
    normalize : bool
        Remove the global phase offset and the amplitude scale before comparing.
    remove_phase_ramp : bool
        Also remove the linear phase ramp of the reconstruction relative to the truth, fitted
        on the compared pixels after registration (before the global phase offset); a ramp
        moves freely between object and probe when the probe is refined. The fitted ramp is
        reported as ``metrics["phase_ramp_rad_per_px"]``.

    Returns
    -------
    EvaluationResult

    Raises
    ------
    ptycho.errors.InputError
        Malformed arrays, or a reconstruction that does not overlap the (scanned) truth.
    """
    recon = _as_image(recon, "reconstruction")
    truth = _as_image(truth, "ground truth")
    if valid is not None:
        valid = np.asarray(valid, bool)
        if valid.shape != recon.shape:
            raise InputError("shape mismatch", "valid mask", f"shape {recon.shape} like the "
                             "reconstruction", f"shape {valid.shape}")
    for name, value in (("x0_px", x0_px), ("y0_px", y0_px)):
        if not math.isfinite(float(value)):
            raise InputError("non-finite value", name, "a finite origin in pixels", str(value))

    placement = reg.place_on_grid(recon, float(x0_px), float(y0_px), truth.shape, valid)
    region = placement.valid.copy()
    if scan_xy is not None:
        region &= reg.scanned_region(scan_xy, truth.shape)
    if not region.any():
        raise InputError(
            "no overlap", "reconstruction",
            "a reconstruction covering part of the (scanned) ground truth",
            f"shape {recon.shape} at x0={float(x0_px):g}, y0={float(y0_px):g} on a truth of "
            f"shape {truth.shape}")

    image, covered = placement.image, placement.valid
    box = _bounding_box(region)
    space = _registration_space(registration, truth[box][region[box]])
    displacement = np.zeros(2)
    if space is not None:
        displacement = reg.register_to_truth(truth, image, box, upsample_factor, space)
        limit = MAX_SHIFT_FRACTION * min(box[0].stop - box[0].start, box[1].stop - box[1].start)
        if np.max(np.abs(displacement)) > limit:
            log.warning("registration found an implausible shift [dy, dx] = [%.2f, %.2f] px "
                        "(more than %.1f px); comparing without registration",
                        displacement[0], displacement[1], limit)
            displacement = np.zeros(2)
        displacement = np.round(displacement, 6) + 0.0  # drop float noise and -0.0
        if np.any(displacement != 0):
            image = reg.shift_image(image, -displacement)
            covered = reg.shift_mask(covered, -displacement)
    compared = region & covered
    if not compared.any():
        raise InputError("registration failed", "reconstruction",
                         "a displacement that leaves overlapping pixels",
                         f"[dy, dx] = [{displacement[0]:.2f}, {displacement[1]:.2f}] px")

    box = _bounding_box(compared)
    truth_c, recon_c, mask = truth[box], image[box].copy(), compared[box]
    origin = (int(box[0].start), int(box[1].start))
    ramp = np.zeros(2)
    if remove_phase_ramp:
        ramp = reg.fit_phase_ramp(truth_c, recon_c, mask)
        recon_c *= np.exp(-1j * reg.phase_ramp(recon_c.shape, ramp, origin))
    phase_offset, scale = 0.0, 1.0
    if normalize:
        phase_offset = reg.global_phase_offset(truth_c[mask], recon_c[mask])
        recon_c *= np.exp(1j * phase_offset)
        scale = reg.amplitude_scale(np.abs(truth_c[mask]), np.abs(recon_c[mask]))
        recon_c *= scale

    truth_phase = np.angle(truth_c)
    images = {
        "amplitude": (np.abs(truth_c), np.abs(recon_c)),
        "phase": (truth_phase, truth_phase + np.angle(recon_c * np.conj(truth_c))),
    }
    metrics: dict = {}
    curves = {}
    for component in COMPONENTS:
        metrics[component], curves[component] = _component_metrics(*images[component], mask)
    metrics["registration_shift_px"] = [float(displacement[0]), float(displacement[1])]
    if remove_phase_ramp:
        metrics["phase_ramp_rad_per_px"] = [float(ramp[0]), float(ramp[1])]
    return EvaluationResult(
        metrics=metrics, truth=truth_c, recon=recon_c, mask=mask, origin_rc=origin,
        displacement_px=displacement, phase_offset_rad=float(phase_offset),
        amplitude_scale=float(scale), images=images, frc=curves, phase_ramp_rad_per_px=ramp)


def evaluate_reconstruction(recon: np.ndarray, x0_px: float, y0_px: float, truth: np.ndarray, *,
                            scan_xy: np.ndarray | None = None, valid: np.ndarray | None = None,
                            registration: str = "auto", upsample_factor: int = 50,
                            normalize: bool = True, remove_phase_ramp: bool = False) -> dict:
    """Metrics of ``recon`` against ``truth`` (see :func:`compare_reconstruction`).

    Returns
    -------
    dict
        ``{"amplitude": {"psnr_db", "ssim", "mae", "frc50_px", "frc_half_bit_px"},
        "phase": {...same keys...}, "registration_shift_px": [dy, dx]}`` with plain Python
        floats: PSNR in dB (data range = max - min of the truth), SSIM in [-1, 1], MAE in image
        units (phase in radians), FRC resolutions as periods in pixels (2.0 = Nyquist, the
        curve never crossed), and ``[dy, dx]`` the displacement (pixels) of the reconstruction
        relative to the truth, ``recon(r, c) ~ truth(r - dy, c - dx)``, undone before
        comparing. ``psnr_db`` is ``inf`` for a perfect match; ``nan`` marks a metric that is
        undefined (e.g. PSNR/SSIM of a constant truth amplitude). With ``remove_phase_ramp``
        also ``"phase_ramp_rad_per_px": [a, b]``, the removed ramp ``a r + b c`` in radians per
        pixel along rows and columns.
    """
    return compare_reconstruction(recon, x0_px, y0_px, truth, scan_xy=scan_xy, valid=valid,
                                  registration=registration, upsample_factor=upsample_factor,
                                  normalize=normalize, remove_phase_ramp=remove_phase_ramp).metrics


def flat_baseline_metrics(recon: np.ndarray, x0_px: float, y0_px: float, truth: np.ndarray, *,
                          scan_xy: np.ndarray | None = None, valid: np.ndarray | None = None,
                          remove_phase_ramp: bool = False) -> dict:
    """Metrics of a flat object (all ones) in place of ``recon``: the score of knowing nothing.

    The flat object covers the same pixels as ``recon`` and is compared the same way (no
    registration: it has no features to register; the amplitude scale and global phase are
    still fitted), so a reconstruction that does not beat these numbers has learned nothing
    that a constant does not give; with ``remove_phase_ramp`` the flat object's ramp is fitted
    too. Same arguments and return value as :func:`evaluate_reconstruction`.
    """
    flat = np.ones(np.shape(recon), np.complex64)
    return evaluate_reconstruction(flat, x0_px, y0_px, truth, scan_xy=scan_xy, valid=valid,
                                   registration="none", remove_phase_ramp=remove_phase_ramp)


#: Gaussian blurs (sigma, pixels) of the truth scored beside every reconstruction.
CALIBRATION_BLURS_PX = (3.0, 1.5)


def calibration_metrics(truth: np.ndarray, valid: np.ndarray, *,
                        scan_xy: np.ndarray | None = None,
                        remove_phase_ramp: bool = False) -> dict:
    """Scores that calibrate a reconstruction's metrics on the same pixels of the truth grid.

    Rows: ``'flat object'`` (all ones: the floor), and ``'truth blurred by S px'`` for each
    sigma S of :data:`CALIBRATION_BLURS_PX` (the truth's real and imaginary parts smoothed by a
    Gaussian of S pixels: what a reconstruction of that resolution scores). Each is compared
    like a reconstruction placed at the origin of the truth grid, with no registration, and
    with ``remove_phase_ramp`` its (fitted, usually near zero) phase ramp removed like the
    reconstructions it calibrates.

    Parameters
    ----------
    truth : ndarray, shape (H, W), complex
    valid : ndarray, shape (H, W), bool
        Truth pixels to score (e.g. those a reconstruction covers).
    scan_xy : ndarray, shape (M, 2), optional
        Scan positions; only their bounding box is compared (as :func:`evaluate_reconstruction`).
    remove_phase_ramp : bool
        Score with the phase ramp removed (see :func:`compare_reconstruction`).

    Returns
    -------
    dict
        ``{row name: metrics dict of evaluate_reconstruction}``.
    """
    from scipy.ndimage import gaussian_filter

    truth = np.asarray(truth, np.complex128)
    rows = {"flat object": np.ones(truth.shape, np.complex128)}
    for sigma in CALIBRATION_BLURS_PX:
        rows[f"truth blurred by {sigma:g} px"] = (gaussian_filter(truth.real, sigma)
                                                  + 1j * gaussian_filter(truth.imag, sigma))
    return {name: evaluate_reconstruction(image, 0.0, 0.0, truth, scan_xy=scan_xy, valid=valid,
                                          registration="none",
                                          remove_phase_ramp=remove_phase_ramp)
            for name, image in rows.items()}


def comparison_region(stitched, scan) -> dict:
    """``scan_xy`` and ``valid`` for comparing a stitched object with its scan's ground truth.

    The scan positions ((M, 2) x, y) bound the compared region; ``valid`` is the covered pixels
    (``stitched.weight > 0``; None when the object carries no weight). Pass as keywords to
    :func:`evaluate_reconstruction`, :func:`compare_reconstruction` or
    :func:`flat_baseline_metrics`.
    """
    weight = getattr(stitched, "weight", None)
    return {"scan_xy": np.column_stack([scan.xcoords, scan.ycoords]),
            "valid": None if weight is None else np.asarray(weight) > 0}

"""Iterative reconstruction on the package's forward model: ``ptycho.refine``.

:func:`refine` minimises the misfit between the measured patterns of a scan and the forward
model of design section 2 (bilinear object patch x probe -> orthonormal far field) over a
complex object canvas, optionally also over the probe and the scan positions. It starts from a
flat object or from any reconstruction (for example the stitched output of ``ptychopinn
infer``, from either backend), and returns NumPy arrays. The engine runs on PyTorch (always
installed; a CUDA GPU when present), imported only when :func:`refine` is called.

Scale: the probe is normalised as in training (:func:`ptycho.physics.normalize_probe`) and then
multiplied by one scalar so that the starting object predicts the measured mean counts per
pattern (the intensity scale of training, with ``nphotons`` the measured mean). The object
therefore keeps the amplitude scale of its start (1 for a flat start).

Example
-------
>>> from ptycho.data.npz import read_scan_npz
>>> from ptycho.refine import RefineOptions, refine
>>> result = refine(read_scan_npz("scan.npz"), options=RefineOptions(iterations=20))
>>> result.object            # complex64 (H, W); result.x0_px / y0_px place it on the scan grid
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ptycho import physics
from ptycho.errors import InputError
from ptycho.refine.canvas import CanvasGeometry, canvas_for_positions, resample_onto
from ptycho.refine.options import NOISE_MODELS, RefineOptions

__all__ = ["NOISE_MODELS", "CanvasGeometry", "InitialObject", "RefineOptions", "RefineResult",
           "refine", "resolve_device"]

#: Pixels lit by less than this fraction of the largest summed illumination are reported with
#: weight 0 (not reconstructed): the probe's faint outer rings carry almost no information.
LIT_FRACTION = 0.01


@dataclass
class InitialObject:
    """A starting object on the scan grid.

    Attributes
    ----------
    object : ndarray, shape (h, w), complex
    x0_px, y0_px : float
        Scan-coordinate column and row of ``object[0, 0]``.
    valid : ndarray, shape (h, w), bool, optional
        Pixels holding data (e.g. ``weight > 0`` of a stitched object); others are filled flat.
    """

    object: np.ndarray
    x0_px: float
    y0_px: float
    valid: np.ndarray | None = None


@dataclass
class RefineResult:
    """What :func:`refine` returns.

    Attributes
    ----------
    object : ndarray, shape (H, W), complex64
    x0_px, y0_px : float
        Scan-coordinate column and row of ``object[0, 0]`` (whole pixels).
    weight : ndarray, shape (H, W), float32
        Summed probe intensity ``sum_m |P|**2`` at the final positions, 0 where below
        ``LIT_FRACTION`` of its maximum (pixels the scan did not reconstruct).
    probe : ndarray, shape (N, N), or (M, N, N) incoherent modes, complex64
        The probe of the forward model (normalised and scaled to the counts; refined when
        asked; modes orthogonal and ordered by power after probe updates).
    positions_xy : ndarray, shape (M, 2), float64
        Final ``[x, y]`` positions in object pixels (refined when asked).
    history : dict of lists
        ``iteration``, ``misfit``, ``time_s`` and whatever ``on_iteration`` added.
    options : RefineOptions
    """

    object: np.ndarray
    x0_px: float
    y0_px: float
    weight: np.ndarray
    probe: np.ndarray
    positions_xy: np.ndarray
    history: dict
    options: RefineOptions = field(default_factory=RefineOptions)

    @property
    def stitched(self):
        """The object as a :class:`ptycho.stitching.StitchedObject` (for the output writers)."""
        from ptycho.stitching import StitchedObject

        return StitchedObject(object=self.object, x0_px=float(self.x0_px),
                              y0_px=float(self.y0_px), weight=self.weight)


def refine(scan, initial: InitialObject | None = None, options: RefineOptions | None = None, *,
           probe: np.ndarray | None = None,
           on_iteration: Callable[[int, RefineResult], dict] | None = None,
           dtype: str = "float32") -> RefineResult:
    """Reconstruct (or polish) the object of ``scan`` by minibatch iterative updates.

    Parameters
    ----------
    scan : ptycho.data.scan.Scan
        Amplitudes ``sqrt(counts)`` (M, N, N) (in memory or streamed), positions, probe, the
        optional ``bad_pixels`` (N, N) mask (True = do not use) and ``saturation_counts``
        (counts at or above it are not used, in their pattern only): the misfit, the updates
        and the intensity calibration ignore those pixels (``ptycho.physics.valid_pixels``).
    initial : InitialObject, optional
        Starting object; default a flat object (all ones).
    options : RefineOptions, optional
    probe : ndarray, shape (N, N) or (M, N, N), complex, optional
        Starting probe (all its modes) instead of the scan's; default
        ``scan.initial_probe(options.probe_modes)`` (mode 0 for one mode, else the modes the
        scan gives, completed and orthogonalised: :func:`ptycho.physics.initial_probe_modes`).
    on_iteration : callable(iteration, snapshot) -> dict, optional
        Called after every iteration with a :class:`RefineResult` snapshot whose ``history``
        holds the rows so far (the current one with ``iteration``, ``misfit`` and ``time_s``);
        the returned numbers are added to that row (e.g. metrics against a ground truth). Its
        time is not counted in ``time_s``.
    dtype : {'float32', 'float64'}
        Precision of the solver.

    Returns
    -------
    RefineResult
    """
    options = (options or RefineOptions()).validate()
    import torch

    from ptycho.backends.pytorch import solver

    n = scan.N
    probe = np.asarray(scan.initial_probe(options.probe_modes) if probe is None else probe,
                       np.complex128)
    if probe.shape[-2:] != (n, n) or probe.ndim not in (2, 3):
        raise InputError("shape mismatch", "probe", f"shape ({n}, {n}) or (modes, {n}, {n}) "
                         f"like the patterns", f"shape {probe.shape}")
    positions = np.column_stack([scan.xcoords, scan.ycoords]).astype(np.float64)
    geometry = canvas_for_positions(positions, n, options.max_position_correction_px)
    if initial is None:
        start = np.ones(geometry.shape, np.complex64)
    else:
        start = resample_onto(geometry, initial.object, initial.x0_px, initial.y0_px,
                              initial.valid)
    valid = None if scan.bad_pixels is None else ~np.asarray(scan.bad_pixels, bool)
    if valid is not None and not valid.any():
        raise InputError("no valid pixels", f"{scan.source}:bad_pixels",
                         "at least one detector pixel that is not masked")

    device = resolve_device(options.device)
    complex_dtype = torch.complex128 if dtype == "float64" else torch.complex64
    origin = geometry.window_origin_px(positions, n)
    state = solver.SolverState(
        obj=torch.from_numpy(start).to(device, complex_dtype),
        probe=torch.from_numpy(physics.normalize_probe(probe)).to(device, complex_dtype),
        origin_rc=torch.from_numpy(origin).to(device, torch.float64))
    try:
        mean_counts = physics.mean_photons_per_pattern(scan.diffraction, scan.bad_pixels,
                                                       scan.saturation_counts)
    except ValueError:  # every pixel bad or saturated
        mean_counts = 0.0
    if not mean_counts > 0:  # nothing left but zero counts
        raise InputError("no valid pixels", "--saturation",
                         "detector pixels below the saturation level that hold counts")
    state.probe *= float(np.sqrt(mean_counts / solver.mean_predicted_counts(
        state, valid, scan.diffraction, scan.saturation_counts)))

    def callback(iteration: int, current, history: dict) -> dict:
        snapshot = _result(current, geometry, options, {k: list(v) for k, v in history.items()},
                           solver)
        return on_iteration(iteration, snapshot)

    with torch.no_grad():
        state, history = solver.run_solver(state, scan.diffraction, valid, options,
                                           on_iteration=callback if on_iteration else None,
                                           saturation_counts=scan.saturation_counts)
    return _result(state, geometry, options, history, solver)


def resolve_device(name: str):
    """The torch device of ``RefineOptions.device`` ('auto': CUDA when torch sees a GPU).

    Raises :class:`ptycho.errors.InputError` for 'cuda' without a GPU (the CLI checks this
    before it reads or writes anything).
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("no GPU", "--device", "a CUDA GPU visible to torch, or --device cpu",
                         "cuda")
    return torch.device(name)


def _result(state, geometry: CanvasGeometry, options: RefineOptions, history: dict,
            solver) -> RefineResult:
    n = state.probe.shape[-1]
    illumination = solver.illumination(state).cpu().numpy().astype(np.float32)
    illumination[illumination < LIT_FRACTION * illumination.max()] = 0.0
    origin = state.origin_rc.cpu().numpy()
    positions = np.column_stack([origin[:, 1] + n / 2 + geometry.x0_px,
                                 origin[:, 0] + n / 2 + geometry.y0_px])
    return RefineResult(object=state.obj.cpu().numpy().astype(np.complex64),
                        x0_px=float(geometry.x0_px), y0_px=float(geometry.y0_px),
                        weight=illumination,
                        probe=state.probe.cpu().numpy().astype(np.complex64),
                        positions_xy=positions, history=history, options=options)

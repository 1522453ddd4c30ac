"""Iterative ptychography solver in PyTorch (the engine behind :func:`ptycho.refine.refine`).

Forward model (design section 2, on a canvas that holds the whole scan)::

    o_m   = bilinear patch of the object O at position m      (N, N)
    psi_m = P * o_m                                             exit wave
    Psi_m = fft2(psi_m) / N                                     orthonormal, DC at (0, 0)
    I_m   = |Psi_m|**2                                          expected counts

The measured patterns are read with DC at (N/2, N/2) and ``ifftshift``-ed once per minibatch,
so no ``fftshift`` is needed per update. All updates are written out explicitly (no autograd):
for each minibatch the exit-wave correction ``chi`` (the steepest-descent direction of the
misfit with respect to ``conj(psi)``, scaled so that ``psi + chi`` is the modulus projection
for the Gaussian model) drives

- the object: ``O += step * A^T(conj(P) chi) / (A^T(|P|**2) + floor * max)``, with ``A^T``
  the adjoint of the bilinear patch extraction (a scatter-add on the canvas);
- the probe: ``P += step * sum_m conj(o_m) chi_m / (sum_m |o_m|**2 + floor * max)``;
- the positions: the 2 x 2 Gauss-Newton step of the amplitude misfit for a shift of the
  patch, with ``do/dx`` the central difference of the patch. (The exact derivative of the
  bilinear sampling is piecewise constant in the shift, and its misfit has stationary points
  inside pixel cells where half of the positions of a 2 px-perturbed scan got stuck.) The
  residual it fits is the count residual in amplitude units,
  ``(y - |Psi|**2) / (2 max(|Psi|, 0.5))`` (:func:`amplitude_jacobian`).
- with ``position_affine``, once per iteration, a global affine map ``B`` (2 x 2) of the
  positions about the scan's centre ``c`` taken jointly with the object: the positions move by
  ``B (p - c)`` and the object is warped to follow to first order,
  ``O(x) -> O(x) - (B (x - c)) . grad O(x)``, so each patch changes by ``-(B r) . grad o`` (r:
  pixel offset from the patch's centre). ``B`` is the Gauss-Newton step of the amplitude misfit
  for that change, its 4 x 4 normal equations summed over the iteration's minibatches. The
  per-position steps alone leave this mode (a scale or shear of the scan that the object
  follows) almost unchanged over many iterations.

Mixed-state probe (modes ``P_k``, (M, N, N)): ``I_m = sum_k |Psi_mk|**2`` with
``Psi_mk = fft2(P_k o_m) / N``. The correction factor of each pixel comes from the summed
intensity and applies to every mode's spectrum (``chi_k = Psi_k (a / sqrt(I) - 1)``, the
mixed-state modulus projection; Poisson alike); the object update sums
``conj(P_k) chi_k`` over the modes over ``sum_k |P_k|**2``, each mode's probe update is the
single-mode one with its own ``chi_k``, and the position Jacobian is
``sum_k Re(conj(Psi_k) F(P_k do/dx)) / sqrt(I)``. After every iteration that updated the
probe its modes are orthogonalised again (:func:`ptycho.physics.orthogonalize_modes`, the
same density matrix). An (N, N) probe runs exactly the single-mode arithmetic.

The tests compare these gradients with autograd of the same forward model and the forward
model with :mod:`ptycho.physics` in float64.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ptycho import physics
from ptycho.backends.schedule import CosineSchedule

#: Added to predicted intensities in the Poisson model (counts): keeps y / I finite where the
#: model predicts no photons.
POISSON_FLOOR_COUNTS = 1e-6
#: Smallest predicted amplitude (sqrt(counts)) dividing the count residual of the position
#: steps (:func:`amplitude_jacobian`).
RESIDUAL_FLOOR_AMPLITUDE = 0.5


@dataclass
class SolverState:
    """What the solver holds between updates (torch tensors on the solver's device).

    Attributes
    ----------
    obj : Tensor, shape (H, W), complex
    probe : Tensor, shape (N, N), or (M, N, N) incoherent modes, complex
    origin_rc : Tensor, shape (M, 2), float64, canvas ``[row, col]`` of each patch's first pixel
    """

    obj: torch.Tensor
    probe: torch.Tensor
    origin_rc: torch.Tensor


class PatchWindows:
    """Bilinear N x N patches at fractional canvas origins, and their adjoint.

    A patch with first pixel at ``(r, c)`` mixes the four whole-pixel windows at
    ``(floor r + i, floor c + j)``, ``i, j in {0, 1}``, read from one ``(N + 1) x (N + 1)``
    window of the canvas.

    Parameters
    ----------
    origin_rc : Tensor, shape (B, 2), float64, canvas ``[row, col]`` of the patches
    canvas_shape : (H, W)
    N : int
    """

    def __init__(self, origin_rc: torch.Tensor, canvas_shape: tuple[int, int], N: int,
                 dtype: torch.dtype):
        height, width = canvas_shape
        whole = torch.floor(origin_rc)
        frac = (origin_rc - whole).to(dtype)
        whole = whole.to(torch.int64)
        span = torch.arange(N + 1, device=origin_rc.device)
        rows = whole[:, 0, None] + span
        cols = whole[:, 1, None] + span
        if int(rows.min()) < 0 or int(cols.min()) < 0 or int(rows.max()) >= height \
                or int(cols.max()) >= width:
            raise ValueError("a patch leaves the solver's canvas")
        self.index = (rows[:, :, None] * width + cols[:, None, :]).reshape(-1)
        self.N = N
        self.batch = origin_rc.shape[0]
        fr = frac[:, 0, None, None]
        fc = frac[:, 1, None, None]
        self.fr, self.fc = fr, fc
        self.weights = ((1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc)

    def window(self, obj: torch.Tensor) -> torch.Tensor:
        """The ``(B, N + 1, N + 1)`` canvas windows."""
        n1 = self.N + 1
        return obj.reshape(-1)[self.index].reshape(self.batch, n1, n1)

    def patches(self, window: torch.Tensor) -> torch.Tensor:
        """Bilinear patches ``(B, N, N)`` from the windows."""
        w00, w01, w10, w11 = self.weights
        return (w00 * window[:, :-1, :-1] + w01 * window[:, :-1, 1:]
                + w10 * window[:, 1:, :-1] + w11 * window[:, 1:, 1:])

    def adjoint(self, values: torch.Tensor, canvas: torch.Tensor) -> None:
        """Add the adjoint of :meth:`patches` applied to ``values`` (B, N, N, K) to ``canvas``.

        ``canvas`` is real ``(H * W, K)``; ``values`` real with K channels (e.g. the real and
        imaginary parts of a complex correction and an illumination).
        """
        w00, w01, w10, w11 = (w[..., None] for w in self.weights)
        n1 = self.N + 1
        window = values.new_zeros((self.batch, n1, n1, values.shape[-1]))
        window[:, :-1, :-1] += w00 * values
        window[:, :-1, 1:] += w01 * values
        window[:, 1:, :-1] += w10 * values
        window[:, 1:, 1:] += w11 * values
        canvas.index_add_(0, self.index, window.reshape(-1, values.shape[-1]))


def exit_wave_correction(spectrum: torch.Tensor, measured: torch.Tensor,
                         valid: torch.Tensor | None, noise_model: str
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Fourier-space correction ``chi_hat`` and the summed misfit of a minibatch.

    Parameters
    ----------
    spectrum : Tensor, shape (B, N, N), complex, ``fft2(psi) / N`` (DC at [0, 0]); or
        (B, M, N, N), one per probe mode (the intensity is their summed ``|Psi_k|**2``)
    measured : Tensor, shape (B, N, N), real, measured amplitudes ``sqrt(counts)``, same layout
    valid : Tensor, shape (N, N) or (B, N, N), bool, or None
        Detector pixels that count (of every pattern, or of each: :func:`frame_mask`);
        elsewhere the correction is 0 and the misfit ignores them.
    noise_model : {'gaussian', 'poisson'}

    Returns
    -------
    chi_hat : Tensor, shape of ``spectrum``, complex
        Gaussian: ``Psi (a / |Psi| - 1)`` (so ``Psi + chi_hat`` has the measured modulus);
        Poisson: ``Psi (y / I - 1) / 2`` (the Poisson gradient, which equals the Gaussian one
        to first order near the solution).
    misfit : Tensor, scalar
        Gaussian: ``sum (|Psi| - a)**2``; Poisson: ``sum I - y log I`` (no log y!).
    """
    intensity = spectrum.real ** 2 + spectrum.imag ** 2
    mixed_state = spectrum.ndim == 4
    if mixed_state:
        intensity = intensity.sum(dim=1)
    if noise_model == "gaussian":
        modulus = torch.sqrt(intensity)
        ratio = measured / torch.clamp(modulus, min=1e-12)
        terms = (modulus - measured) ** 2
        factor = ratio - 1
    else:
        counts = measured ** 2
        predicted = intensity + POISSON_FLOOR_COUNTS
        terms = predicted - counts * torch.log(predicted)
        factor = 0.5 * (counts / predicted - 1)
    if valid is not None:
        factor = factor * valid
        terms = terms * valid
    return spectrum * (factor[:, None] if mixed_state else factor), terms.sum()


def solve_position_steps(spectrum: torch.Tensor, measured: torch.Tensor,
                         valid: torch.Tensor | None, probe: torch.Tensor, d_row: torch.Tensor,
                         d_col: torch.Tensor) -> torch.Tensor:
    """Gauss-Newton shift ``[d_row, d_col]`` (B, 2) of each patch for the amplitude misfit.

    Linearising ``|Psi + dr F(P do/dr) + dc F(P do/dc)|`` about ``Psi`` gives the Jacobian
    columns ``j = Re(conj(u) F(P do/dx))`` with ``u = Psi / |Psi|``; the step solves the 2 x 2
    normal equations ``(J^T J) step = J^T r`` with ``r`` the count residual of
    :func:`amplitude_jacobian` (zero where they are singular).

    Parameters
    ----------
    spectrum : Tensor, shape (B, N, N), complex, ``fft2(psi) / N``; (B, M, N, N) for M modes
    measured : Tensor, shape (B, N, N), real, measured amplitudes, same layout
    valid : Tensor, shape (N, N) or (B, N, N), bool, or None
    probe : Tensor, shape (N, N), or (M, N, N) modes, complex
    d_row, d_col : Tensor, shape (B, N, N), complex, derivatives of the patches along rows
        and columns (pixels)
    """
    (j_row, j_col), residual = amplitude_jacobian(spectrum, measured, valid, probe,
                                                  (d_row, d_col))

    def inner(u, v):
        return (u * v).sum(dim=(-2, -1))

    aa, bb, ab = inner(j_row, j_row), inner(j_col, j_col), inner(j_row, j_col)
    ra, rb = inner(j_row, residual), inner(j_col, residual)
    det = aa * bb - ab * ab
    safe = det > 1e-6 * (aa + bb) ** 2
    det = torch.where(safe, det, torch.ones_like(det))
    step_row = torch.where(safe, (bb * ra - ab * rb) / det, torch.zeros_like(det))
    step_col = torch.where(safe, (aa * rb - ab * ra) / det, torch.zeros_like(det))
    return torch.stack([step_row, step_col], dim=1)


def amplitude_jacobian(spectrum: torch.Tensor, measured: torch.Tensor,
                       valid: torch.Tensor | None, probe: torch.Tensor,
                       derivatives) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Columns of the amplitude Jacobian for given patch changes, and the residual they fit.

    The residual is the count residual in amplitude units, ``(y - I) / (2 max(|Psi|, 0.5))``
    (``y = a**2`` the counts, ``I = |Psi|**2``), not ``a - |Psi|``: the two agree to first
    order, but ``sqrt`` of Poisson counts is biased low where few photons arrive (by about
    ``1 / (8 sqrt(I))``, more below one count), and the dim, high-angle pixels then ask for
    less fine detail, which the joint affine step of the positions finds by magnifying the
    scan. On the quality benchmark's scan (1e6 photons), refined from the exact positions,
    the scan came out magnified by about 4e-4 with ``a - |Psi|`` and the phase PSNR 0.90 dB
    below that of the fixed exact positions; with the count residual (mean 0 at the truth)
    at most 1e-4 and 0.37 dB.

    Parameters
    ----------
    spectrum, measured, valid, probe
        As in :func:`solve_position_steps`.
    derivatives : sequence of Tensor, each shape (B, N, N), complex
        Change of every patch per unit of one parameter.

    Returns
    -------
    columns : list of Tensor, each shape (B, N, N), real
        ``Re(conj(u) F(P do))`` per derivative (summed over probe modes), 0 on invalid pixels.
    residual : Tensor, shape (B, N, N), real
        ``(a**2 - |Psi|**2) / (2 max(|Psi|, RESIDUAL_FLOOR_AMPLITUDE))`` (amplitude units,
        sqrt(counts)), 0 on invalid pixels.
    """
    mixed_state = spectrum.ndim == 4
    if mixed_state:
        modulus = torch.sqrt((spectrum.real ** 2 + spectrum.imag ** 2).sum(dim=1))
        weighted = spectrum / torch.clamp(modulus, min=1e-12)[:, None]
    else:
        modulus = torch.abs(spectrum)
        weighted = spectrum / torch.clamp(modulus, min=1e-12)
    residual = (measured ** 2 - modulus ** 2) / (2 * torch.clamp(modulus,
                                                                  min=RESIDUAL_FLOOR_AMPLITUDE))
    columns = []
    for derivative in derivatives:
        if mixed_state:
            column = (weighted.conj() * torch.fft.fft2(probe * derivative[:, None],
                                                       norm="ortho")).real.sum(dim=1)
        else:
            column = (weighted.conj() * torch.fft.fft2(probe * derivative, norm="ortho")).real
        columns.append(column if valid is None else column * valid)
    if valid is not None:
        residual = residual * valid
    return columns, residual


def affine_normal_equations(spectrum: torch.Tensor, measured: torch.Tensor,
                            valid: torch.Tensor | None, probe: torch.Tensor,
                            d_row: torch.Tensor, d_col: torch.Tensor
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Gauss-Newton normal equations of a minibatch for the joint affine map of the scan.

    The map ``B = [[b_rr, b_rc], [b_cr, b_cc]]`` (dimensionless) moves every position by
    ``B (p - c)`` and warps the object with it (:func:`warp_object`), which changes each patch
    by ``-(d_row (B r)_row + d_col (B r)_col)``, ``r`` the pixel's ``[row, col]`` offset from
    the patch's centre (pixels).

    Parameters
    ----------
    spectrum, measured, valid, probe, d_row, d_col
        As in :func:`solve_position_steps`.

    Returns
    -------
    normal : Tensor, shape (4, 4), float64
        ``J^T J`` over the minibatch's valid pixels, parameters ``b_rr, b_rc, b_cr, b_cc``.
    gradient : Tensor, shape (4,), float64
        ``J^T r`` (``r`` the residual of :func:`amplitude_jacobian`).
    """
    n = d_row.shape[-1]
    offset_px = torch.arange(n, device=d_row.device, dtype=d_row.real.dtype) - n / 2
    r_row, r_col = offset_px[:, None], offset_px[None, :]
    derivatives = (-d_row * r_row, -d_row * r_col, -d_col * r_row, -d_col * r_col)
    columns, residual = amplitude_jacobian(spectrum, measured, valid, probe, derivatives)
    jacobian = torch.stack([column.reshape(-1) for column in columns]).to(torch.float64)
    return jacobian @ jacobian.T, jacobian @ residual.reshape(-1).to(torch.float64)


def warp_object(obj: torch.Tensor, matrix: torch.Tensor, centre_rc: torch.Tensor) -> torch.Tensor:
    """The object moved with the positions by the affine map ``matrix``, to first order.

    ``O(x) - (B (x - c)) . grad O(x)`` with ``grad`` the central difference (one-sided at the
    canvas's edges): the object whose patches at the moved positions ``p + B (p - c)`` equal,
    to first order, the patches of ``O`` at ``p`` deformed by ``B`` about their centres.

    Parameters
    ----------
    obj : Tensor, shape (H, W), complex
    matrix : Tensor, shape (2, 2), float64, ``B`` acting on ``[row, col]`` offsets
    centre_rc : Tensor, shape (2,), float64, canvas ``[row, col]`` of ``c`` (pixels)

    Returns
    -------
    Tensor, shape (H, W), dtype of ``obj``
    """
    height, width = obj.shape
    rows = torch.arange(height, device=obj.device, dtype=torch.float64)[:, None] - centre_rc[0]
    cols = torch.arange(width, device=obj.device, dtype=torch.float64)[None, :] - centre_rc[1]
    shift_row = (matrix[0, 0] * rows + matrix[0, 1] * cols).to(obj.real.dtype)
    shift_col = (matrix[1, 0] * rows + matrix[1, 1] * cols).to(obj.real.dtype)
    gradient_row, gradient_col = torch.gradient(obj)
    return obj - shift_row * gradient_row - shift_col * gradient_col


def affine_step(normal: torch.Tensor, gradient: torch.Tensor, offsets_rc: torch.Tensor,
                max_step_px: float) -> torch.Tensor | None:
    """The affine map ``B`` (2, 2) float64 of the summed normal equations, or None if singular.

    Scaled down so that no position moves by more than ``max_step_px`` (pixels, per axis);
    ``offsets_rc`` (M, 2) float64 are the positions' offsets from the scan's centre (pixels).
    """
    solution, info = torch.linalg.solve_ex(normal, gradient)
    if int(info) != 0 or not bool(torch.isfinite(solution).all()):
        return None
    matrix = solution.reshape(2, 2)
    largest_px = float((offsets_rc @ matrix.T).abs().max())
    if largest_px > max_step_px:
        matrix = matrix * (max_step_px / largest_px)
    return matrix


def run_solver(state: SolverState, measured, valid: np.ndarray | None, options, *,
               on_iteration: Callable[[int, SolverState, dict], dict] | None = None,
               saturation_counts: float | None = None) -> tuple[SolverState, dict]:
    """Run ``options.iterations`` passes of minibatch updates on ``state`` (in place).

    Parameters
    ----------
    state : SolverState
    measured : ndarray or LazyPatterns, shape (M, N, N), float32 amplitudes, DC at (N/2, N/2)
        Read one minibatch at a time when it is not an in-memory ndarray.
    valid : ndarray, shape (N, N), bool, or None, DC at (N/2, N/2)
    options : ptycho.refine.RefineOptions
    on_iteration : callable(iteration, state, history) -> dict, optional
        Called after each iteration with the history so far (that iteration's row has
        ``iteration``, ``misfit`` and ``time_s``); untimed. Its values join the row.
    saturation_counts : float, optional
        Counts at or above it are left out of the misfit and the updates, in their pattern
        only (``ptycho.physics.valid_pixels``).

    Returns
    -------
    state, history
        ``history`` maps ``iteration``, ``misfit`` (mean per valid pixel over the iteration,
        before each minibatch's update), ``time_s`` (cumulative solver seconds) and the keys
        ``on_iteration`` returned to lists.
    """
    device = state.obj.device
    real_dtype = state.obj.real.dtype
    n = state.probe.shape[-1]
    n_positions = state.origin_rc.shape[0]
    height, width = state.obj.shape
    in_memory = isinstance(measured, np.ndarray)
    if in_memory:
        all_measured = torch.from_numpy(np.fft.ifftshift(np.asarray(measured, np.float32),
                                                         axes=(-2, -1))).to(device, real_dtype)
    valid_t = detector_mask(valid, device)
    valid_count = n * n if valid_t is None else int(valid_t.sum())
    saturation = saturation_amplitude(saturation_counts)
    start_rc = state.origin_rc.clone()
    limit = float(options.max_position_correction_px)
    generator = torch.Generator().manual_seed(int(options.seed))
    history: dict[str, list] = {"iteration": [], "misfit": [], "time_s": []}
    elapsed = 0.0
    velocity = None
    for iteration in range(options.iterations):
        started = time.perf_counter()
        order = torch.randperm(n_positions, generator=generator)
        update_probe = options.refine_probe and iteration >= options.probe_start_iteration
        update_positions = options.refine_positions and \
            iteration >= options.position_start_iteration
        step_scale = step_schedule(iteration, options)
        before = state.obj.clone() if options.momentum > 0 else None
        misfit_sum = 0.0
        misfit_count = 0
        update_affine = update_positions and options.position_affine
        if update_affine:
            affine_normal = torch.zeros((4, 4), dtype=torch.float64, device=device)
            affine_gradient = torch.zeros(4, dtype=torch.float64, device=device)
        for lo in range(0, n_positions, options.batch_size):
            batch_cpu = order[lo:lo + options.batch_size]
            batch = batch_cpu.to(device)
            if in_memory:
                amplitude = all_measured[batch]
            else:
                rows = np.sort(batch_cpu.numpy())
                batch = torch.from_numpy(rows).to(device)
                amplitude = torch.from_numpy(np.fft.ifftshift(
                    np.asarray(measured[rows], np.float32), axes=(-2, -1))).to(device, real_dtype)
            windows = PatchWindows(state.origin_rc[batch], (height, width), n, real_dtype)
            window = windows.window(state.obj)
            patches = windows.patches(window)
            spectrum = torch.fft.fft2(exit_waves(state.probe, patches), norm="ortho")
            mask = frame_mask(valid_t, amplitude, saturation)
            chi_hat, misfit = exit_wave_correction(spectrum, amplitude, mask, options.noise_model)
            misfit_sum += float(misfit)
            misfit_count += (len(batch) * valid_count if saturation is None
                             else int(mask.expand_as(amplitude).sum()))
            chi = torch.fft.ifft2(chi_hat, norm="ortho")
            if update_positions:
                d_row, d_col = torch.gradient(patches, dim=(-2, -1))
                steps = solve_position_steps(spectrum, amplitude, mask, state.probe, d_row, d_col)
                steps = torch.clamp(steps, -options.max_position_step_px,
                                    options.max_position_step_px)
                if update_affine:
                    normal, gradient = affine_normal_equations(spectrum, amplitude, mask,
                                                               state.probe, d_row, d_col)
                    affine_normal += normal
                    affine_gradient += gradient
            _update_object(state, windows, chi, options, step_scale)
            if update_probe:
                _update_probe(state, patches, chi, options, step_scale)
            if update_positions:
                moved = state.origin_rc[batch] + steps.to(state.origin_rc.dtype)
                state.origin_rc[batch] = within_correction(moved, start_rc[batch], limit)
        if update_probe and state.probe.ndim == 3:
            state.probe = torch.from_numpy(physics.orthogonalize_modes(
                state.probe.cpu().numpy())).to(state.probe.device, state.probe.dtype)
        if before is not None:
            change = state.obj - before
            velocity = change if velocity is None else options.momentum * velocity + change
            state.obj += options.momentum * velocity
        if update_positions:
            # A common shift of all positions is a shift of the object: keep the scan's centre.
            drift = (state.origin_rc - start_rc).mean(dim=0)
            state.origin_rc -= drift
        if update_affine:
            _move_affine(state, affine_normal, affine_gradient, start_rc, options)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed += time.perf_counter() - started
        history["iteration"].append(iteration + 1)
        history["misfit"].append(misfit_sum / max(misfit_count, 1))
        history["time_s"].append(elapsed)
        if on_iteration is not None:
            for key, value in on_iteration(iteration + 1, state, history).items():
                history.setdefault(key, []).append(value)
    return state, history


def within_correction(positions_rc: torch.Tensor, start_rc: torch.Tensor,
                      limit_px: float) -> torch.Tensor:
    """``positions_rc`` (M, 2) clamped to at most ``limit_px`` per axis from ``start_rc`` (M, 2)
    (``max_position_correction_px``)."""
    return torch.minimum(torch.maximum(positions_rc, start_rc - limit_px), start_rc + limit_px)


def _move_affine(state: SolverState, normal: torch.Tensor, gradient: torch.Tensor,
                 start_rc: torch.Tensor, options) -> None:
    """Take the joint affine step of the iteration's summed normal equations
    (:func:`affine_normal_equations`): warp the object, move the positions (kept within
    ``max_position_correction_px`` of ``start_rc``)."""
    centre_rc = state.origin_rc.mean(dim=0)
    offsets_rc = state.origin_rc - centre_rc
    matrix = affine_step(normal, gradient, offsets_rc, options.max_position_step_px)
    if matrix is None:
        return
    n = state.probe.shape[-1]
    state.obj = warp_object(state.obj, matrix, centre_rc + n / 2)
    state.origin_rc = within_correction(state.origin_rc + offsets_rc @ matrix.T, start_rc,
                                        float(options.max_position_correction_px))


def step_schedule(iteration: int, options) -> float:
    """Factor on the object and probe steps at ``iteration`` (0-based).

    1 for the first iterations, then, over the last ``floor(decay_fraction * iterations)``, a
    cosine that reaches ``final_step_fraction`` at the last iteration (the training's cosine,
    :class:`ptycho.backends.schedule.CosineSchedule`, without warm-up): late, small steps
    average the noise of the minibatches instead of chasing it.
    """
    decay = int(options.decay_fraction * options.iterations)
    cosine = CosineSchedule(warmup_steps=0, total_steps=decay,
                            min_factor=options.final_step_fraction)
    return cosine.factor(iteration - (options.iterations - decay) + 1)


def exit_waves(probe: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
    """``P * o_m``: (B, N, N) for an (N, N) probe, (B, M, N, N) for (M, N, N) modes."""
    return probe * (patches[:, None] if probe.ndim == 3 else patches)


def _update_object(state: SolverState, windows: PatchWindows, chi: torch.Tensor,
                   options, step_scale: float) -> None:
    probe = state.probe
    correction = probe.conj() * chi
    power = probe.real ** 2 + probe.imag ** 2
    if probe.ndim == 3:  # modes: sum_k conj(P_k) chi_k over sum_k |P_k|**2
        correction, power = correction.sum(dim=1), power.sum(dim=0)
    illumination = power.expand(correction.shape)
    values = torch.stack([correction.real, correction.imag, illumination], dim=-1)
    height, width = state.obj.shape
    canvas = values.new_zeros((height * width, 3))
    windows.adjoint(values, canvas)
    numerator = torch.complex(canvas[:, 0], canvas[:, 1]).reshape(height, width)
    denominator = canvas[:, 2].reshape(height, width)
    denominator = denominator + options.illumination_floor * denominator.max()
    state.obj += step_scale * options.object_step * numerator / torch.clamp(denominator, min=1e-30)


def _update_probe(state: SolverState, patches: torch.Tensor, chi: torch.Tensor,
                  options, step_scale: float) -> None:
    conj = patches.conj()
    numerator = ((conj[:, None] if chi.ndim == 4 else conj) * chi).sum(dim=0)
    denominator = (patches.real ** 2 + patches.imag ** 2).sum(dim=0)
    denominator = denominator + options.illumination_floor * denominator.max()
    state.probe += step_scale * options.probe_step * numerator / torch.clamp(denominator, min=1e-30)


def detector_mask(valid: np.ndarray | None, device) -> torch.Tensor | None:
    """The (N, N) valid-pixel mask in the solver's unshifted layout (DC at [0, 0]), or None."""
    if valid is None:
        return None
    return torch.from_numpy(np.fft.ifftshift(np.asarray(valid, bool))).to(device)


def saturation_amplitude(saturation_counts: float | None) -> float | None:
    """The measured-amplitude level of ``saturation_counts`` for the float32 patterns the solver
    reads (``ptycho.physics.saturation_amplitude``), or None."""
    if saturation_counts is None:
        return None
    return float(physics.saturation_amplitude(saturation_counts, np.float32))


def frame_mask(valid: torch.Tensor | None, amplitude: torch.Tensor,
               saturation: float | None) -> torch.Tensor | None:
    """The pixels of a minibatch the misfit uses: ``valid`` (N, N) (:func:`detector_mask`) and,
    with a ``saturation`` amplitude (:func:`saturation_amplitude`), only each pattern's pixels
    whose measured ``amplitude`` (B, N, N) is below it ((B, N, N) bool then); None: all."""
    if saturation is None:
        return valid
    unsaturated = amplitude < saturation
    return unsaturated if valid is None else unsaturated & valid


def _chunks(count: int, size: int = 256):
    for lo in range(0, count, size):
        yield slice(lo, min(lo + size, count))


def mean_predicted_counts(state: SolverState, valid: np.ndarray | None, measured=None,
                          saturation_counts: float | None = None) -> float:
    """Mean over positions of ``sum |fft2(P o_m)/N|**2`` on the valid pixels (float).

    With ``saturation_counts``, also without each pattern's pixels whose ``measured``
    amplitude ((M, N, N) float32 or lazy, DC at (N/2, N/2)) is saturated (:func:`frame_mask`).
    """
    n = state.probe.shape[-1]
    height, width = state.obj.shape
    mask = detector_mask(valid, state.obj.device)
    saturation = saturation_amplitude(saturation_counts)
    total = 0.0
    with torch.no_grad():
        for part in _chunks(state.origin_rc.shape[0]):
            windows = PatchWindows(state.origin_rc[part], (height, width), n,
                                   state.obj.real.dtype)
            spectrum = torch.fft.fft2(exit_waves(state.probe,
                                                 windows.patches(windows.window(state.obj))),
                                      norm="ortho")
            intensity = spectrum.real ** 2 + spectrum.imag ** 2
            if intensity.ndim == 4:
                intensity = intensity.sum(dim=1)
            keep = mask
            if saturation is not None:
                amplitude = np.fft.ifftshift(np.asarray(measured[part], np.float32), axes=(-2, -1))
                keep = frame_mask(mask, torch.from_numpy(amplitude).to(intensity.device),
                                  saturation)
            if keep is not None:
                intensity = intensity * keep
            total += float(intensity.sum())
    return total / state.origin_rc.shape[0]


def illumination(state: SolverState) -> torch.Tensor:
    """Summed probe intensity ``sum_m A_m^T |P|**2`` on the canvas, shape (H, W), real
    (``|P|**2`` summed over the modes of a mixed-state probe)."""
    n = state.probe.shape[-1]
    height, width = state.obj.shape
    power = state.probe.real ** 2 + state.probe.imag ** 2
    if power.ndim == 3:
        power = power.sum(dim=0)
    power = power[None, :, :, None]
    canvas = state.obj.real.new_zeros((height * width, 1))
    with torch.no_grad():
        for part in _chunks(state.origin_rc.shape[0]):
            windows = PatchWindows(state.origin_rc[part], (height, width), n,
                                   state.obj.real.dtype)
            windows.adjoint(power.expand(windows.batch, n, n, 1), canvas)
    return canvas.reshape(height, width)

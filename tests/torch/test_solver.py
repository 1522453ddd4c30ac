"""The solver's forward model, adjoint and update directions against ptycho.physics and autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ptycho import physics
from ptycho.backends.pytorch import solver

N = 16
CANVAS = (40, 44)


@pytest.fixture
def problem(rng):
    obj = rng.random(CANVAS) * np.exp(1j * rng.uniform(-1, 1, CANVAS))
    probe = physics.normalize_probe(physics.default_probe(N)) * 3.0
    origin_rc = rng.uniform(1.0, 20.0, size=(7, 2))
    return obj, probe, origin_rc


def _windows(origin_rc):
    return solver.PatchWindows(torch.from_numpy(origin_rc), CANVAS, N, torch.float64)


def test_patches_and_far_field_equal_the_numpy_reference(problem):
    obj, probe, origin_rc = problem
    windows = _windows(origin_rc)
    patches = windows.patches(windows.window(torch.from_numpy(obj)))
    # ptycho.physics: the patch of position (x, y) starts at row y - N/2, column x - N/2.
    x = origin_rc[:, 1] + N / 2
    y = origin_rc[:, 0] + N / 2
    expected = physics.extract_patches(obj, x, y, N)
    np.testing.assert_allclose(patches.numpy(), expected, rtol=0, atol=1e-12)
    spectrum = torch.fft.fft2(torch.from_numpy(probe) * patches, norm="ortho")
    amplitude = np.fft.fftshift(spectrum.abs().numpy(), axes=(-2, -1))
    np.testing.assert_allclose(amplitude, physics.far_field_amplitude(physics.illuminate(
        expected, probe)), rtol=1e-10, atol=1e-12)


def test_adjoint_is_the_transpose_of_the_patch_extraction(problem, rng):
    _, _, origin_rc = problem
    windows = _windows(origin_rc)
    x = torch.from_numpy(rng.standard_normal(CANVAS))
    y = torch.from_numpy(rng.standard_normal((len(origin_rc), N, N)))
    forward = float((windows.patches(windows.window(x)) * y).sum())
    canvas = torch.zeros(CANVAS[0] * CANVAS[1], 1, dtype=torch.float64)
    windows.adjoint(y[..., None], canvas)
    assert forward == pytest.approx(float((canvas[:, 0].reshape(CANVAS) * x).sum()), rel=1e-12)


def test_a_patch_leaving_the_canvas_is_refused():
    with pytest.raises(ValueError, match="leaves the solver's canvas"):
        _windows(np.array([[CANVAS[0] - N + 0.5, 1.0]]))


@pytest.mark.parametrize("noise_model, factor", [("gaussian", 2.0), ("poisson", 4.0)])
def test_object_update_direction_is_the_negative_gradient(problem, rng, noise_model, factor):
    """A^T(conj(P) chi) = -(torch gradient) / factor for the summed misfit (float64)."""
    obj, probe, origin_rc = problem
    windows = _windows(origin_rc)
    measured = torch.from_numpy(rng.uniform(0.5, 3.0, (len(origin_rc), N, N)))
    valid = torch.from_numpy(rng.random((N, N)) > 0.2)
    obj_t = torch.from_numpy(obj).requires_grad_(True)
    probe_t = torch.from_numpy(probe)
    spectrum = torch.fft.fft2(probe_t * windows.patches(windows.window(obj_t)), norm="ortho")
    chi_hat, misfit = solver.exit_wave_correction(spectrum, measured, valid, noise_model)
    misfit.backward()
    chi = torch.fft.ifft2(chi_hat.detach(), norm="ortho")
    correction = probe_t.conj() * chi
    canvas = torch.zeros(CANVAS[0] * CANVAS[1], 2, dtype=torch.float64)
    windows.adjoint(torch.stack([correction.real, correction.imag], dim=-1), canvas)
    direction = torch.complex(canvas[:, 0], canvas[:, 1]).reshape(CANVAS)
    np.testing.assert_allclose(direction.numpy(), -obj_t.grad.numpy() / factor, rtol=1e-9,
                               atol=1e-9 * float(obj_t.grad.abs().max()))


def test_misfit_values_match_their_definitions(rng):
    spectrum = torch.from_numpy(rng.standard_normal((2, N, N)) + 1j * rng.standard_normal((2, N, N)))
    measured = torch.from_numpy(rng.uniform(0, 2, (2, N, N)))
    _, gaussian = solver.exit_wave_correction(spectrum, measured, None, "gaussian")
    assert float(gaussian) == pytest.approx(float(((spectrum.abs() - measured) ** 2).sum()))
    _, poisson = solver.exit_wave_correction(spectrum, measured, None, "poisson")
    predicted = spectrum.abs().numpy() ** 2 + solver.POISSON_FLOOR_COUNTS
    expected = np.sum(predicted - measured.numpy() ** 2 * np.log(predicted))
    assert float(poisson) == pytest.approx(expected, rel=1e-12)
    # Gaussian: Psi + chi_hat has exactly the measured modulus.
    chi_hat, _ = solver.exit_wave_correction(spectrum, measured, None, "gaussian")
    np.testing.assert_allclose((spectrum + chi_hat).abs().numpy(), measured.numpy(), atol=1e-12)


def test_position_step_recovers_a_small_known_shift(problem):
    """Gauss-Newton on noise-free data of a smooth object: one step removes most of the shift."""
    _, probe, origin_rc = problem
    rows, cols = np.mgrid[0:CANVAS[0], 0:CANVAS[1]]
    obj = np.exp(1j * (np.sin(rows / 3.0) + np.cos(cols / 4.0)))  # smooth phase object
    obj_t = torch.from_numpy(obj)
    probe_t = torch.from_numpy(probe)
    truth = _windows(origin_rc)
    measured = torch.fft.fft2(probe_t * truth.patches(truth.window(obj_t)), norm="ortho").abs()
    shift = np.array([0.3, -0.2])
    start = _windows(origin_rc + shift)
    patches = start.patches(start.window(obj_t))
    spectrum = torch.fft.fft2(probe_t * patches, norm="ortho")
    d_row, d_col = torch.gradient(patches, dim=(-2, -1))
    steps = solver.solve_position_steps(spectrum, measured, None, probe_t, d_row, d_col).numpy()
    remaining = shift + steps
    assert np.abs(remaining).max() < 0.25 * np.abs(shift).max()


def test_affine_step_recovers_a_small_known_map(problem):
    """Data of the positions moved by ``B (p - c)`` with the object warped along: the joint
    affine Gauss-Newton step from the unmoved state finds ``B`` (noise-free, smooth object)."""
    _, probe, origin_rc = problem
    rows, cols = np.mgrid[0:CANVAS[0], 0:CANVAS[1]]
    obj_t = torch.from_numpy(np.exp(1j * (np.sin(rows / 3.0) + np.cos(cols / 4.0))))
    probe_t = torch.from_numpy(probe)
    origin_t = torch.from_numpy(origin_rc)
    centre_rc = origin_t.mean(dim=0)
    matrix = torch.tensor([[0.012, -0.006], [0.004, -0.009]], dtype=torch.float64)
    moved = _windows((origin_t + (origin_t - centre_rc) @ matrix.T).numpy())
    warped = solver.warp_object(obj_t, matrix, centre_rc + N / 2)
    measured = torch.fft.fft2(probe_t * moved.patches(moved.window(warped)), norm="ortho").abs()
    start = _windows(origin_rc)
    patches = start.patches(start.window(obj_t))
    spectrum = torch.fft.fft2(probe_t * patches, norm="ortho")
    d_row, d_col = torch.gradient(patches, dim=(-2, -1))
    normal, gradient = solver.affine_normal_equations(spectrum, measured, None, probe_t,
                                                      d_row, d_col)
    step = solver.affine_step(normal, gradient, origin_t - centre_rc, max_step_px=1.0)
    assert normal.shape == (4, 4) and gradient.shape == (4,)
    assert float((step - matrix).abs().max()) < 0.2 * float(matrix.abs().max())
    capped = solver.affine_step(normal, gradient, origin_t - centre_rc, max_step_px=0.01)
    assert float(((origin_t - centre_rc) @ capped.T).abs().max()) == pytest.approx(0.01)


# ---------------------------------------------------------------------------------------------
# Mixed-state probe: M incoherent modes, I = sum_k |Psi_k|**2
# ---------------------------------------------------------------------------------------------

def _modes(probe: np.ndarray) -> np.ndarray:
    """Three orthogonal modes (power 91 %, 4.5 %, 4.5 %) made from ``probe``."""
    return physics.normalize_probe(physics.initial_probe_modes(probe, 3)) * 3.0


def test_mixed_state_forward_model_equals_the_numpy_reference(problem):
    obj, probe, origin_rc = problem
    modes = _modes(probe)
    windows = _windows(origin_rc)
    patches = windows.patches(windows.window(torch.from_numpy(obj)))
    spectrum = torch.fft.fft2(solver.exit_waves(torch.from_numpy(modes), patches), norm="ortho")
    assert spectrum.shape == (len(origin_rc), 3, N, N)
    intensity = np.fft.fftshift((spectrum.abs() ** 2).sum(dim=1).numpy(), axes=(-2, -1))
    expected = physics.mixed_state_intensity(physics.extract_patches(
        obj, origin_rc[:, 1] + N / 2, origin_rc[:, 0] + N / 2, N), modes)
    np.testing.assert_allclose(intensity, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("noise_model, factor", [("gaussian", 2.0), ("poisson", 4.0)])
def test_mixed_state_object_and_probe_directions_are_the_negative_gradients(
        problem, rng, noise_model, factor):
    """With 3 modes: A^T(sum_k conj(P_k) chi_k) and each mode's sum_m conj(o_m) chi_mk are
    -(torch gradient) / factor of the misfit of the summed intensity (float64)."""
    obj, probe, origin_rc = problem
    windows = _windows(origin_rc)
    measured = torch.from_numpy(rng.uniform(0.5, 3.0, (len(origin_rc), N, N)))
    valid = torch.from_numpy(rng.random((N, N)) > 0.2)
    obj_t = torch.from_numpy(obj).requires_grad_(True)
    probe_t = torch.from_numpy(_modes(probe)).requires_grad_(True)
    patches = windows.patches(windows.window(obj_t))
    spectrum = torch.fft.fft2(solver.exit_waves(probe_t, patches), norm="ortho")
    chi_hat, misfit = solver.exit_wave_correction(spectrum, measured, valid, noise_model)
    misfit.backward()
    chi = torch.fft.ifft2(chi_hat.detach(), norm="ortho")
    correction = (probe_t.detach().conj() * chi).sum(dim=1)
    canvas = torch.zeros(CANVAS[0] * CANVAS[1], 2, dtype=torch.float64)
    windows.adjoint(torch.stack([correction.real, correction.imag], dim=-1), canvas)
    direction = torch.complex(canvas[:, 0], canvas[:, 1]).reshape(CANVAS)
    np.testing.assert_allclose(direction.numpy(), -obj_t.grad.numpy() / factor, rtol=1e-9,
                               atol=1e-9 * float(obj_t.grad.abs().max()))
    probe_direction = (patches.detach().conj()[:, None] * chi).sum(dim=0)
    np.testing.assert_allclose(probe_direction.numpy(), -probe_t.grad.numpy() / factor,
                               rtol=1e-9, atol=1e-9 * float(probe_t.grad.abs().max()))


def test_mixed_state_gaussian_correction_is_the_modulus_projection(rng):
    """sqrt(sum_k |Psi_k + chi_k|**2) is the measured amplitude; the misfit uses the sum."""
    spectrum = torch.from_numpy(rng.standard_normal((2, 3, N, N))
                                + 1j * rng.standard_normal((2, 3, N, N)))
    measured = torch.from_numpy(rng.uniform(0, 2, (2, N, N)))
    chi_hat, misfit = solver.exit_wave_correction(spectrum, measured, None, "gaussian")
    total = torch.sqrt((spectrum.abs() ** 2).sum(dim=1))
    assert float(misfit) == pytest.approx(float(((total - measured) ** 2).sum()), rel=1e-12)
    corrected = torch.sqrt(((spectrum + chi_hat).abs() ** 2).sum(dim=1))
    np.testing.assert_allclose(corrected.numpy(), measured.numpy(), atol=1e-12)


def test_mixed_state_position_step_recovers_a_small_known_shift(problem):
    _, probe, origin_rc = problem
    modes = torch.from_numpy(_modes(probe))
    rows, cols = np.mgrid[0:CANVAS[0], 0:CANVAS[1]]
    obj_t = torch.from_numpy(np.exp(1j * (np.sin(rows / 3.0) + np.cos(cols / 4.0))))
    truth = _windows(origin_rc)
    measured = torch.sqrt((torch.fft.fft2(solver.exit_waves(
        modes, truth.patches(truth.window(obj_t))), norm="ortho").abs() ** 2).sum(dim=1))
    shift = np.array([0.3, -0.2])
    start = _windows(origin_rc + shift)
    patches = start.patches(start.window(obj_t))
    spectrum = torch.fft.fft2(solver.exit_waves(modes, patches), norm="ortho")
    d_row, d_col = torch.gradient(patches, dim=(-2, -1))
    steps = solver.solve_position_steps(spectrum, measured, None, modes, d_row, d_col).numpy()
    assert np.abs(shift + steps).max() < 0.25 * np.abs(shift).max()

"""Registration, placement and ambiguity removal of ptycho.evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from ptycho.errors import InputError
from ptycho.evaluation import compare_reconstruction, evaluate_reconstruction
from ptycho.evaluation import registration as reg
from ptycho_testing import smooth_object


def fourier_shift(image: np.ndarray, shift_rc) -> np.ndarray:
    """Move the content of a periodic image by ``[dy, dx]`` pixels (exact sub-pixel shift)."""
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(image), shift_rc))


@pytest.fixture
def truth(rng):
    return smooth_object(rng)


@pytest.mark.parametrize("shift", [(2.3, -1.6), (-0.7, 3.4)])
def test_recovers_known_subpixel_shift(truth, shift):
    moved = fourier_shift(truth, shift)
    # the reconstruction covers only an interior part of the truth, at a known origin
    recon = moved[10:-6, 4:-12]
    metrics = evaluate_reconstruction(recon, 4.0, 10.0, truth)
    assert metrics["registration_shift_px"] == pytest.approx(list(shift), abs=0.1)
    # after registration the images agree far better than before
    unregistered = evaluate_reconstruction(recon, 4.0, 10.0, truth, registration="none")
    assert metrics["amplitude"]["psnr_db"] > unregistered["amplitude"]["psnr_db"] + 10
    assert metrics["phase"]["ssim"] > 0.99


def test_phase_only_object_registers_on_complex_field(rng):
    phase = np.angle(smooth_object(rng, phase_span=1.0))
    truth = np.exp(1j * phase)  # constant amplitude: no contrast to register on
    recon = fourier_shift(truth, (1.4, -2.2))[8:-8, 8:-8]
    result = compare_reconstruction(recon, 8, 8, truth)
    assert result.metrics["registration_shift_px"] == pytest.approx([1.4, -2.2], abs=0.1)
    assert result.metrics["phase"]["ssim"] > 0.99


def test_global_phase_offset_and_amplitude_scale_are_removed(truth):
    reference = evaluate_reconstruction(truth, 0, 0, truth)
    metrics = evaluate_reconstruction(1.7 * truth * np.exp(0.8j), 0, 0, truth)
    assert metrics["registration_shift_px"] == [0.0, 0.0]
    for component in ("amplitude", "phase"):
        assert metrics[component]["ssim"] == pytest.approx(1.0, abs=1e-9)
        assert metrics[component]["mae"] == pytest.approx(0.0, abs=1e-9)
        assert metrics[component]["psnr_db"] > 150
        for key in ("ssim", "frc50_px", "frc_half_bit_px"):
            assert metrics[component][key] == pytest.approx(reference[component][key], abs=1e-6)
    result = compare_reconstruction(1.7 * truth * np.exp(0.8j), 0, 0, truth)
    assert result.amplitude_scale == pytest.approx(1 / 1.7)
    assert result.phase_offset_rad == pytest.approx(-0.8)


def test_phase_wrapping_is_not_an_error(rng):
    amplitude = np.abs(smooth_object(rng))
    phase = np.pi - 0.3 + 0.5 * np.angle(smooth_object(rng))  # straddles +-pi
    truth = amplitude * np.exp(1j * phase)
    metrics = evaluate_reconstruction(truth * np.exp(2.5j), 0, 0, truth)
    assert metrics["phase"]["mae"] < 1e-9
    assert metrics["phase"]["ssim"] == pytest.approx(1.0, abs=1e-9)


def test_uncovered_pixels_and_outside_scan_are_ignored(truth):
    recon = truth.copy()
    valid = np.ones(truth.shape, bool)
    valid[:, :20] = False
    recon[:, :20] = 5.0  # garbage where nothing was reconstructed
    recon[:5, :] = -3.0  # garbage outside the scanned region
    scan_xy = np.array([[0.0, 10.0], [95.0, 95.0]])  # [x, y]
    result = compare_reconstruction(recon, 0, 0, truth, valid=valid, scan_xy=scan_xy,
                                    registration="none")
    assert result.origin_rc == (10, 20)
    assert result.mask.shape == (86, 76) and result.mask.all()
    assert result.metrics["amplitude"]["mae"] < 1e-12
    assert result.metrics["phase"]["ssim"] == pytest.approx(1.0)


def test_place_on_grid_integer_and_fractional_origin(truth):
    placement = reg.place_on_grid(truth[5:45, 7:37], 7.0, 5.0, truth.shape)
    assert placement.valid.sum() == 40 * 30
    np.testing.assert_allclose(placement.image[5:45, 7:37], truth[5:45, 7:37])
    # a reconstruction whose pixel grid is offset by half a pixel from the truth grid
    recon = fourier_shift(truth, (-0.5, 0.0))[20:70, 20:70]  # recon(r, c) = truth(r + 20.5, c + 20)
    metrics = evaluate_reconstruction(recon, 20.0, 20.5, truth, registration="none")
    assert metrics["amplitude"]["ssim"] > 0.999
    assert metrics["phase"]["ssim"] > 0.999


def test_reconstruction_extending_beyond_the_truth(truth):
    big = np.zeros((120, 120), complex)
    big[12:108, 12:108] = truth
    result = compare_reconstruction(big, -12, -12, truth, valid=np.abs(big) > 0,
                                    registration="none")
    assert result.mask.shape == truth.shape
    assert result.metrics["amplitude"]["mae"] < 1e-12


def test_no_overlap_is_an_input_error(truth):
    with pytest.raises(InputError, match="no overlap"):
        evaluate_reconstruction(truth[:10, :10], 500, 0, truth)


def test_scanned_region_is_the_bounding_box_of_positions():
    mask = reg.scanned_region(np.array([[2.5, 3.0], [7.0, 9.2]]), (12, 12))
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 9, 3, 7)
    assert mask.sum() == 7 * 5


def test_least_squares_ambiguity_estimates():
    truth = np.array([1.0 + 1j, 2.0, -1j])
    recon = 3.0 * truth * np.exp(-0.4j)
    assert reg.global_phase_offset(truth, recon) == pytest.approx(0.4)
    assert reg.amplitude_scale(np.abs(truth), np.abs(recon)) == pytest.approx(1 / 3)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 17, 64, 101])
@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.25, 0.5, 1.0])
def test_tukey_window_matches_scipy(n, fraction):
    from scipy.signal.windows import tukey

    from ptycho.evaluation._window import tukey_window

    np.testing.assert_allclose(tukey_window(n, fraction), tukey(n, fraction), rtol=0, atol=1e-12)


def test_flat_baseline_scores_a_constant_object(rng):
    from ptycho.evaluation import flat_baseline_metrics

    truth = smooth_object(rng, 96)
    recon = truth[8:88, 8:88]
    flat = flat_baseline_metrics(recon, 8, 8, truth)
    perfect = evaluate_reconstruction(recon, 8, 8, truth)
    assert flat["amplitude"]["ssim"] < 0.5 < perfect["amplitude"]["ssim"]
    assert flat["phase"]["psnr_db"] < perfect["phase"]["psnr_db"]
    assert flat["registration_shift_px"] == [0.0, 0.0]
    np.testing.assert_equal(flat, evaluate_reconstruction(
        np.ones_like(recon), 8, 8, truth, registration="none"))

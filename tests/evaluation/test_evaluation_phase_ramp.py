"""Optional removal of a linear phase ramp in ptycho.evaluation (``remove_phase_ramp``)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.evaluation import (
    calibration_metrics,
    compare_reconstruction,
    evaluate_reconstruction,
    flat_baseline_metrics,
)
from ptycho.evaluation import registration as reg
from ptycho_testing import smooth_object

#: rad/px along rows and columns: the phase wraps several times across the 96 px object
RAMP = (0.05, -0.08)


@pytest.fixture
def truth(rng):
    return smooth_object(rng)


def ramped(image: np.ndarray, slopes, offset: float = 0.6) -> np.ndarray:
    """``image * exp(i (a r + b c + offset))`` with ``(r, c)`` the pixel indices of ``image``."""
    return image * np.exp(1j * (reg.phase_ramp(image.shape, slopes) + offset))


def test_ramped_truth_scores_like_the_truth_with_the_option(truth):
    # an interior part of the ramped truth at its origin: the ramp is in truth coordinates
    recon = ramped(truth, RAMP)[8:88, 4:90]
    reference = evaluate_reconstruction(truth[8:88, 4:90], 4, 8, truth, remove_phase_ramp=True)
    metrics = evaluate_reconstruction(recon, 4, 8, truth, remove_phase_ramp=True)
    assert metrics["phase_ramp_rad_per_px"] == pytest.approx(list(RAMP), abs=1e-3)
    assert reference["phase_ramp_rad_per_px"] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert metrics["registration_shift_px"] == [0.0, 0.0]
    for component in ("amplitude", "phase"):
        assert metrics[component]["ssim"] == pytest.approx(1.0, abs=1e-9)
        assert metrics[component]["psnr_db"] > 150
        assert metrics[component]["mae"] < 1e-6
    # without the option the ramp is scored as phase error
    plain = evaluate_reconstruction(recon, 4, 8, truth)
    assert "phase_ramp_rad_per_px" not in plain
    assert plain["phase"]["ssim"] < 0.5
    assert plain["phase"]["psnr_db"] < metrics["phase"]["psnr_db"] - 100


def test_fit_recovers_a_steep_ramp_on_masked_noisy_pixels(truth, rng):
    slopes = (0.9, -1.7)  # close to Nyquist: wraps every 4-7 px
    recon = ramped(truth, slopes, offset=-2.0)
    recon = recon + 0.05 * (rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape))
    mask = np.zeros(truth.shape, bool)
    mask[10:70, 20:90] = True
    recon[~mask] = 0.0  # what lies outside the mask does not matter
    np.testing.assert_allclose(reg.fit_phase_ramp(truth, recon, mask), slopes, atol=1e-3)
    result = compare_reconstruction(recon[10:70, 20:90], 20, 10, truth, registration="none",
                                    remove_phase_ramp=True)
    np.testing.assert_allclose(result.phase_ramp_rad_per_px, slopes, atol=1e-3)
    assert result.metrics["phase"]["ssim"] > 0.9


def test_fit_of_a_vanishing_reconstruction_is_zero(truth):
    np.testing.assert_array_equal(reg.fit_phase_ramp(truth, np.zeros_like(truth)), [0.0, 0.0])


def test_default_is_off_and_unchanged(truth):
    recon = ramped(truth, RAMP)[8:88, 4:90]
    default = evaluate_reconstruction(recon, 4, 8, truth)
    np.testing.assert_equal(default, evaluate_reconstruction(recon, 4, 8, truth,
                                                             remove_phase_ramp=False))
    assert set(default) == {"amplitude", "phase", "registration_shift_px"}
    result = compare_reconstruction(recon, 4, 8, truth)
    np.testing.assert_array_equal(result.phase_ramp_rad_per_px, [0.0, 0.0])


def test_calibration_rows_are_scored_with_the_ramp_removed(truth):
    valid = np.zeros(truth.shape, bool)
    valid[8:88, 8:88] = True
    rows = calibration_metrics(truth, valid, remove_phase_ramp=True)
    plain = calibration_metrics(truth, valid)
    assert set(rows) == set(plain)
    for name, metrics in rows.items():
        assert len(metrics["phase_ramp_rad_per_px"]) == 2
        assert "phase_ramp_rad_per_px" not in plain[name]
    # a blurred truth has (almost) no ramp relative to the truth
    assert rows["truth blurred by 1.5 px"]["phase_ramp_rad_per_px"] == pytest.approx(
        [0.0, 0.0], abs=1e-3)
    flat = flat_baseline_metrics(truth[8:88, 8:88], 8, 8, truth, remove_phase_ramp=True)
    np.testing.assert_equal(flat, rows["flat object"])

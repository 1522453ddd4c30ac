"""Fourier ring correlation and its thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho.evaluation import frc as frc_module
from ptycho.evaluation.frc import frc_curve, half_bit_threshold
from ptycho_testing import smooth_object


def test_frc_of_an_image_with_itself_is_one_everywhere(rng):
    image = np.abs(smooth_object(rng, 64)) + 0.05 * rng.random((64, 64))
    curve = frc_curve(image, image)
    assert curve.frequency.shape == (33,)
    assert curve.frequency[-1] == pytest.approx(0.5)
    np.testing.assert_allclose(curve.frc, 1.0, atol=1e-12)
    assert curve.frc50_px == 2.0
    assert curve.frc_half_bit_px == 2.0


def test_frc_of_independent_noise_crosses_early(rng):
    curve = frc_curve(rng.normal(size=(64, 64)), rng.normal(size=(64, 64)))
    assert np.mean(np.abs(curve.frc[1:]) < 0.5) > 0.9
    assert curve.frc50_px > 16
    assert curve.frc_half_bit_px > 16


def test_resolution_worsens_with_noise(rng):
    signal = np.abs(smooth_object(rng, 96, sigma=1.5))
    periods = []
    for level in (0.002, 0.02, 0.2):
        noisy1 = signal + level * rng.normal(size=signal.shape)
        noisy2 = signal + level * rng.normal(size=signal.shape)
        periods.append(frc_curve(noisy1, noisy2).frc_half_bit_px)
    assert periods[0] < periods[1] < periods[2]


def test_half_bit_threshold_values():
    assert half_bit_threshold(1) == pytest.approx(1.0, abs=1e-4)
    assert half_bit_threshold(1e12) == pytest.approx(0.2071 / 1.2071, abs=1e-5)
    n = np.array([4.0, 100.0])
    expected = (0.2071 + 1.9102 / np.sqrt(n)) / (1.2071 + 0.9102 / np.sqrt(n))
    np.testing.assert_allclose(half_bit_threshold(n), expected)


def test_crossing_is_linearly_interpolated():
    frequency = np.arange(33) / 64
    curve = 1.0 - 2.0 * frequency  # crosses 0.5 at f = 0.25 -> period 4 px
    assert frc_module.threshold_crossing_px(frequency, curve, 0.5) == pytest.approx(4.0)
    never = np.ones(33)
    assert frc_module.threshold_crossing_px(frequency, never, 0.5) == 2.0
    at_first_ring = np.r_[1.0, np.zeros(32)]
    assert frc_module.threshold_crossing_px(frequency, at_first_ring, 0.5) == pytest.approx(64)


def test_rings_partition_the_disk_and_count_pixels():
    index, side = frc_module.ring_index((48, 64))
    assert side == 48
    curve = frc_curve(np.ones((48, 64)) + np.eye(48, 64), np.ones((48, 64)) + np.eye(48, 64))
    assert curve.n_pixels.sum() == np.count_nonzero(index >= 0)
    assert curve.n_pixels[0] == 1


def test_frc_with_mask_uses_only_masked_box(rng):
    image = rng.normal(size=(64, 64))
    other = image.copy()
    other[:, 40:] = rng.normal(size=(64, 24))  # unrelated outside the mask
    mask = np.zeros((64, 64), bool)
    mask[:, :40] = True
    curve = frc_curve(image, other, mask)
    assert curve.frequency.shape == (21,)  # box (64, 40): L = 40 -> rings 0..20
    np.testing.assert_allclose(curve.frc[np.isfinite(curve.frc)], 1.0, atol=1e-12)

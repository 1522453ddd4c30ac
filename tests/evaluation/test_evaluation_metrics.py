"""PSNR / SSIM / MAE of ptycho.evaluation against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from ptycho.evaluation import compare_reconstruction, evaluate_reconstruction, metrics
from ptycho_testing import smooth_object


def _hand_psnr(truth, recon):
    peak = truth.max() - truth.min()
    return 10 * math.log10(peak ** 2 / np.mean((recon - truth) ** 2))


def test_metrics_equal_hand_computation_without_shift(rng):
    truth = smooth_object(rng, 64)
    recon = truth + 0.03 * (rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape))
    scan_xy = np.array([[5.0, 8.0], [50.0, 60.0]])  # compared region: rows 8..60, cols 5..50
    got = evaluate_reconstruction(recon, 0, 0, truth, scan_xy=scan_xy, registration="none",
                                  normalize=False)
    t, r = truth[8:61, 5:51], recon[8:61, 5:51]
    for key, (ti, ri) in {"amplitude": (np.abs(t), np.abs(r)),
                          "phase": (np.angle(t), np.angle(t) + np.angle(r * np.conj(t)))}.items():
        peak = ti.max() - ti.min()
        assert got[key]["psnr_db"] == pytest.approx(_hand_psnr(ti, ri), rel=1e-10)
        assert got[key]["ssim"] == pytest.approx(
            structural_similarity(ti, ri, data_range=peak), rel=1e-10)
        assert got[key]["mae"] == pytest.approx(np.mean(np.abs(ri - ti)), rel=1e-10)
    assert got["registration_shift_px"] == [0.0, 0.0]


def test_normalisation_follows_the_least_squares_formulas(rng):
    truth = smooth_object(rng, 48)
    recon = 0.5 * np.exp(-1.1j) * truth + 0.02 * rng.normal(size=truth.shape)
    got = evaluate_reconstruction(recon, 0, 0, truth, registration="none")
    aligned = recon * np.exp(1j * np.angle(np.sum(truth * np.conj(recon))))
    scale = np.sum(np.abs(truth) * np.abs(aligned)) / np.sum(np.abs(aligned) ** 2)
    ta, ra = np.abs(truth), scale * np.abs(aligned)
    assert got["amplitude"]["psnr_db"] == pytest.approx(_hand_psnr(ta, ra), rel=1e-10)
    assert got["amplitude"]["ssim"] == pytest.approx(
        structural_similarity(ta, ra, data_range=ta.max() - ta.min()), rel=1e-10)
    assert got["amplitude"]["mae"] == pytest.approx(np.mean(np.abs(ra - ta)), rel=1e-10)


def test_identical_images_score_perfectly(rng):
    truth = smooth_object(rng, 48)
    got = evaluate_reconstruction(truth, 0, 0, truth)
    for key in ("amplitude", "phase"):
        assert got[key]["ssim"] == pytest.approx(1.0, abs=1e-12)
        assert got[key]["mae"] == pytest.approx(0.0, abs=1e-12)
        assert got[key]["psnr_db"] > 200
        assert got[key]["frc50_px"] == 2.0
        assert got[key]["frc_half_bit_px"] == 2.0
    image = np.abs(truth)
    assert metrics.psnr(image, image) == math.inf
    assert metrics.ssim(image, image) == 1.0
    assert metrics.mae(image, image) == 0.0


def test_psnr_uses_the_truth_data_range_not_255():
    truth = np.linspace(-1.0, 1.0, 100).reshape(10, 10)  # radians, range 2
    recon = truth + 0.1
    assert metrics.psnr(truth, recon) == pytest.approx(10 * math.log10(4 / 0.01))
    assert metrics.data_range(truth) == pytest.approx(2.0)


def test_masked_ssim_matches_scikit_image_on_full_mask_and_ignores_outside(rng):
    truth = rng.random((30, 40))
    recon = truth + 0.1 * rng.random((30, 40))
    reference = structural_similarity(truth, recon, data_range=truth.max() - truth.min())
    assert metrics.ssim(truth, recon, np.ones(truth.shape, bool)) == pytest.approx(reference)
    mask = np.zeros(truth.shape, bool)
    mask[5:25, 5:35] = True
    spoiled = np.where(mask, recon, 100.0)
    inner = structural_similarity(truth[5:25, 5:35], recon[5:25, 5:35],
                                  data_range=np.ptp(truth[mask]))
    assert metrics.ssim(truth, spoiled, mask) == pytest.approx(inner)
    assert metrics.mae(truth, spoiled, mask) == pytest.approx(np.mean(np.abs(recon - truth)[mask]))


def _tiles_mask(shape, tile_px: int, step_px: int) -> np.ndarray:
    """Separate tile_px squares every step_px pixels (stitching crops smaller than the step)."""
    mask = np.zeros(shape, bool)
    for r in range(4, shape[0] - tile_px, step_px):
        for c in range(4, shape[1] - tile_px, step_px):
            mask[r:r + tile_px, c:c + tile_px] = True
    return mask


def test_masked_ssim_on_separate_tiles_uses_only_the_tiles(rng):
    """No 7x7 window fits in a 5x5 tile: the statistics come from the masked pixels alone, so
    a flat guess scores ~0 (as on a dense mask) and pixels outside the tiles change nothing."""
    from scipy import ndimage

    truth = ndimage.gaussian_filter(rng.normal(size=(120, 120)), 3)
    mask = _tiles_mask(truth.shape, 5, 8)
    flat = np.full(truth.shape, truth[mask].mean())
    noisy = truth + 0.5 * truth.std() * rng.normal(size=truth.shape)
    dense = np.zeros(truth.shape, bool)
    dense[10:110, 10:110] = True
    assert abs(metrics.ssim(truth, flat, mask)) < 0.05  # a filled gap scored 0.06 here
    assert abs(metrics.ssim(truth, flat, dense)) < 0.05
    assert metrics.ssim(truth, truth, mask) == pytest.approx(1.0)
    noisy_score = metrics.ssim(truth, noisy, mask)
    assert 0.2 < noisy_score < metrics.ssim(truth, noisy, dense)  # smaller windows, not 0.71
    assert metrics.ssim(truth, np.where(mask, noisy, 1e3), mask) == pytest.approx(noisy_score)


def test_masked_ssim_map_equals_scikit_image_where_the_window_is_inside(rng):
    truth, recon = rng.random((40, 40)), rng.random((40, 40))
    mask = np.zeros(truth.shape, bool)
    mask[5:35, 8:30] = True
    peak = np.ptp(truth[mask])
    ssim_map, count = metrics.masked_ssim_map(truth, recon, mask, peak, 7)
    _, reference = structural_similarity(truth, recon, data_range=peak, win_size=7, full=True)
    inside = count == 49
    assert inside.sum() == (30 - 6) * (22 - 6)
    np.testing.assert_allclose(ssim_map[inside], reference[inside], rtol=1e-9, atol=1e-12)


def test_constant_truth_gives_undefined_psnr_and_ssim():
    truth = np.ones((16, 16))
    recon = truth + 0.1
    assert math.isnan(metrics.psnr(truth, recon))
    assert math.isnan(metrics.ssim(truth, recon))
    assert metrics.mae(truth, recon) == pytest.approx(0.1)


def test_result_is_plain_json_serialisable(rng):
    import json

    truth = smooth_object(rng, 40)
    result = compare_reconstruction(truth * 0.9, 0, 0, truth)
    assert set(result.metrics) == {"amplitude", "phase", "registration_shift_px"}
    for key in ("amplitude", "phase"):
        assert set(result.metrics[key]) == {"psnr_db", "ssim", "mae", "frc50_px",
                                            "frc_half_bit_px"}
        assert all(type(value) is float for value in result.metrics[key].values())
    assert all(type(value) is float for value in result.metrics["registration_shift_px"])
    json.dumps(result.metrics)

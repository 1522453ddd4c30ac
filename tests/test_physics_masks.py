"""Valid-pixel masks in the NumPy reference (ptycho.physics): bad pixels and saturation are left
out of the data terms, the normalisation and the photon count; the network input fills them."""

import numpy as np
import pytest

from ptycho import physics


def _counts(rng, shape=(5, 16, 16), mean=30.0):
    return rng.poisson(mean, size=shape).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Which pixels are valid
# ---------------------------------------------------------------------------------------------

def test_no_mask_without_bad_pixels_or_saturation(rng):
    amplitude = np.sqrt(_counts(rng)).astype(np.float32)
    assert physics.valid_pixels(amplitude) is None
    # an all-False mask (ptychodus exports carry one) is no mask either
    assert not physics.has_pixel_mask(np.zeros((16, 16), bool), None)
    assert physics.valid_pixels(amplitude, np.zeros((16, 16), bool)) is None
    assert physics.has_pixel_mask(None, 1e9)


def test_bad_pixels_everywhere_saturation_per_pattern(rng):
    counts = _counts(rng)
    bad = np.zeros((16, 16), bool)
    bad[3, 4] = bad[10, 0] = True
    counts[2, 7, 7] = 500.0                      # saturates in pattern 2 only
    valid = physics.valid_pixels(np.sqrt(counts).astype(np.float32), bad, 500.0)
    assert valid.shape == counts.shape and valid.dtype == bool
    assert not valid[:, 3, 4].any() and not valid[:, 10, 0].any()
    assert not valid[2, 7, 7] and valid[[0, 1, 3, 4], 7, 7].all()
    assert valid.sum() == counts.size - 2 * 5 - 1


@pytest.mark.parametrize("level", [1, 2, 100, 65535, 1_000_000, 4_000_000])
def test_saturation_is_exactly_counts_at_or_above_the_level(level):
    """Float32 amplitudes converted from integer counts (as the readers do)."""
    counts = np.array([level - 1, level, level + 1], np.float64)
    amplitude = np.sqrt(counts).astype(np.float32)
    valid = physics.valid_pixels(amplitude.reshape(3, 1, 1), None, float(level))
    assert valid.ravel().tolist() == [True, False, False]


# ---------------------------------------------------------------------------------------------
# Data terms
# ---------------------------------------------------------------------------------------------

def test_masked_poisson_nll_is_the_mean_over_valid_pixels(rng):
    pred = rng.uniform(0.5, 40, (3, 8, 8))
    counts = _counts(rng, (3, 8, 8))
    valid = rng.random((3, 8, 8)) > 0.2
    terms = pred - counts * np.log(pred + physics.POISSON_EPS)
    assert physics.poisson_nll(pred, counts, valid=valid) == pytest.approx(
        terms[valid].mean(), rel=1e-12)
    assert physics.poisson_nll(pred, counts, valid=np.ones_like(valid)) == pytest.approx(
        physics.poisson_nll(pred, counts), rel=1e-12)
    # a (N, N) mask broadcasts over the patterns
    assert physics.poisson_nll(pred, counts, valid=valid[0]) == pytest.approx(
        terms[:, valid[0]].mean(), rel=1e-12)
    # nothing valid: 0, not NaN
    assert physics.poisson_nll(pred, counts, valid=np.zeros_like(valid)) == 0.0


def test_masked_counts_change_nothing_in_the_data_terms(rng):
    pred = rng.uniform(0.5, 40, (3, 8, 8))
    counts = _counts(rng, (3, 8, 8))
    valid = rng.random((3, 8, 8)) > 0.2
    changed = np.where(valid, counts, rng.choice([0.0, 1e7], counts.shape))
    assert physics.poisson_nll(pred, changed, valid=valid) == physics.poisson_nll(
        pred, counts, valid=valid)
    assert physics.amplitude_mae(np.sqrt(pred), np.sqrt(changed), valid) == \
        physics.amplitude_mae(np.sqrt(pred), np.sqrt(counts), valid)
    assert physics.amplitude_mae(np.sqrt(pred), np.sqrt(counts), valid) == pytest.approx(
        np.abs(np.sqrt(pred) - np.sqrt(counts))[valid].mean(), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Normalisation and photon count
# ---------------------------------------------------------------------------------------------

def _faulty(rng):
    counts = _counts(rng, (6, 16, 16))
    bad = rng.random((16, 16)) < 0.1
    level = float(np.quantile(counts, 0.98))
    clean = np.minimum(counts, level)
    return clean, bad, level


def test_normalisation_and_photon_count_ignore_masked_pixels(rng):
    clean, bad, level = _faulty(rng)
    valid = (~bad) & (clean < level)
    expected_power = np.where(valid, clean, 0).sum(axis=(1, 2)).mean()
    broken = clean.copy()
    broken[:, bad] = rng.choice([0.0, 1e6], int(bad.sum()))   # dead and hot pixels
    broken[clean >= level] = 1e5                              # saturated: any value above
    for counts in (clean, broken):
        amplitude = np.sqrt(counts).astype(np.float32)
        photons = physics.mean_photons_per_pattern(amplitude, bad, level)
        assert photons == pytest.approx(expected_power, rel=1e-6)
        factor = physics.diffraction_norm_factor(amplitude, bad, level)
        assert factor == pytest.approx(8.0 / np.sqrt(expected_power), rel=1e-6)
        # measured nphotons: s * f = 1, so (s X)**2 are the measured counts of valid pixels
        assert physics.intensity_scale(photons, 16) * factor == pytest.approx(1.0, rel=1e-12)
    # no mask: exactly the unmasked definitions
    amplitude = np.sqrt(clean).astype(np.float32)
    assert physics.diffraction_norm_factor(amplitude, None, None) == \
        physics.diffraction_norm_factor(amplitude)
    assert physics.mean_photons_per_pattern(amplitude) == float(
        np.square(amplitude, dtype=np.float64).sum(axis=(1, 2)).mean())


def test_fully_masked_data_cannot_be_normalised(rng):
    amplitude = np.sqrt(_counts(rng, (2, 8, 8))).astype(np.float32)
    with pytest.raises(ValueError, match="masked"):
        physics.mask_statistics(amplitude, np.ones((8, 8), bool))
    with pytest.raises(ValueError, match="masked"):
        physics.diffraction_norm_factor(amplitude, None, 0.0)


# ---------------------------------------------------------------------------------------------
# Network-input fill
# ---------------------------------------------------------------------------------------------

def test_fill_is_the_local_level_of_the_mean_pattern():
    n = 12
    rows, cols = np.mgrid[0:n, 0:n]
    mean_pattern = 1.0 + rows + 0.5 * cols                      # a smooth ramp
    amplitude = np.stack([mean_pattern * f for f in (0.5, 1.0, 1.5)]).astype(np.float32)
    bad = np.zeros((n, n), bool)
    bad[5, 5] = True                                             # an isolated dead pixel
    bad[:, 9] = True                                             # a module gap
    bad[0:3, 0:3] = True                                         # a corner block
    stats = physics.mask_statistics(amplitude, bad)
    assert stats.fill.shape == (n, n) and stats.fill.dtype == np.float32
    np.testing.assert_allclose(stats.fill[~bad], mean_pattern[~bad], rtol=1e-6)
    # a linear ramp is reproduced by averaging symmetric neighbours
    assert stats.fill[5, 5] == pytest.approx(mean_pattern[5, 5], rel=1e-6)
    np.testing.assert_allclose(stats.fill[1:-1, 9], mean_pattern[1:-1, 9], rtol=1e-6)
    assert np.all(stats.fill[bad] > 0.5)                         # nowhere zero
    filled = physics.masked_input(amplitude, bad, None, stats.fill)
    np.testing.assert_array_equal(filled[:, bad], np.broadcast_to(stats.fill[bad], (3, bad.sum())))
    np.testing.assert_array_equal(filled[:, ~bad], amplitude[:, ~bad])


def test_saturated_pixels_enter_the_input_at_the_saturation_level(rng):
    amplitude = np.sqrt(_counts(rng, (4, 8, 8))).astype(np.float32)
    amplitude[1, 2, 2] = 1e3                                     # far above the level
    filled = physics.masked_input(amplitude, None, 100.0)
    assert filled[1, 2, 2] == np.float32(10.0)
    assert np.all(filled <= np.float32(10.0))
    np.testing.assert_array_equal(filled[amplitude < 10], amplitude[amplitude < 10])
    # no mask: the input is the amplitudes themselves
    np.testing.assert_array_equal(physics.masked_input(amplitude), amplitude)


def test_mask_statistics_of_a_lazy_stack_match_memory(tmp_path, rng):
    from ptycho.data.lazy import LazyPatterns, npz_member

    counts = rng.poisson(20.0, (7, 16, 16)).astype(np.uint16)
    path = tmp_path / "scan.npz"
    np.savez(path, diff3d=counts)
    lazy = LazyPatterns(npz_member(path, "diff3d"), intensity=True)
    memory = np.sqrt(counts.astype(np.float64)).astype(np.float32)
    bad = rng.random((16, 16)) < 0.05
    a = physics.mask_statistics(lazy, bad, 30.0)
    b = physics.mask_statistics(memory, bad, 30.0)
    np.testing.assert_array_equal(a.power, b.power)
    np.testing.assert_array_equal(a.fill, b.fill)

"""Mixed-state probe in the NumPy reference (ptycho.physics): I = sum_k |F(P_k * O)|**2, the
canonical (orthogonal, power-ordered) modes, the starting modes and their normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics

N = 32


def _random_modes(rng, count=3, n=N):
    return rng.standard_normal((count, n, n)) + 1j * rng.standard_normal((count, n, n))


def test_one_mode_is_exactly_the_coherent_model(rng):
    patches = _random_modes(rng, 4)
    probe = physics.default_probe(N)
    coherent = physics.far_field_amplitude(physics.illuminate(patches, probe)) ** 2
    np.testing.assert_array_equal(physics.mixed_state_intensity(patches, probe), coherent)
    np.testing.assert_allclose(physics.mixed_state_intensity(patches, probe[None]), coherent,
                               rtol=1e-12)


def test_modes_add_their_intensities(rng):
    patches = _random_modes(rng, 2)
    modes = _random_modes(rng, 3)
    for mask, sigma in ((False, 0.0), (True, 0.7)):
        expected = sum(physics.far_field_amplitude(physics.illuminate(patches, mode, mask,
                                                                      sigma)) ** 2
                       for mode in modes)
        np.testing.assert_allclose(physics.mixed_state_intensity(patches, modes, mask, sigma),
                                   expected, rtol=1e-12)
    # Parseval: each pattern carries the summed power of the exit waves
    total = physics.mixed_state_intensity(patches, modes).sum(axis=(-2, -1))
    np.testing.assert_allclose(total, sum(np.sum(np.abs(mode * patches) ** 2, axis=(-2, -1))
                                          for mode in modes), rtol=1e-12)
    amplitude = physics.simulate_amplitude(patches[0], modes[:, :8, :8], [12.0], [13.0])
    np.testing.assert_allclose(amplitude ** 2, physics.mixed_state_intensity(
        physics.extract_patches(patches[0], [12.0], [13.0], 8), modes[:, :8, :8]), rtol=1e-12)


def test_orthogonalised_modes_predict_the_same_intensities(rng):
    modes = _random_modes(rng, 3)
    ortho = physics.orthogonalize_modes(modes)
    gram = ortho.reshape(3, -1).conj() @ ortho.reshape(3, -1).T
    np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-9)
    powers = physics.mode_powers(ortho)
    assert np.all(np.diff(powers) <= 0)                     # ordered by decreasing power
    np.testing.assert_allclose(powers.sum(), physics.mode_powers(modes).sum(), rtol=1e-12)
    np.testing.assert_allclose(physics.total_probe_amplitude(ortho),
                               physics.total_probe_amplitude(modes), rtol=1e-12)
    patches = _random_modes(rng, 2)
    np.testing.assert_allclose(physics.mixed_state_intensity(patches, ortho),
                               physics.mixed_state_intensity(patches, modes), rtol=1e-10)


def test_orthogonal_modes_ordered_by_power_come_back_as_they_were(rng):
    """The phase rule: a mode keeps the phase of the input mode it draws most from."""
    ortho = physics.orthogonalize_modes(_random_modes(rng, 3))
    np.testing.assert_allclose(physics.orthogonalize_modes(ortho), ortho, atol=1e-12)
    swapped = ortho[[1, 0, 2]] * np.exp(0.7j)
    np.testing.assert_allclose(physics.orthogonalize_modes(swapped), ortho * np.exp(0.7j),
                               atol=1e-12)


def test_one_starting_mode_is_mode_0_as_given(rng):
    modes = _random_modes(rng, 3)
    np.testing.assert_array_equal(physics.initial_probe_modes(modes, 1), modes[0])
    probe = physics.default_probe(N)
    np.testing.assert_array_equal(physics.initial_probe_modes(probe, 1), probe)


def test_missing_modes_are_made_from_mode_0():
    """1 mode given, 3 asked: Hermite (1, 0) and (0, 1) times mode 0 at 5 % each of the power,
    orthogonalised: about 1/1.1 of the power stays in mode 0."""
    probe = physics.default_probe(N)
    modes = physics.initial_probe_modes(probe, 3)
    assert modes.shape == (3, N, N)
    share = physics.mode_powers(modes) / physics.mode_powers(modes).sum()
    np.testing.assert_allclose(share, [1 / 1.1, 0.05 / 1.1, 0.05 / 1.1], atol=1e-6)
    # the dominant mode is the probe (the symmetric probe: the odd patterns are orthogonal)
    overlap = abs(np.vdot(modes[0], probe)) / (np.linalg.norm(modes[0]) * np.linalg.norm(probe))
    assert overlap == pytest.approx(1.0, abs=1e-9)
    x_mode = probe * physics.hermite_pattern(probe, 1, 0)
    assert np.allclose(x_mode[:, ::-1], -x_mode, atol=1e-9 * np.abs(x_mode).max())  # odd in x
    deep = physics.initial_probe_modes(probe, 6)        # degree-2 patterns join as needed
    assert deep.shape == (6, N, N) and np.all(physics.mode_powers(deep) > 0)


def test_extra_given_modes_beyond_m_keep_the_strongest(rng):
    modes = physics.orthogonalize_modes(_random_modes(rng, 4))
    kept = physics.initial_probe_modes(modes[[2, 0, 3, 1]], 2)
    np.testing.assert_allclose(kept, modes[:2], atol=1e-10)


def test_linearly_dependent_modes_are_refused(rng):
    probe = physics.default_probe(N)
    with pytest.raises(ValueError, match="mode 1 of 2 has no power"):
        physics.initial_probe_modes(np.stack([probe, 2j * probe]), 2)
    # a third, independent mode beyond M = 2 does not help the second
    assert physics.initial_probe_modes(np.stack([probe, 2j * probe, _random_modes(rng, 1)[0]]),
                                       2).shape == (2, N, N)


def test_modes_are_normalised_by_their_total_power(rng):
    modes = physics.initial_probe_modes(physics.default_probe(N), 2) * 7.0
    normalised = physics.normalize_probe(modes, probe_scale=4.0)
    mask = physics.probe_mask(N)
    assert 4.0 * np.mean(mask * physics.total_probe_amplitude(normalised)) == pytest.approx(1.0)
    np.testing.assert_allclose(normalised * (modes[0, 16, 16] / normalised[0, 16, 16]), modes,
                               rtol=1e-12)                  # one factor for every mode
    probe = physics.default_probe(N)
    np.testing.assert_allclose(physics.normalize_probe(probe[None])[0],
                               physics.normalize_probe(probe), rtol=1e-12)
    assert physics.probe_shape(64) == (64, 64) and physics.probe_shape(64, 3) == (3, 64, 64)

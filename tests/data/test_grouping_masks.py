"""Grouped samples of a scan with a detector mask: per-sample valid pixels, filled network
input and a normalisation over valid pixels; no mask: exactly the unmasked samples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ptycho import physics
from ptycho.data.grouping import GroupedData, GroupedScans
from ptycho.errors import InputError
from ptycho_testing import add_detector_faults, make_test_scan


@pytest.fixture(scope="module")
def scans():
    clean = make_test_scan(n_side=5, N=64, seed=2)
    return clean, add_detector_faults(clean, seed=5)


@pytest.mark.parametrize("gridsize", [1, 2])
def test_samples_carry_each_patterns_valid_pixels(scans, gridsize):
    clean, faulty = scans
    grouped = GroupedData.from_scan(faulty, gridsize)
    assert grouped.has_mask
    rows = np.arange(6)
    x, valid = grouped.X_and_valid(rows)
    assert x.shape == valid.shape == (6, 64, 64, gridsize ** 2) and valid.dtype == bool
    members = grouped.nn_indices[rows]
    expected = physics.valid_pixels(faulty.diffraction[members], faulty.bad_pixels,
                                     faulty.saturation_counts)
    np.testing.assert_array_equal(valid, np.moveaxis(expected, 1, -1))
    np.testing.assert_array_equal(grouped.valid(rows), valid)
    np.testing.assert_array_equal(grouped.X(rows), x)
    # valid pixels: the normalised amplitudes; masked ones: the normalised fill
    raw = np.moveaxis(faulty.diffraction[members], 1, -1) * np.float32(grouped.norm_factor)
    np.testing.assert_array_equal(x[valid], raw[valid])
    filled = physics.masked_input(faulty.diffraction[members], faulty.bad_pixels,
                                  faulty.saturation_counts, grouped.fill)
    np.testing.assert_array_equal(
        x, (np.moveaxis(filled, 1, -1) * np.float32(grouped.norm_factor)).astype(np.float32))
    # bad pixels read the local level of the mean pattern (not 0, not hot)
    bad = faulty.bad_pixels
    truth = clean.diffraction.mean(axis=0)[bad]
    assert np.corrcoef(grouped.fill[bad], truth)[0, 1] > 0.9
    assert grouped.fill[bad].sum() == pytest.approx(truth.sum(), rel=0.2)


def test_masked_values_do_not_reach_the_samples(scans):
    """Other dead/hot values and other values above the saturation level: same samples."""
    _, faulty = scans
    counts = np.square(faulty.diffraction.astype(np.float64))
    saturated = counts >= faulty.saturation_counts
    changed = counts.copy()
    changed[:, faulty.bad_pixels] = 7.0
    changed[saturated & ~faulty.bad_pixels] *= 3.0
    other = dataclasses.replace(faulty, diffraction=np.sqrt(changed).astype(np.float32))
    a = GroupedData.from_scan(faulty, 2, seed=1)
    b = GroupedData.from_scan(other, 2, seed=1)
    assert a.norm_factor == b.norm_factor
    np.testing.assert_array_equal(a.fill, b.fill)
    for got, expected in zip(b.X_and_valid(slice(None)), a.X_and_valid(slice(None))):
        np.testing.assert_array_equal(got, expected)


def test_normalisation_uses_the_valid_photon_count(scans):
    _, faulty = scans
    grouped = GroupedData.from_scan(faulty, 1)
    nphotons = physics.mean_photons_per_pattern(faulty.diffraction, faulty.bad_pixels,
                                                faulty.saturation_counts)
    assert physics.intensity_scale(nphotons, 64) * grouped.norm_factor == pytest.approx(1.0)
    x, valid = grouped.X_and_valid(slice(None))
    power = np.where(valid, x.astype(np.float64) ** 2, 0).sum(axis=(1, 2, 3)).mean()
    assert power == pytest.approx(32 ** 2, rel=1e-5)


def test_without_a_mask_the_samples_are_unchanged(scans):
    clean, _ = scans
    for scan in (clean, dataclasses.replace(clean, bad_pixels=np.zeros((64, 64), bool))):
        grouped = GroupedData.from_scan(scan, 2)
        assert not grouped.has_mask and grouped.fill is None
        assert grouped.norm_factor == physics.diffraction_norm_factor(clean.diffraction)
        x, valid = grouped.X_and_valid(slice(0, 5))
        assert valid is None and grouped.valid(slice(0, 5)) is None
        members = grouped.nn_indices[:5]
        expected = (np.moveaxis(clean.diffraction[members], 1, -1)
                    * np.float32(grouped.norm_factor)).astype(np.float32)
        np.testing.assert_array_equal(x, expected)


def test_a_mask_of_every_pixel_is_refused(scans):
    clean, _ = scans
    with pytest.raises(InputError, match="no valid pixels"):
        GroupedData.from_scan(dataclasses.replace(clean, bad_pixels=np.ones((64, 64), bool)), 1)


def test_several_scans_mask_only_the_scans_that_have_one(scans):
    clean, faulty = scans
    library = GroupedScans([GroupedData.from_scan(clean, 1), GroupedData.from_scan(faulty, 1)])
    assert library.has_mask
    rows = np.array([0, 30, 1, 26])                    # scans 0, 1, 0, 1
    x, valid = library.X_and_valid(rows)
    np.testing.assert_array_equal(x, library.X(rows))
    assert valid[[0, 2]].all()
    np.testing.assert_array_equal(valid[[1, 3]], library.parts[1].valid(rows[[1, 3]] - 25))
    assert not GroupedScans([GroupedData.from_scan(clean, 1)] * 2).has_mask

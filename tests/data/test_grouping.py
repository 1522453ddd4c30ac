"""KD-tree grouping of scan positions and the grouped, normalised view of a scan."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics
from ptycho.data.grouping import GroupedData, group_positions
from ptycho.data.scan import Scan
from ptycho.errors import InputError

N = 16


def _positions(rng, count=40):
    return rng.uniform(12, 52, count), rng.uniform(12, 52, count)


def _scan(rng, count=40) -> Scan:
    x, y = _positions(rng, count)
    obj = (rng.standard_normal((64, 64)) + 1j * rng.standard_normal((64, 64))).astype(np.complex64)
    return Scan(diffraction=(rng.random((count, N, N)) * 3).astype(np.float32), xcoords=x,
                ycoords=y, probe=np.ones((N, N), np.complex64), object_guess=obj)


def _k_nearest(x, y, anchor, K):
    """Brute force: indices of the K nearest other positions of ``anchor``."""
    distance = np.hypot(x - x[anchor], y - y[anchor])
    distance[anchor] = np.inf
    return set(np.argsort(distance)[:K].tolist())


# ---------------------------------------------------------------------------------------------
# group_positions
# ---------------------------------------------------------------------------------------------

def test_gridsize_one_covers_every_position_once(rng):
    x, y = _positions(rng)
    groups = group_positions(x, y, 1)
    assert groups.shape == (40, 1) and groups.dtype == np.int64
    assert sorted(groups[:, 0].tolist()) == list(range(40))


@pytest.mark.parametrize("K", [4, 6, 10])
def test_gridsize_two_groups_are_anchor_plus_nearest_neighbours(rng, K):
    x, y = _positions(rng)
    groups = group_positions(x, y, 2, neighbor_count=K, seed=3)
    assert groups.shape == (40, 4)
    # every position anchors a group, so every position is covered
    np.testing.assert_array_equal(groups[:, 0], np.arange(40))
    assert set(groups.ravel().tolist()) == set(range(40))
    for group in groups:
        anchor, members = int(group[0]), group[1:].tolist()
        assert len(set(group.tolist())) == 4  # distinct members
        assert set(members) <= _k_nearest(x, y, anchor, K)


def test_gridsize_three(rng):
    x, y = _positions(rng, 30)
    groups = group_positions(x, y, 3, neighbor_count=8)
    assert groups.shape == (30, 9)
    for group in groups:
        assert set(group[1:].tolist()) == _k_nearest(x, y, int(group[0]), 8)


def test_grouping_is_deterministic_for_a_seed(rng):
    x, y = _positions(rng)
    first = group_positions(x, y, 2, neighbor_count=7, seed=11)
    again = group_positions(x, y, 2, neighbor_count=7, seed=11)
    other = group_positions(x, y, 2, neighbor_count=7, seed=12)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    subset = group_positions(x, y, 2, n_groups=10, seed=5)
    np.testing.assert_array_equal(subset, group_positions(x, y, 2, n_groups=10, seed=5))


@pytest.mark.parametrize("gridsize", [1, 2])
def test_n_groups_subset(rng, gridsize):
    x, y = _positions(rng)
    groups = group_positions(x, y, gridsize, n_groups=7, seed=1)
    assert groups.shape == (7, gridsize ** 2)
    anchors = groups[:, 0]
    assert len(set(anchors.tolist())) == 7 and anchors.min() >= 0 and anchors.max() < 40
    sequential = group_positions(x, y, gridsize, n_groups=7, sequential=True)
    np.testing.assert_array_equal(sequential[:, 0], np.arange(7))
    all_groups = group_positions(x, y, gridsize, n_groups=40)
    np.testing.assert_array_equal(all_groups[:, 0], np.arange(40))


def test_oversampling_needs_the_flag(rng):
    x, y = _positions(rng, 20)
    with pytest.raises(InputError) as info:
        group_positions(x, y, 2, n_groups=50)
    assert info.value.what == "more groups than positions" and info.value.where == "--n_groups"
    with pytest.raises(InputError):
        group_positions(x, y, 1, n_groups=50, enable_oversampling=True)  # gridsize 1: no new groups
    groups = group_positions(x, y, 2, n_groups=50, enable_oversampling=True, neighbor_count=6)
    assert groups.shape == (50, 4)
    assert set(groups[:, 0].tolist()) == set(range(20))  # still every position
    for group in groups:
        assert set(group[1:].tolist()) <= _k_nearest(x, y, int(group[0]), 6)


def test_scan_too_small_for_gridsize(rng):
    x, y = _positions(rng, 3)
    with pytest.raises(InputError) as info:
        group_positions(x, y, 2)
    assert info.value.what == "scan too small for gridsize"
    assert info.value.where == "--gridsize"


def test_too_few_neighbours(rng):
    x, y = _positions(rng)
    with pytest.raises(InputError, match="neighbour"):
        group_positions(x, y, 3, neighbor_count=4)


# ---------------------------------------------------------------------------------------------
# GroupedData
# ---------------------------------------------------------------------------------------------

def test_X_is_normalised_over_the_whole_scan(rng):
    scan = _scan(rng)
    single = GroupedData.from_scan(scan, 1)
    X = single.X()
    assert X.shape == (40, N, N, 1) and X.dtype == np.float32
    power = np.square(X, dtype=np.float64).sum(axis=(1, 2, 3))
    assert power.mean() == pytest.approx((N / 2) ** 2, rel=1e-5)

    grouped = GroupedData.from_scan(scan, 2, seed=4)
    assert grouped.norm_factor == pytest.approx(single.norm_factor)  # one scalar per dataset
    X2 = grouped.X()
    assert X2.shape == (40, N, N, 4)
    expected = scan.diffraction[grouped.nn_indices] * np.float32(grouped.norm_factor)
    np.testing.assert_allclose(X2, np.moveaxis(expected, 1, -1), rtol=1e-6)
    whole = np.square(scan.diffraction * grouped.norm_factor, dtype=np.float64).sum(axis=(1, 2))
    assert whole.mean() == pytest.approx((N / 2) ** 2, rel=1e-5)


def test_diffraction_channels_follow_nn_indices(rng):
    scan = _scan(rng)
    grouped = GroupedData.from_scan(scan, 2, seed=0)
    diffraction = grouped.diffraction(slice(3, 6))
    assert diffraction.shape == (3, N, N, 4)
    for b, row in enumerate(grouped.nn_indices[3:6]):
        for c, index in enumerate(row):
            np.testing.assert_array_equal(diffraction[b, :, :, c], scan.diffraction[index])
    single = grouped.diffraction(5)
    assert single.shape == (1, N, N, 4)
    np.testing.assert_array_equal(single[0], diffraction[2])


def test_coordinates_relative_and_offsets(rng):
    scan = _scan(rng)
    grouped = GroupedData.from_scan(scan, 2, seed=0)
    coords = grouped.coords()
    nn, offsets, relative = coords["nn"], coords["offsets"], coords["relative"]
    assert nn.shape == (40, 1, 2, 4) and offsets.shape == (40, 1, 2, 1)
    assert relative.shape == (40, 1, 2, 4)
    np.testing.assert_array_equal(nn[:, 0, 0, :], scan.xcoords[grouped.nn_indices])
    np.testing.assert_array_equal(nn[:, 0, 1, :], scan.ycoords[grouped.nn_indices])
    mean = nn.mean(axis=-1, keepdims=True)
    np.testing.assert_allclose(offsets, mean)
    np.testing.assert_allclose(relative, -(nn - mean))  # legacy sign
    np.testing.assert_allclose(relative.sum(axis=-1), 0, atol=1e-9)


def test_start_coordinates(rng):
    scan = _scan(rng)
    scan.xcoords_start = scan.xcoords + 1.0
    scan.ycoords_start = scan.ycoords - 2.0
    grouped = GroupedData.from_scan(scan, 2, seed=0)
    start = grouped.coords(start=True)
    plain = grouped.coords()
    np.testing.assert_allclose(start["offsets"][:, 0, 0] - plain["offsets"][:, 0, 0], 1.0)
    np.testing.assert_allclose(start["offsets"][:, 0, 1] - plain["offsets"][:, 0, 1], -2.0)
    np.testing.assert_allclose(start["relative"], plain["relative"])


def test_ground_truth_patches_use_true_geometry(rng):
    scan = _scan(rng)
    grouped = GroupedData.from_scan(scan, 2, seed=0)
    patches = grouped.ground_truth_patches()
    assert patches.shape == (40, N, N, 4) and patches.dtype == np.complex64
    for b in (0, 17, 39):
        for c, index in enumerate(grouped.nn_indices[b]):
            expected = physics.extract_patches(scan.object_guess, [scan.xcoords[index]],
                                               [scan.ycoords[index]], N)[0]
            np.testing.assert_allclose(patches[b, :, :, c], expected, rtol=1e-5, atol=1e-5)
    scan.object_guess = None
    assert GroupedData.from_scan(scan, 2).ground_truth_patches() is None


def test_ground_truth_at_integer_positions_is_a_slice(rng):
    scan = _scan(rng)
    scan.xcoords = np.round(scan.xcoords)
    scan.ycoords = np.round(scan.ycoords)
    grouped = GroupedData.from_scan(scan, 1)
    patches = grouped.ground_truth_patches()
    for m in (0, 9):
        x, y = int(scan.xcoords[m]), int(scan.ycoords[m])
        np.testing.assert_array_equal(
            patches[m, :, :, 0], scan.object_guess[y - N // 2: y + N // 2, x - N // 2: x + N // 2])


def test_as_dict_keys_and_shapes(rng):
    scan = _scan(rng)
    grouped = GroupedData.from_scan(scan, 2, seed=0, n_groups=12)
    data = grouped.as_dict()
    required = {"diffraction", "X_full", "Y", "coords_offsets", "coords_relative",
                "coords_start_offsets", "coords_start_relative", "coords_nn", "nn_indices",
                "objectGuess"}
    assert required <= set(data)
    assert len(grouped) == 12 and grouped.gridsize == 2 and grouped.channels == 4
    assert data["diffraction"].shape == (12, N, N, 4)
    assert data["X_full"].shape == (12, N, N, 4)
    assert data["Y"].shape == (12, N, N, 4)
    assert data["coords_offsets"].shape == (12, 1, 2, 1)
    assert data["coords_relative"].shape == (12, 1, 2, 4)
    assert data["nn_indices"].shape == (12, 4)
    assert data["objectGuess"] is scan.object_guess

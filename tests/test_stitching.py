"""Shift-and-sum stitching: exact at integer positions, object-pixel placement, legacy interface."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ptycho import physics
from ptycho.stitching import canvas_geometry, reassemble_position, stitch_patches


def _random_object(rng, shape=(96, 96)):
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def _compare_on_covered(result, obj, atol):
    """Compare ``result.object[R, C]`` with ``obj[y0 + R, x0 + C]`` where fully covered."""
    x0, y0 = int(result.x0_px), int(result.y0_px)
    assert x0 == result.x0_px and y0 == result.y0_px
    rows, cols = np.nonzero(result.weight >= 1 - 1e-6)
    assert rows.size > 0
    np.testing.assert_allclose(result.object[rows, cols], obj[y0 + rows, x0 + cols], atol=atol)
    return rows.size


@pytest.mark.parametrize("M", [8, 11, 16])
def test_integer_positions_reproduce_the_object(rng, M):
    N = 16
    obj = _random_object(rng)
    xs = rng.integers(20, 76, 60).astype(np.float64)
    ys = rng.integers(20, 76, 60).astype(np.float64)
    patches = physics.extract_patches(obj, xs, ys, N)
    result = stitch_patches(patches, np.column_stack([xs, ys]), M=M)
    assert result.object.dtype == np.complex64 and result.weight.dtype == np.float32
    covered = _compare_on_covered(result, obj, atol=1e-5)
    # the covered area is the union of the M x M crops
    union = np.zeros(obj.shape, bool)
    for x, y in zip(xs.astype(int), ys.astype(int)):
        union[y - M // 2: y - M // 2 + M, x - M // 2: x - M // 2 + M] = True
    assert covered == union.sum()
    # uncovered canvas pixels are zero
    assert np.all(result.object[result.weight == 0] == 0)


def test_regular_grid_tiles_exactly(rng):
    N, M = 16, 8
    obj = _random_object(rng, (64, 64))
    grid = np.arange(16, 49, 4, dtype=np.float64)
    xs, ys = [a.ravel() for a in np.meshgrid(grid, grid)]
    patches = physics.extract_patches(obj, xs, ys, N)
    result = stitch_patches(patches, np.column_stack([xs, ys]), M=M)
    x0, y0 = int(result.x0_px), int(result.y0_px)
    lo, hi = 16 - M // 2, 48 + M // 2
    region = result.object[lo - y0: hi - y0, lo - x0: hi - x0]
    np.testing.assert_allclose(region, obj[lo:hi, lo:hi], atol=1e-5)
    assert np.all(result.weight[lo - y0: hi - y0, lo - x0: hi - x0] >= 1 - 1e-6)


def test_subpixel_positions_on_a_smooth_object(rng):
    N, M = 16, 8
    rows, cols = np.mgrid[0:96, 0:96].astype(np.float64)
    obj = ((1.0 + 0.2 * np.sin(rows / 9.0) * np.cos(cols / 7.0))
           * np.exp(1j * (0.04 * rows + 0.03 * cols))).astype(np.complex64)
    xs = rng.uniform(24, 72, 300)
    ys = rng.uniform(24, 72, 300)
    patches = physics.extract_patches(obj, xs, ys, N)
    result = stitch_patches(patches, np.column_stack([xs, ys]), M=M)
    _compare_on_covered(result, obj, atol=3e-2)
    x0, y0 = int(result.x0_px), int(result.y0_px)
    r, c = np.nonzero(result.weight >= 1 - 1e-6)
    assert np.mean(np.abs(result.object[r, c] - obj[y0 + r, x0 + c])) < 5e-3


def test_subpixel_positions_have_no_systematic_shift(rng):
    # on a linear ramp a half-pixel placement error would bias every pixel by ~0.1
    N, M = 16, 8
    rows, cols = np.mgrid[0:96, 0:96].astype(np.float64)
    obj = (0.3 * rows + 0.2j * cols).astype(np.complex64)
    xs = rng.uniform(24, 72, 300)
    ys = rng.uniform(24, 72, 300)
    patches = physics.extract_patches(obj, xs, ys, N)
    result = stitch_patches(patches, np.column_stack([xs, ys]), M=M)
    x0, y0 = int(result.x0_px), int(result.y0_px)
    r, c = np.nonzero(result.weight >= 1 - 1e-6)
    error = result.object[r, c] - obj[y0 + r, x0 + c]
    assert abs(error.real.mean()) < 3e-3 and abs(error.imag.mean()) < 3e-3


def test_canvas_side_and_even_pad(rng):
    for _ in range(5):
        offsets = rng.uniform(-30, 45, (25, 2))
        M = int(rng.integers(4, 21))
        centre, pad = canvas_geometry(offsets, M)
        expected = math.ceil(np.max(np.abs(offsets - np.round(offsets.mean(axis=0)))))
        assert pad % 2 == 0 and pad in (expected, expected + 1)
        np.testing.assert_array_equal(centre, np.round(offsets.mean(axis=0)))
        patches = np.ones((25, 24, 24), np.complex64)
        result = stitch_patches(patches, offsets, M=M)
        assert result.object.shape == (M + 2 * pad, M + 2 * pad)
        assert result.weight.shape == result.object.shape
        assert result.x0_px == centre[0] - M // 2 - pad
        assert result.y0_px == centre[1] - M // 2 - pad


def test_constant_patches_give_a_constant_object(rng):
    offsets = rng.uniform(0, 40, (50, 2))
    value = np.complex64(0.5 - 2j)
    result = stitch_patches(np.full((50, 16, 16), value), offsets, M=10)
    full = result.weight >= 1 - 1e-6
    np.testing.assert_allclose(result.object[full], value, rtol=1e-5)
    # the total weight equals the total splatted area
    assert result.weight.sum() == pytest.approx(50 * 10 * 10, rel=1e-5)


def test_bad_arguments():
    with pytest.raises(ValueError):
        stitch_patches(np.ones((3, 16, 16)), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        stitch_patches(np.ones((3, 16, 16)), np.zeros((3, 2)), M=17)


def test_reassemble_position_legacy_interface(rng):
    N, n = 16, 12
    obj = _random_object(rng)
    xs = rng.integers(30, 60, n).astype(np.float64)
    ys = rng.integers(30, 60, n).astype(np.float64)
    patches = physics.extract_patches(obj, xs, ys, N)[..., None]  # (n, N, N, 1)
    global_offsets = np.stack([xs, ys], axis=1)[:, None, :, None]  # (n, 1, 2, 1)
    image = reassemble_position(patches, global_offsets, M=N)
    assert image.ndim == 3 and image.shape[-1] == 1 and image.shape[0] == image.shape[1]
    assert np.iscomplexobj(image)
    squeezed = np.squeeze(image)
    assert squeezed.ndim == 2 and np.iscomplexobj(squeezed)
    direct = stitch_patches(patches[..., 0], np.column_stack([xs, ys]), M=N)
    np.testing.assert_array_equal(squeezed, direct.object)


def test_reassemble_position_default_crop(rng):
    patches = np.ones((5, 32, 32, 1), np.complex64)
    offsets = rng.uniform(0, 10, (5, 1, 2, 1))
    image = reassemble_position(patches, offsets)  # M=20, as ptychodus passes
    _, pad = canvas_geometry(offsets.reshape(5, 2), 20)
    assert image.shape == (20 + 2 * pad, 20 + 2 * pad, 1)


def test_hundred_thousand_patches(rng):
    n, N, M = 100_000, 16, 8
    value = np.complex64(1 + 1j)
    patches = np.broadcast_to(np.full((1, N, N), value), (n, N, N))  # no 100k copies in memory
    offsets = rng.uniform(0, 400, (n, 2))
    result = stitch_patches(patches, offsets, M=M)
    assert result.object.shape[0] == result.object.shape[1] >= 400
    full = result.weight >= 1 - 1e-6
    assert full.mean() > 0.9
    np.testing.assert_allclose(result.object[full], value, rtol=1e-4)

"""The NumPy reference forward model (design section 2): conventions every backend must match."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics


def _random_complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


# ---------------------------------------------------------------------------------------------
# Far field
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("N", [16, 64])
def test_far_field_parseval(rng, N):
    psi = _random_complex(rng, (3, N, N))
    amplitude = physics.far_field_amplitude(psi)
    assert amplitude.shape == psi.shape and amplitude.dtype == np.float64
    np.testing.assert_allclose((amplitude ** 2).sum(axis=(-2, -1)),
                               (np.abs(psi) ** 2).sum(axis=(-2, -1)), rtol=1e-12)


@pytest.mark.parametrize("N", [8, 64])
def test_far_field_dc_at_centre(N):
    amplitude = physics.far_field_amplitude(np.ones((N, N), np.complex128))
    assert amplitude[N // 2, N // 2] == pytest.approx(N)
    rest = amplitude.copy()
    rest[N // 2, N // 2] = 0
    assert np.max(rest) < 1e-9


def test_far_field_of_a_shift_is_unchanged(rng):
    # a translation of the exit wave only changes the phase of the far field
    psi = _random_complex(rng, (16, 16))
    np.testing.assert_allclose(physics.far_field_amplitude(np.roll(psi, (3, -5), axis=(0, 1))),
                               physics.far_field_amplitude(psi), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Patch extraction and translation
# ---------------------------------------------------------------------------------------------

def test_delta_lands_where_the_convention_says():
    N = 16
    obj = np.zeros((48, 48), np.complex128)
    obj[20, 30] = 1.0
    x, y = 28.0, 25.0
    patch = physics.extract_patches(obj, [x], [y], N)[0]
    # patch[r, c] = O(y - N/2 + r, x - N/2 + c)  =>  r = 20 - y + N/2, c = 30 - x + N/2
    expected = np.zeros((N, N))
    expected[3, 10] = 1.0
    np.testing.assert_allclose(patch, expected, atol=1e-12)


def test_delta_at_half_pixel_splits_evenly():
    N = 16
    obj = np.zeros((48, 48), np.complex128)
    obj[20, 30] = 1.0
    patch = physics.extract_patches(obj, [28.5], [25.0], N)[0]
    # c = 30 - 28.5 + 8 = 9.5: half on column 9, half on column 10
    expected = np.zeros((N, N))
    expected[3, 9] = expected[3, 10] = 0.5
    np.testing.assert_allclose(patch, expected, atol=1e-12)
    both = physics.extract_patches(obj, [28.5], [24.5], N)[0]
    expected = np.zeros((N, N))
    expected[3:5, 9:11] = 0.25
    np.testing.assert_allclose(both, expected, atol=1e-12)


def test_integer_extraction_equals_slicing(rng):
    N = 16
    obj = _random_complex(rng, (64, 80))
    xs = np.array([8, 20, 71, 40])
    ys = np.array([8, 33, 55, 12])
    patches = physics.extract_patches(obj, xs, ys, N)
    assert patches.shape == (4, N, N) and patches.dtype == np.complex128
    for patch, x, y in zip(patches, xs, ys):
        np.testing.assert_array_equal(patch, obj[y - N // 2: y + N // 2, x - N // 2: x + N // 2])


def test_extraction_is_zero_outside_the_object(rng):
    N = 8
    obj = _random_complex(rng, (20, 20)) + 5
    patch = physics.extract_patches(obj, [0.0], [0.0], N)[0]
    assert np.all(patch[: N // 2, :] == 0) and np.all(patch[:, : N // 2] == 0)
    np.testing.assert_array_equal(patch[N // 2:, N // 2:], obj[: N // 2, : N // 2])


def test_translate_moves_content_plus_dx_columns_plus_dy_rows():
    images = np.zeros((2, 12, 12))
    images[0, 4, 5] = 1.0
    images[1, 6, 6] = 2.0
    out = physics.translate(images, np.array([[3.0, -2.0], [-1.0, 4.0]]))
    assert out[0, 2, 8] == pytest.approx(1.0) and out[0].sum() == pytest.approx(1.0)
    assert out[1, 10, 5] == pytest.approx(2.0) and out[1].sum() == pytest.approx(2.0)


def test_translate_half_pixel_and_back_consistency(rng):
    images = _random_complex(rng, (1, 10, 10))
    out = physics.translate(images, np.array([[0.5, 0.0]]))
    # out[r, c] = (img[r, c - 1] + img[r, c]) / 2 for c >= 1
    np.testing.assert_allclose(out[0, :, 1:], (images[0, :, :-1] + images[0, :, 1:]) / 2)
    np.testing.assert_allclose(out[0, :, 0], images[0, :, 0] / 2)


# ---------------------------------------------------------------------------------------------
# object_big merge
# ---------------------------------------------------------------------------------------------

# integer member offsets around the group centre, summing to zero so that the group mean is an
# integer position too (the merge is then free of interpolation)
_OFFSETS = np.array([[-2, -3], [3, -1], [-1, 2], [0, 2]], np.float64)


def _group(rng, N, centre=(30.0, 28.0)):
    obj = _random_complex(rng, (64, 64))
    coords = np.asarray(centre) + _OFFSETS  # (C, 2) [x, y]
    patches = physics.extract_patches(obj, coords[:, 0], coords[:, 1], N)
    relative = -(coords - coords.mean(axis=0))  # legacy sign
    return obj, coords, patches, relative


def test_merge_returns_consistent_patches_without_pad_object(rng):
    N = 16
    _, _, patches, relative = _group(rng, N)
    out = physics.merge_and_extract(patches[None], relative[None], pad_object=False)
    assert out.shape == (1, 4, N, N) and out.dtype == np.complex128
    np.testing.assert_allclose(out[0], patches, atol=1e-12)


def test_merge_with_pad_object_reproduces_covered_pixels(rng):
    N = 16
    obj, coords, patches, relative = _group(rng, N)
    box = physics.centre_mask(N)
    out = physics.merge_and_extract((patches * box)[None], relative[None], pad_object=True)[0]
    # object pixels covered by at least one member's central N/2 box
    covered_obj = np.zeros(obj.shape, bool)
    for x, y in coords.astype(int):
        covered_obj[y - N // 4: y + N // 4, x - N // 4: x + N // 4] = True
    for c, (x, y) in enumerate(coords.astype(int)):
        covered = covered_obj[y - N // 2: y + N // 2, x - N // 2: x + N // 2]
        assert covered[box > 0].all()  # each patch's own box is covered
        np.testing.assert_allclose(out[c][covered], patches[c][covered], atol=1e-12)
        np.testing.assert_allclose(out[c][~covered], 0, atol=1e-12)
        # it really merged: pixels outside its own box come from the neighbours
        assert np.count_nonzero(covered & (box == 0)) > 0


def test_merge_makes_inconsistent_patches_agree(rng):
    N = 16
    _, _, patches, relative = _group(rng, N)
    noisy = patches + 0.3 * _random_complex(rng, patches.shape)
    out = physics.merge_and_extract(noisy[None], relative[None], pad_object=False)[0]
    # overlap constraint: after the merge, members agree with the average of the inputs
    assert np.mean(np.abs(out - patches)) < np.mean(np.abs(noisy - patches))


def test_merge_is_per_sample(rng):
    N = 16
    _, _, first, rel_first = _group(rng, N, centre=(30.0, 28.0))
    _, _, second, rel_second = _group(rng, N, centre=(20.0, 35.0))
    out = physics.merge_and_extract(np.stack([first, second]), np.stack([rel_first, rel_second]),
                                    pad_object=False)
    np.testing.assert_allclose(out[0], first, atol=1e-12)
    np.testing.assert_allclose(out[1], second, atol=1e-12)


@pytest.mark.parametrize("pad_object", [True, False])
def test_merge_gridsize_one_returns_the_patch(rng, pad_object):
    N = 16
    patch = _random_complex(rng, (1, 1, N, N))
    out = physics.merge_and_extract(patch, np.zeros((1, 1, 2)), pad_object=pad_object)
    box = physics.centre_mask(N) > 0
    np.testing.assert_allclose(out[0, 0][box], patch[0, 0][box], atol=1e-12)
    if not pad_object:
        np.testing.assert_allclose(out, patch, atol=1e-12)


def test_merge_padding_holds_every_shift():
    assert physics.merge_padding_px(np.zeros((1, 4, 2))) == 1
    assert physics.merge_padding_px(np.array([[[2.5, -3.2]]])) == 5


# ---------------------------------------------------------------------------------------------
# Probe
# ---------------------------------------------------------------------------------------------

def test_probe_mask_64():
    mask = physics.probe_mask(64)
    assert mask.shape == (64, 64)
    assert mask.sum() == 812
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    assert (rows[0], rows[-1]) == (16, 47) and (cols[0], cols[-1]) == (16, 47)
    # centred between pixels N/2-1 and N/2: symmetric under flips
    np.testing.assert_array_equal(mask, mask[::-1, :])
    np.testing.assert_array_equal(mask, mask[:, ::-1])
    np.testing.assert_array_equal(mask, mask.T)


@pytest.mark.parametrize("probe_scale", [4.0, 10.0, 0.7])
def test_normalize_probe(rng, probe_scale):
    probe = _random_complex(rng, (32, 32))
    normalised = physics.normalize_probe(probe, probe_scale)
    mask = physics.probe_mask(32)
    assert np.mean(np.abs(mask * normalised)) == pytest.approx(1.0 / probe_scale, rel=1e-12)
    # only a scalar division: the phase is unchanged
    np.testing.assert_allclose(np.angle(normalised), np.angle(probe), atol=1e-12)


def test_normalize_probe_rejects_zero_in_disk():
    probe = np.zeros((16, 16), np.complex128)
    probe[0, 0] = 1
    with pytest.raises(ValueError):
        physics.normalize_probe(probe)


def test_illuminate_mask_and_smoothing(rng):
    N = 16
    patches = _random_complex(rng, (2, N, N))
    probe = _random_complex(rng, (N, N))
    np.testing.assert_allclose(physics.illuminate(patches, probe), patches * probe)
    masked = physics.illuminate(patches, probe, mask=True)
    np.testing.assert_allclose(masked, patches * probe * physics.probe_mask(N))
    constant = np.full((1, N, N), 2 - 1j)
    smoothed = physics.illuminate(constant, np.ones((N, N)), smoothing_sigma=1.0)
    np.testing.assert_allclose(smoothed, constant)  # the kernel sums to 1
    assert physics.gaussian_kernel_1d(0.5).sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------
# Scaling and normalisation
# ---------------------------------------------------------------------------------------------

def test_intensity_scale():
    assert physics.intensity_scale(1e9, 64) == pytest.approx(988.2117, abs=1e-4)
    assert physics.intensity_scale(64.0 ** 2 / 4, 64) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        physics.intensity_scale(0, 64)


@pytest.mark.parametrize("N", [16, 64])
def test_normalize_diffraction_mean_power(rng, N):
    diffraction = rng.random((10, N, N)) * 7.0
    normalised = physics.normalize_diffraction(diffraction)
    assert normalised.dtype == np.float32
    power = np.square(normalised, dtype=np.float64).sum(axis=(-2, -1))
    assert power.mean() == pytest.approx((N / 2) ** 2, rel=1e-5)
    # one scalar for the whole dataset: ratios between patterns are kept
    ratio = normalised / np.where(diffraction == 0, 1, diffraction)
    assert np.ptp(ratio[diffraction > 0]) < 1e-3 * ratio.max()


def test_normalize_diffraction_uint16_does_not_wrap(rng):
    N = 16
    counts = rng.integers(0, 60001, size=(5, N, N)).astype(np.uint16)
    assert counts.max() > 50000
    normalised = physics.normalize_diffraction(counts)
    expected = counts.astype(np.float64) * np.sqrt(
        (N / 2) ** 2 / np.mean(np.sum(counts.astype(np.float64) ** 2, axis=(-2, -1))))
    np.testing.assert_allclose(normalised, expected, rtol=1e-6)
    power = np.square(normalised, dtype=np.float64).sum(axis=(-2, -1))
    assert power.mean() == pytest.approx((N / 2) ** 2, rel=1e-5)


def test_normalize_diffraction_rejects_all_zero():
    with pytest.raises(ValueError):
        physics.normalize_diffraction(np.zeros((2, 8, 8)))


def test_scaled_counts_average_nphotons(rng):
    # with X normalised, (s * X)**2 sums to nphotons per pattern on average
    N = 32
    X = physics.normalize_diffraction(rng.random((6, N, N)))
    s = physics.intensity_scale(1e6, N)
    total = np.square(s * X.astype(np.float64)).sum(axis=(-2, -1)).mean()
    assert total == pytest.approx(1e6, rel=1e-5)


# ---------------------------------------------------------------------------------------------
# Poisson NLL
# ---------------------------------------------------------------------------------------------

def test_poisson_nll_hand_computation():
    pred = np.array([[1.0, 2.0], [0.5, 4.0]])
    counts = np.array([[0.0, 3.0], [1.0, 4.0]])
    by_hand = np.mean([
        1.0 - 0.0,
        2.0 - 3.0 * np.log(2.0 + 1e-12),
        0.5 - 1.0 * np.log(0.5 + 1e-12),
        4.0 - 4.0 * np.log(4.0 + 1e-12),
    ])
    assert physics.poisson_nll(pred, counts) == pytest.approx(by_hand, rel=1e-12)
    # zero prediction with zero counts is finite (eps)
    assert np.isfinite(physics.poisson_nll(np.zeros(3), np.zeros(3)))


def test_poisson_nll_minimised_at_the_counts(rng):
    counts = rng.poisson(20.0, size=(4, 8, 8)).astype(np.float64) + 1.0
    best = physics.poisson_nll(counts, counts)
    for factor in (0.5, 0.9, 0.99, 1.01, 1.1, 2.0):
        assert physics.poisson_nll(counts * factor, counts) > best
    # derivative sign: d/dp (p - k log p) = 1 - k/p  (< 0 below the counts, > 0 above)
    h = 1e-6
    for factor, sign in ((0.8, -1), (1.25, +1)):
        p = counts * factor
        grad = (physics.poisson_nll(p + h, counts) - physics.poisson_nll(p - h, counts)) / (2 * h)
        assert np.sign(grad) == sign
        assert grad == pytest.approx(np.mean(1 - counts / p), rel=1e-4)


def test_simulate_amplitude_matches_the_pieces(rng):
    N = 16
    obj = _random_complex(rng, (40, 40))
    probe = _random_complex(rng, (N, N))
    xs, ys = np.array([15.0, 20.5]), np.array([18.0, 22.25])
    amplitude = physics.simulate_amplitude(obj, probe, xs, ys)
    patches = physics.extract_patches(obj, xs, ys, N)
    np.testing.assert_allclose(amplitude, np.abs(np.fft.fftshift(
        np.fft.fft2(probe * patches), axes=(-2, -1))) / N, rtol=1e-10)

"""TensorFlow forward-model operations against the NumPy reference (ptycho.physics)."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ptycho.backends.tensorflow")

from ptycho import physics
from ptycho.backends.tensorflow import forward_model as fm

TOL = 1e-5


def _complex(rng, shape):
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


def _rel_err(actual, expected):
    return np.abs(np.asarray(actual) - expected).max() / np.abs(expected).max()


def _c64(array):
    return tf.constant(np.asarray(array, np.complex64))


def _channels_last(array):
    """(B, C, N, N) -> (B, N, N, C)."""
    return np.moveaxis(array, 1, -1)


@pytest.mark.parametrize("shift_dtype", [np.float32, np.float64])
def test_translate_matches_reference(rng, shift_dtype):
    images = _complex(rng, (4, 16, 16))
    shifts = rng.uniform(-3.5, 3.5, (4, 2))
    out = fm.translate(_c64(images), tf.constant(shifts.astype(shift_dtype))).numpy()
    assert _rel_err(out, physics.translate(images, shifts)) <= TOL
    real = rng.standard_normal((3, 12, 12))
    out_real = fm.translate(tf.constant(real, tf.float32), tf.constant(shifts[:3])).numpy()
    assert _rel_err(out_real, physics.translate(real, shifts[:3])) <= TOL


def test_translate_convention_moves_content_by_plus_dx_dy():
    image = np.zeros((1, 16, 16), np.float32)
    image[0, 8, 8] = 1.0
    out = fm.translate(tf.constant(image), tf.constant([[2.0, 1.0]])).numpy()
    assert out[0, 9, 10] == pytest.approx(1.0)        # row 8 + dy, column 8 + dx
    half = fm.translate(tf.constant(image), tf.constant([[0.5, 0.0]])).numpy()
    assert half[0, 8, 8] == pytest.approx(0.5) and half[0, 8, 9] == pytest.approx(0.5)


@pytest.mark.parametrize("pad_object", [True, False])
def test_merge_and_extract_matches_reference(rng, pad_object):
    patches = _complex(rng, (3, 4, 16, 16))
    rel = rng.uniform(-3, 3, (3, 4, 2))
    members, centre = fm.merge_and_extract(_c64(_channels_last(patches)),
                                           tf.constant(rel, tf.float32), pad_object)
    expected = physics.merge_and_extract(patches, rel, pad_object)
    assert _rel_err(members.numpy(), _channels_last(expected)) <= TOL
    assert centre.shape == (3, 16, 16, 1)


def test_merge_centre_is_the_canvas_crop_on_the_group_mean(rng):
    """With zero offsets every member sits on the group mean: centre == merged members."""
    patches = _complex(rng, (2, 4, 16, 16))
    rel = np.zeros((2, 4, 2))
    members, centre = fm.merge_and_extract(_c64(_channels_last(patches)), tf.constant(rel), False)
    np.testing.assert_allclose(centre.numpy()[..., 0], patches.mean(axis=1), atol=1e-5)
    np.testing.assert_allclose(members.numpy()[..., 0], patches.mean(axis=1), atol=1e-5)


def test_merge_gives_each_sample_its_own_canvas(rng):
    """Batch size must not change the result (upstream merged all samples for B*C >= 64)."""
    patches = _c64(_complex(rng, (40, 16, 16, 4)))
    rel = tf.constant(rng.uniform(-2, 2, (40, 4, 2)), tf.float32)
    whole, centre = fm.merge_and_extract(patches, rel, True)
    first, first_centre = fm.merge_and_extract(patches[:1], rel[:1], True)
    assert whole.shape == (40, 16, 16, 4) and centre.shape == (40, 16, 16, 1)
    np.testing.assert_allclose(whole.numpy()[:1], first.numpy(), atol=1e-5)
    np.testing.assert_allclose(centre.numpy()[:1], first_centre.numpy(), atol=1e-5)


def test_shift_single_patch_matches_pad_translate_crop(rng):
    obj = _complex(rng, (2, 16, 16))
    rel = rng.uniform(-3, 3, (2, 4, 2))
    out = fm.shift_single_patch(_c64(obj[..., None]), tf.constant(rel, tf.float32)).numpy()
    pad = physics.merge_padding_px(rel)
    for b in range(2):
        padded = np.pad(obj[b], pad)
        moved = physics.translate(np.repeat(padded[None], 4, axis=0), rel[b])
        expected = moved[:, pad:pad + 16, pad:pad + 16]
        assert _rel_err(out[b], np.moveaxis(expected, 0, -1)) <= TOL


def test_merge_padding_matches_reference(rng):
    rel = rng.uniform(-5, 5, (3, 4, 2))
    assert int(fm.merge_padding_px(tf.constant(rel))) == physics.merge_padding_px(rel)


def test_merge_and_extract_inside_tf_function(rng):
    """Data-dependent canvas sizes work in graph mode (as in training)."""
    patches = _complex(rng, (2, 4, 16, 16))
    rel = rng.uniform(-3, 3, (2, 4, 2))
    graph = tf.function(lambda p, r: fm.merge_and_extract(p, r, True)[0])
    out = graph(_c64(_channels_last(patches)), tf.constant(rel, tf.float32)).numpy()
    expected = physics.merge_and_extract(patches, rel, True)
    assert _rel_err(out, _channels_last(expected)) <= TOL


def test_far_field_and_smoothing_match_reference(rng):
    psi = _complex(rng, (2, 3, 16, 16))
    tensor = _c64(_channels_last(psi))
    assert _rel_err(fm.far_field_amplitude(tensor).numpy(),
                    _channels_last(physics.far_field_amplitude(psi))) <= TOL
    assert _rel_err(fm.smooth_field(tensor, 0.8).numpy(),
                    _channels_last(physics.smooth_field(psi, 0.8))) <= TOL


def test_far_field_dc_and_parseval():
    ones = tf.ones((1, 64, 64, 1), tf.complex64)
    amplitude = fm.far_field_amplitude(ones).numpy()[0, :, :, 0]
    assert amplitude[32, 32] == pytest.approx(64.0)
    assert np.sum(amplitude ** 2) == pytest.approx(64 * 64, rel=1e-6)


def test_illumination_with_mask_and_smoothing(rng):
    probe = _complex(rng, (16, 16))
    patches = _complex(rng, (2, 3, 16, 16))
    layer = fm.ProbeIllumination(probe, probe_trainable=False, mask=True, smoothing_sigma=0.7)
    out = layer(_c64(_channels_last(patches))).numpy()
    expected = physics.illuminate(patches, probe, mask=True, smoothing_sigma=0.7)
    assert _rel_err(out, _channels_last(expected)) <= TOL
    assert [w.name for w in layer.weights] == ["probe_ri"] and not layer.trainable_weights


def test_intensity_scaler_is_a_tracked_weight():
    trainable = fm.IntensityScaler(9.5, scale_trainable=True)
    frozen = fm.IntensityScaler(9.5, scale_trainable=False)
    assert float(trainable.scale()) == pytest.approx(9.5, rel=1e-6)
    assert [w.name for w in trainable.trainable_weights] == ["log_scale"]
    assert not frozen.trainable_weights and [w.name for w in frozen.weights] == ["log_scale"]


def test_poisson_nll_matches_reference(rng):
    pred = rng.uniform(0.1, 50, (4, 16, 16))
    counts = rng.poisson(pred).astype(float)
    value = float(fm.poisson_nll(tf.constant(pred, tf.float32), tf.constant(counts, tf.float32)))
    assert value == pytest.approx(physics.poisson_nll(pred, counts), rel=1e-5)

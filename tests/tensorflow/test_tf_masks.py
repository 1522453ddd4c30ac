"""Detector masks in the TensorFlow backend: masked data terms, their gradients, the batches of
a masked scan and a short training on one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ptycho.backends.tensorflow")

from ptycho import physics
from ptycho.backends.tensorflow import forward_model as fm
from ptycho.backends.tensorflow import train_model
from ptycho.backends.tensorflow.data import GroupedBatches
from ptycho.backends.tensorflow.model import PtychoPINN
from ptycho.backends.tensorflow.training import PINNTrainer
from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.data.grouping import GroupedData
from ptycho_testing import add_detector_faults, make_test_scan

QUIET = ExecutionConfig(progress_bar=False, logger="none", accelerator="cpu")
N = 16


@pytest.fixture(scope="module")
def faulty_scan():
    return add_detector_faults(make_test_scan(n_side=5, N=64, seed=4), seed=6)


def _object_gradient(obj: np.ndarray, probe, counts, valid):
    """Masked NLL of ``(|F(P O)|/N)**2`` against ``counts`` and its gradient w.r.t. ``O``.

    ``obj`` (2, C, N, N) real and imaginary parts; one sample of C channels-last patches
    inside TensorFlow (float32: the far field is a float32 op).
    """
    parts = tf.Variable(np.moveaxis(obj, 1, -1)[:, None].astype(np.float32))  # (2, 1, N, N, C)
    with tf.GradientTape() as tape:
        patches = tf.complex(parts[0], parts[1])
        amplitude = fm.far_field_amplitude(patches * tf.constant(probe, tf.complex64)[..., None])
        loss = fm.poisson_nll(tf.square(amplitude),
                              tf.constant(np.moveaxis(counts, 0, -1)[None], tf.float32),
                              valid=None if valid is None else np.moveaxis(valid, 0, -1)[None])
    return float(loss), tape.gradient(loss, parts).numpy()


def test_masked_pixels_add_nothing_to_the_object_gradient(rng):
    obj = rng.standard_normal((2, 3, N, N))
    probe = physics.normalize_probe(physics.default_probe(N)) * 30
    pred = physics.far_field_amplitude(physics.illuminate(obj[0] + 1j * obj[1], probe)) ** 2
    counts = rng.poisson(pred).astype(np.float64)
    valid = rng.random(counts.shape) > 0.1
    loss, grad = _object_gradient(obj, probe, counts, valid)
    assert loss == pytest.approx(physics.poisson_nll(pred, counts, valid=valid), rel=1e-5)
    changed = np.where(valid, counts, rng.choice([0.0, 1e6], counts.shape))
    loss_changed, grad_changed = _object_gradient(obj, probe, changed, valid)
    assert loss_changed == loss
    np.testing.assert_array_equal(grad_changed, grad)
    assert _object_gradient(obj, probe, counts, None)[0] == pytest.approx(
        physics.poisson_nll(pred, counts), rel=1e-5)


def test_batches_carry_the_mask_only_when_there_is_one(faulty_scan):
    grouped = GroupedData.from_scan(faulty_scan, 2)
    batches = GroupedBatches(grouped, np.arange(len(grouped)), 4, False, 0)
    x, _, valid = batches.batch(np.array([0, 3, 5]))
    assert valid.dtype == bool and valid.shape == x.shape == (3, 64, 64, 4)
    np.testing.assert_array_equal(valid, grouped.valid(np.array([0, 3, 5])))
    element = next(iter(batches.dataset()))
    assert len(element) == 3 and element[2].dtype == tf.bool
    with_truth = GroupedBatches(grouped, np.arange(len(grouped)), 4, False, 0, with_truth=True)
    assert [t.dtype for t in with_truth.batch(np.array([0]))][2:] == [np.complex64, np.bool_]
    clean = dataclasses.replace(faulty_scan, bad_pixels=None, saturation_counts=None)
    plain = GroupedData.from_scan(clean, 2)
    assert len(GroupedBatches(plain, np.arange(len(plain)), 4, False, 0).batch(
        np.array([0]))) == 2


def test_batch_loss_is_the_masked_reference(faulty_scan):
    grouped = GroupedData.from_scan(faulty_scan, 2)
    x, offsets, valid = GroupedBatches(grouped, np.arange(len(grouped)), 4, False, 0).batch(
        np.arange(4))
    cfg = ModelConfig(N=64, gridsize=2, n_filters_scale=1)
    scale = physics.intensity_scale(physics.mean_photons_per_pattern(
        faulty_scan.diffraction, faulty_scan.bad_pixels, faulty_scan.saturation_counts), 64)
    pinn = PtychoPINN(cfg, physics.normalize_probe(faulty_scan.probe), scale)
    trainer = PINNTrainer(pinn, TrainingConfig(model=cfg, mae_weight=0.4), scale)
    loss = float(trainer.compute_batch_loss((x, offsets, valid)))
    measured = x.astype(np.float64) * np.float32(scale)
    predicted = pinn.forward(x * np.float32(scale), offsets)["amplitude"].numpy().astype(np.float64)
    expected = (physics.poisson_nll(predicted ** 2, measured ** 2, valid=valid)
                + 0.4 * physics.amplitude_mae(predicted, measured, valid))
    assert loss == pytest.approx(expected, rel=1e-5)


def _train(scan, tmp_path, gridsize=2):
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1),
                            batch_size=8, nepochs=2, seed=1, mae_weight=0.2, backend="tensorflow",
                            validation_fraction=0.0)
    grouped = GroupedData.from_scan(scan, gridsize)
    nphotons = physics.mean_photons_per_pattern(scan.diffraction, scan.bad_pixels,
                                                scan.saturation_counts)
    return train_model(grouped, None, physics.normalize_probe(scan.probe),
                       physics.intensity_scale(nphotons, 64), config, QUIET, tmp_path)


def test_training_on_a_masked_scan_ignores_the_masked_values(faulty_scan, tmp_path):
    """A short gridsize-2 training; other dead/hot/saturated values: the very same run."""
    model = _train(faulty_scan, tmp_path / "a")
    losses = model.history["train_loss"]
    assert len(losses) == 2 and np.all(np.isfinite(losses))
    counts = np.square(faulty_scan.diffraction.astype(np.float64))
    counts[:, faulty_scan.bad_pixels] = 3.0
    counts[counts >= faulty_scan.saturation_counts] *= 2.0
    other = dataclasses.replace(faulty_scan, diffraction=np.sqrt(counts).astype(np.float32))
    again = _train(other, tmp_path / "b")
    assert again.history["train_loss"] == losses

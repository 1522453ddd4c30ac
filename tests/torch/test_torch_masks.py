"""Detector masks in the PyTorch backend: masked data terms, their gradients, the batches of a
masked scan and a short training on one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("lightning")

from ptycho import physics
from ptycho.backends.pytorch import forward_model as fm
from ptycho.backends.pytorch import train_model
from ptycho.backends.pytorch.data import GroupedDataset
from ptycho.backends.pytorch.lightning_module import PINNLightning
from ptycho.backends.pytorch.model import PtychoPINN
from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.data.grouping import GroupedData
from ptycho_testing import add_detector_faults, make_test_scan

QUIET = ExecutionConfig(progress_bar=False, logger="none", accelerator="cpu")
N = 16


@pytest.fixture(scope="module")
def faulty_scan():
    return add_detector_faults(make_test_scan(n_side=5, N=64, seed=4), seed=6)


def _object_gradient(obj_ri: np.ndarray, probe, counts, valid):
    """Masked NLL of ``(|F(P O)|/N)**2`` against ``counts`` and its gradient w.r.t. ``O``."""
    parts = torch.tensor(obj_ri, dtype=torch.float64, requires_grad=True)
    patches = torch.complex(parts[0], parts[1])
    amplitude = fm.far_field_amplitude(patches * torch.as_tensor(probe))
    loss = fm.poisson_nll(amplitude.square(), torch.as_tensor(counts),
                          valid=None if valid is None else torch.as_tensor(valid))
    loss.backward()
    return float(loss.detach()), parts.grad.numpy()


def test_masked_pixels_add_nothing_to_the_object_gradient(rng):
    obj = rng.standard_normal((2, 3, N, N))
    probe = physics.normalize_probe(physics.default_probe(N)) * 30
    pred = physics.far_field_amplitude(physics.illuminate(obj[0] + 1j * obj[1], probe)) ** 2
    counts = rng.poisson(pred).astype(np.float64)
    valid = rng.random(counts.shape) > 0.1
    loss, grad = _object_gradient(obj, probe, counts, valid)
    assert loss == pytest.approx(physics.poisson_nll(pred, counts, valid=valid), rel=1e-12)
    changed = np.where(valid, counts, rng.choice([0.0, 1e6], counts.shape))
    loss_changed, grad_changed = _object_gradient(obj, probe, changed, valid)
    assert loss_changed == loss
    np.testing.assert_array_equal(grad_changed, grad)
    # the gradient is that of the valid pixels' terms alone (summed, divided by their number)
    parts = torch.tensor(obj, requires_grad=True)
    amplitude = fm.far_field_amplitude(torch.complex(parts[0], parts[1]) * torch.as_tensor(probe))
    pred_t = amplitude.square()[torch.as_tensor(valid)]
    counts_t = torch.as_tensor(counts)[torch.as_tensor(valid)]
    (torch.sum(pred_t - counts_t * torch.log(pred_t + physics.POISSON_EPS)) / valid.sum()).backward()
    np.testing.assert_allclose(grad, parts.grad.numpy(), rtol=1e-10, atol=1e-14)
    # unmasked: the plain mean, unchanged
    assert _object_gradient(obj, probe, counts, None)[0] == pytest.approx(
        physics.poisson_nll(pred, counts), rel=1e-12)


def test_dataset_batches_carry_the_mask_only_when_there_is_one(faulty_scan):
    grouped = GroupedData.from_scan(faulty_scan, 2)
    batch = GroupedDataset(grouped, np.arange(len(grouped))).__getitems__([0, 3, 5])
    assert batch["valid"].dtype == torch.bool and batch["valid"].shape == (3, 4, 64, 64)
    x, valid = grouped.X_and_valid(np.array([0, 3, 5]))
    np.testing.assert_array_equal(batch["valid"].numpy(), np.moveaxis(valid, -1, 1))
    np.testing.assert_array_equal(batch["x"].numpy(), np.moveaxis(x, -1, 1))
    clean = dataclasses.replace(faulty_scan, bad_pixels=None, saturation_counts=None)
    plain = GroupedData.from_scan(clean, 2)
    assert "valid" not in GroupedDataset(plain, np.arange(len(plain))).__getitems__([0, 3])


def test_lightning_loss_is_the_masked_reference(faulty_scan):
    grouped = GroupedData.from_scan(faulty_scan, 2)
    batch = GroupedDataset(grouped, np.arange(len(grouped))).__getitems__([0, 1, 2, 3])
    cfg = ModelConfig(N=64, gridsize=2, n_filters_scale=1)
    scale = physics.intensity_scale(physics.mean_photons_per_pattern(
        faulty_scan.diffraction, faulty_scan.bad_pixels, faulty_scan.saturation_counts), 64)
    torch.manual_seed(0)
    module = PtychoPINN(cfg, physics.normalize_probe(faulty_scan.probe), scale)
    lit = PINNLightning(module, TrainingConfig(model=cfg, mae_weight=0.4), scale)
    with torch.no_grad():
        loss = float(lit._loss(batch))
        predicted = module(batch["x"] * scale, batch["rel"]).amplitude.double().numpy()
    measured = batch["x"].double().numpy() * np.float32(scale)
    valid = batch["valid"].numpy()
    expected = (physics.poisson_nll(predicted ** 2, measured ** 2, valid=valid)
                + 0.4 * physics.amplitude_mae(predicted, measured, valid))
    assert loss == pytest.approx(expected, rel=1e-5)


def _train(scan, tmp_path, gridsize=2):
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=gridsize, n_filters_scale=1),
                            batch_size=8, nepochs=2, seed=1, mae_weight=0.2)
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
    assert again.history["val_loss"] == model.history["val_loss"]

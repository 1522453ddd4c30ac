"""Numerical faults: a NaN/Inf training loss stops cleanly keeping the last good weights (exit
3), and zero predicted intensities give a finite Poisson loss and finite gradients."""

from __future__ import annotations

import numpy as np
import pytest
from reliability_helpers import files_in, tiny_train_args, write_tiny_scan

from ptycho import physics
from ptycho.archive import load_trained_model
from ptycho.cli.main import main


def _poison_weights_at_epoch(monkeypatch, backend: str, epoch: int) -> None:
    """Make the loss NaN from ``epoch`` on by setting one network weight to NaN."""
    if backend == "pytorch":
        import torch

        from ptycho.backends.pytorch.lightning_module import PINNLightning

        def on_train_epoch_start(self):
            if self.current_epoch == epoch:
                with torch.no_grad():
                    next(self.model.parameters()).fill_(float("nan"))

        monkeypatch.setattr(PINNLightning, "on_train_epoch_start", on_train_epoch_start)
    else:
        pytest.importorskip("ptycho.backends.tensorflow")
        from ptycho.backends.tensorflow.training import EpochControl

        def on_epoch_begin(self, current, logs=None):
            if current == epoch:
                variable = self.pinn.trainable_variables[0]
                variable.assign(np.full(variable.shape, np.nan, np.float32))

        monkeypatch.setattr(EpochControl, "on_epoch_begin", on_epoch_begin, raising=False)


@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_nan_loss_stops_and_keeps_the_last_good_weights(tmp_path, capsys, monkeypatch, backend):
    scan = write_tiny_scan(tmp_path / "scan.npz")
    out = tmp_path / "out"
    _poison_weights_at_epoch(monkeypatch, backend, 1)
    assert main(tiny_train_args(scan, out, backend, 2)) == 3
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err
    assert "nan" in lines[0].lower() and "epoch 1" in lines[0] and "wts.h5.zip" in lines[0]
    model, archive = load_trained_model(out)
    assert archive.manifest["history"]["epoch"] == [0]
    from ptycho.data.grouping import GroupedData
    from ptycho.data.npz import read_scan_npz

    grouped = GroupedData.from_scan(read_scan_npz(scan), 1)
    patches = model.predict([grouped.X(slice(0, 4)) * np.float32(model.intensity_scale),
                             grouped.coords(slice(0, 4))["relative"]])
    assert np.isfinite(patches).all()
    assert not any(name.startswith("resume.") for name in files_in(out))


def test_nan_loss_in_the_first_epoch_writes_no_model(tmp_path, capsys, monkeypatch):
    scan = write_tiny_scan(tmp_path / "scan.npz")
    out = tmp_path / "out"
    _poison_weights_at_epoch(monkeypatch, "pytorch", 0)
    assert main(tiny_train_args(scan, out, "pytorch", 2)) == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "no model was written" in lines[0]
    assert "wts.h5.zip" not in files_in(out)


def test_numpy_poisson_nll_of_zero_prediction_is_finite():
    counts = np.array([0.0, 1.0, 5.0, 1e4])
    assert np.isfinite(physics.poisson_nll(np.zeros_like(counts), counts))


def test_torch_poisson_nll_zero_prediction_has_finite_loss_and_gradients():
    import torch

    from ptycho.backends.pytorch import forward_model as fm

    counts = torch.tensor([[0.0, 1.0], [7.0, 1e4]])
    for prediction in (torch.zeros(2, 2, requires_grad=True),):
        loss = fm.poisson_nll(prediction, counts)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(prediction.grad).all()
    amplitude = torch.zeros(2, 2, requires_grad=True)  # as in training: intensity = A**2
    loss = fm.poisson_nll(amplitude.square(), counts)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(amplitude.grad).all()


def test_tensorflow_poisson_nll_zero_prediction_has_finite_loss_and_gradients():
    pytest.importorskip("ptycho.backends.tensorflow")
    import tensorflow as tf

    from ptycho.backends.tensorflow import forward_model as fm

    counts = tf.constant([[0.0, 1.0], [7.0, 1e4]])
    for square in (False, True):
        variable = tf.Variable(tf.zeros((2, 2)))
        with tf.GradientTape() as tape:
            loss = fm.poisson_nll(tf.square(variable) if square else variable, counts)
        gradient = tape.gradient(loss, variable)
        assert np.isfinite(loss.numpy()) and np.isfinite(gradient.numpy()).all()

"""PyTorch training options: supervised mode, loss terms, history and early stopping."""

import numpy as np
import pytest

from ptycho import physics
from ptycho.backends.pytorch import train_model
from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.data.grouping import GroupedData
from ptycho.errors import InputError

QUIET = ExecutionConfig(progress_bar=False, logger="none", accelerator="cpu")


def _fit(scan, tmp_path, model=None, **kwargs):
    config = TrainingConfig(model=model or ModelConfig(N=64), batch_size=16, output_dir=tmp_path,
                            **kwargs)
    grouped = GroupedData.from_scan(scan, config.model.gridsize, n_groups=config.n_groups)
    probe = physics.normalize_probe(scan.probe)
    scale = physics.intensity_scale(scan.mean_photons_per_pattern(), 64)
    return train_model(grouped, None, probe, scale, config, QUIET, tmp_path)


def test_supervised_training_reduces_patch_error(small_scan, tmp_path):
    model = _fit(small_scan, tmp_path, model=ModelConfig(N=64, model_type="supervised"),
                 nepochs=3, n_groups=64, learning_rate=2e-3)
    losses = model.history["train_loss"]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_supervised_needs_ground_truth(small_scan, tmp_path):
    scan = small_scan.subset(np.arange(len(small_scan.xcoords)))
    scan.object_guess = None
    with pytest.raises(InputError, match="objectGuess"):
        _fit(scan, tmp_path, model=ModelConfig(N=64, model_type="supervised"), nepochs=1)


def test_history_and_optional_loss_terms(small_scan, tmp_path):
    model = _fit(small_scan, tmp_path, nepochs=2, n_groups=40, mae_weight=0.5,
                 realspace_mae_weight=0.1, realspace_weight=0.1, validation_fraction=0.2)
    history = model.history
    assert history["epoch"] == [0, 1]
    assert len(history["train_loss"]) == len(history["val_loss"]) == 2
    assert all(np.isfinite(history["train_loss"]))
    assert 0 <= history["best_epoch"] <= 1


def test_training_without_validation_monitors_train_loss_and_warns_nothing(small_scan, tmp_path):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = _fit(small_scan, tmp_path, nepochs=2, n_groups=32, validation_fraction=0.0)
    assert "val_loss" not in model.history and len(model.history["train_loss"]) == 2
    lightning = [str(w.message) for w in caught if "lightning" in w.filename
                 and not issubclass(w.category, (DeprecationWarning, FutureWarning))]
    assert not lightning  # e.g. no "Total length of `list` across ranks is zero"


def test_training_is_reproducible_for_a_seed(small_scan, tmp_path):
    first = _fit(small_scan, tmp_path / "a", nepochs=1, n_groups=32, seed=5)
    second = _fit(small_scan, tmp_path / "b", nepochs=1, n_groups=32, seed=5)
    assert first.history["train_loss"] == pytest.approx(second.history["train_loss"], rel=1e-6)


def test_bf16_mixed_precision_trains_with_float32_physics(small_scan, tmp_path):
    """--precision bf16-mixed: convolutions in bfloat16, far field and loss in float32."""
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), nepochs=1, batch_size=8,
                            n_groups=16, output_dir=tmp_path)
    grouped = GroupedData.from_scan(small_scan, 1, n_groups=16)
    execution = ExecutionConfig(progress_bar=False, logger="none", accelerator="cpu",
                                precision="bf16-mixed")
    model = train_model(grouped, None, physics.normalize_probe(small_scan.probe),
                        physics.intensity_scale(small_scan.mean_photons_per_pattern(), 64),
                        config, execution, tmp_path)
    assert np.isfinite(model.history["train_loss"]).all()
    patches = model.predict([grouped.X() * np.float32(model.intensity_scale),
                             grouped.coords()["relative"]])
    assert patches.dtype == np.complex64 and np.isfinite(patches).all()

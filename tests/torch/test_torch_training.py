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


def _train_bf16_mixed(scan, tmp_path, **fields):
    """One bf16-mixed epoch on 16 groups; returns (model, grouped)."""
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), nepochs=1, batch_size=8,
                            n_groups=16, output_dir=tmp_path, **fields)
    grouped = GroupedData.from_scan(scan, 1, n_groups=16)
    execution = ExecutionConfig(progress_bar=False, logger="none", accelerator="cpu",
                                precision="bf16-mixed")
    model = train_model(grouped, None, physics.normalize_probe(scan.probe),
                        physics.intensity_scale(scan.mean_photons_per_pattern(), 64),
                        config, execution, tmp_path)
    assert np.isfinite(model.history["train_loss"]).all()
    return model, grouped


def test_bf16_mixed_precision_trains_with_float32_physics(small_scan, tmp_path):
    """--precision bf16-mixed: convolutions in bfloat16, far field and loss in float32."""
    model, grouped = _train_bf16_mixed(small_scan, tmp_path)
    patches = model.predict([grouped.X() * np.float32(model.intensity_scale),
                             grouped.coords()["relative"]])
    assert patches.dtype == np.complex64 and np.isfinite(patches).all()


# ---------------------------------------------------------------------------------------------
# Training recipe: cosine schedule and gradient-norm clipping
# ---------------------------------------------------------------------------------------------

def _rates(config, steps_per_epoch, steps):
    """The learning rate of each of ``steps`` updates under the backend's cosine scheduler."""
    import torch

    from ptycho.backends.pytorch.lightning_module import adam, cosine_scheduler

    weight = torch.nn.Parameter(torch.zeros(3))
    optimizer = adam([weight], config.learning_rate)
    scheduler = cosine_scheduler(optimizer, config, steps_per_epoch)
    rates = []
    for _ in range(steps):
        rates.append(optimizer.param_groups[0]["lr"])
        weight.grad = torch.ones(3)
        optimizer.step()
        scheduler.step()
    return rates, scheduler


def test_cosine_schedule_rates_per_step():
    """W = 1 epoch x 4 steps of linear warm-up from lr/W, then a half cosine to lr_min at the
    end of nepochs x 4 steps, then lr_min."""
    config = TrainingConfig(lr_schedule="cosine", learning_rate=1e-3, lr_min=1e-4, nepochs=3,
                            lr_warmup_epochs=1)
    rates, scheduler = _rates(config, 4, 15)
    expected = [2.5e-4, 5e-4, 7.5e-4, 1e-3,                     # warm-up (steps 0-3)
                1e-3, 1e-4 + 9e-4 * (1 + np.cos(np.pi / 8)) / 2,  # cosine from step 4 ...
                1e-4 + 9e-4 * (1 + np.cos(np.pi / 4)) / 2]
    assert rates[:7] == pytest.approx(expected, rel=1e-12)
    assert rates[8] == pytest.approx(5.5e-4, rel=1e-12)        # half way: (lr + lr_min) / 2
    assert rates[12:] == pytest.approx([1e-4] * 3, rel=1e-12)  # T = 12 and after
    assert scheduler.last_epoch == 15                          # updates counted (resume state)
    no_warmup, _ = _rates(TrainingConfig(lr_schedule="cosine", lr_warmup_epochs=0, nepochs=2), 5, 2)
    assert no_warmup[0] == 1e-3 and no_warmup[1] < 1e-3
    half, _ = _rates(TrainingConfig(lr_schedule="cosine", lr_warmup_epochs=0.5, nepochs=2), 4, 3)
    assert half == pytest.approx([5e-4, 1e-3, 1e-3])           # W = round(0.5 * 4) = 2


def test_clip_gradients_scales_the_global_norm():
    import torch

    from ptycho.backends.pytorch.lightning_module import clip_gradients

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([30.0, 0.0]), torch.tensor([40.0])   # global norm 50
    assert float(clip_gradients([a, b], 5.0)) == pytest.approx(50.0)
    assert a.grad.tolist() == pytest.approx([3.0, 0.0], rel=1e-6)
    assert b.grad.tolist() == pytest.approx([4.0], rel=1e-6)
    assert float(clip_gradients([a, b], 10.0)) == pytest.approx(5.0)  # below: unchanged
    assert a.grad.tolist() == pytest.approx([3.0, 0.0], rel=1e-6)
    assert clip_gradients([a, b], None) is None and clip_gradients([a, b], 0.0) is None


def test_training_with_cosine_schedule_and_gradient_clipping(small_scan, tmp_path, monkeypatch):
    """Lightning clips every update to the global norm (the unclipped norms are far larger) and
    the history records the cosine rate at the end of each epoch."""
    import torch

    from ptycho.backends.pytorch import lightning_module
    from ptycho.backends.schedule import CosineSchedule

    clip = 1e-3
    before, after, optimizers = [], [], []

    def global_norm(params):
        return float(torch.linalg.vector_norm(
            torch.stack([p.grad.norm() for p in params if p.grad is not None])))

    def on_before_optimizer_step(self, optimizer):   # runs before Lightning clips
        before.append(global_norm(optimizer.param_groups[0]["params"]))

    original_step = torch.optim.Adam.step

    def step(self, closure=None):                    # the closure runs backward and clipping
        loss = closure() if closure is not None else None
        after.append(global_norm(self.param_groups[0]["params"]))
        original_step(self)
        return loss

    original_adam = lightning_module.adam

    def adam(*args, **kwargs):
        optimizers.append(original_adam(*args, **kwargs))
        return optimizers[-1]

    monkeypatch.setattr(lightning_module.PINNLightning, "on_before_optimizer_step",
                        on_before_optimizer_step, raising=False)
    monkeypatch.setattr(torch.optim.Adam, "step", step)
    monkeypatch.setattr(lightning_module, "adam", adam)
    model = _fit(small_scan, tmp_path, model=ModelConfig(N=64, n_filters_scale=1), nepochs=2,
                 n_groups=32, validation_fraction=0.25, lr_schedule="cosine", lr_min=1e-4,
                 grad_clip_norm=clip)
    # 24 training groups, batch 16: 2 updates per epoch; warm-up 2, total 4
    assert len(before) == len(after) == 4
    assert min(before) > 100 * clip
    assert after == pytest.approx([clip] * 4, rel=1e-3)
    schedule = CosineSchedule.from_config(TrainingConfig(lr_schedule="cosine", lr_min=1e-4,
                                                         nepochs=2), 2)
    assert model.history["learning_rate"] == pytest.approx(
        [1e-3 * schedule.factor(2), 1e-3 * schedule.factor(4)], rel=1e-12)
    assert model.history["learning_rate"][-1] == pytest.approx(1e-4)
    moments = [state["exp_avg"] for state in optimizers[0].state.values()]
    assert float(torch.linalg.vector_norm(torch.stack([m.norm() for m in moments]))) <= clip


def test_gradient_clipping_under_mixed_precision(small_scan, tmp_path):
    """Lightning cannot clip a fused Adam's gradients under AMP: the loop Adam is used then."""
    _train_bf16_mixed(small_scan, tmp_path, grad_clip_norm=1.0, lr_schedule="cosine")

"""Keras training: trainable physics weights, gridsize-2 batching, schedule, and the full
train -> archive -> load -> infer workflow with ``backend='tensorflow'``."""

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("ptycho.backends.tensorflow")

from ptycho import physics
from ptycho.archive import load_trained_model, read_archive
from ptycho.backends.tensorflow import PAYLOAD_NAME, train_model
from ptycho.backends.tensorflow.forward_model import IntensityScaler
from ptycho.backends.tensorflow.training import EpochControl
from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.data.grouping import GroupedData

QUIET = ExecutionConfig(progress_bar=False, logger="none", accelerator="cpu")
HISTORY_KEYS = {"epoch", "train_loss", "val_loss", "intensity_scale", "learning_rate",
                "epoch_time_s", "best_epoch"}


@pytest.mark.parametrize("batch_size, probe_trainable", [(16, True), (32, False)])
def test_gridsize2_object_big_trains_physics_weights_only_when_trainable(
        small_scan, tmp_path, batch_size, probe_trainable):
    """gs=2 object_big at batch 16 and 32; probe/scale change only when trainable."""
    scale_trainable = not probe_trainable
    config = TrainingConfig(model=ModelConfig(N=64, gridsize=2, n_filters_scale=1), nepochs=1,
                            batch_size=batch_size, n_groups=34, probe_trainable=probe_trainable,
                            intensity_scale_trainable=scale_trainable, output_dir=tmp_path,
                            backend="tensorflow")
    grouped = GroupedData.from_scan(small_scan, 2, n_groups=34)   # 32 train + 2 validation
    probe = physics.normalize_probe(small_scan.probe).astype(np.complex64)
    scale = physics.intensity_scale(small_scan.mean_photons_per_pattern(), 64)
    model = train_model(grouped, None, probe, scale, config, QUIET, tmp_path)

    assert set(model.history) == HISTORY_KEYS and model.history["epoch"] == [0]
    initial_scale = float(IntensityScaler(scale, scale_trainable=False).scale())
    assert (model.intensity_scale != initial_scale) == scale_trainable      # exact when frozen
    assert (not np.array_equal(model.probe, probe)) == probe_trainable

    full = GroupedData.from_scan(small_scan, 2)
    x = full.X(slice(0, 40)) * np.float32(scale)
    offsets = full.coords(slice(0, 40))["relative"]
    out = model.predict([x, offsets], batch_size=batch_size)
    assert out.shape == (40, 64, 64, 1) and out.dtype == np.complex64
    assert np.isfinite(out).all()
    alone = model.predict([x[:3], offsets[:3]], batch_size=1)
    assert np.abs(alone - out[:3]).max() <= 1e-5 * np.abs(out[:3]).max()


class _Optimizer:
    learning_rate = 1e-3


class _Trainer:
    optimizer = _Optimizer()
    stop_training = False


class _Scaler:
    @staticmethod
    def scale():
        return tf.constant(2.0)


class _Pinn:
    scaler = _Scaler()
    weights = ()


def test_schedule_follows_torch_semantics():
    """Plateau: reduce after more than `plateau_patience` bad epochs (relative threshold);
    early stop after `early_stop_patience` bad epochs; best epoch tracked."""
    config = TrainingConfig(plateau_patience=1, plateau_factor=0.5, plateau_min_lr=3e-4,
                            early_stop_patience=4)
    control = EpochControl(_Pinn(), "val_loss", config)
    control.set_model(_Trainer())
    rates = []
    for epoch, score in enumerate([5.0, 4.0, 3.9999, 4.5, 4.2, 4.1]):
        rates.append(control.model.optimizer.learning_rate)
        control.on_epoch_end(epoch, {"loss": score + 1, "val_loss": score})
        if control.model.stop_training:
            break
    # epochs 2 (within 1e-4 relative of 4.0) and 3 are bad: reduce at the end of epoch 3;
    # epochs 4 and 5 are bad again: reduce to max(2.5e-4, 3e-4) at the end of epoch 5.
    assert rates == [1e-3, 1e-3, 1e-3, 1e-3, 5e-4, 5e-4]
    assert control.model.optimizer.learning_rate == pytest.approx(3e-4)
    assert control.best_epoch == 2 and control.stopped_epoch is None
    assert control.history["learning_rate"] == rates
    assert control.history["intensity_scale"] == [2.0] * 6
    control.on_epoch_end(6, {"loss": 1.0, "val_loss": 4.0})
    assert control.model.stop_training and control.stopped_epoch == 6


@pytest.fixture(scope="module")
def workflow(small_scan, tmp_path_factory):
    from ptycho.workflows.training import train

    out = tmp_path_factory.mktemp("tf_train")
    config = TrainingConfig(model=ModelConfig(N=0, n_filters_scale=1), nepochs=2, batch_size=16,
                            backend="tensorflow", probe_trainable=True, output_dir=out)
    return train(config, QUIET, train_scan=small_scan)


def test_train_archive_load_infer_end_to_end(workflow, small_scan):
    from ptycho.workflows.inference import reconstruct

    result = workflow
    assert result.model.model_config.N == 64 and result.model.backend == "tensorflow"
    assert set(result.history) == HISTORY_KEYS and result.history["epoch"] == [0, 1]
    assert result.history["best_epoch"] in (0, 1)
    assert all(np.isfinite(result.history[key]).all()
               for key in ("train_loss", "val_loss", "intensity_scale", "learning_rate"))
    folder = result.archive_path.parent
    for name in ("wts.h5.zip", "history.csv", "loss_curve.png"):
        assert (folder / name).is_file(), name

    archive = read_archive(folder)
    assert archive.manifest["backend"] == "tensorflow"
    assert archive.manifest["payload"] == PAYLOAD_NAME
    assert archive.manifest["intensity_scale"] == pytest.approx(result.model.intensity_scale)
    np.testing.assert_array_equal(archive.probe, result.model.probe)

    loaded, _ = load_trained_model(folder)
    assert loaded.backend == "tensorflow"
    assert loaded.intensity_scale == pytest.approx(result.model.intensity_scale, rel=1e-7)
    np.testing.assert_array_equal(loaded.probe, result.model.probe)
    grouped = GroupedData.from_scan(small_scan, 1)
    inputs = [grouped.X() * np.float32(loaded.intensity_scale), grouped.coords()["relative"]]
    assert np.abs(loaded.predict(inputs) - result.model.predict(inputs)).max() <= 1e-6

    recon = reconstruct(loaded, small_scan, batch_size=32, keep_patches=True)
    assert recon.patches.shape == (small_scan.n_positions, 64, 64)
    obj = recon.stitched.object
    assert obj.ndim == 2 and np.iscomplexobj(obj) and np.isfinite(obj).all()
    assert np.abs(obj).max() > 0


def _batch_loss_and_grads_torch(model_cfg, train_cfg, probe, scale, x, offsets, truth):
    torch = pytest.importorskip("torch")
    pytest.importorskip("lightning")
    from ptycho.backends.pytorch.lightning_module import PINNLightning
    from ptycho.backends.pytorch.model import PtychoPINN as TorchPINN
    from ptycho.backends.pytorch.model import offsets_to_torch

    torch.manual_seed(1)
    module = TorchPINN(model_cfg, probe, scale)
    lit = PINNLightning(module, train_cfg, scale)
    batch = {"x": torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))),
             "rel": torch.from_numpy(offsets_to_torch(offsets)),
             "truth": torch.from_numpy(np.ascontiguousarray(np.moveaxis(truth, -1, 1)))}
    loss = lit._loss(batch)
    loss.backward()
    grads = {k: p.grad.numpy() for k, p in module.named_parameters() if p.grad is not None}
    return module.state_dict(), float(loss.detach()), grads


@pytest.mark.parametrize("model_kw, train_kw, at_centre", [
    ({"gridsize": 2}, {"mae_weight": 0.3, "realspace_mae_weight": 0.5, "realspace_weight": 2.0},
     False),
    ({"gridsize": 2, "probe_big": False},
     {"mae_weight": 0.3, "realspace_mae_weight": 0.5, "realspace_weight": 2.0}, False),
    ({"model_type": "supervised"}, {}, True),
])
def test_batch_loss_and_gradients_equal_torch(small_scan, model_kw, train_kw, at_centre):
    """Same objective and gradients as the Lightning module (weights copied from torch)."""
    from ptycho.backends.tensorflow.model import PtychoPINN, torch_state_dict_mapping
    from ptycho.backends.tensorflow.training import PINNTrainer

    model_cfg = ModelConfig(N=64, n_filters_scale=1, **model_kw)
    train_cfg = TrainingConfig(model=model_cfg, **train_kw)
    probe = physics.normalize_probe(small_scan.probe).astype(np.complex64)
    scale = physics.intensity_scale(small_scan.mean_photons_per_pattern(), 64)
    grouped = GroupedData.from_scan(small_scan, model_cfg.gridsize)
    rows = np.arange(6)
    x = grouped.X(rows)
    offsets = grouped.coords(rows, start=True)["relative"]
    truth = grouped.ground_truth_patches(rows, at_centre=at_centre)
    state, torch_loss, torch_grads = _batch_loss_and_grads_torch(
        model_cfg, train_cfg, probe, scale, x, offsets, truth)

    pinn = PtychoPINN(model_cfg, probe, scale)
    mapping = torch_state_dict_mapping(pinn)
    for key, (variable, layout) in mapping.items():
        value = state[key].numpy()
        variable.assign(np.transpose(value, (2, 3, 1, 0)) if layout == "conv_kernel" else value)
    trainer = PINNTrainer(pinn, train_cfg, scale)
    variables = pinn.trainable_variables
    with tf.GradientTape() as tape:
        loss = trainer.compute_batch_loss((tf.constant(x), tf.constant(offsets, tf.float32),
                                           tf.constant(truth)))
    assert float(loss) == pytest.approx(torch_loss, rel=2e-6)
    grads = dict(zip([v.path for v in variables], tape.gradient(loss, variables)))
    for key, expected in torch_grads.items():
        variable, layout = mapping[key]
        actual = grads[variable.path].numpy()
        if layout == "conv_kernel":
            actual = np.transpose(actual, (3, 2, 0, 1))
        assert np.abs(actual - expected).max() <= 1e-3 * np.abs(expected).max(), key


# ---------------------------------------------------------------------------------------------
# Training recipe: cosine schedule and gradient-norm clipping (Keras side)
# ---------------------------------------------------------------------------------------------

def test_keras_cosine_schedule_rates_per_step():
    """The same rates as the torch backend's test (tests/torch/test_torch_training.py)."""
    from ptycho.backends.tensorflow.training import WarmupCosine, make_optimizer

    config = TrainingConfig(lr_schedule="cosine", learning_rate=1e-3, lr_min=1e-4, nepochs=3,
                            lr_warmup_epochs=1)
    optimizer = make_optimizer(config, 4)
    assert isinstance(optimizer.learning_rate, tf.Tensor)
    schedule = optimizer._learning_rate
    assert isinstance(schedule, WarmupCosine)
    rates = [float(schedule(tf.constant(step, tf.int64))) for step in range(15)]
    expected = [2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-4 + 9e-4 * (1 + np.cos(np.pi / 8)) / 2,
                1e-4 + 9e-4 * (1 + np.cos(np.pi / 4)) / 2]
    assert rates[:7] == pytest.approx(expected, rel=1e-6)
    assert rates[8] == pytest.approx(5.5e-4, rel=1e-6)
    assert rates[12:] == pytest.approx([1e-4] * 3, rel=1e-6)
    plateau = make_optimizer(TrainingConfig(), 4)
    assert float(plateau.learning_rate) == pytest.approx(1e-3) and plateau.global_clipnorm is None


@pytest.mark.parametrize("clip, expected", [(5.0, ([3.0, 0.0], [4.0])),
                                            (None, ([30.0, 0.0], [40.0])),
                                            (100.0, ([30.0, 0.0], [40.0]))])
def test_keras_global_clipnorm_clips_the_global_norm(clip, expected):
    """Gradients of global norm 50 over two variables: the first Adam moment is 0.1 x the
    gradient after clipping."""
    from ptycho.backends.tensorflow.training import make_optimizer

    optimizer = make_optimizer(TrainingConfig(grad_clip_norm=clip), 1)
    a, b = tf.Variable([0.0, 0.0]), tf.Variable([0.0])
    optimizer.build([a, b])
    optimizer.apply_gradients([(tf.constant([30.0, 0.0]), a), (tf.constant([40.0]), b)])
    moments = [optimizer._momentums[optimizer._get_variable_index(v)].numpy() / 0.1
               for v in (a, b)]
    for moment, want in zip(moments, expected):
        assert moment.tolist() == pytest.approx(want, rel=1e-5)


def test_training_with_cosine_schedule_and_gradient_clipping(small_scan, tmp_path, monkeypatch):
    from ptycho.backends.schedule import CosineSchedule
    from ptycho.backends.tensorflow import training as tf_training

    clip = 1e-3
    optimizers = []
    original = tf_training.make_optimizer

    def make_optimizer(*args, **kwargs):
        optimizers.append(original(*args, **kwargs))
        return optimizers[-1]

    monkeypatch.setattr(tf_training, "make_optimizer", make_optimizer)
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), nepochs=2, batch_size=16,
                            n_groups=32, validation_fraction=0.25, lr_schedule="cosine",
                            lr_min=1e-4, grad_clip_norm=clip, output_dir=tmp_path,
                            backend="tensorflow")
    grouped = GroupedData.from_scan(small_scan, 1, n_groups=32)
    model = train_model(grouped, None, physics.normalize_probe(small_scan.probe),
                        physics.intensity_scale(small_scan.mean_photons_per_pattern(), 64),
                        config, QUIET, tmp_path)
    optimizer = optimizers[0]
    assert int(optimizer.iterations) == 4 and optimizer.global_clipnorm == clip
    schedule = CosineSchedule.from_config(config, 2)
    assert model.history["learning_rate"] == pytest.approx(
        [1e-3 * schedule.factor(2), 1e-3 * schedule.factor(4)], rel=1e-6)
    # every update was clipped to norm `clip`, so the first moment (an average of them) is too;
    # unclipped, the gradient norms on this data are > 100 x clip (see the torch test)
    moments = [m.numpy() for m in optimizer._momentums]
    assert np.sqrt(sum(float(np.sum(m.astype(np.float64) ** 2)) for m in moments)) <= clip * 1.001

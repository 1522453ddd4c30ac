"""Model parity: torch and Keras PINNs with transferred weights compute the same thing.

Weights are copied from the seeded torch model into the Keras model
(ptycho.parity.weights); then generator patches, member patches, predicted amplitudes, the
training loss and ``predict`` agree to 1e-5 (relative) for N = 64 and 128, gridsize 1 and 2,
object_big and probe_big on and off (cnn: all 16; unet, resnet and ffno: the 8 N=64 ones and
N=128 gs=2), and with a mixed-state probe of 3 incoherent modes (gridsize 1 and 2). From the
same initial weights, 20 Adam steps on the same batches give loss curves that agree to 1e-3
(every architecture, and 3 trainable probe modes).
"""

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("lightning")
pytest.importorskip("tensorflow")
pytest.importorskip("ptycho.backends.tensorflow")

from ptycho.parity import checks

EXPECTED_QUANTITIES = {
    "generator object patches", "member patches (after object_big)", "predicted amplitude s*A",
    "training loss (Poisson NLL)", "training loss with a detector mask",
    "predict: object patch on the group mean",
    "weights round trip torch -> keras -> torch",
}


def _describe(rows):
    return "\n".join(f"{r.quantity} [{r.config}]: abs {r.max_abs:.3g} rel {r.max_rel:.3g}"
                     for r in rows)


@pytest.mark.parametrize("case", checks.MODEL_CASES + checks.model_cases("unet", "standard")
                         + checks.model_cases("resnet", "standard")
                         + checks.model_cases("ffno", "standard") + checks.MIXED_STATE_CASES,
                         ids=lambda c: c.label().replace(" ", ","))
def test_transferred_weights_give_the_same_outputs(case):
    rows = checks.check_model(case)
    assert {row.quantity for row in rows} == EXPECTED_QUANTITIES
    failed = [row for row in rows if not row.passed]
    assert not failed, _describe(failed)
    round_trip = next(r for r in rows if r.quantity.startswith("weights round trip"))
    assert round_trip.max_abs == 0.0


def test_synthetic_batches_follow_the_legacy_layout():
    batch = checks.synthetic_batches(64, 2, 3, n_batches=2, seed=1)
    assert len(batch) == 2
    assert batch[0].x.shape == (3, 64, 64, 4) and batch[0].x.dtype == np.float32
    assert batch[0].offsets.shape == (3, 1, 2, 4)
    # coords_relative sums to zero over the group; sub-pixel offsets
    np.testing.assert_allclose(batch[0].offsets.sum(axis=-1), 0.0, atol=1e-5)
    assert np.any(np.abs(batch[0].offsets - np.round(batch[0].offsets)) > 0.01)
    total_power = np.concatenate([b.x for b in batch]) ** 2
    assert total_power.sum(axis=(1, 2)).mean() == pytest.approx(32 ** 2, rel=1e-4)


@pytest.mark.parametrize("architecture", ["cnn", "unet", "resnet", "ffno"])
def test_loss_curves_of_20_adam_steps_agree(architecture):
    """Same initial weights, same batches, learning rate from TrainingConfig; Keras uses the
    torch update rule (ptycho.parity.optim) so that only the model and gradients differ."""
    curves = checks.loss_curves(checks.ModelCase(gridsize=2, architecture=architecture),
                                steps=20)
    torch_curve, keras_curve = np.array(curves.torch), np.array(curves.tensorflow)
    assert len(torch_curve) == 20 and np.isfinite(torch_curve).all()
    assert torch_curve[-5:].mean() != pytest.approx(torch_curve[0], rel=1e-3)  # it trains
    relative = np.abs(torch_curve - keras_curve) / np.abs(keras_curve)
    assert relative.max() <= checks.TOL_CURVE, relative


@pytest.mark.slow
def test_loss_curves_with_the_keras_adam_the_backend_trains_with():
    """The TensorFlow backend's own optimiser (Keras Adam, eps 1e-8 on the uncorrected sqrt(v))
    still stays within 1e-3 over 20 steps (measured 3.3e-4 at gs=2, 8.4e-4 at gs=1)."""
    rows = checks.check_loss_curves(checks.ModelCase(gridsize=2), 20, "keras_adam")
    assert rows[0].passed, rows[0]


def test_cosine_schedule_gives_the_same_rate_at_every_step_in_both_backends():
    """torch LambdaLR stepped after each update and Keras WarmupCosine of `iterations`, for a
    fractional warm-up and past the end of the schedule."""
    import tensorflow as tf
    import torch

    from ptycho.backends.pytorch.lightning_module import adam, cosine_scheduler
    from ptycho.backends.schedule import CosineSchedule
    from ptycho.backends.tensorflow.training import make_optimizer
    from ptycho.config.config import TrainingConfig

    config = TrainingConfig(lr_schedule="cosine", learning_rate=2e-3, lr_min=5e-5, nepochs=3,
                            lr_warmup_epochs=1.5)
    weight = torch.nn.Parameter(torch.zeros(1))
    torch_opt = adam([weight], config.learning_rate)
    scheduler = cosine_scheduler(torch_opt, config, 7)
    keras_opt = make_optimizer(config, 7)
    variable = tf.Variable([0.0])
    keras_opt.build([variable])
    torch_rates, keras_rates = [], []
    for _ in range(25):   # W = round(1.5 * 7) = 10 warm-up steps, T = 21
        torch_rates.append(torch_opt.param_groups[0]["lr"])
        keras_rates.append(float(keras_opt.learning_rate))
        weight.grad = torch.ones(1)
        torch_opt.step()
        scheduler.step()
        keras_opt.apply_gradients([(tf.constant([1.0]), variable)])
    assert keras_rates == pytest.approx(torch_rates, rel=1e-6)   # float32 in Keras
    assert torch_rates == pytest.approx(
        CosineSchedule(10, 21, 5e-5 / 2e-3).learning_rates(2e-3, 25), rel=1e-12)
    assert max(torch_rates) == pytest.approx(2e-3) and torch_rates[-1] == pytest.approx(5e-5)


def test_loss_curves_agree_with_cosine_schedule_and_gradient_clipping():
    """The 20-step loss curve with the recipe 'cosine+clip' (one warm-up epoch of 5 steps,
    cosine decay, clip norm 20): each backend's own scheduler and clipping."""
    curves = checks.loss_curves(checks.ModelCase(gridsize=2), steps=20, recipe="cosine+clip")
    torch_curve, keras_curve = np.array(curves.torch), np.array(curves.tensorflow)
    assert len(torch_curve) == 20 and np.isfinite(torch_curve).all()
    assert curves.tensorflow_lr == pytest.approx(curves.torch_lr, rel=1e-6)
    assert curves.torch_lr[0] == pytest.approx(2e-4) and max(curves.torch_lr) == pytest.approx(1e-3)
    clip = checks.RECIPES["cosine+clip"]["grad_clip_norm"]
    clipped = sum(norm > clip for norm in curves.grad_norms)
    assert 0 < clipped < 20, curves.grad_norms   # both branches of min(1, clip / norm)
    relative = np.abs(torch_curve - keras_curve) / np.abs(keras_curve)
    assert relative.max() <= checks.TOL_CURVE, relative


def test_loss_curves_agree_with_trainable_probe_modes():
    """3 incoherent probe modes (2 made from mode 0 of the asymmetric probe), trained with the
    network: the two backends' curves stay within 1e-3 (measured 3.3e-5 over 20 steps)."""
    case = checks.MIXED_STATE_CASES[-1]
    curves = checks.loss_curves(case, steps=20, recipe="probe_trainable")
    torch_curve, keras_curve = np.array(curves.torch), np.array(curves.tensorflow)
    assert np.isfinite(torch_curve).all()
    relative = np.abs(torch_curve - keras_curve) / np.abs(keras_curve)
    assert relative.max() <= checks.TOL_CURVE, relative


def test_parity_plan_covers_mixed_state_probes():
    for level in ("full", "standard"):
        cases, curves = checks.plan(level)
        assert set(checks.MIXED_STATE_CASES) <= set(cases)
        assert any(recipe == "probe_trainable" and case.probe_modes > 1
                   for _, _, recipe, case in curves)

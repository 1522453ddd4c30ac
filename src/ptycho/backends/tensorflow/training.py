"""Train, save and load the TensorFlow backend (the API documented in ``ptycho.backends.base``).

The losses, optimiser and schedule mirror ``ptycho.backends.pytorch.lightning_module``:

- PINN: ``nll_weight * poisson_nll((s A)^2, (s X)^2) + mae_weight * mean|s A - s X|
  + realspace_mae_weight * amplitude/phase MAE of the member patches vs ground truth
  + realspace_weight * TV(generator patches)``, with ``s X`` the network input (the dataset's
  s times the normalised amplitudes) and ``s A`` the model's predicted amplitude. With a
  detector mask the two diffraction means run over the batch's valid pixels only.
- supervised: amplitude + phase MAE on the central region vs ground-truth patches.
- Adam(learning_rate, eps=1e-8); ReduceLROnPlateau with torch's semantics (relative threshold
  1e-4, reduce after more than ``plateau_patience`` bad epochs, floor ``plateau_min_lr``) on
  ``val_loss`` (``train_loss`` without validation); early stopping after
  ``early_stop_patience`` epochs without improvement; the best epoch's weights are restored.
- ``lr_schedule='cosine'``: warm-up and cosine decay per optimiser step
  (:class:`WarmupCosine`, the formula of ``ptycho.backends.schedule``) instead of the plateau
  rule; ``grad_clip_norm``: the optimiser's ``global_clipnorm`` (see :func:`make_optimizer`).
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import tempfile
import time
import warnings
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from ptycho import physics, runcontrol
from ptycho.backends.architecture import skips_border
from ptycho.backends.schedule import CosineSchedule
from ptycho.backends.tensorflow import forward_model as fm
from ptycho.backends.tensorflow.data import make_datasets
from ptycho.backends.tensorflow.model import PtychoPINN
from ptycho.config.config import (
    DEFAULT_PREDICT_BATCH,
    ExecutionConfig,
    ModelConfig,
    TrainingConfig,
)
from ptycho.data.grouping import GroupedData, GroupedScans
from ptycho.errors import InputError, first_line

log = logging.getLogger(__name__)

PAYLOAD_NAME = "model.weights.h5"
BACKEND = "tensorflow"
ADAM_EPSILON = 1e-8          # torch.optim.Adam default (Keras defaults to 1e-7)
PLATEAU_THRESHOLD = 1e-4     # torch ReduceLROnPlateau default (mode 'rel')
PLATEAU_EPS = 1e-8




def _to_float(value) -> float:
    """A Python float from a float, tensor or Keras variable."""
    return float(value.numpy()) if hasattr(value, "numpy") else float(value)


@contextlib.contextmanager
def _quiet_keras_numpy_warning():
    """Silence the NumPy 2 ``__array__(copy=...)`` DeprecationWarning raised inside Keras I/O."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning,
                                message=".*__array__ implementation doesn't accept a copy.*")
        yield


# ---------------------------------------------------------------------------------------------
# Losses
# ---------------------------------------------------------------------------------------------

def total_variation(patches: tf.Tensor) -> tf.Tensor:
    """Mean squared finite differences of real and imaginary parts.

    patches (B, N, N, C) complex64 -> scalar float32 (mean over columns + mean over rows).
    """
    parts = tf.stack([tf.math.real(patches), tf.math.imag(patches)])
    d_cols = parts[:, :, :, 1:] - parts[:, :, :, :-1]
    d_rows = parts[:, :, 1:] - parts[:, :, :-1]
    return tf.reduce_mean(tf.square(d_cols)) + tf.reduce_mean(tf.square(d_rows))


def amplitude_phase_mae(pred: tf.Tensor, truth: tf.Tensor, region: tf.Tensor) -> tf.Tensor:
    """MAE of amplitudes plus MAE of wrapped phase differences over ``region``.

    Parameters
    ----------
    pred, truth : Tensor, shape (B, N, N, C), complex64
    region : Tensor, shape (N, N), float32 weights (the central box or ones)

    Where ``pred * conj(truth)`` is exactly 0 the phase error and its gradient are 0 (as in
    torch; a plain ``angle`` would give a NaN gradient there).
    """
    amp_err = tf.abs(tf.abs(pred) - tf.abs(truth))
    product = pred * tf.math.conj(truth)
    is_zero = tf.equal(product, tf.zeros_like(product))
    safe = tf.where(is_zero, tf.ones_like(product), product)
    phase_err = tf.where(is_zero, tf.zeros_like(amp_err), tf.abs(tf.math.angle(safe)))
    weights = region[None, :, :, None]
    batch = tf.cast(tf.shape(pred)[0], tf.float32)
    channels = tf.cast(tf.shape(pred)[3], tf.float32)
    denominator = tf.reduce_sum(region) * batch * channels
    return tf.reduce_sum((amp_err + phase_err) * weights) / denominator


# ---------------------------------------------------------------------------------------------
# Training wrapper
# ---------------------------------------------------------------------------------------------

class PINNTrainer(keras.Model):
    """Trains a :class:`PtychoPINN` by Poisson NLL (PINN) or patch MAE (supervised).

    Batches are ``(x, offsets)``, ``(x, offsets, truth)``, and with a detector mask either of
    these followed by ``valid``, and for several scans by ``scan`` (see
    ``data.GroupedBatches``); ``truth`` is the complex, ``valid`` the bool and ``scan`` the
    integer element after ``offsets``.
    ``intensity_scale`` is the dataset's s: the network input is ``s * X`` and the measured
    counts are ``(s * X)**2``; the model's own (possibly trainable) scale starts at s.

    Several training scans (batches ending with the int64 ``scan`` of each sample, from a
    ``GroupedScans``): ``intensity_scale`` holds their K scales ``s_k`` and ``scan_probes``
    (K, N, N) complex their normalised probes ((K, M, N, N) with M probe modes); as the torch
    ``PINNLightning``, the network
    input is ``s_1 * X``, a sample of scan k is illuminated by ``P_k`` and its predicted and
    measured amplitudes are multiplied by ``s_k / s_1``.
    """

    def __init__(self, pinn: PtychoPINN, config: TrainingConfig,
                 intensity_scale: float | np.ndarray, scan_probes: np.ndarray | None = None):
        super().__init__(name="pinn_trainer")
        self.pinn = pinn
        self.train_config = config
        self.scan_probes = None
        if scan_probes is None:
            self.data_scale = float(intensity_scale)
        else:
            scales = np.asarray(intensity_scale, np.float64)
            self.data_scale = float(scales[0])
            self.scale_ratio = tf.constant(scales / scales[0], tf.float32)
            self.scan_probes = tf.constant(np.asarray(scan_probes, np.complex64))
        n = pinn.model_config.N
        region = physics.centre_mask(n) if pinn.model_config.pad_object else np.ones((n, n))
        self.truth_region = tf.constant(region, tf.float32)
        self.supervised = pinn.model_config.model_type == "supervised"
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.built = True

    @property
    def metrics(self):
        return [self.loss_tracker]

    def call(self, inputs, training=None):
        return self.pinn(inputs)

    def compute_batch_loss(self, data) -> tf.Tensor:
        """The training objective of one batch (scalar float32)."""
        x_scaled = data[0] * self.data_scale
        offsets = data[1]
        truth = next((t for t in data[2:] if tf.as_dtype(t.dtype).is_complex), None)
        valid = next((t for t in data[2:] if tf.as_dtype(t.dtype) == tf.bool), None)
        scan = next((t for t in data[2:] if tf.as_dtype(t.dtype).is_integer), None)
        cfg = self.train_config
        if self.supervised:
            patches = self.pinn.object_patches(x_scaled)
            return amplitude_phase_mae(patches, truth, self.truth_region)
        probe = None if scan is None else tf.gather(self.scan_probes, scan)[..., None]
        out = self.pinn.forward(x_scaled, offsets, probe=probe)
        amplitude = out["amplitude"]
        if scan is not None:  # compare in each sample's own scan units: both times s_k / s_1
            ratio = tf.gather(self.scale_ratio, scan)[:, None, None, None]
            amplitude, x_scaled = amplitude * ratio, x_scaled * ratio
        loss = tf.zeros((), tf.float32)
        if cfg.nll_weight:
            loss += cfg.nll_weight * fm.poisson_nll(tf.square(amplitude), tf.square(x_scaled),
                                                    valid=valid)
        if cfg.mae_weight:
            loss += cfg.mae_weight * fm.masked_mean(tf.abs(amplitude - x_scaled), valid)
        if cfg.realspace_mae_weight:
            loss += cfg.realspace_mae_weight * amplitude_phase_mae(
                out["member_patches"], truth, self.truth_region)
        if cfg.realspace_weight:
            loss += cfg.realspace_weight * total_variation(out["patches"])
        return loss

    def train_step(self, data):
        variables = self.pinn.trainable_variables
        with tf.GradientTape() as tape:
            loss = self.compute_batch_loss(data)
        gradients = tape.gradient(loss, variables)
        pairs = [(g, v) for g, v in zip(gradients, variables) if g is not None]
        self.optimizer.apply_gradients(pairs)
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(data[0])[0])
        return {"loss": self.loss_tracker.result()}

    def test_step(self, data):
        loss = self.compute_batch_loss(data)
        self.loss_tracker.update_state(loss, sample_weight=tf.shape(data[0])[0])
        return {"loss": self.loss_tracker.result()}


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """``lr_schedule='cosine'``: ``learning_rate * CosineSchedule.factor(iterations)``.

    Evaluated in float64 with Keras ops from the optimiser's ``iterations`` (the updates
    applied so far, restored with a resumed run), so the rate of every update equals the torch
    backend's ``LambdaLR`` (:mod:`ptycho.backends.schedule`).
    """

    def __init__(self, learning_rate: float, schedule: CosineSchedule):
        super().__init__()
        self.initial_learning_rate = float(learning_rate)
        self.schedule = schedule

    def __call__(self, step):
        from keras import ops

        factor = self.schedule.factor(ops.cast(step, "float64"), minimum=ops.minimum,
                                      maximum=ops.maximum, cos=ops.cos)
        return ops.cast(self.initial_learning_rate * factor, "float32")

    def get_config(self) -> dict:
        return {"learning_rate": self.initial_learning_rate,
                "warmup_steps": self.schedule.warmup_steps,
                "total_steps": self.schedule.total_steps,
                "min_factor": self.schedule.min_factor}


def make_optimizer(config: TrainingConfig, steps_per_epoch: int, adam=None):
    """The training optimiser of ``config``: Adam (eps 1e-8) with its schedule and clipping.

    ``lr_schedule='cosine'`` gives a :class:`WarmupCosine` learning rate for
    ``steps_per_epoch`` updates per epoch (plateau: the constant ``learning_rate``, reduced by
    :class:`EpochControl`). ``grad_clip_norm`` is Keras's ``global_clipnorm``: in
    ``apply_gradients``, before the update, all gradients are scaled by
    ``min(1, grad_clip_norm / ||g||)``, ``||g||`` the L2 norm over every trainable variable's
    gradient (torch's ``clip_grad_norm_`` divides by ``||g|| + 1e-6``: the same to 1e-6 relative
    where it clips). ``adam`` is the optimiser class or factory (``keras.optimizers.Adam``;
    the parity checks pass ``ptycho.parity.optim.torch_adam``).
    """
    adam = adam or keras.optimizers.Adam
    learning_rate = config.learning_rate
    if config.lr_schedule == "cosine":
        learning_rate = WarmupCosine(config.learning_rate,
                                     CosineSchedule.from_config(config, steps_per_epoch))
    return adam(learning_rate=learning_rate, epsilon=ADAM_EPSILON,
                global_clipnorm=config.grad_clip_norm or None)


class EpochControl(keras.callbacks.Callback):
    """History, best-epoch weights, early stopping and the plateau schedule (torch semantics).

    Per epoch it records ``epoch`` (0-based), ``train_loss``, ``val_loss`` (with validation),
    ``intensity_scale`` (the model's s at the end of the epoch) and ``learning_rate`` (the rate
    used during the epoch; with ``lr_schedule='cosine'`` the rate of the next update), then
    updates the plateau schedule for the next epoch (not with cosine: the optimiser's
    :class:`WarmupCosine` sets the rate of every update).
    """

    def __init__(self, pinn: PtychoPINN, monitor: str, config: TrainingConfig):
        super().__init__()
        self.pinn = pinn
        self.monitor = monitor
        self.config = config
        self.history: dict[str, list] = {}
        self.best_score = float("inf")
        self.best_epoch = -1
        self.best_weights: list | None = None
        self._stop_best = float("inf")
        self._stop_wait = 0
        self._plateau_best = float("inf")
        self._plateau_bad = 0
        self._epoch_started = time.perf_counter()
        self.stopped_epoch: int | None = None

    def _learning_rate(self) -> float:
        return _to_float(self.model.optimizer.learning_rate)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_started = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        metrics = {"train_loss": logs.get("loss"), "val_loss": logs.get("val_loss")}
        lr = self._learning_rate()
        self.history.setdefault("epoch", []).append(int(epoch))
        for key in ("train_loss", "val_loss"):
            if metrics[key] is not None:
                self.history.setdefault(key, []).append(float(metrics[key]))
        self.history.setdefault("intensity_scale", []).append(
            _to_float(self.pinn.scaler.scale()))
        self.history.setdefault("learning_rate", []).append(lr)
        self.history.setdefault("epoch_time_s", []).append(time.perf_counter() - self._epoch_started)

        score = metrics.get(self.monitor)
        score = float("nan") if score is None else float(score)
        if math.isfinite(score) and score < self.best_score:
            self.best_score = score
            self.best_epoch = int(epoch)
            self.best_weights = [v.numpy().copy() for v in self.pinn.weights]

        # Early stopping (Lightning EarlyStopping: min_delta 0, stop on a non-finite score).
        if not math.isfinite(score):
            log.warning("stopping: %s is %s at epoch %d", self.monitor, score, epoch)
            self.stopped_epoch = int(epoch)
            self.model.stop_training = True
            return
        if score < self._stop_best:
            self._stop_best = score
            self._stop_wait = 0
        else:
            self._stop_wait += 1
            if self._stop_wait >= self.config.early_stop_patience:
                self.stopped_epoch = int(epoch)
                self.model.stop_training = True

        # ReduceLROnPlateau (torch: mode 'min', threshold 1e-4 'rel', cooldown 0).
        if self.config.lr_schedule != "plateau":  # cosine: the optimiser's WarmupCosine
            return
        if score < self._plateau_best * (1.0 - PLATEAU_THRESHOLD):
            self._plateau_best = score
            self._plateau_bad = 0
        else:
            self._plateau_bad += 1
        if self._plateau_bad > self.config.plateau_patience:
            new_lr = max(lr * self.config.plateau_factor, self.config.plateau_min_lr)
            if lr - new_lr > PLATEAU_EPS:
                self.model.optimizer.learning_rate = new_lr
                log.info("epoch %d: reducing learning rate to %.4g", epoch, new_lr)
            self._plateau_bad = 0


class NonFiniteLossGuard(keras.callbacks.Callback):
    """Raise :class:`FloatingPointError` as soon as the running training loss is not finite."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        value = (logs or {}).get("loss")
        if value is not None and not math.isfinite(float(value)):
            raise FloatingPointError(
                f"training loss became {float(value)} at epoch {self.epoch}, step {batch}")


class StepControl(keras.callbacks.Callback):
    """After every optimiser step, leave ``fit`` when SIGINT/SIGTERM arrived
    (``ptycho.runcontrol``), before the unfinished epoch's validation and bookkeeping."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.step = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        self.step = batch
        signum = runcontrol.pending()
        if signum is not None:
            raise runcontrol.SignalReceived(signum)


_CONTROL_COUNTERS = ("best_score", "best_epoch", "_stop_best", "_stop_wait", "_plateau_best",
                     "_plateau_bad")


def _checkpoint(pinn: PtychoPINN, optimizer, control: EpochControl):
    """The resumable state (``ptycho.runcontrol.Checkpoint``) as a pickle-free NPZ."""
    from ptycho.runcontrol import Checkpoint

    arrays = {}
    for prefix, values in (("model", [v.numpy() for v in pinn.weights]),
                           ("best", control.best_weights or []),
                           ("optimizer", [v.numpy() for v in optimizer.variables])):
        for i, value in enumerate(values):
            arrays[f"{prefix}_{i:04d}"] = np.asarray(value)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    progress = {"epochs_completed": len(control.history.get("epoch", [])),
                "history": control.history,
                "counters": {name: getattr(control, name) for name in _CONTROL_COUNTERS}}
    progress["best_epoch"] = control.best_epoch
    progress["best_score"] = control.best_score
    return Checkpoint(backend=BACKEND, state=buffer.getvalue(), progress=progress)


def _restore(resume, pinn: PtychoPINN, optimizer, control: EpochControl) -> None:
    """Load a checkpoint written by :func:`_checkpoint` (``allow_pickle=False``)."""
    where = resume.source or "resume.npz"
    try:
        with np.load(io.BytesIO(resume.state), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}

        def _group(prefix):
            return [arrays[k] for k in sorted(arrays) if k.startswith(prefix + "_")]

        model, best, opt = _group("model"), _group("best"), _group("optimizer")
        for name, values, variables in (("model", model, pinn.weights),
                                        ("optimizer", opt, optimizer.variables)):
            if [tuple(v.shape) for v in values] != [tuple(v.shape) for v in variables]:
                raise ValueError(f"{name} variables do not match the configured network")
        for variable, value in zip(pinn.weights, model):
            variable.assign(value)
        for variable, value in zip(optimizer.variables, opt):
            variable.assign(value)
        counters = resume.progress.get("counters", {})
        for name in _CONTROL_COUNTERS:
            if name in counters:
                setattr(control, name, type(getattr(control, name))(counters[name]))
    except Exception as exc:
        raise InputError("invalid checkpoint state", where,
                         "a checkpoint written by this model configuration (train again without "
                         "--resume)", first_line(exc, with_type=True, max_chars=200)
                         ) from None
    control.best_weights = best or None
    control.history = {k: list(v) for k, v in resume.progress.get("history", {}).items()}


# ---------------------------------------------------------------------------------------------
# Trained model
# ---------------------------------------------------------------------------------------------

class TFTrainedModel:
    """A trained (or loaded) Keras model behind the backend-neutral API (``backends.base``)."""

    backend = BACKEND
    payload_name = PAYLOAD_NAME

    def __init__(self, module: PtychoPINN, history: dict | None = None):
        self.module = module
        self.model_config: ModelConfig = module.model_config
        self.history = history or {}
        n, channels = self.model_config.N, self.model_config.gridsize ** 2
        signature = [tf.TensorSpec((None, n, n, channels), tf.float32),
                     tf.TensorSpec((None, 1, 2, channels), tf.float32)]
        self._predict_fns = {
            central_only: tf.function(functools.partial(module.predict_object,
                                                        central_only=central_only),
                                      input_signature=signature)
            for central_only in (False, True)}

    @property
    def intensity_scale(self) -> float:
        """The trained s = exp(log_scale)."""
        return _to_float(self.module.scaler.scale())

    @property
    def probe(self) -> np.ndarray:
        """The trained probe, (N, N) or (M, N, N) modes, complex64."""
        return self.module.illumination.probe().numpy().astype(np.complex64)

    def set_probe(self, probe: np.ndarray) -> None:
        """Replace the probe (same shape as :attr:`probe`), e.g. by its orthogonalised modes."""
        probe = np.asarray(probe, np.complex64)
        self.module.illumination.probe_ri.assign(np.stack([probe.real, probe.imag]))

    def payload_bytes(self) -> bytes:
        """The bytes of a Keras ``.weights.h5`` file holding every weight of the model."""
        with tempfile.TemporaryDirectory(prefix="ptychopinn-tf-") as folder:
            path = os.path.join(folder, PAYLOAD_NAME)
            with _quiet_keras_numpy_warning():
                self.module.save_weights(path)
            return Path(path).read_bytes()

    def predict(self, inputs, batch_size: int = DEFAULT_PREDICT_BATCH,
                central_px: int | None = None) -> np.ndarray:
        """``inputs = [X_scaled (B, N, N, C), offsets (B, 1, 2, C)]`` -> complex64 (B, N, N, 1).

        The object patch of each sample centred on its group mean; no gradients are recorded.
        ``central_px``: the caller uses only the central ``central_px`` pixels of each patch
        (see ``ptycho.backends.base``); up to N/2 this skips the border branch.
        """
        x_all, offsets_all = inputs
        x_all = np.asarray(x_all, np.float32)
        channels = self.model_config.gridsize ** 2
        n = self.model_config.N
        if x_all.ndim != 4 or x_all.shape[-1] != channels or x_all.shape[1] != n:
            raise InputError(
                "input does not match the model", "predict inputs",
                f"(B, {n}, {n}, {channels}) for this gridsize-{self.model_config.gridsize} "
                f"model (regroup the data with gridsize={self.model_config.gridsize})",
                f"shape {tuple(x_all.shape)}")
        offsets_all = np.asarray(offsets_all, np.float32)
        predict_fn = self._predict_fns[skips_border(central_px, n)]
        outputs = []
        for lo in range(0, len(x_all), batch_size):
            obj = predict_fn(tf.constant(x_all[lo:lo + batch_size]),
                             tf.constant(offsets_all[lo:lo + batch_size]))
            outputs.append(obj.numpy()[..., 0])
        result = np.concatenate(outputs) if outputs else np.zeros((0, n, n))
        return result[..., None].astype(np.complex64)


# ---------------------------------------------------------------------------------------------
# Entry points
# ---------------------------------------------------------------------------------------------

def _device_scope(execution: ExecutionConfig):
    """A ``tf.device`` scope for ``execution.accelerator`` (TensorFlow places ops itself)."""
    accelerator = str(execution.accelerator).lower()
    if accelerator == "cpu":
        return tf.device("/CPU:0")
    if accelerator in ("gpu", "cuda", "mps"):
        if not tf.config.list_physical_devices("GPU"):
            raise InputError("accelerator not available", "ExecutionConfig.accelerator",
                             "a GPU visible to TensorFlow (or accelerator 'cpu'/'auto')",
                             repr(execution.accelerator))
        return tf.device("/GPU:0")
    return contextlib.nullcontext()


def _warn_unsupported(execution: ExecutionConfig) -> None:
    if execution.precision not in ("32-true", "32", 32):
        log.warning("the tensorflow backend trains in float32; precision=%r is ignored",
                    execution.precision)
    if execution.strategy not in ("auto", None) or execution.num_nodes != 1 or \
            execution.devices not in (1, "1", "auto"):
        log.warning("the tensorflow backend trains on one device; strategy/devices/num_nodes "
                    "are ignored")
    if execution.logger not in ("csv", "none"):
        log.warning("the tensorflow backend supports logger 'csv' or 'none'; %r is ignored",
                    execution.logger)


def train_model(train: GroupedData | GroupedScans, validation: GroupedData | None,
                probe: np.ndarray, intensity_scale: float | np.ndarray, config: TrainingConfig,
                execution: ExecutionConfig, output_dir: Path, *, resume=None
                ) -> TFTrainedModel:
    """Train a PtychoPINN (see ``ptycho.backends.base``); return the best-epoch model.

    ``resume`` (a ``ptycho.runcontrol.Checkpoint``) continues an interrupted run up to
    ``config.nepochs`` epochs in total. A pending signal (``ptycho.runcontrol``) or a
    non-finite training loss raises :class:`~ptycho.runcontrol.StopTraining` carrying
    the best weights so far (and, for a signal, the resumable state).

    Parameters
    ----------
    train : GroupedData or GroupedScans
        Training groups; ``config.validation_fraction`` of them are held out (seeded) when
        ``validation`` is None. A ``GroupedScans`` (several scans) takes one probe and one s
        per scan, and the model is built with the first scan's (see :class:`PINNTrainer`).
    validation : GroupedData or None
    probe : ndarray, shape (N, N), or (K, N, N) for K scans, complex
        The normalised probe (``physics.normalize_probe``); with ``probe_modes`` M > 1
        (M, N, N), or (K, M, N, N) for K scans.
    intensity_scale : float, or ndarray (K,) for K scans
        The dataset's s = sqrt(nphotons) / (N/2); also the initial trainable scale.
    config : TrainingConfig
    execution : ExecutionConfig
        ``progress_bar`` (Keras verbose 1 or 0), ``logger`` ('csv' writes
        ``<output_dir>/logs/metrics.csv``), ``accelerator`` ('cpu' pins the CPU, 'gpu'/'cuda'
        needs a visible GPU); precision, strategy, devices and workers do not apply here.
    output_dir : Path

    Returns
    -------
    TFTrainedModel
        With the weights of the best epoch (lowest ``val_loss``, else ``train_loss``) and
        ``history`` holding ``epoch``, ``train_loss``, ``val_loss`` (with validation),
        ``intensity_scale``, ``learning_rate`` (per-epoch lists) and ``best_epoch``.

    Raises
    ------
    InputError
        Ground truth needed (supervised, ``realspace_mae_weight > 0``) but missing.
    ptycho.runcontrol.StopTraining
        Interrupted by a signal, or the training loss became NaN or infinite.
    """
    keras.utils.set_random_seed(config.seed)
    _warn_unsupported(execution)
    model_cfg = config.model
    supervised = model_cfg.model_type == "supervised"
    needs_truth = supervised or config.realspace_mae_weight > 0
    lacking = [scan.source for scan in train.scans if scan.object_guess is None]
    if needs_truth and lacking:
        raise InputError("missing ground truth", f"{lacking[0]}:objectGuess",
                         "an objectGuess for supervised training or realspace_mae_weight > 0")
    library = isinstance(train, GroupedScans)
    truth_at_centre = supervised and not (model_cfg.object_big and model_cfg.gridsize > 1)
    train_set, val_set = make_datasets(train, validation, config.batch_size,
                                       config.validation_fraction, config.seed,
                                       with_truth=needs_truth, truth_at_centre=truth_at_centre)
    if val_set is not None and len(val_set.indices) == 0:
        val_set = None
    monitor = "val_loss" if val_set is not None else "train_loss"
    with _device_scope(execution):
        pinn = PtychoPINN(model_cfg, probe[0] if library else probe,
                          float(intensity_scale[0]) if library else intensity_scale,
                          probe_trainable=config.probe_trainable and not supervised,
                          intensity_scale_trainable=(config.intensity_scale_trainable
                                                     and not supervised))
        if config.init_weights is not None:
            from ptycho.backends.weight_transfer import load_initial_weights

            load_initial_weights(pinn, config.init_weights)
        trainer = PINNTrainer(pinn, config, intensity_scale, probe if library else None)
        optimizer = make_optimizer(config, len(train_set))
        trainer.compile(optimizer=optimizer, jit_compile=False)
        optimizer.build(pinn.trainable_variables)
        control = EpochControl(pinn, monitor, config)
        step_control = StepControl()
        initial_epoch = 0
        if resume is not None:
            _restore(resume, pinn, optimizer, control)
            initial_epoch = resume.epochs_completed
            for _ in range(initial_epoch):  # the shuffles of the completed epochs
                train_set._rng.permutation(train_set.indices)
        callbacks: list = [NonFiniteLossGuard(), control, step_control]
        if execution.logger == "csv":
            log_dir = Path(output_dir) / "logs"
            log_dir.mkdir(parents=True, exist_ok=True)
            callbacks.append(keras.callbacks.CSVLogger(str(log_dir / "metrics.csv")))
        try:
            trainer.fit(train_set.dataset(),
                        validation_data=val_set.dataset() if val_set is not None else None,
                        epochs=config.nepochs, initial_epoch=initial_epoch, callbacks=callbacks,
                        shuffle=False, verbose=1 if execution.progress_bar else 0)
        except runcontrol.SignalReceived as exc:
            checkpoint = _checkpoint(pinn, optimizer, control)
            if control.best_weights is not None:
                for variable, value in zip(pinn.weights, control.best_weights):
                    variable.assign(value)
            raise runcontrol.StopTraining(
                "signal", f"training stopped by {runcontrol.signal_name(exc.signum)} at epoch "
                f"{step_control.epoch}, step {step_control.step}", signum=exc.signum,
                model=TFTrainedModel(pinn, dict(control.history, best_epoch=control.best_epoch)),
                checkpoint=checkpoint) from None
        except FloatingPointError as exc:
            model = None
            if control.best_weights is not None:
                for variable, value in zip(pinn.weights, control.best_weights):
                    variable.assign(value)
                model = TFTrainedModel(pinn, dict(control.history, best_epoch=control.best_epoch))
            raise runcontrol.StopTraining("nonfinite", str(exc), model=model) from None
    if control.best_weights is not None:
        for variable, value in zip(pinn.weights, control.best_weights):
            variable.assign(value)
        log.info("best epoch %d (%s %.6g)", control.best_epoch, monitor, control.best_score)
    history = dict(control.history)
    history["best_epoch"] = control.best_epoch
    return TFTrainedModel(pinn, history)


def load_model(manifest: dict, payload: bytes, probe: np.ndarray) -> TFTrainedModel:
    """Rebuild the network from ``manifest['model_config']`` and load the ``.weights.h5`` bytes.

    Only arrays are read (no pickle, no Keras deserialisation of code).

    Parameters
    ----------
    manifest : dict
        The archive manifest (``model_config`` dict, ``intensity_scale``, ``history``).
    payload : bytes
        Contents of the archive member ``model.weights.h5``.
    probe : ndarray, shape (N, N) or (M, N, N), complex
        The archived probe (the weights file holds the trained probe too; it wins).

    Raises
    ------
    ArchiveError
        The payload does not fit the rebuilt network (wrong configuration or damaged file).
    """
    from ptycho.errors import ArchiveError

    model_cfg = ModelConfig(**manifest["model_config"])
    module = PtychoPINN(model_cfg, probe, float(manifest["intensity_scale"]))
    with tempfile.TemporaryDirectory(prefix="ptychopinn-tf-") as folder:
        path = os.path.join(folder, PAYLOAD_NAME)
        Path(path).write_bytes(payload)
        try:
            with _quiet_keras_numpy_warning():
                module.load_weights(path)
        except Exception as exc:  # not HDF5 (e.g. a pickle or .keras zip), wrong shapes, ...
            raise ArchiveError("weights do not match the model", PAYLOAD_NAME,
                               "a Keras weights file written by this model configuration",
                               first_line(exc, with_type=True, max_chars=200)) from None
    return TFTrainedModel(module, manifest.get("history", {}))

"""Train, save and load the PyTorch backend (the API documented in ``ptycho.backends.base``)."""

from __future__ import annotations

import copy
import io
import logging
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping

from ptycho import runcontrol
from ptycho.backends.pytorch.data import GroupedDataModule
from ptycho.backends.pytorch.lightning_module import PINNLightning
from ptycho.backends.pytorch.model import PtychoPINN
from ptycho.backends.pytorch.trained_model import TorchTrainedModel
from ptycho.config.config import ExecutionConfig, TrainingConfig
from ptycho.data.grouping import GroupedData, GroupedScans
from ptycho.errors import InputError, first_line

try:  # Lightning's own SIGTERM handling (2.3+) raises this from its loops
    from lightning.pytorch.utilities.exceptions import SIGTERMException
except ImportError:  # pragma: no cover - older Lightning
    class SIGTERMException(SystemExit):
        pass

log = logging.getLogger(__name__)


class HistoryAndBest(Callback):
    """Records per-epoch metrics and keeps the weights of the best epoch in memory.

    ``epoch_time_s`` is the wall time of each epoch (training and validation).
    """

    def __init__(self, monitor: str):
        self.monitor = monitor
        self.history: dict[str, list[float]] = {}
        self.best_score = float("inf")
        self.best_epoch = -1
        self.best_state: dict | None = None
        self.epoch_offset = 0  # epochs completed before a resumed run
        self._epoch_started = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: PINNLightning) -> None:
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: PINNLightning) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics["intensity_scale"] = float(pl_module.model.scaler.scale().detach())
        metrics["learning_rate"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.history.setdefault("epoch", []).append(trainer.current_epoch + self.epoch_offset)
        metrics["epoch_time_s"] = time.perf_counter() - self._epoch_started
        for key in ("train_loss", "val_loss", "intensity_scale", "learning_rate", "epoch_time_s"):
            if key in metrics:
                self.history.setdefault(key, []).append(metrics[key])
        score = metrics.get(self.monitor, float("inf"))
        if np.isfinite(score) and score < self.best_score:
            self.best_score = score
            self.best_epoch = trainer.current_epoch + self.epoch_offset
            self.best_state = copy.deepcopy({k: v.detach().cpu()
                                             for k, v in pl_module.model.state_dict().items()})


class StepControl(Callback):
    """Per-step interruption check, and the optimiser/schedule state of a resumed run.

    After every optimiser step a pending SIGINT/SIGTERM (``ptycho.runcontrol``, agreed
    across ranks) raises :class:`~ptycho.runcontrol.SignalReceived`, which leaves
    ``trainer.fit`` before any validation or epoch-end bookkeeping of the unfinished epoch.
    """

    def __init__(self, optimizer_state: dict | None = None, scheduler_state: dict | None = None):
        self.optimizer_state = optimizer_state
        self.scheduler_state = scheduler_state
        self.optimizer = None
        self.scheduler = None
        self.epoch = 0
        self.step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: PINNLightning) -> None:
        self.optimizer = trainer.optimizers[0]
        configs = trainer.lr_scheduler_configs
        self.scheduler = configs[0].scheduler if configs else None
        if self.optimizer_state is not None:
            self.optimizer.load_state_dict(self.optimizer_state)
        if self.scheduler_state is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(self.scheduler_state)
            if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
                # cosine: the rate of the next update, at the saved step count, on this run's
                # schedule (a resumed run may have a larger --nepochs)
                step = self.scheduler.last_epoch
                for group, base, factor in zip(self.optimizer.param_groups,
                                               self.scheduler.base_lrs, self.scheduler.lr_lambdas):
                    group["lr"] = base * factor(step)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.epoch, self.step = trainer.current_epoch, batch_idx
        signum = runcontrol.pending()
        if trainer.strategy.reduce_boolean_decision(signum is not None, all=False):
            raise runcontrol.SignalReceived(signum or runcontrol.signal.SIGTERM)


def _cpu_state(module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _checkpoint(module: PtychoPINN, tracker: HistoryAndBest, control: StepControl,
                early_stop: EarlyStopping):
    """The resumable state (``ptycho.runcontrol.Checkpoint``); tensors and containers only."""
    from ptycho.runcontrol import Checkpoint

    state = {
        "model": _cpu_state(module),
        "best_model": tracker.best_state,
        "optimizer": control.optimizer.state_dict() if control.optimizer is not None
        else control.optimizer_state,
        "scheduler": control.scheduler.state_dict() if control.scheduler is not None
        else control.scheduler_state,
        "early_stopping": early_stop.state_dict(),
        "rng": torch.get_rng_state(),
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    progress = {"epochs_completed": len(tracker.history.get("epoch", [])),
                "history": tracker.history, "best_epoch": tracker.best_epoch,
                "best_score": tracker.best_score}
    return Checkpoint(backend="pytorch", state=buffer.getvalue(), progress=progress)


def _restore(resume, module: PtychoPINN, tracker: HistoryAndBest, control: StepControl,
             early_stop: EarlyStopping) -> None:
    """Load a checkpoint written by :func:`_checkpoint` (``weights_only=True``: no code runs)."""
    try:
        state = torch.load(io.BytesIO(resume.state), map_location="cpu", weights_only=True)
        module.load_state_dict(state["model"])
        early_stop.load_state_dict(state["early_stopping"])
        torch.set_rng_state(state["rng"])
        control.optimizer_state = state["optimizer"]
        control.scheduler_state = state["scheduler"]
        tracker.best_state = state["best_model"]
    except Exception as exc:
        raise InputError("invalid checkpoint state", resume.source or "resume.pt",
                         "a checkpoint written by this model configuration (train again without "
                         "--resume)", first_line(exc, with_type=True, max_chars=200)
                         ) from None
    progress = resume.progress
    tracker.history = {k: list(v) for k, v in progress.get("history", {}).items()}
    tracker.best_epoch = int(progress.get("best_epoch", -1))
    tracker.best_score = float(progress.get("best_score", float("inf")))
    tracker.epoch_offset = resume.epochs_completed


def _logger(execution: ExecutionConfig, output_dir: Path):
    if execution.logger == "none":
        return False
    if execution.logger == "csv":
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(str(output_dir), name="logs")
    if execution.logger == "tensorboard":
        from lightning.pytorch.loggers import TensorBoardLogger

        return TensorBoardLogger(str(output_dir), name="logs")
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(experiment_name="ptychopinn", save_dir=str(output_dir / "mlruns"))


def train_model(train: GroupedData | GroupedScans, validation: GroupedData | None,
                probe: np.ndarray, intensity_scale: float | np.ndarray, config: TrainingConfig,
                execution: ExecutionConfig, output_dir: Path, *, resume=None
                ) -> TorchTrainedModel:
    """Train a PtychoPINN (see ``ptycho.backends.base``); return the best-epoch model.

    ``probe`` is (N, N), or (M, N, N) for ``probe_modes`` M > 1.
    Several scans (``train`` a :class:`GroupedScans`): ``probe`` (K, N, N) (or (K, M, N, N)) and
    ``intensity_scale`` (K,) hold each scan's normalised probe and s; the model is built with
    the first scan's (see :class:`PINNLightning`).

    ``resume`` (a ``ptycho.runcontrol.Checkpoint``) continues an interrupted run up to
    ``config.nepochs`` epochs in total. A pending signal (``ptycho.runcontrol``) or a
    non-finite training loss raises :class:`~ptycho.runcontrol.StopTraining` carrying
    the best weights so far (and, for a signal, the resumable state).
    """
    if any(kind in str(execution.strategy) for kind in ("spawn", "fork", "notebook")):
        # their workers' history and best weights never reach this process
        raise InputError("unsupported strategy", "--strategy",
                         "ddp (launched by Lightning, torchrun or SLURM; see docs/distributed.md)",
                         str(execution.strategy))
    for name in ("lightning.pytorch", "lightning.fabric"):  # hardware banners and tips
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    L.seed_everything(config.seed, workers=True, verbose=False)
    model_cfg = config.model
    supervised = model_cfg.model_type == "supervised"
    needs_truth = supervised or config.realspace_mae_weight > 0
    lacking = [scan.source for scan in train.scans if scan.object_guess is None]
    if needs_truth and lacking:
        raise InputError("missing ground truth", f"{lacking[0]}:objectGuess",
                         "an objectGuess for supervised training or realspace_mae_weight > 0")
    library = isinstance(train, GroupedScans)
    module = PtychoPINN(model_cfg, probe[0] if library else probe,
                        float(intensity_scale[0]) if library else intensity_scale,
                        probe_trainable=config.probe_trainable and not supervised,
                        intensity_scale_trainable=config.intensity_scale_trainable and not supervised)
    if config.init_weights is not None:
        from ptycho.backends.weight_transfer import load_initial_weights

        load_initial_weights(module, config.init_weights)
    lit = PINNLightning(module, config, intensity_scale, probe if library else None)
    truth_at_centre = supervised and not (model_cfg.object_big and model_cfg.gridsize > 1)
    datamodule = GroupedDataModule(train, config.batch_size, config.validation_fraction,
                                   config.seed, validation=validation, with_truth=needs_truth,
                                   truth_at_centre=truth_at_centre,
                                   num_workers=execution.num_workers)
    lit.has_validation = datamodule.val_set is not None
    monitor = "val_loss" if lit.has_validation else "train_loss"
    tracker = HistoryAndBest(monitor)
    early_stop = EarlyStopping(monitor=monitor, patience=config.early_stop_patience, mode="min",
                               check_finite=True)
    control = StepControl()
    if resume is not None:
        _restore(resume, module, tracker, control, early_stop)
        datamodule.epoch_offset = tracker.epoch_offset
    callbacks = [tracker, early_stop, control]
    trainer = L.Trainer(
        max_epochs=config.nepochs - tracker.epoch_offset, accelerator=execution.accelerator, devices=execution.devices,
        strategy=execution.strategy, num_nodes=execution.num_nodes, precision=execution.precision,
        logger=_logger(execution, output_dir), callbacks=callbacks,
        enable_progress_bar=execution.progress_bar, enable_checkpointing=False,
        enable_model_summary=False, log_every_n_steps=1, default_root_dir=str(output_dir),
        num_sanity_val_steps=0,
        limit_val_batches=None if lit.has_validation else 0,  # no empty validation loop
        # grad_clip_norm: torch.nn.utils.clip_grad_norm_ over the optimiser's parameters
        gradient_clip_val=config.grad_clip_norm or None, gradient_clip_algorithm="norm",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        warnings.filterwarnings("ignore", message=".*sync_dist=True.*")  # rank-identical values
        try:
            trainer.fit(lit, datamodule=datamodule)
        except (runcontrol.SignalReceived, SIGTERMException) as exc:
            signum = (getattr(exc, "signum", None) or runcontrol.pending()
                      or runcontrol.signal.SIGTERM)
            checkpoint = _checkpoint(module, tracker, control, early_stop)
            if tracker.best_state is not None:
                module.load_state_dict(tracker.best_state)
            raise runcontrol.StopTraining(
                "signal", f"training stopped by {runcontrol.signal_name(signum)} at epoch "
                f"{control.epoch + tracker.epoch_offset}, step {control.step}", signum=signum,
                model=_trained(module, tracker, trainer), checkpoint=checkpoint) from None
        except FloatingPointError as exc:
            model = None
            if tracker.best_state is not None:
                module.load_state_dict(tracker.best_state)
                model = _trained(module, tracker, trainer)
            raise runcontrol.StopTraining("nonfinite", str(exc), model=model) from None
    if tracker.best_state is not None:
        module.load_state_dict(tracker.best_state)
        log.info("best epoch %d (%s %.6g)", tracker.best_epoch, monitor, tracker.best_score)
    return _trained(module, tracker, trainer)


def _trained(module: PtychoPINN, tracker: HistoryAndBest, trainer: L.Trainer) -> TorchTrainedModel:
    """The model on the CPU with its history; ``global_rank`` set (DDP: only rank 0 writes)."""
    trained = TorchTrainedModel(module.cpu(), dict(tracker.history, best_epoch=tracker.best_epoch))
    trained.global_rank = trainer.global_rank
    return trained

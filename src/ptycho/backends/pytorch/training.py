"""Train, save and load the PyTorch backend (the API documented in ``ptycho.backends.base``)."""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.callbacks import Callback, EarlyStopping

from ptycho.backends.pytorch.data import GroupedDataModule
from ptycho.backends.pytorch.lightning_module import PINNLightning
from ptycho.backends.pytorch.model import PtychoPINN
from ptycho.backends.pytorch.trained_model import TorchTrainedModel
from ptycho.config.config import ExecutionConfig, TrainingConfig
from ptycho.data.grouping import GroupedData
from ptycho.errors import InputError

log = logging.getLogger(__name__)


class HistoryAndBest(Callback):
    """Records per-epoch metrics and keeps the weights of the best epoch in memory."""

    def __init__(self, monitor: str):
        self.monitor = monitor
        self.history: dict[str, list[float]] = {}
        self.best_score = float("inf")
        self.best_epoch = -1
        self.best_state: dict | None = None

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: PINNLightning) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        metrics["intensity_scale"] = float(pl_module.model.scaler.scale().detach())
        metrics["learning_rate"] = float(trainer.optimizers[0].param_groups[0]["lr"])
        self.history.setdefault("epoch", []).append(trainer.current_epoch)
        for key in ("train_loss", "val_loss", "intensity_scale", "learning_rate"):
            if key in metrics:
                self.history.setdefault(key, []).append(metrics[key])
        score = metrics.get(self.monitor, float("inf"))
        if np.isfinite(score) and score < self.best_score:
            self.best_score = score
            self.best_epoch = trainer.current_epoch
            self.best_state = copy.deepcopy({k: v.detach().cpu()
                                             for k, v in pl_module.model.state_dict().items()})


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


def train_model(train: GroupedData, validation: GroupedData | None, probe: np.ndarray,
                intensity_scale: float, config: TrainingConfig, execution: ExecutionConfig,
                output_dir: Path) -> TorchTrainedModel:
    """Train a PtychoPINN (see ``ptycho.backends.base``); return the best-epoch model."""
    for name in ("lightning.pytorch", "lightning.fabric"):  # hardware banners and tips
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))
    L.seed_everything(config.seed, workers=True, verbose=False)
    model_cfg = config.model
    supervised = model_cfg.model_type == "supervised"
    needs_truth = supervised or config.realspace_mae_weight > 0
    if needs_truth and train.scan.object_guess is None:
        raise InputError("missing ground truth", f"{train.scan.source}:objectGuess",
                         "an objectGuess for supervised training or realspace_mae_weight > 0")
    module = PtychoPINN(model_cfg, probe, intensity_scale,
                        probe_trainable=config.probe_trainable and not supervised,
                        intensity_scale_trainable=config.intensity_scale_trainable and not supervised)
    lit = PINNLightning(module, config, intensity_scale)
    truth_at_centre = supervised and not (model_cfg.object_big and model_cfg.gridsize > 1)
    datamodule = GroupedDataModule(train, config.batch_size, config.validation_fraction,
                                   config.seed, validation=validation, with_truth=needs_truth,
                                   truth_at_centre=truth_at_centre,
                                   num_workers=execution.num_workers)
    lit.has_validation = datamodule.val_set is not None
    monitor = "val_loss" if lit.has_validation else "train_loss"
    tracker = HistoryAndBest(monitor)
    callbacks = [tracker, EarlyStopping(monitor=monitor, patience=config.early_stop_patience,
                                        mode="min", check_finite=True)]
    trainer = L.Trainer(
        max_epochs=config.nepochs, accelerator=execution.accelerator, devices=execution.devices,
        strategy=execution.strategy, num_nodes=execution.num_nodes, precision=execution.precision,
        logger=_logger(execution, output_dir), callbacks=callbacks,
        enable_progress_bar=execution.progress_bar, enable_checkpointing=False,
        enable_model_summary=False, log_every_n_steps=1, default_root_dir=str(output_dir),
        num_sanity_val_steps=0,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer.fit(lit, datamodule=datamodule)
    if tracker.best_state is not None:
        module.load_state_dict(tracker.best_state)
        log.info("best epoch %d (%s %.6g)", tracker.best_epoch, monitor, tracker.best_score)
    history = dict(tracker.history)
    history["best_epoch"] = tracker.best_epoch
    return TorchTrainedModel(module.cpu(), history)

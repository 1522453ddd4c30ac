"""Test-time adaptation: fine-tune a trained model on a new scan's own patterns before predicting.

A trained network reconstructs a scan it never saw less well than its training scan. The physics
loss needs no ground truth, so the model can keep training on the new scan itself for a few
epochs (``ptychopinn infer --adapt-epochs K``) and then reconstruct it.

:func:`adapt` rebuilds the training configuration of the run that made the model from the
archive manifest (same network, backend and loss weights, batch size, schedule and gradient
clipping) and trains ``K`` epochs on the new scan, starting from the model's generator weights
(``TrainingConfig.init_weights``). What changes for the adaptation, and why:

- **Physics loss only.** The model must be a PINN (``model_type='pinn'``; a supervised model
  is refused): the real-space terms (``realspace_mae_weight``, ``realspace_weight``,
  ``targets``) are switched off, since a new scan has no truth; the Poisson NLL (and the
  diffraction MAE, if the source run used it) keep their weights.
- **The new scan's probe** (its ``probeGuess``, normalised as in training; for a model of M
  probe modes its modes, made as in training, ``Scan.initial_probe``): it is the probe of
  the new experiment, used by the forward model during the adaptation and written into the
  adapted archive (and used by probe-weighted stitching). The source model's probe is not
  carried over, even when it was trained (``probe_trainable``, which the adaptation keeps).
- **The intensity scale** starts at the new scan's ``s = sqrt(nphotons) / (N/2)``, with
  ``nphotons`` measured on the new scan unless the source run fixed it, and stays trainable as
  in the source run. The source model's trained scale is not carried over: it calibrates the
  counts of the source scan, and prediction does not depend on it (the network sees the
  patterns normalised by the model's own scale).
- **Every position of the new scan** is used, none held out (``validation_fraction=0``): the
  scan is both the training and the test data, and without ground truth a held-out loss
  measures nothing the training loss does not. Early stopping is off (patience above K): the
  run lasts the K epochs asked for; the weights of the epoch with the lowest training loss are
  kept (usually the last).
- **Learning rate**: the source run's (its initial rate, with its schedule) unless
  ``learning_rate`` is given.

The adapted archive (``wts.h5.zip``), ``history.csv`` and ``loss_curve.png`` are written to
``output_dir``; the manifest records the source archive as ``training_config.init_weights``.
"""

from __future__ import annotations

import dataclasses
import logging
import numbers
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.data.scan import Scan
from ptycho.errors import InputError

log = logging.getLogger(__name__)

@dataclass
class AdaptResult:
    """An adapted model and where it was written."""

    model: object
    """The adapted trained model (same backend as the source)."""
    archive_path: Path
    """The adapted ``wts.h5.zip``."""
    seconds: float
    """Wall time of the adaptation (grouping, training, writing the archive)."""
    history: dict
    """Per-epoch history of the adaptation (as ``TrainingResult.history``)."""
    config: TrainingConfig
    """The training configuration of the adaptation (as recorded in the adapted archive)."""


def adaptation_config(manifest: dict, epochs: int, *, init_weights: str | Path,
                      output_dir: str | Path, learning_rate: float | None = None,
                      seed: int | None = None, where: str = "model archive") -> TrainingConfig:
    """The :class:`TrainingConfig` of an adaptation, from the source archive's ``manifest``.

    See the module docstring for what is kept and what changes. Raises
    :class:`~ptycho.errors.InputError` for a supervised model or a bad ``epochs`` or
    ``learning_rate``.
    """
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise InputError("invalid value", "adapt epochs", "an integer >= 1", repr(epochs))
    if learning_rate is not None and (isinstance(learning_rate, bool)
                                      or not isinstance(learning_rate, numbers.Real)
                                      or not 0 < learning_rate < float("inf")):
        raise InputError("invalid value", "adapt learning rate", "a number > 0",
                         repr(learning_rate))
    model = ModelConfig(**dict(manifest.get("model_config") or {}))
    if model.model_type != "pinn":
        raise InputError("supervised model", f"{where}:model_config.model_type",
                         "a PINN model (model_type 'pinn'): adaptation fine-tunes with the "
                         "physics loss on the new scan, which has no ground truth for a "
                         "supervised model", repr(model.model_type))
    names = {f.name for f in dataclasses.fields(TrainingConfig)} - {"model", "n_images"}
    saved = {k: v for k, v in dict(manifest.get("training_config") or {}).items() if k in names}
    ignored = sorted(set(manifest.get("training_config") or {}) - names - {"n_images"})
    if ignored:
        log.debug("adaptation ignores unknown training settings %s of %s", ignored, where)
    config = TrainingConfig(model=model, **saved)
    config.backend = manifest.get("backend", config.backend)
    config.nepochs = int(epochs)
    config.init_weights = Path(init_weights)
    config.output_dir = Path(output_dir)
    config.train_data_file = None
    config.test_data_file = None
    # physics loss only: no ground truth (nor solver targets) for a new scan
    config.realspace_mae_weight = 0.0
    config.realspace_weight = 0.0
    config.targets = None
    # every position of the new scan, none held out, no early stop
    config.n_groups = config.n_subsample = config.subsample_seed = None
    config.enable_oversampling = False
    config.validation_fraction = 0.0
    config.early_stop_patience = int(epochs) + 1
    if learning_rate is not None:
        config.learning_rate = float(learning_rate)
    config.lr_min = min(config.lr_min, config.learning_rate)
    config.plateau_min_lr = min(config.plateau_min_lr, config.learning_rate)
    if seed is not None:
        config.seed = seed
    return config


def _source_archive(source, scratch: Path) -> tuple[Path, dict]:
    """The archive path and manifest of ``source`` (a path, ``ModelArchive``, training result
    or in-memory model); an in-memory model is written to ``scratch`` first."""
    from ptycho.archive import ModelArchive, read_archive, resolve_archive_path, write_archive

    if isinstance(source, ModelArchive):
        return resolve_archive_path(source.source), source.manifest
    archive_path = getattr(source, "archive_path", None)   # a TrainingResult / AdaptResult
    if archive_path is not None:
        source = archive_path
    elif hasattr(source, "model") and hasattr(source, "history") \
            and not hasattr(source, "payload_bytes"):
        source = source.model
    if isinstance(source, (str, Path)):
        archive = read_archive(source)
        return resolve_archive_path(archive.source), archive.manifest
    if not hasattr(source, "payload_bytes"):
        raise InputError("invalid value", "adapt source", "a model archive path, a ModelArchive, "
                         "a TrainingResult or a trained model", type(source).__name__)
    # an in-memory model carries no training recipe: the TrainingConfig defaults stand in
    config = TrainingConfig(model=source.model_config, backend=source.backend)
    scratch.mkdir(parents=True, exist_ok=True)
    path = write_archive(scratch, source, config, nphotons=1.0)  # (nphotons: measured later)
    return path, read_archive(path).manifest


def adapt(source, scan: Scan, epochs: int, *, output_dir: str | Path,
          execution: ExecutionConfig | None = None, learning_rate: float | None = None,
          seed: int | None = None) -> AdaptResult:
    """Fine-tune a trained model on ``scan`` with the physics loss; write the adapted archive.

    Parameters
    ----------
    source : str, Path, ModelArchive, TrainingResult or trained model
        The model to adapt: a model archive (``wts.h5.zip``, its folder or an extracted
        archive folder, of either backend), what :func:`ptycho.archive.read_archive` returned,
        a ``TrainingResult`` with an ``archive_path``, or a trained model object (which carries
        no training recipe: the ``TrainingConfig`` defaults are then used, and the manifest's
        ``init_weights`` names a temporary copy that no longer exists).
    scan : Scan
        The new scan (its pattern size must be the model's N). Its probe becomes the model's.
    epochs : int
        K >= 1 training epochs over every position of ``scan``.
    output_dir : str or Path
        Receives ``wts.h5.zip``, ``history.csv`` and ``loss_curve.png``; must not be the folder
        of the source archive.
    execution : ExecutionConfig, optional
        Default: ``ExecutionConfig(logger='none', progress_bar=False)``.
    learning_rate : float, optional
        Default: the source run's ``learning_rate``.
    seed : int, optional
        Default: the source run's seed.

    Returns
    -------
    AdaptResult

    Raises
    ------
    ptycho.errors.InputError
        A supervised model, bad ``epochs``/``learning_rate``, a scan of another N, an
        ``output_dir`` that would overwrite the source archive.
    ptycho.errors.TrainingInterrupted, ptycho.errors.TrainingDiverged
        As :func:`ptycho.workflows.training.train`.
    """
    from ptycho.archive import ARCHIVE_NAME
    from ptycho.workflows import training

    execution = execution or ExecutionConfig(logger="none", progress_bar=False)
    output_dir = Path(output_dir)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ptychopinn-adapt-") as scratch:
        archive_path, manifest = _source_archive(source, Path(scratch))
        if (output_dir / ARCHIVE_NAME).resolve() == archive_path.resolve() or \
                output_dir.resolve() == archive_path.resolve():
            raise InputError("output would overwrite the source model", str(output_dir),
                             "a folder other than the source model's")
        config = adaptation_config(manifest, epochs, init_weights=archive_path,
                                   output_dir=output_dir, learning_rate=learning_rate, seed=seed,
                                   where=str(archive_path))
        if scan.source and Path(str(scan.source)).is_file():
            config.train_data_file = Path(str(scan.source))
        log.info("adapting the %s model %s to %s: %d epochs over %d positions, learning rate %g",
                 config.backend, archive_path, Path(str(scan.source)).name, epochs,
                 scan.n_positions, config.learning_rate)
        result = training.train(config, execution, train_scan=scan)
    seconds = time.perf_counter() - started
    return AdaptResult(model=result.model, archive_path=result.archive_path, seconds=seconds,
                       history=result.history, config=config)

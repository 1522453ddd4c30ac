"""Training workflow: scan -> group -> backend training -> archive + history + loss curve."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptycho import physics, runcontrol
from ptycho.archive import write_archive
from ptycho.backends import load_backend
from ptycho.config.config import (
    ExecutionConfig,
    TrainingConfig,
    parse_targets,
    validate_execution_config,
    validate_training_config,
)
from ptycho.data.grouping import GroupedData
from ptycho.data.io import read_scan
from ptycho.data.scan import Scan
from ptycho.errors import InputError, TrainingDiverged, TrainingInterrupted
from ptycho.workflows import resume as _resume
from ptycho.workflows.outputs import plot_loss_curve, save_history_csv

log = logging.getLogger(__name__)


@dataclass
class TrainingResult:
    """What a training run produced."""

    model: object
    archive_path: Path | None
    history: dict
    nphotons: float
    initial_intensity_scale: float
    train_groups: GroupedData
    is_global_zero: bool = True
    """False in the non-zero ranks of a distributed (DDP) run, which write no files."""


def is_global_zero(model=None) -> bool:
    """True unless this process is a non-zero rank of a distributed training run.

    Uses the rank the backend recorded on ``model`` (``global_rank``), else an initialised
    ``torch.distributed`` process group (never imports torch itself).
    """
    rank = getattr(model, "global_rank", None)
    if rank is None:
        torch = sys.modules.get("torch")
        distributed = getattr(torch, "distributed", None)
        if distributed is not None and distributed.is_available() and distributed.is_initialized():
            rank = distributed.get_rank()
    return not rank


def fix_patch_size(config: TrainingConfig, scan: Scan) -> None:
    """Set ``config.model.N`` from the data when it is 0; reject a mismatch otherwise."""
    from ptycho.config.config import SUPPORTED_N

    if config.model.N in (0, None) and scan.N not in SUPPORTED_N:
        raise InputError("unsupported pattern size", f"{Path(scan.source).name}:diff3d",
                         " or ".join(f"{n}x{n}" for n in SUPPORTED_N) + " patterns (crop or bin "
                         "the data)", f"{scan.N}x{scan.N}")
    if config.model.N in (0, None):
        config.model.N = scan.N
    elif config.model.N != scan.N:
        raise InputError("patch size mismatch", f"{Path(scan.source).name}:diff3d",
                         f"{config.model.N}x{config.model.N} patterns as configured (N)",
                         f"{scan.N}x{scan.N}")


def _write_training_files(output_dir: Path, model, config: TrainingConfig,
                          nphotons: float) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    archive_path = write_archive(output_dir, model, config, nphotons=nphotons)
    save_history_csv(model.history, output_dir / "history.csv")
    plot_loss_curve(model.history, output_dir / "loss_curve.png")
    log.info("wrote %s", archive_path)
    return archive_path


def _stopped(stop: runcontrol.StopTraining, config: TrainingConfig, output_dir: Path,
             nphotons: float, fingerprint: dict, write_outputs: bool) -> Exception:
    """Save what an early stop left (best weights, resumable state); the error to raise."""
    archive = None
    if write_outputs and stop.model is not None:
        archive = _write_training_files(output_dir, stop.model, config, nphotons)
    best = (stop.model.history.get("best_epoch", -1) if stop.model is not None else -1)
    kept = f"epoch {best}" if best is not None and best >= 0 else "the current step"
    if stop.reason == "signal":
        message = stop.message
        if write_outputs and stop.checkpoint is not None:
            _resume.write_checkpoint(output_dir, stop.checkpoint, config, fingerprint)
            message += (f"; the best weights so far ({kept}) are in {archive} and a resumable "
                        f"checkpoint in {output_dir / _resume.RESUME_NAME}; continue with "
                        f"`ptychopinn train --resume {output_dir}` (add --nepochs N to change "
                        f"the target of {config.nepochs} epochs)")
        error = TrainingInterrupted(message)
        error.exit_code = runcontrol.exit_code(stop.signum or runcontrol.signal.SIGINT)
        return error
    if archive is not None:
        return TrainingDiverged(f"{stop.message}; kept the weights of {kept} in {archive} (lower "
                                f"--learning_rate, or check the data for bad patterns)")
    return TrainingDiverged(f"{stop.message}; no epoch completed, so no model was written (lower "
                            f"--learning_rate, or check the data for bad patterns)")


def _log_mask(scan: Scan) -> None:
    """Say which detector pixels the loss, the normalisation and the photon count leave out."""
    if not physics.has_pixel_mask(scan.bad_pixels, scan.saturation_counts):
        return
    parts = []
    if scan.bad_pixels is not None and np.any(scan.bad_pixels):
        parts.append(f"{int(np.count_nonzero(scan.bad_pixels))} bad pixels in every pattern")
    if scan.saturation_counts is not None:
        parts.append(f"pixels at or above {scan.saturation_counts:g} counts in their pattern")
    log.info("detector mask: %s are left out of the loss, the normalisation and the photon "
             "count (the network input fills them)", " and ".join(parts))


def _with_solver_targets(scan: Scan, iterations: int, config: TrainingConfig,
                         nphotons: float) -> Scan:
    """``config.targets``: the scan with the solver's reconstruction as its objectGuess."""
    import time

    from ptycho.workflows.targets import default_target_weight, solver_targets

    started = time.perf_counter()
    target_scan, result = solver_targets(scan, iterations, config.model.probe_scale, nphotons,
                                         seed=config.seed)
    if config.realspace_mae_weight == 0:
        config.realspace_mae_weight = default_target_weight(nphotons, scan.N)
    log.info("training targets: %d solver iterations in %.1f s (misfit %.4g); target weight %g",
             len(result.history["iteration"]), time.perf_counter() - started,
             result.history["misfit"][-1], config.realspace_mae_weight)
    return target_scan


def train(config: TrainingConfig, execution: ExecutionConfig | None = None, *,
          train_scan: Scan | None = None, write_outputs: bool = True,
          resume: runcontrol.Checkpoint | None = None) -> TrainingResult:
    """Train a model as configured and (by default) write the archive and history files.

    Parameters
    ----------
    config : TrainingConfig
        ``train_data_file`` is read unless ``train_scan`` is given. ``config.model.N`` is
        set from the data when 0.
    execution : ExecutionConfig, optional
    train_scan : Scan, optional
        Already-loaded training scan.
    write_outputs : bool
        Write ``wts.h5.zip``, ``history.csv`` and ``loss_curve.png`` to ``config.output_dir``.
    resume : ptycho.runcontrol.Checkpoint, optional
        Continue an interrupted run (``config`` from
        :func:`ptycho.workflows.resume.resume_training_config`) up to ``config.nepochs`` epochs.

    Raises
    ------
    ptycho.errors.TrainingInterrupted
        SIGINT/SIGTERM arrived: training stopped after the current step; the best weights so far
        and a resumable checkpoint were written (``exit_code`` 130/143).
    ptycho.errors.TrainingDiverged
        The training loss became NaN/Inf; the best completed epoch's weights were written.
    """
    execution = execution or ExecutionConfig()
    validate_execution_config(execution)
    if train_scan is None:
        if config.train_data_file is None:
            raise InputError("missing option", "--train_data_file", "a training scan (.npz, .h5)")
        train_scan = read_scan(config.train_data_file, config.measurement)
    fix_patch_size(config, train_scan)
    validate_training_config(config)
    if train_scan.n_positions < 2:
        raise InputError("scan too small to train", f"{Path(train_scan.source).name}:xcoords",
                         "at least 2 scan positions (overlapping positions are what ptychography "
                         "learns from)", f"{train_scan.n_positions} position")
    backend = load_backend(config.backend)

    nphotons = float(config.nphotons) if config.nphotons else physics.mean_photons_per_pattern(
        train_scan.diffraction, train_scan.bad_pixels, train_scan.saturation_counts)
    _log_mask(train_scan)
    scale = physics.intensity_scale(nphotons, config.model.N)
    solver_iterations = parse_targets(config.targets)
    if solver_iterations is not None:
        train_scan = _with_solver_targets(train_scan, solver_iterations, config, nphotons)
    seed = config.subsample_seed if config.subsample_seed is not None else config.seed
    n_groups = config.n_subsample or config.n_groups
    grouped = GroupedData.from_scan(
        train_scan, config.model.gridsize, neighbor_count=config.neighbor_count, n_groups=n_groups,
        seed=seed, sequential=config.sequential_sampling,
        enable_oversampling=config.enable_oversampling)
    probe = physics.normalize_probe(train_scan.probe, config.model.probe_scale)
    log.info("training %s model: %d groups of %d from %d positions, N=%d, nphotons=%.4g, s=%.4g",
             config.backend, len(grouped), grouped.channels, train_scan.n_positions,
             config.model.N, nphotons, scale)
    output_dir = Path(config.output_dir)
    fingerprint = _resume.data_fingerprint(train_scan, nphotons, len(grouped))
    kwargs = {}
    if resume is not None:
        if resume.backend != config.backend:
            raise InputError("backend mismatch", resume.source or "--resume",
                             f"the '{resume.backend}' backend of the interrupted run",
                             config.backend)
        _resume.check_same_data(resume, fingerprint, str(train_scan.source))
        kwargs["resume"] = resume
        log.info("resuming after %d completed epochs (target %d)", resume.epochs_completed,
                 config.nepochs)
    elif write_outputs and _resume.checkpoint_exists(output_dir):
        log.warning("%s holds the checkpoint of an interrupted run; training from scratch "
                    "replaces it (use --resume %s to continue that run instead)",
                    output_dir, output_dir)
    with runcontrol.guard() as signals:
        try:
            model = backend.train_model(grouped, None, probe, scale, config, execution,
                                        output_dir, **kwargs)
        except runcontrol.StopTraining as stop:
            rank_zero = is_global_zero(stop.model)
            error = _stopped(stop, config, output_dir, nphotons, fingerprint,
                             write_outputs and rank_zero)
            error.is_global_zero = rank_zero  # the CLI reports rank 0's error only
            raise error from None
    if signals.signum is not None:
        log.warning("%s arrived as training finished; the outputs are complete",
                    runcontrol.signal_name(signals.signum))
    archive_path = None
    rank_zero = is_global_zero(model)
    if write_outputs and rank_zero:
        archive_path = _write_training_files(output_dir, model, config, nphotons)
        _resume.remove_checkpoint(output_dir)
    return TrainingResult(model=model, archive_path=archive_path, history=model.history,
                          nphotons=nphotons, initial_intensity_scale=scale, train_groups=grouped,
                          is_global_zero=rank_zero)

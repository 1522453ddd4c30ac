"""Training workflow: scan(s) -> group -> backend training -> archive + history + loss curve.

Several training scans (``TrainingConfig.train_data_file`` a list, a *library*) train one
model: each scan is grouped on its own, normalised with its own factor, keeps its own photon
count (intensity scale ``s_k``) and probe, and every sample meets its own scan's probe and
``s_k`` in the loss (see the backends' ``train_model``). The archive then also lists every
scan (manifest ``training_scans``) and holds their probes (``probes.npy``); see
:mod:`ptycho.archive`.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptycho import physics, runcontrol
from ptycho.archive import write_archive
from ptycho.backends import load_backend
from ptycho.config.config import (
    ExecutionConfig,
    TrainingConfig,
    parse_targets,
    training_files,
    validate_execution_config,
    validate_training_config,
)
from ptycho.data.grouping import GroupedData, GroupedScans
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
    """Photons per pattern of the (first) training scan's Poisson model."""
    initial_intensity_scale: float
    """s of the (first) training scan: the model's initial intensity scale."""
    train_groups: GroupedData | GroupedScans
    is_global_zero: bool = True
    """False in the non-zero ranks of a distributed (DDP) run, which write no files."""
    scans: list[TrainingScan] = field(default_factory=list)
    """Each training scan as it was trained on (one for a single scan)."""


@dataclass
class TrainingScan:
    """One training scan, prepared for the backend: grouped, photon-counted, its probe."""

    scan: Scan
    """The scan trained on (with ``targets``: the solver's reconstruction as objectGuess)."""
    grouped: GroupedData
    nphotons: float
    """Photons per pattern of its Poisson model (measured unless ``nphotons`` was given)."""
    probe: np.ndarray
    """(N, N) complex: its probe normalised by ``ModelConfig.probe_scale``; (M, N, N) for
    ``probe_modes`` M > 1 (:meth:`Scan.initial_probe`, normalised by the total power). With
    ``targets`` and a learned or mixed-state probe, the solver's refined probe
    (:func:`ptycho.workflows.targets.solver_refines_probe`)."""

    @property
    def intensity_scale(self) -> float:
        """Its s = sqrt(nphotons) / (N/2)."""
        return physics.intensity_scale(self.nphotons, self.grouped.N)

    def record(self) -> dict:
        """What the archive manifest keeps of it (``training_scans``), JSON-ready."""
        return {"file": str(self.scan.source), "n_positions": int(self.scan.n_positions),
                "n_groups": len(self.grouped), "nphotons": float(self.nphotons),
                "intensity_scale": float(self.intensity_scale),
                "norm_factor": float(self.grouped.norm_factor)}


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


def _check_same_size(first: Scan, scan: Scan) -> None:
    """Every training scan has the pattern size of the first."""
    if scan.N != first.N:
        raise InputError("patch size mismatch", f"{Path(scan.source).name}:diff3d",
                         f"{first.N}x{first.N} patterns like {Path(first.source).name} (every "
                         f"training scan needs the same N)", f"{scan.N}x{scan.N}")


def _training_scans(config: TrainingConfig, train_scan) -> list[Scan]:
    """The given scan(s), else the scans of ``config.train_data_file`` read in order."""
    if train_scan is not None:
        return list(train_scan) if isinstance(train_scan, (list, tuple)) else [train_scan]
    files = training_files(config)
    if not files:
        raise InputError("missing option", "--train_data_file", "a training scan (.npz, .h5)")
    return [read_scan(path, config.measurement) for path in files]


def _write_training_files(output_dir: Path, model, config: TrainingConfig,
                          scans: list[TrainingScan]) -> Path:
    output_dir.mkdir(parents=True, exist_ok=True)
    library = {} if len(scans) == 1 else {
        "training_scans": [data.record() for data in scans],
        "probes": np.stack([data.probe for data in scans])}
    archive_path = write_archive(output_dir, model, config, nphotons=scans[0].nphotons,
                                 **library)
    save_history_csv(model.history, output_dir / "history.csv")
    plot_loss_curve(model.history, output_dir / "loss_curve.png")
    log.info("wrote %s", archive_path)
    return archive_path


def _stopped(stop: runcontrol.StopTraining, config: TrainingConfig, output_dir: Path,
             scans: list[TrainingScan], fingerprint: dict, write_outputs: bool) -> Exception:
    """Save what an early stop left (best weights, resumable state); the error to raise."""
    archive = None
    if write_outputs and stop.model is not None:
        archive = _write_training_files(output_dir, stop.model, config, scans)
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
    """``config.targets``: the scan with the solver's reconstruction as its objectGuess, and
    the solver's refined probe as its probe when :func:`solver_refines_probe` says so."""
    import time

    from ptycho.workflows.targets import solver_refines_probe, solver_targets

    started = time.perf_counter()
    refine_probe = solver_refines_probe(config)
    target_scan, result = solver_targets(scan, iterations, config.model.probe_scale, nphotons,
                                         seed=config.seed, probe_modes=config.model.probe_modes,
                                         refine_probe=refine_probe)
    log.info("training targets of %s: %d solver iterations in %.1f s (misfit %.4g)%s",
             Path(scan.source).name, len(result.history["iteration"]),
             time.perf_counter() - started, result.history["misfit"][-1],
             "; the network trains with the solver's refined probe" if refine_probe else "")
    return target_scan


def _prepare(scan: Scan, config: TrainingConfig, solver_iterations: int | None) -> TrainingScan:
    """Photon count, solver targets (``config.targets``), groups and probe of one scan."""
    nphotons = float(config.nphotons) if config.nphotons else physics.mean_photons_per_pattern(
        scan.diffraction, scan.bad_pixels, scan.saturation_counts)
    _log_mask(scan)
    if solver_iterations is not None:
        scan = _with_solver_targets(scan, solver_iterations, config, nphotons)
    seed = config.subsample_seed if config.subsample_seed is not None else config.seed
    grouped = GroupedData.from_scan(
        scan, config.model.gridsize, neighbor_count=config.neighbor_count,
        n_groups=config.n_subsample or config.n_groups, seed=seed,
        sequential=config.sequential_sampling, enable_oversampling=config.enable_oversampling)
    probe = physics.normalize_probe(scan.initial_probe(config.model.probe_modes),
                                    config.model.probe_scale)
    if config.model.probe_modes > 1:
        _log_modes(scan, probe, config, refined=solver_iterations is not None)
    return TrainingScan(scan=scan, grouped=grouped, nphotons=nphotons, probe=probe)


def _log_modes(scan: Scan, probe: np.ndarray, config: TrainingConfig, refined: bool) -> None:
    """Say where the probe modes of a mixed-state model come from and what power they carry
    (``refined``: the solver targets refined them)."""
    given = len(scan.probe_stack())
    modes = config.model.probe_modes
    origin = ("refined by the solver targets" if refined else
              f"{min(given, modes)} of the {given} modes given" if given >= modes else
              f"the {given} given and {modes - given} made from mode 0")
    powers = physics.mode_powers(probe)
    log.info("probe of %s: %d incoherent modes (%s), orthogonalised; power %s; %s",
             Path(scan.source).name, modes, origin,
             ", ".join(f"{100 * p:.1f} %" for p in powers / powers.sum()),
             "trained with the network (orthogonalised again after training)"
             if config.probe_trainable else "fixed (--probe_trainable trains them)")


def _orthogonalize_trained_probe(model, config: TrainingConfig) -> None:
    """Trained modes back to orthogonal modes ordered by power (same density matrix, so the
    same predictions); a single or fixed probe is left as it is."""
    if model is not None and config.model.probe_modes > 1 and config.probe_trainable:
        model.set_probe(physics.orthogonalize_modes(model.probe))


def train(config: TrainingConfig, execution: ExecutionConfig | None = None, *,
          train_scan: Scan | list[Scan] | None = None, write_outputs: bool = True,
          resume: runcontrol.Checkpoint | None = None) -> TrainingResult:
    """Train a model as configured and (by default) write the archive and history files.

    Parameters
    ----------
    config : TrainingConfig
        ``train_data_file`` (one path or a list) is read unless ``train_scan`` is given.
        ``config.model.N`` is set from the data when 0.
    execution : ExecutionConfig, optional
    train_scan : Scan or list of Scan, optional
        Already-loaded training scan(s). Several scans (all of one N) train one model on
        all of them, each with its own groups, normalisation, photon count and probe; with
        ``targets`` the solver reconstructs each, and the automatic target weight uses their
        mean photon count.
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
    train_scans = _training_scans(config, train_scan)
    fix_patch_size(config, train_scans[0])
    for scan in train_scans[1:]:
        _check_same_size(train_scans[0], scan)
    validate_training_config(config, n_scans=len(train_scans))
    for scan in train_scans:
        if scan.n_positions < 2:
            raise InputError("scan too small to train", f"{Path(scan.source).name}:xcoords",
                             "at least 2 scan positions (overlapping positions are what "
                             "ptychography learns from)", f"{scan.n_positions} position")
    backend = load_backend(config.backend)

    solver_iterations = parse_targets(config.targets)
    scans = [_prepare(scan, config, solver_iterations) for scan in train_scans]
    if solver_iterations is not None and config.realspace_mae_weight == 0:
        from ptycho.workflows.targets import default_target_weight

        config.realspace_mae_weight = default_target_weight(
            np.mean([data.nphotons for data in scans]), config.model.N)
        log.info("training targets: weight %g", config.realspace_mae_weight)
    for data in scans:
        log.info("training %s model: %d groups of %d from %d positions of %s, N=%d, "
                 "nphotons=%.4g, s=%.4g", config.backend, len(data.grouped),
                 data.grouped.channels, data.scan.n_positions, Path(data.scan.source).name,
                 config.model.N, data.nphotons, data.intensity_scale)
    if len(scans) == 1:
        grouped, probe, scale = scans[0].grouped, scans[0].probe, scans[0].intensity_scale
    else:
        grouped = GroupedScans([data.grouped for data in scans])
        probe = np.stack([data.probe for data in scans])
        scale = np.array([data.intensity_scale for data in scans])
        log.info("%d training scans, %d groups in all", len(scans), len(grouped))
    output_dir = Path(config.output_dir)
    fingerprints = [_resume.data_fingerprint(data.scan, data.nphotons, len(data.grouped))
                    for data in scans]
    fingerprint = fingerprints[0] if len(scans) == 1 else {"scans": fingerprints}
    kwargs = {}
    if resume is not None:
        if resume.backend != config.backend:
            raise InputError("backend mismatch", resume.source or "--resume",
                             f"the '{resume.backend}' backend of the interrupted run",
                             config.backend)
        _resume.check_same_data(resume, fingerprint,
                                ", ".join(str(data.scan.source) for data in scans))
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
            _orthogonalize_trained_probe(stop.model, config)
            rank_zero = is_global_zero(stop.model)
            error = _stopped(stop, config, output_dir, scans, fingerprint,
                             write_outputs and rank_zero)
            error.is_global_zero = rank_zero  # the CLI reports rank 0's error only
            raise error from None
    _orthogonalize_trained_probe(model, config)
    if signals.signum is not None:
        log.warning("%s arrived as training finished; the outputs are complete",
                    runcontrol.signal_name(signals.signum))
    archive_path = None
    rank_zero = is_global_zero(model)
    if write_outputs and rank_zero:
        archive_path = _write_training_files(output_dir, model, config, scans)
        _resume.remove_checkpoint(output_dir)
    return TrainingResult(model=model, archive_path=archive_path, history=model.history,
                          nphotons=scans[0].nphotons,
                          initial_intensity_scale=scans[0].intensity_scale,
                          train_groups=grouped, is_global_zero=rank_zero, scans=scans)

"""Training workflow: scan -> group -> backend training -> archive + history + loss curve."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ptycho import physics
from ptycho.archive import write_archive
from ptycho.backends import load_backend
from ptycho.config.config import (
    ExecutionConfig,
    TrainingConfig,
    validate_execution_config,
    validate_training_config,
)
from ptycho.data.grouping import GroupedData
from ptycho.data.npz import read_scan_npz
from ptycho.data.scan import Scan
from ptycho.errors import InputError
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


def fix_patch_size(config: TrainingConfig, scan: Scan) -> None:
    """Set ``config.model.N`` from the data when it is 0; reject a mismatch otherwise."""
    if config.model.N in (0, None):
        config.model.N = scan.N
    elif config.model.N != scan.N:
        raise InputError("patch size mismatch", f"{Path(scan.source).name}:diff3d",
                         f"{config.model.N}x{config.model.N} patterns as configured (N)",
                         f"{scan.N}x{scan.N}")


def train(config: TrainingConfig, execution: ExecutionConfig | None = None, *,
          train_scan: Scan | None = None, write_outputs: bool = True) -> TrainingResult:
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
    """
    execution = execution or ExecutionConfig()
    validate_execution_config(execution)
    if train_scan is None:
        if config.train_data_file is None:
            raise InputError("missing option", "--train_data_file", "a training scan (.npz)")
        train_scan = read_scan_npz(config.train_data_file, config.measurement)
    fix_patch_size(config, train_scan)
    validate_training_config(config)
    backend = load_backend(config.backend)

    nphotons = float(config.nphotons) if config.nphotons else train_scan.mean_photons_per_pattern()
    scale = physics.intensity_scale(nphotons, config.model.N)
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
    model = backend.train_model(grouped, None, probe, scale, config, execution, output_dir)
    archive_path = None
    if write_outputs:
        output_dir.mkdir(parents=True, exist_ok=True)
        archive_path = write_archive(output_dir, model, config, nphotons=nphotons)
        save_history_csv(model.history, output_dir / "history.csv")
        plot_loss_curve(model.history, output_dir / "loss_curve.png")
        log.info("wrote %s", archive_path)
    return TrainingResult(model=model, archive_path=archive_path, history=model.history,
                          nphotons=nphotons, initial_intensity_scale=scale, train_groups=grouped)

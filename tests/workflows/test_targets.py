"""Training targets from the iterative solver (TrainingConfig.targets)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics
from ptycho.config.config import (
    ExecutionConfig,
    ModelConfig,
    TrainingConfig,
    parse_targets,
    validate_training_config,
)
from ptycho.data.simulation import simulate
from ptycho.errors import InputError
from ptycho.workflows.targets import default_target_weight, solver_targets


@pytest.fixture(scope="module")
def scan():
    """49-position N=32 raster scan with some positions below N/2 (negative patch corners)."""
    scan = simulate(object_kind="grf:4", probe_kind="defocused", scan_kind="raster", N=32,
                    object_size=64, step=4.0, nphotons=1e6, seed=3).scan
    scan.xcoords = scan.xcoords - 20.0  # positions need not leave room for patches at 0
    scan.xcoords_start = scan.xcoords_start - 20.0
    return scan


def test_targets_reproduce_the_counts_under_the_networks_physics(scan):
    nphotons = scan.mean_photons_per_pattern()
    target_scan, result = solver_targets(scan, 10, probe_scale=4.0, nphotons=nphotons)
    # the positions moved by one whole-pixel offset and every patch lies inside the target
    offset = target_scan.xcoords - scan.xcoords
    np.testing.assert_allclose(offset, offset[0])
    assert offset[0] == round(offset[0])
    assert target_scan.xcoords.min() - scan.N / 2 >= 0
    assert target_scan.ycoords.max() + scan.N / 2 < target_scan.object_guess.shape[0]
    # the network predicts counts s**2 |F(P_n o)|**2: the targets must give the measured counts
    patches = physics.extract_patches(target_scan.object_guess, target_scan.xcoords,
                                      target_scan.ycoords, scan.N)
    probe = physics.normalize_probe(scan.probe, 4.0)
    amplitude = physics.far_field_amplitude(physics.illuminate(patches, probe))
    predicted = (physics.intensity_scale(nphotons, scan.N) * amplitude) ** 2
    counts = scan.diffraction.astype(np.float64) ** 2
    assert predicted.sum(axis=(1, 2)).mean() == pytest.approx(counts.sum(axis=(1, 2)).mean(),
                                                              rel=0.02)
    assert np.corrcoef(predicted.ravel(), counts.ravel())[0, 1] > 0.95
    # the global phase is fixed: the illumination-weighted mean is real and positive
    centre = patches[:, scan.N // 4:-scan.N // 4, scan.N // 4:-scan.N // 4]
    assert abs(np.angle(centre.mean())) < 0.1
    assert len(result.history["iteration"]) == 10


@pytest.mark.parametrize("value, expected", [(None, None), ("none", None), ("refine", 0),
                                             ("refine:7", 7)])
def test_parse_targets(value, expected):
    assert parse_targets(value) == expected


@pytest.mark.parametrize("value", ["refine:0", "refine:x", "solver", "refine:-2"])
def test_bad_targets_are_refused_by_name(value):
    config = TrainingConfig(model=ModelConfig(N=64), targets=value)
    with pytest.raises(InputError, match="targets"):
        validate_training_config(config)


@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_training_with_solver_targets(small_scan, tmp_path, backend):
    from ptycho.archive import read_archive
    from ptycho.workflows import training

    if backend == "tensorflow":
        pytest.importorskip("tensorflow")
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), nepochs=1,
                            batch_size=16, targets="refine:3", backend=backend,
                            output_dir=tmp_path)
    result = training.train(config, ExecutionConfig(progress_bar=False, logger="none"),
                            train_scan=small_scan)
    weight = default_target_weight(small_scan.mean_photons_per_pattern(), 64)
    assert config.realspace_mae_weight == pytest.approx(weight)
    manifest = read_archive(result.archive_path).manifest
    assert manifest["training_config"]["targets"] == "refine:3"
    assert manifest["training_config"]["realspace_mae_weight"] == pytest.approx(weight)
    assert np.isfinite(result.history["train_loss"]).all()

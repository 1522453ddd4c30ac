"""Training targets from the iterative solver (TrainingConfig.targets)."""

from __future__ import annotations

import dataclasses

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
from ptycho.data.simulation import make_probe, mixed_state_probe, simulate
from ptycho.errors import InputError
from ptycho.workflows.targets import default_target_weight, solver_refines_probe, solver_targets


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
    # a fixed probe: the target scan keeps the scan's probe as it is
    assert target_scan.probe is scan.probe and target_scan.probe_modes is None


@pytest.fixture(scope="module")
def mixed_scan():
    """200-position N=64 spiral scan lit by 2 incoherent modes (80 % / 20 % of the power),
    given to training by mode 0 alone (the second mode starts as a made 4.8 % mode)."""
    modes = mixed_state_probe(make_probe("defocused", 64), second_mode_power=0.2, seed=0)
    scan = simulate(object_kind="grf:3", scan_kind="spiral", N=64, object_size=112, step=3.0,
                    n_positions=200, nphotons=1e6, seed=2, probe=modes).scan
    return dataclasses.replace(scan, probe_modes=None)


def _share(probe):
    powers = physics.mode_powers(probe)
    return powers / powers.sum()


def test_refined_probe_targets_reproduce_the_counts_with_the_refined_modes(mixed_scan):
    """With ``refine_probe`` the target scan carries the solver's modes (measured 80.4 / 19.6 %
    after 20 iterations from 95.2 / 4.8 %), and the network's forward model with those modes,
    normalised as in training, reproduces the counts from the target patches."""
    nphotons = mixed_scan.mean_photons_per_pattern()
    target_scan, result = solver_targets(mixed_scan, 20, probe_scale=4.0, nphotons=nphotons,
                                         probe_modes=2, refine_probe=True)
    assert target_scan.probe_modes.shape == (2, 64, 64)
    np.testing.assert_array_equal(target_scan.probe_modes, result.probe)
    probe = physics.normalize_probe(target_scan.initial_probe(2), 4.0)
    np.testing.assert_allclose(_share(probe), [0.8, 0.2], atol=0.02)
    assert _share(mixed_scan.initial_probe(2))[1] == pytest.approx(0.048, abs=1e-3)
    assert any("probe refined by the solver" in note for note in target_scan.notes)
    patches = physics.extract_patches(target_scan.object_guess, target_scan.xcoords,
                                      target_scan.ycoords, 64)
    predicted = physics.intensity_scale(nphotons, 64) ** 2 * physics.mixed_state_intensity(
        patches, probe)
    counts = mixed_scan.diffraction.astype(np.float64) ** 2
    assert predicted.sum(axis=(1, 2)).mean() == pytest.approx(counts.sum(axis=(1, 2)).mean(),
                                                              rel=0.01)
    assert np.corrcoef(predicted.ravel(), counts.ravel())[0, 1] > 0.999


@pytest.mark.parametrize("modes, trainable, expected", [(1, False, False), (1, True, True),
                                                        (2, False, True), (3, True, True)])
def test_solver_refines_the_probe_when_training_learns_or_estimates_it(modes, trainable,
                                                                       expected):
    config = TrainingConfig(model=ModelConfig(N=64, probe_modes=modes), probe_trainable=trainable)
    assert solver_refines_probe(config) is expected


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
    # a fixed single-mode probe is not refined: the model's probe is the scan's, normalised
    np.testing.assert_array_equal(read_archive(result.archive_path).probe, physics.normalize_probe(
        small_scan.probe, 4.0).astype(np.complex64))


@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_training_with_solver_targets_learns_the_mode_powers(mixed_scan, tmp_path, backend):
    """``targets='refine:20'`` with 2 probe modes: the archive holds the solver's modes,
    normalised as in training, with the true powers within 2 percentage points."""
    from ptycho.archive import read_archive
    from ptycho.workflows import training

    if backend == "tensorflow":
        pytest.importorskip("tensorflow")
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1, probe_modes=2),
                            nepochs=1, batch_size=16, targets="refine:20", backend=backend,
                            n_groups=32, output_dir=tmp_path)
    result = training.train(config, ExecutionConfig(progress_bar=False, logger="none"),
                            train_scan=mixed_scan)
    probe = read_archive(result.archive_path).probe
    assert probe.shape == (2, 64, 64)
    np.testing.assert_allclose(_share(probe), [0.8, 0.2], atol=0.02)
    np.testing.assert_array_equal(probe, result.scans[0].probe.astype(np.complex64))
    trained = result.scans[0].scan
    np.testing.assert_array_equal(probe, physics.normalize_probe(
        trained.initial_probe(2), 4.0).astype(np.complex64))

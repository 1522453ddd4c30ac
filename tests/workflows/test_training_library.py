"""Training on several scans (a library): grouping, per-scan normalisation, probe and intensity
scale in the loss of both backends, solver targets per scan, and the single-scan case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho import physics
from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig, training_files
from ptycho.data.grouping import GroupedData, GroupedScans
from ptycho.errors import InputError
from ptycho_testing import make_library_scans

MODEL = ModelConfig(N=64, n_filters_scale=1)


@pytest.fixture(scope="module")
def library():
    """``(a, b, grouped a, grouped b, GroupedScans, probes (2, 64, 64), scales (2,))``."""
    a, b = make_library_scans()
    groups = [GroupedData.from_scan(scan, 1) for scan in (a, b)]
    probes = np.stack([physics.normalize_probe(scan.probe, MODEL.probe_scale) for scan in (a, b)])
    scales = np.array([physics.intensity_scale(scan.mean_photons_per_pattern(), 64)
                       for scan in (a, b)])
    return a, b, *groups, GroupedScans(groups), probes, scales


def test_grouped_scans_serve_each_scan_with_its_own_normalisation(library):
    _, _, group_a, group_b, both, _, _ = library
    assert len(both) == len(group_a) + len(group_b) == 61 and both.channels == 1
    rows = np.array([30, 2, 24, 25, 60])   # out of order, across the boundary at 25
    np.testing.assert_array_equal(both.scan_index(rows), [1, 0, 0, 1, 1])
    expected = np.concatenate([group_b.X([5]), group_a.X([2, 24]), group_b.X([0, 35])])
    np.testing.assert_array_equal(both.X(rows), expected)
    # the two scans differ 100x in counts; each is normalised on its own to (N/2)**2
    assert group_b.norm_factor == pytest.approx(group_a.norm_factor / 10, rel=1e-2)
    power = (both.X() ** 2).sum(axis=(1, 2, 3))
    assert power[:25].mean() == pytest.approx(32 ** 2) and power[25:].mean() == pytest.approx(32 ** 2)
    coords = both.coords(rows, start=True)["relative"]
    assert coords.shape == (5, 1, 2, 1)
    truth = both.ground_truth_patches(rows)
    np.testing.assert_array_equal(truth[0], group_b.ground_truth_patches([5])[0])


def test_groups_never_mix_scans():
    a, b = make_library_scans()
    both = GroupedScans([GroupedData.from_scan(scan, 2, neighbor_count=4) for scan in (a, b)])
    for k, part in enumerate(both.parts):
        assert part.scan is (a, b)[k] and part.nn_indices.max() < part.scan.n_positions
    assert (both.scan_index() == np.repeat([0, 1], [25, 36])).all()


def _torch_losses(library, rows, config):
    """Loss of the library trainer on ``rows`` and of single-scan trainers on each scan."""
    torch = pytest.importorskip("torch")
    from ptycho.backends.pytorch.data import GroupedDataset
    from ptycho.backends.pytorch.lightning_module import PINNLightning
    from ptycho.backends.pytorch.model import PtychoPINN

    _, _, group_a, group_b, both, probes, scales = library
    torch.manual_seed(0)
    module = PtychoPINN(MODEL, probes[0], scales[0])
    trainer = PINNLightning(module, config, scales, probes)
    batch = GroupedDataset(both, rows).__getitems__(list(range(len(rows))))
    with torch.no_grad():
        mixed = float(trainer._loss(batch))
        singles = []
        for k, part in enumerate((group_a, group_b)):
            reference = PtychoPINN(MODEL, probes[k], scales[k])
            reference.generator.load_state_dict(module.generator.state_dict())
            own = rows[both.scan_index(rows) == k] - (0 if k == 0 else len(group_a))
            single = GroupedDataset(part, own).__getitems__(list(range(len(own))))
            singles.append(float(PINNLightning(reference, config, scales[k])._loss(single)))
            wrong = PtychoPINN(MODEL, probes[1 - k], scales[k])   # the other scan's probe
            wrong.generator.load_state_dict(module.generator.state_dict())
            singles.append(float(PINNLightning(wrong, config, scales[k])._loss(single)))
    return mixed, singles


def _tf_losses(library, rows, config):
    """As :func:`_torch_losses` for the TensorFlow trainer."""
    pytest.importorskip("ptycho.backends.tensorflow")
    import keras
    import tensorflow as tf

    from ptycho.backends.tensorflow.data import GroupedBatches
    from ptycho.backends.tensorflow.model import PtychoPINN
    from ptycho.backends.tensorflow.training import PINNTrainer

    _, _, group_a, group_b, both, probes, scales = library
    keras.utils.set_random_seed(0)
    pinn = PtychoPINN(MODEL, probes[0], scales[0])
    trainer = PINNTrainer(pinn, config, scales, probes)

    def loss(owner, grouped, selected):
        batch = GroupedBatches(grouped, selected, len(selected), False, 0).batch(selected)
        return float(owner.compute_batch_loss(tuple(tf.constant(t) for t in batch)))

    mixed = loss(trainer, both, rows)
    singles = []
    for k, part in enumerate((group_a, group_b)):
        own = rows[both.scan_index(rows) == k] - (0 if k == 0 else len(group_a))
        for probe in (probes[k], probes[1 - k]):
            reference = PtychoPINN(MODEL, probe, scales[k])
            reference.generator.set_weights(pinn.generator.get_weights())
            singles.append(loss(PINNTrainer(reference, config, scales[k]), part, own))
    return mixed, singles


@pytest.mark.parametrize("losses", [_torch_losses, _tf_losses], ids=["pytorch", "tensorflow"])
def test_each_sample_meets_its_own_probe_and_intensity_scale(library, losses):
    """A batch mixing both scans has the loss of each scan's samples under that scan's own
    probe and photon count (a single-scan model of the same generator), and not under the
    other scan's probe."""
    config = TrainingConfig(model=MODEL, mae_weight=0.5)
    rows = np.array([3, 30, 11, 50, 27, 7])   # 3 of scan a, 3 of scan b
    mixed, (own_a, wrong_a, own_b, wrong_b) = losses(library, rows, config)
    # equal numbers of samples of each scan: the mean loss is the mean of the two
    assert mixed == pytest.approx((own_a + own_b) / 2, rel=1e-5)
    assert abs(wrong_a - own_a) > 1e-3 * abs(own_a) and abs(wrong_b - own_b) > 1e-3 * abs(own_b)
    # b has 100x the counts of a: its Poisson NLL lives on another scale
    assert abs(own_b) > 20 * abs(own_a)


def _train(scans, tmp_path, **fields):
    from ptycho.workflows import training

    fields = {"model": ModelConfig(N=64, n_filters_scale=1), **fields}
    config = TrainingConfig(nepochs=1, batch_size=8, output_dir=tmp_path, **fields)
    execution = ExecutionConfig(logger="none", progress_bar=False, accelerator="cpu")
    return training.train(config, execution, train_scan=scans, write_outputs=False), config


def test_solver_targets_reconstruct_each_training_scan(tmp_path):
    """--targets refine:K with several scans: the solver reconstructs every scan (its own
    objectGuess, its own coordinates), and the automatic weight uses the mean photon count."""
    pytest.importorskip("torch")
    from ptycho.workflows.targets import default_target_weight

    a, b = make_library_scans()
    result, config = _train([a, b], tmp_path, targets="refine:2")
    assert len(result.scans) == 2 and isinstance(result.train_groups, GroupedScans)
    for original, data in zip((a, b), result.scans):
        assert any("training targets" in note for note in data.scan.notes)
        assert data.scan.object_guess is not original.object_guess
        assert data.scan.n_positions == original.n_positions
    mean_photons = np.mean([data.nphotons for data in result.scans])
    assert config.realspace_mae_weight == pytest.approx(default_target_weight(mean_photons, 64))


def test_solver_targets_refine_each_scans_own_probe_modes(tmp_path):
    """--targets refine:K with 2 probe modes and several scans: the solver refines each scan's
    modes, and each scan trains with its own refined modes (normalised as in training)."""
    pytest.importorskip("torch")
    a, b = make_library_scans()
    result, _ = _train([a, b], tmp_path, targets="refine:4",
                       model=ModelConfig(N=64, n_filters_scale=1, probe_modes=2))
    for original, data in zip((a, b), result.scans):
        assert any("probe refined by the solver" in note for note in data.scan.notes)
        np.testing.assert_array_equal(data.probe, physics.normalize_probe(
            data.scan.initial_probe(2), MODEL.probe_scale))
        start = physics.normalize_probe(original.initial_probe(2), MODEL.probe_scale)
        assert data.probe.shape == (2, 64, 64) and not np.allclose(data.probe, start)
    assert not np.allclose(result.scans[0].probe, result.scans[1].probe)


def test_one_scan_in_a_list_is_the_single_scan_case(tmp_path):
    pytest.importorskip("torch")
    a, _ = make_library_scans()
    assert TrainingConfig(train_data_file=[Path("a.npz")]).train_data_file == Path("a.npz")
    assert training_files(TrainingConfig(train_data_file=["a.npz", "b.npz"]))[1].name == "b.npz"
    result, _ = _train([a], tmp_path)
    assert isinstance(result.train_groups, GroupedData) and len(result.scans) == 1


def test_several_scans_refuse_a_trainable_probe_and_mixed_sizes(tmp_path):
    a, b = make_library_scans()
    with pytest.raises(InputError, match="probe_trainable"):
        _train([a, b], tmp_path, probe_trainable=True)
    small = b.subset(np.arange(b.n_positions))
    small.diffraction = np.ascontiguousarray(b.diffraction[:, 16:48, 16:48])
    small.source = "small.npz"
    with pytest.raises(InputError, match=r"small\.npz:diff3d.*64x64 patterns like .*32x32"):
        _train([a, small], tmp_path)


def test_stitching_probe_is_the_models_or_for_a_library_the_scans_own(library):
    from ptycho.workflows.inference import stitching_probe

    _, b, *_ = library

    class Model:
        model_config = MODEL
        probe = np.ones((64, 64), np.complex64)

    assert stitching_probe(Model, b, 1) is Model.probe
    np.testing.assert_allclose(stitching_probe(Model, b, 2),
                               physics.normalize_probe(b.probe, MODEL.probe_scale))

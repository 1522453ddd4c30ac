"""Test-time adaptation (``ptycho.workflows.adaptation``): fine-tune a trained model on a new
scan with the physics loss, both backends (small CPU runs)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics
from ptycho.archive import load_trained_model, read_archive
from ptycho.config.config import ExecutionConfig, ModelConfig, TrainingConfig
from ptycho.errors import InputError
from ptycho.workflows import inference, training
from ptycho.workflows.adaptation import AdaptResult, adapt, adaptation_config

EXECUTION = ExecutionConfig(accelerator="cpu", logger="none", progress_bar=False)


@pytest.fixture(scope="module")
def new_scan():
    """25 positions of another object, probe (defocused) and photon count than the training
    scan."""
    from ptycho.data.simulation import simulate

    return simulate(object_kind="grf:8", probe_kind="defocused", scan_kind="raster", N=64,
                    object_size=96, step=8.0, nphotons=1e6, seed=1).scan


@pytest.fixture(scope="module", params=["pytorch", "tensorflow"])
def source_model(request, tmp_path_factory):
    """(backend, archive folder): a one-epoch model trained on a 25-position scan."""
    from ptycho_testing import make_test_scan

    backend = request.param
    if backend == "tensorflow":
        pytest.importorskip("tensorflow")
    folder = tmp_path_factory.mktemp(f"adapt_{backend}") / "model"
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), nepochs=1, batch_size=4,
                            backend=backend, output_dir=folder, learning_rate=5e-4)
    training.train(config, EXECUTION, train_scan=make_test_scan(n_side=5))
    return backend, folder


def _generator_state(path) -> dict:
    from ptycho.backends.weight_transfer import archive_state

    state, _ = archive_state(path)
    return {k: v for k, v in state.items() if k.startswith("generator.")}


def test_adapt_fine_tunes_on_the_new_scan_and_writes_a_loadable_archive(source_model, new_scan,
                                                                         tmp_path):
    backend, folder = source_model
    result = adapt(folder, new_scan, 1, output_dir=tmp_path / "adapted", execution=EXECUTION)

    assert isinstance(result, AdaptResult) and result.seconds > 0
    assert result.archive_path == tmp_path / "adapted" / "wts.h5.zip"
    assert (tmp_path / "adapted" / "history.csv").exists()
    assert len(result.history["epoch"]) == 1 and np.isfinite(result.history["train_loss"][0])
    manifest = read_archive(result.archive_path).manifest
    training_config = manifest["training_config"]
    assert manifest["backend"] == backend
    assert training_config["init_weights"] == str(folder / "wts.h5.zip")
    assert training_config["nepochs"] == 1 and training_config["validation_fraction"] == 0
    assert training_config["learning_rate"] == 5e-4            # the source run's rate
    assert training_config["realspace_mae_weight"] == 0 and training_config["targets"] is None
    # the new scan's photon count and probe, not the source model's
    assert manifest["nphotons"] == pytest.approx(new_scan.mean_photons_per_pattern())
    np.testing.assert_allclose(result.model.probe, physics.normalize_probe(new_scan.probe, 4.0),
                               rtol=0, atol=1e-6)
    # started from the source generator, and moved away from it
    before, after = _generator_state(folder), _generator_state(result.archive_path)
    assert before.keys() == after.keys()
    assert all(before[k].shape == after[k].shape for k in before)
    assert any(not np.array_equal(before[k], after[k]) for k in before)
    # the adapted archive loads with its backend and reconstructs the scan
    model, _ = load_trained_model(result.archive_path)
    reconstruction = inference.reconstruct(model, new_scan)
    assert np.isfinite(reconstruction.stitched.object).all()
    np.testing.assert_allclose(
        reconstruction.stitched.object,
        inference.reconstruct(result.model, new_scan).stitched.object, rtol=0, atol=1e-5)


def test_adapt_accepts_a_training_result_or_a_model_in_memory(new_scan, tmp_path):
    from ptycho_testing import make_test_scan

    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), nepochs=1, batch_size=4,
                            output_dir=tmp_path / "model")
    trained = training.train(config, EXECUTION, train_scan=make_test_scan(n_side=5))
    from_result = adapt(trained, new_scan, 1, output_dir=tmp_path / "a", execution=EXECUTION)
    assert from_result.config.init_weights == trained.archive_path
    from_model = adapt(trained.model, new_scan, 1, output_dir=tmp_path / "b", execution=EXECUTION,
                       learning_rate=2e-4, seed=7)
    assert (from_model.config.learning_rate, from_model.config.seed) == (2e-4, 7)
    assert from_model.archive_path.exists() and from_model.model.backend == "pytorch"
    with pytest.raises(InputError, match="output would overwrite the source model"):
        adapt(tmp_path / "model", new_scan, 1, output_dir=tmp_path / "model")


def _manifest(**training) -> dict:
    config = TrainingConfig(model=ModelConfig(N=64), batch_size=8, learning_rate=1e-3,
                            lr_schedule="cosine", lr_min=5e-4, nphotons=None,
                            realspace_mae_weight=1.0, targets="refine:5", n_groups=40,
                            validation_fraction=0.1, early_stop_patience=2, mae_weight=0.5)
    for name, value in training.items():
        setattr(config, name, value)
    from ptycho.archive import _jsonable

    flat = _jsonable(config)
    model = flat.pop("model")
    return {"backend": "tensorflow", "model_config": model,
            "training_config": {**flat, "a_newer_setting": 1}}


def test_adaptation_config_keeps_the_recipe_and_drops_what_needs_truth(tmp_path):
    config = adaptation_config(_manifest(), 6, init_weights=tmp_path / "wts.h5.zip",
                               output_dir=tmp_path / "out")
    assert config.backend == "tensorflow" and config.model.N == 64
    assert (config.batch_size, config.lr_schedule, config.mae_weight) == (8, "cosine", 0.5)
    assert config.learning_rate == 1e-3 and config.nphotons is None      # measured on the scan
    assert config.nepochs == 6 and config.early_stop_patience > 6       # no early stop
    assert config.validation_fraction == 0 and config.n_groups is None  # every position
    assert config.realspace_mae_weight == 0 and config.targets is None
    assert config.init_weights == tmp_path / "wts.h5.zip"
    lower = adaptation_config(_manifest(nphotons=1e6), 2, init_weights="w", output_dir="o",
                              learning_rate=1e-4)
    assert lower.nphotons == 1e6                                          # fixed by the source
    assert lower.learning_rate == 1e-4 and lower.lr_min == 1e-4           # kept <= the rate


@pytest.mark.parametrize("epochs, rate, where", [(0, None, "adapt epochs"),
                                                 (2.5, None, "adapt epochs"),
                                                 (1, 0.0, "adapt learning rate"),
                                                 (1, float("nan"), "adapt learning rate")])
def test_adaptation_config_refuses_bad_values(epochs, rate, where):
    with pytest.raises(InputError, match=f"invalid value in {where}"):
        adaptation_config(_manifest(), epochs, init_weights="w", output_dir="o",
                          learning_rate=rate)


def test_a_supervised_model_is_refused():
    manifest = _manifest()
    manifest["model_config"]["model_type"] = "supervised"
    with pytest.raises(InputError, match=r"supervised model in m/wts.h5.zip:model_config"
                                         r".model_type: a PINN model"):
        adaptation_config(manifest, 1, init_weights="w", output_dir="o", where="m/wts.h5.zip")

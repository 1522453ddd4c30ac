"""Weight transfer between the backends: exact in both directions, ``ptychopinn convert``,
the backend-mismatch message, and ``train --init_weights`` (either backend's archive)."""

import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("tensorflow")
pytest.importorskip("ptycho.backends.tensorflow")

from ptycho import physics
from ptycho.archive import load_trained_model, read_archive, write_archive
from ptycho.backends import weight_transfer
from ptycho.cli.main import main
from ptycho.config.config import ModelConfig, TrainingConfig
from ptycho.errors import ArchiveError, InputError
from ptycho.parity import checks, weights

CFG = ModelConfig(N=64, gridsize=2, n_filters_scale=1)
UNET = ModelConfig(N=64, gridsize=2, n_filters_scale=1, architecture="unet")
RESNET = ModelConfig(N=64, gridsize=2, n_filters_scale=1, architecture="resnet")
FFNO = ModelConfig(N=64, gridsize=2, n_filters_scale=1, architecture="ffno")


def _probe():
    return physics.normalize_probe(checks.asymmetric_probe(64, np.random.default_rng(5))
                                   ).astype(np.complex64)


def _model(backend, seed=3, config=CFG, history=None):
    import keras
    import torch

    torch.manual_seed(seed)
    keras.utils.set_random_seed(seed)
    return weights.build_model(backend, config, _probe(), 7.5,
                               history=history or {"epoch": [0, 1], "train_loss": [2.0, 1.5],
                                                   "val_loss": [2.1, 1.7], "best_epoch": 1})


def _archive(tmp_path, backend, name="model", config=CFG):
    model = _model(backend, config=config)
    folder = tmp_path / name
    folder.mkdir()
    training = TrainingConfig(model=config, nepochs=2, backend=backend, learning_rate=5e-4)
    write_archive(folder, model, training, nphotons=1.5e5)
    return folder, model


@pytest.mark.parametrize("config", [CFG, UNET, RESNET, FFNO],
                         ids=["cnn", "unet", "resnet", "ffno"])
@pytest.mark.parametrize("source", ["pytorch", "tensorflow"])
def test_weight_transfer_is_exact_in_both_directions(source, config):
    model = _model(source, config=config)
    target = "tensorflow" if source == "pytorch" else "pytorch"
    converted = weights.convert_model(model, target)
    back = weights.convert_model(converted, source)
    original = weights.model_state(model)
    assert set(original) == set(weights.model_state(converted))
    if config.architecture == "ffno":   # 1x1 kernels (out, in, 1, 1) and spectral weights
        assert original["generator.layers.0.ff1.weight"].shape == (32, 32, 1, 1)
        assert original["generator.layers.3.fourier_x.weight_imag"].shape == (32, 32, 16)
    else:
        assert any(key.endswith("conv1.weight") and original[key].ndim == 4 for key in original)
    for state in (weights.model_state(converted), weights.model_state(back)):
        for key, value in original.items():
            np.testing.assert_array_equal(state[key], value, err_msg=key)
    np.testing.assert_array_equal(converted.probe, model.probe)
    assert converted.intensity_scale == pytest.approx(model.intensity_scale, rel=1e-7)
    assert converted.history == model.history
    _, max_rel = weights.prediction_difference(model, converted)
    assert max_rel <= 1e-5


@pytest.mark.parametrize("source, target, config", [("pytorch", "tensorflow", CFG),
                                                    ("tensorflow", "pytorch", CFG),
                                                    ("pytorch", "tensorflow", UNET),
                                                    ("tensorflow", "pytorch", RESNET),
                                                    ("tensorflow", "pytorch", FFNO)],
                         ids=["pytorch-cnn", "tensorflow-cnn", "pytorch-unet",
                              "tensorflow-resnet", "tensorflow-ffno"])
def test_convert_command_writes_the_other_backends_archive(tmp_path, capsys, source, target,
                                                           config):
    folder, model = _archive(tmp_path, source, config=config)
    out = tmp_path / "converted"
    assert main(["convert", "--to", target, str(folder), str(out)]) == 0
    printed = capsys.readouterr().out
    assert "check on a random batch" in printed

    before, after = read_archive(folder), read_archive(out)
    assert after.source == str(out / "wts.h5.zip")
    assert after.manifest["backend"] == target and after.manifest["payload"] != \
        before.manifest["payload"]
    for key in ("model_config", "N", "gridsize", "nphotons", "history", "history_summary",
                "normalisation", "format_version"):
        assert after.manifest[key] == before.manifest[key], key
    assert after.manifest["model_config"]["architecture"] == config.architecture
    expected_training = dict(before.manifest["training_config"], backend=target)
    assert after.manifest["training_config"] == expected_training
    assert after.manifest["intensity_scale"] == pytest.approx(before.manifest["intensity_scale"],
                                                              rel=1e-7)
    np.testing.assert_array_equal(after.probe, before.probe)
    with zipfile.ZipFile(out / "wts.h5.zip") as archive:
        assert sorted(archive.namelist()) == sorted(
            ["manifest.json", "probe.npy", after.manifest["payload"]])
        json.loads(archive.read("manifest.json"))

    loaded, _ = load_trained_model(out, backend=target)
    assert loaded.backend == target
    _, max_rel = weights.prediction_difference(model, loaded)
    assert max_rel <= 1e-5


def test_loading_with_the_other_backend_names_both_and_the_convert_command(tmp_path):
    folder, _ = _archive(tmp_path, "pytorch")
    with pytest.raises(ArchiveError) as info:
        load_trained_model(folder, backend="tensorflow")
    message = str(info.value)
    assert "'tensorflow'" in message and "'pytorch'" in message
    assert f"ptychopinn convert --to tensorflow {folder} OUT_DIR" in message
    assert "--backend pytorch" in message


def test_convert_refuses_a_same_backend_target_and_overwriting_the_source(tmp_path, capsys):
    folder, _ = _archive(tmp_path, "tensorflow")
    assert main(["convert", "--to", "tensorflow", str(folder), str(tmp_path / "x")]) == 2
    assert "nothing to convert" in capsys.readouterr().err
    assert main(["convert", "--to", "pytorch", str(folder), str(folder)]) == 2
    assert "overwrite the source" in capsys.readouterr().err
    assert main(["convert", "--to", "pytorch", str(tmp_path / "nowhere"), str(tmp_path / "y")]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


@pytest.mark.parametrize("source", ["pytorch", "tensorflow"])
def test_initial_weights_replace_only_the_generator(tmp_path, source):
    """``train --init_weights``: the generator comes from the archive (either backend); the
    probe and the intensity scale stay those of the new run."""
    import keras
    import torch

    folder, model = _archive(tmp_path, source)
    expected = weights.model_state(model)
    other_probe = np.ones((64, 64), np.complex64)
    torch.manual_seed(11)
    keras.utils.set_random_seed(11)
    for backend in ("pytorch", "tensorflow"):
        fresh = weights.build_model(backend, CFG, other_probe, 2.0)
        weight_transfer.load_initial_weights(fresh.module, folder)
        state = weights.model_state(fresh)
        for key, value in expected.items():
            if key.startswith("generator."):
                np.testing.assert_array_equal(state[key], value, err_msg=key)
        np.testing.assert_array_equal(fresh.probe, other_probe)
        assert fresh.intensity_scale == pytest.approx(2.0, rel=1e-6)


def test_initial_weights_of_another_configuration_are_refused(tmp_path):
    folder, _ = _archive(tmp_path, "pytorch")
    fresh = weights.build_model("tensorflow", ModelConfig(N=64, gridsize=1, n_filters_scale=1),
                                _probe(), 2.0)
    with pytest.raises(InputError, match="weights do not fit the model"):
        weight_transfer.load_initial_weights(fresh.module, folder)


@pytest.mark.parametrize("config", [UNET, RESNET, FFNO], ids=["unet", "resnet", "ffno"])
@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_initial_weights_of_another_architecture_are_refused(tmp_path, backend, config):
    """Refused by the manifest's architecture, also for resnet, whose weights have the cnn's
    names and shapes."""
    folder, _ = _archive(tmp_path, "pytorch")
    fresh = weights.build_model(backend, config, _probe(), 2.0)
    with pytest.raises(InputError, match=f"'{config.architecture}' architecture") as info:
        weight_transfer.load_initial_weights(fresh.module, folder)
    assert "'cnn' architecture" in str(info.value)


def test_train_init_weights_flag_starts_from_the_archive(tmp_path, small_scan):
    """The workflow honours TrainingConfig.init_weights (what the harness passes)."""
    from ptycho.config.config import ExecutionConfig
    from ptycho.workflows.training import train

    config1 = ModelConfig(N=64, n_filters_scale=1)
    source = weights.build_model("pytorch", config1, _probe(), 7.5)
    init = tmp_path / "init"
    init.mkdir()
    write_archive(init, source, TrainingConfig(model=config1), nphotons=1e5)
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1), nepochs=1,
                            batch_size=16, n_groups=20, learning_rate=1e-12,
                            intensity_scale_trainable=False, backend="tensorflow",
                            init_weights=init, output_dir=tmp_path / "out")
    quiet = ExecutionConfig(progress_bar=False, logger="none", accelerator="cpu")
    result = train(config, quiet, train_scan=small_scan, write_outputs=False)
    trained = weights.model_state(result.model)
    for key, value in weights.model_state(source).items():
        if key.startswith("generator."):   # lr 1e-12: one step leaves the weights in place
            np.testing.assert_allclose(trained[key], value, atol=1e-8, err_msg=key)

"""Configuration dataclasses: ptychodus compatibility, validation, legacy bridge."""

from __future__ import annotations

import dataclasses
import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from ptycho import params
from ptycho.config.config import (
    KEY_MAPPINGS,
    ExecutionConfig,
    InferenceConfig,
    ModelConfig,
    TrainingConfig,
    dataclass_to_legacy_dict,
    update_legacy_dict,
    validate_execution_config,
    validate_inference_config,
    validate_model_config,
    validate_training_config,
)
from ptycho.errors import InputError


def _ptychodus_model(N: int) -> ModelConfig:
    # reconstructor.py in ptychodus 1.7.0 (reference/ptychodus.md section 2.1), verbatim kwargs
    return ModelConfig(N=N, gridsize=2, n_filters_scale=2, model_type="pinn",
                       amp_activation="sigmoid", object_big=True, probe_big=True, probe_mask=False,
                       pad_object=True, probe_scale=4.0, gaussian_smoothing_sigma=0.0)


def _ptychodus_training() -> TrainingConfig:
    mc = _ptychodus_model(N=0)  # train: N=0 until the child reads the data
    return TrainingConfig(model=mc, train_data_file=Path(), test_data_file=None, batch_size=16,
                          nepochs=3, mae_weight=0.0, nll_weight=1.0, realspace_mae_weight=0.0,
                          realspace_weight=0.0, nphotons=1e9, positions_provided=True,
                          probe_trainable=False, intensity_scale_trainable=True,
                          output_dir=Path())


def _ptychodus_inference() -> InferenceConfig:
    mc = _ptychodus_model(N=64)
    return InferenceConfig(model=mc, model_path=Path(), test_data_file=Path(), debug=False,
                           output_dir=Path())


# ---------------------------------------------------------------------------------------------
# ptychodus compatibility
# ---------------------------------------------------------------------------------------------

def test_ptychodus_kwargs_are_accepted():
    training = _ptychodus_training()
    inference = _ptychodus_inference()
    assert training.model.N == 0 and inference.model.N == 64
    assert training.test_data_file is None and inference.model_path == Path()
    # N=0 passes validation when N is not yet required (the data fix it)
    validate_training_config(training, require_n=False)
    validate_inference_config(inference)
    with pytest.raises(InputError, match="ModelConfig.N"):
        validate_training_config(training)


def test_ptychodus_model_type_names():
    for name in ("PINN", "Supervised"):
        config = ModelConfig(N=0, model_type=name.lower())
        validate_model_config(config, require_n=False)


def test_configs_are_mutable():
    config = _ptychodus_training()
    config.model.N = 64  # what ptychodus's child does after reading the data
    assert config.model.N == 64
    validate_training_config(config)
    model = ModelConfig(N=0)
    model.N = 64
    model.gridsize = 2
    assert (model.N, model.gridsize) == (64, 2)
    inference = _ptychodus_inference()
    inference.model_path = Path("elsewhere")
    assert inference.model_path == Path("elsewhere")


@pytest.mark.parametrize("factory", [_ptychodus_training, _ptychodus_inference, ExecutionConfig,
                                     lambda: ModelConfig(N=0)])
def test_configs_pickle_round_trip(factory):
    config = factory()
    clone = pickle.loads(pickle.dumps(config))
    assert clone == config and clone is not config
    assert type(clone) is type(config)


def test_input_error_pickles():
    error = InputError("invalid value", "ModelConfig.N", "one of 64", "3")
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == str(error) and clone.where == "ModelConfig.N"


def test_config_module_imports_no_heavy_packages():
    code = (
        "import sys, json\n"
        "import ptycho.config.config\n"
        "heavy = ('torch', 'tensorflow', 'keras', 'lightning', 'numpy', 'jax')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_defaults_match_design():
    model = ModelConfig()
    assert (model.N, model.gridsize, model.n_filters_scale) == (64, 1, 2)
    assert model.object_big and model.probe_big and model.pad_object and not model.probe_mask
    assert model.probe_scale == 4.0 and model.amp_activation == "sigmoid"
    training = TrainingConfig()
    assert training.n_groups is None  # all positions, not 512 as upstream
    assert training.nphotons is None  # measured from the data
    assert training.backend == "pytorch"
    assert training.model is not TrainingConfig().model  # no shared mutable default


def test_n_images_alias_warns_and_maps():
    with pytest.warns(DeprecationWarning):
        config = TrainingConfig(n_images=10)
    assert config.n_groups == 10
    with pytest.warns(DeprecationWarning):
        config = InferenceConfig(n_images=7, n_groups=5)
    assert config.n_groups == 5


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

def _assert_invalid(error: InputError, field: str, value: str, allowed: str) -> None:
    message = str(error)
    assert isinstance(error, ValueError)
    assert field in message, message
    assert value in message, message
    assert allowed in message, message


@pytest.mark.parametrize("changes, field, value, allowed", [
    ({"N": 100}, "ModelConfig.N", "100", "64 or 128 or 256"),
    ({"gridsize": 0}, "ModelConfig.gridsize", "0", ">= 1"),
    ({"n_filters_scale": 0}, "ModelConfig.n_filters_scale", "0", ">= 1"),
    ({"model_type": "gan"}, "ModelConfig.model_type", "'gan'", "pinn, supervised"),
    ({"architecture": "fno"}, "ModelConfig.architecture", "'fno'", "cnn"),
    ({"amp_activation": "tanh"}, "ModelConfig.amp_activation", "'tanh'", "sigmoid, swish"),
    ({"probe_big": "false"}, "ModelConfig.probe_big", "'false'", "true or false"),
    ({"probe_scale": 0.0}, "ModelConfig.probe_scale", "0.0", "> 0"),
    ({"gaussian_smoothing_sigma": -1.0}, "ModelConfig.gaussian_smoothing_sigma", "-1.0", ">= 0"),
])
def test_validate_model_config_rejects(changes, field, value, allowed):
    config = dataclasses.replace(ModelConfig(), **changes)
    with pytest.raises(InputError) as info:
        validate_model_config(config)
    _assert_invalid(info.value, field, value, allowed)


@pytest.mark.parametrize("changes, field, value, allowed", [
    ({"batch_size": 0}, "TrainingConfig.batch_size", "0", ">= 1"),
    ({"nepochs": -3}, "TrainingConfig.nepochs", "-3", ">= 1"),
    ({"nphotons": -1.0}, "TrainingConfig.nphotons", "-1.0", "> 0"),
    ({"nll_weight": -0.5}, "TrainingConfig.nll_weight", "-0.5", ">= 0"),
    ({"learning_rate": 0.0}, "TrainingConfig.learning_rate", "0.0", "> 0"),
    ({"validation_fraction": 1.0}, "TrainingConfig.validation_fraction", "1.0", "[0, 1)"),
    ({"n_groups": 0}, "TrainingConfig.n_groups", "0", ">= 1"),
    ({"measurement": "counts"}, "TrainingConfig.measurement", "'counts'", "auto, amplitude"),
    ({"backend": "jax"}, "TrainingConfig.backend", "'jax'", "pytorch, tensorflow"),
    ({"seed": -1}, "TrainingConfig.seed", "-1", ">= 0"),
    ({"lr_schedule": "onecycle"}, "TrainingConfig.lr_schedule", "'onecycle'", "plateau, cosine"),
    ({"lr_warmup_epochs": -1.0}, "TrainingConfig.lr_warmup_epochs", "-1.0", ">= 0"),
    ({"lr_warmup_epochs": float("inf")}, "TrainingConfig.lr_warmup_epochs", "inf", ">= 0"),
    ({"lr_min": -1e-5}, "TrainingConfig.lr_min", "-1e-05", "[0, learning_rate = 0.001]"),
    ({"lr_min": 0.01}, "TrainingConfig.lr_min", "0.01", "[0, learning_rate = 0.001]"),
    ({"grad_clip_norm": -1.0}, "TrainingConfig.grad_clip_norm", "-1.0", "> 0, or 0 or unset"),
    ({"grad_clip_norm": float("nan")}, "TrainingConfig.grad_clip_norm", "nan", "> 0"),
    ({"grad_clip_norm": "1"}, "TrainingConfig.grad_clip_norm", "'1'", "> 0"),
])
def test_validate_training_config_rejects(changes, field, value, allowed):
    config = dataclasses.replace(TrainingConfig(), **changes)
    with pytest.raises(InputError) as info:
        validate_training_config(config)
    _assert_invalid(info.value, field, value, allowed)


def test_validate_training_checks_the_model():
    config = TrainingConfig(model=ModelConfig(gridsize=-1))
    with pytest.raises(InputError, match="ModelConfig.gridsize"):
        validate_training_config(config)


def test_validate_inference_and_execution_reject():
    with pytest.raises(InputError) as info:
        validate_inference_config(InferenceConfig(neighbor_count=0))
    _assert_invalid(info.value, "InferenceConfig.neighbor_count", "0", ">= 1")
    with pytest.raises(InputError) as info:
        validate_execution_config(ExecutionConfig(accelerator="tpu"))
    _assert_invalid(info.value, "ExecutionConfig.accelerator", "'tpu'", "cpu")
    with pytest.raises(InputError) as info:
        validate_execution_config(ExecutionConfig(devices=0))
    _assert_invalid(info.value, "ExecutionConfig.devices", "0", "'auto'")


def test_training_recipe_defaults_and_accepted_values():
    """The default stays today's recipe: plateau schedule, no clipping."""
    config = TrainingConfig()
    assert config.lr_schedule == "plateau" and config.grad_clip_norm is None
    assert config.lr_warmup_epochs == 1.0 and config.lr_min == 0.0
    for changes in ({"lr_schedule": "cosine"}, {"lr_schedule": "cosine", "lr_warmup_epochs": 0},
                    {"lr_warmup_epochs": 0.5, "lr_min": 1e-3}, {"grad_clip_norm": 0.0},
                    {"grad_clip_norm": 1}, {"grad_clip_norm": 1e3}):
        validate_training_config(dataclasses.replace(TrainingConfig(), **changes))


def test_defaults_validate():
    validate_model_config(ModelConfig())
    validate_training_config(TrainingConfig())
    validate_inference_config(InferenceConfig())
    validate_execution_config(ExecutionConfig())


# ---------------------------------------------------------------------------------------------
# Legacy bridge and params
# ---------------------------------------------------------------------------------------------

def test_legacy_dict_uses_key_mappings():
    config = _ptychodus_training()
    config.model.N = 64
    flat = dataclass_to_legacy_dict(config)
    for old, new in KEY_MAPPINGS.items():
        assert old not in flat and new in flat
    assert flat["object.big"] is True and flat["probe.big"] is True and flat["probe.mask"] is False
    assert flat["probe.trainable"] is False and flat["intensity_scale.trainable"] is True
    assert flat["positions.provided"] is True
    assert flat["output_prefix"] == "."  # Path() -> '.'
    assert flat["train_data_file_path"] == "." and flat["test_data_file_path"] is None
    assert flat["N"] == 64 and flat["gridsize"] == 2 and flat["nphotons"] == 1e9
    assert "model" not in flat


def test_training_recipe_reaches_the_legacy_dict_under_its_own_names():
    config = TrainingConfig(lr_schedule="cosine", lr_warmup_epochs=0.5, lr_min=1e-5,
                            grad_clip_norm=2.0)
    flat = dataclass_to_legacy_dict(config)
    assert (flat["lr_schedule"], flat["lr_warmup_epochs"], flat["lr_min"],
            flat["grad_clip_norm"]) == ("cosine", 0.5, 1e-5, 2.0)
    assert "grad_clip_norm" not in update_legacy_dict({}, TrainingConfig())  # None: not written


def test_update_legacy_dict_skips_none():
    cfg = {"test_data_file_path": "keep.npz", "nphotons": 5.0, "unrelated": 1}
    config = _ptychodus_training()
    config.nphotons = None
    returned = update_legacy_dict(cfg, config)
    assert returned is cfg
    assert cfg["test_data_file_path"] == "keep.npz"  # None in the config keeps the old entry
    assert cfg["nphotons"] == 5.0
    assert cfg["unrelated"] == 1
    assert cfg["output_prefix"] == "." and cfg["probe.big"] is True and cfg["N"] == 0
    assert all(value is not None for key, value in cfg.items())


def test_update_legacy_dict_writes_params_cfg(monkeypatch):
    monkeypatch.setattr(params, "cfg", {})
    update_legacy_dict(params.cfg, _ptychodus_inference())
    assert params.get("N") == 64
    assert params.get("gridsize") == 2
    assert params.get("model_path") == "."
    assert params.get("output_prefix") == "."
    assert "accelerator" not in params.cfg  # execution settings never reach params.cfg


def test_params_get_raises_key_error_when_unset(monkeypatch):
    monkeypatch.setattr(params, "cfg", {})
    with pytest.raises(KeyError, match="intensity_scale"):
        params.get("intensity_scale")
    assert params.get("intensity_scale", None) is None
    params.set("intensity_scale", 988.2)
    assert params.get("intensity_scale") == 988.2
    assert params.params() == {"intensity_scale": 988.2}
    snapshot = params.params()
    snapshot["intensity_scale"] = 0
    assert params.get("intensity_scale") == 988.2  # params() returns a copy

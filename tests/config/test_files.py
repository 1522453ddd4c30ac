"""YAML config files and the precedence explicit flag > config file > dataclass default."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from ptycho.cli.common import add_option, parse_bool
from ptycho.config.config import ExecutionConfig, InferenceConfig, ModelConfig, TrainingConfig
from ptycho.config.files import (
    build_execution_config,
    build_inference_config,
    build_training_config,
    load_config_file,
)
from ptycho.errors import InputError


def _write(tmp_path: Path, text: str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _training_flags(**given) -> dict:
    """CLI values as a parser produces them: every TrainingConfig/ModelConfig field, None if absent."""
    names = [f.name for f in dataclasses.fields(TrainingConfig) if f.name != "model"]
    names += [f.name for f in dataclasses.fields(ModelConfig)]
    values = {name: None for name in names}
    values.update(given)
    return values


# ---------------------------------------------------------------------------------------------
# Precedence
# ---------------------------------------------------------------------------------------------

def test_file_value_survives_when_flag_absent(tmp_path):
    values = load_config_file(_write(tmp_path, "nepochs: 7\n"))
    config = build_training_config(_training_flags(), values)
    assert config.nepochs == 7


def test_explicit_flag_beats_file(tmp_path):
    values = load_config_file(_write(tmp_path, "nepochs: 7\nbatch_size: 8\n"))
    config = build_training_config(_training_flags(nepochs=3), values)
    assert config.nepochs == 3
    assert config.batch_size == 8  # untouched by flags: from the file


def test_default_when_neither_flag_nor_file():
    default = TrainingConfig()
    config = build_training_config(_training_flags(), None)
    assert config.nepochs == default.nepochs
    assert config.batch_size == default.batch_size
    assert config.model == ModelConfig()
    empty = build_training_config(_training_flags(), {})
    assert empty == config


def test_nested_model_block(tmp_path):
    text = "nepochs: 2\nmodel:\n  N: 128\n  gridsize: 2\n  probe_big: false\n"
    values = load_config_file(_write(tmp_path, text))
    config = build_training_config(_training_flags(), values)
    assert config.nepochs == 2
    assert config.model.N == 128
    assert config.model.gridsize == 2
    assert config.model.probe_big is False
    assert config.model.object_big is True  # default


def test_flat_model_keys_go_to_model(tmp_path):
    values = load_config_file(_write(tmp_path, "N: 128\ngridsize: 2\namp_activation: swish\n"))
    config = build_training_config(_training_flags(), values)
    assert (config.model.N, config.model.gridsize, config.model.amp_activation) == (128, 2, "swish")


def test_model_fields_from_flags_beat_file(tmp_path):
    values = load_config_file(_write(tmp_path, "model:\n  N: 64\n  gridsize: 2\n"))
    config = build_training_config(_training_flags(N=128), values)
    assert config.model.N == 128
    assert config.model.gridsize == 2


def test_N_from_flags_only():
    assert build_training_config(_training_flags(N=128)).model.N == 128


def test_N_zero_allowed_for_training_until_data_fix_it():
    assert build_training_config(_training_flags(N=0)).model.N == 0


def test_int_coerced_to_float_field(tmp_path):
    values = load_config_file(_write(tmp_path, "probe_scale: 4\nnphotons: 1e9\n"))
    assert isinstance(values["probe_scale"], float) and values["probe_scale"] == 4.0
    # YAML 1.2 style exponent floats are floats, not strings
    assert isinstance(values["nphotons"], float) and values["nphotons"] == 1e9
    config = build_training_config(_training_flags(), values)
    assert config.model.probe_scale == 4.0 and config.nphotons == 1e9


def test_paths_and_nulls(tmp_path):
    text = "train_data_file: data/train.npz\ntest_data_file: null\nnphotons: null\n"
    values = load_config_file(_write(tmp_path, text))
    config = build_training_config(_training_flags(), values)
    assert config.train_data_file == Path("data/train.npz")
    assert config.test_data_file is None and config.nphotons is None


def test_cli_strings_become_paths():
    config = build_training_config(_training_flags(train_data_file="a.npz", output_dir="out"))
    assert config.train_data_file == Path("a.npz") and config.output_dir == Path("out")


def test_unrelated_cli_keys_are_ignored():
    cli = _training_flags(nepochs=4)
    cli.update({"command": "train", "config": "run.yaml", "_run": print, "quiet": False})
    assert build_training_config(cli).nepochs == 4


def test_n_images_is_a_deprecated_alias(tmp_path):
    values = load_config_file(_write(tmp_path, "n_images: 100\n"))
    with pytest.warns(DeprecationWarning, match="n_images"):
        config = build_training_config(_training_flags(), values)
    assert config.n_groups == 100
    with pytest.warns(DeprecationWarning, match="n_images"):
        config = build_training_config(_training_flags(n_images=50), values)
    assert config.n_groups == 50
    # an explicit flag beats the file, even through the alias
    file_groups = load_config_file(_write(tmp_path, "n_groups: 100\n", "g.yaml"))
    with pytest.warns(DeprecationWarning):
        config = build_training_config(_training_flags(n_images=30), file_groups)
    assert config.n_groups == 30


def test_inference_and_execution_configs(tmp_path):
    text = "model:\n  gridsize: 2\nn_groups: 9\ndebug: true\naccelerator: cpu\ndevices: 2\n"
    values = load_config_file(_write(tmp_path, text))
    inference = build_inference_config({"model_path": "m", "test_data_file": "t.npz"}, values)
    assert isinstance(inference, InferenceConfig)
    assert inference.model.gridsize == 2 and inference.n_groups == 9 and inference.debug is True
    assert inference.model_path == Path("m") and inference.test_data_file == Path("t.npz")
    execution = build_execution_config({"accelerator": None, "num_workers": 3}, values)
    assert isinstance(execution, ExecutionConfig)
    assert (execution.accelerator, execution.devices, execution.num_workers) == ("cpu", 2, 3)
    assert build_execution_config({"devices": "auto"}, values).devices == "auto"


def test_kebab_case_keys(tmp_path):
    values = load_config_file(_write(tmp_path, "probe-big: false\nn-filters-scale: 1\n"))
    config = build_training_config(_training_flags(), values)
    assert config.model.probe_big is False and config.model.n_filters_scale == 1


def test_empty_file_gives_defaults(tmp_path):
    values = load_config_file(_write(tmp_path, "# nothing yet\n"))
    assert dict(values) == {}
    assert build_training_config(_training_flags(), values) == TrainingConfig()


# ---------------------------------------------------------------------------------------------
# Booleans on the command line (ptycho.cli.common)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("false", False), ("False", False), ("FALSE", False), ("0", False), ("no", False),
    ("true", True), ("True", True), ("1", True), ("yes", True), ("on", True),
])
def test_parse_bool(text, expected):
    assert parse_bool(text) is expected


def test_parse_bool_rejects_other_text():
    with pytest.raises(argparse.ArgumentTypeError):
        parse_bool("maybe")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_option(parser, "probe_big", type=bool)
    add_option(parser, "N", type=int)
    add_option(parser, "nepochs", type=int)
    return parser


@pytest.mark.parametrize("argv, expected", [
    (["--probe_big", "false"], False),
    (["--probe-big", "False"], False),
    (["--probe_big", "true"], True),
    (["--probe_big"], True),
    ([], None),
])
def test_add_option_bool(argv, expected):
    assert _parser().parse_args(argv).probe_big is expected


def test_add_option_int_and_precedence(tmp_path):
    args = _parser().parse_args(["--N", "128", "--probe-big", "false"])
    assert args.N == 128 and args.nepochs is None
    values = load_config_file(_write(tmp_path, "nepochs: 7\nprobe_big: true\nN: 64\n"))
    config = build_training_config(vars(args), values)
    assert config.model.N == 128  # flag
    assert config.model.probe_big is False  # flag "false" really is False and beats the file
    assert config.nepochs == 7  # file


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------

def test_unknown_key_names_file_key_and_suggestion(tmp_path):
    path = _write(tmp_path, "nepoch: 7\n")
    with pytest.raises(InputError) as info:
        load_config_file(path)
    error = info.value
    assert error.what == "unknown key"
    assert error.where == "run.yaml:nepoch"
    assert "TrainingConfig/ModelConfig" in error.expected
    assert "nepochs" in str(error)


def test_unknown_key_in_model_block(tmp_path):
    with pytest.raises(InputError) as info:
        load_config_file(_write(tmp_path, "model:\n  gridsiz: 2\n"))
    assert info.value.what == "unknown key"
    assert info.value.where == "run.yaml:model.gridsiz"
    assert "gridsize" in str(info.value)


def test_training_key_in_model_block_is_unknown(tmp_path):
    with pytest.raises(InputError, match="unknown key"):
        load_config_file(_write(tmp_path, "model:\n  nepochs: 2\n"))


@pytest.mark.parametrize("text, key, expected", [
    ("nepochs: ten\n", "nepochs", "integer"),
    ("N: 64.5\n", "N", "integer"),
    ("probe_big: 'false'\n", "probe_big", "boolean"),
    ("probe_big: 1\n", "probe_big", "boolean"),
    ("probe_scale: four\n", "probe_scale", "number"),
    ("nepochs: true\n", "nepochs", "integer"),
    ("N: null\n", "N", "integer"),
    ("batch_size: [16]\n", "batch_size", "integer"),
    ("train_data_file: 3\n", "train_data_file", "path"),
    ("amp_activation: 1\n", "amp_activation", "string"),
])
def test_wrong_type(tmp_path, text, key, expected):
    with pytest.raises(InputError) as info:
        load_config_file(_write(tmp_path, text))
    error = info.value
    assert error.what == "wrong type"
    assert error.where == f"run.yaml:{key}"
    assert expected in error.expected
    value = text.split(":", 1)[1].strip().strip("'")
    assert value in error.actual


def test_invalid_yaml_names_the_line(tmp_path):
    with pytest.raises(InputError) as info:
        load_config_file(_write(tmp_path, "nepochs: 7\nbatch_size: [1\n"))
    assert info.value.what == "invalid YAML"
    assert "run.yaml" in info.value.where and "line" in info.value.where


def test_not_a_mapping_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="mapping"):
        load_config_file(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(InputError, match="file not found"):
        load_config_file(tmp_path / "absent.yaml")


def test_duplicate_key_flat_and_nested(tmp_path):
    with pytest.raises(InputError, match="duplicate key"):
        load_config_file(_write(tmp_path, "N: 64\nmodel:\n  N: 128\n"))


def test_values_are_validated_at_build_time(tmp_path):
    values = load_config_file(_write(tmp_path, "nepochs: 0\n"))
    with pytest.raises(InputError) as info:
        build_training_config(_training_flags(), values)
    assert info.value.where == "run.yaml:nepochs"  # points at the file line that set it
    assert isinstance(info.value, ValueError)
    with pytest.raises(InputError) as info:
        build_training_config(_training_flags(N=100))
    assert info.value.where == "--N"
    assert "64" in info.value.expected
    with pytest.raises(InputError, match="ModelConfig.gridsize"):
        build_training_config({}, {"gridsize": 0})  # a plain dict: no file name to point at


def test_training_recipe_from_file_and_flags(tmp_path):
    values = load_config_file(_write(tmp_path, "lr_schedule: cosine\nlr_warmup_epochs: 2\n"
                                               "lr_min: 1e-5\ngrad_clip_norm: 1\n"))
    config = build_training_config(_training_flags(), values)
    assert (config.lr_schedule, config.lr_warmup_epochs, config.lr_min,
            config.grad_clip_norm) == ("cosine", 2.0, 1e-5, 1.0)
    assert isinstance(config.lr_warmup_epochs, float) and isinstance(config.grad_clip_norm, float)
    config = build_training_config(_training_flags(lr_schedule="plateau", grad_clip_norm="0.5"),
                                   values)
    assert config.lr_schedule == "plateau" and config.grad_clip_norm == 0.5  # flags win
    assert build_training_config(_training_flags(), load_config_file(
        _write(tmp_path, "grad_clip_norm: null\n"))).grad_clip_norm is None


@pytest.mark.parametrize("text, where, what", [
    ("lr_schedule: onecycle\n", "run.yaml:lr_schedule", "invalid value"),
    ("lr_warmup_epochs: -1\n", "run.yaml:lr_warmup_epochs", "invalid value"),
    ("lr_min: 0.5\n", "run.yaml:lr_min", "invalid value"),
    ("grad_clip_norm: -2\n", "run.yaml:grad_clip_norm", "invalid value"),
    ("grad_clip_norm: big\n", "run.yaml:grad_clip_norm", "wrong type"),
    ("lr_schedule: 1\n", "run.yaml:lr_schedule", "wrong type"),
])
def test_training_recipe_errors_name_the_file_key(tmp_path, text, where, what):
    with pytest.raises(InputError) as info:
        build_training_config(_training_flags(), load_config_file(_write(tmp_path, text)))
    assert info.value.what == what and info.value.where == where


def test_wrong_type_from_flags():
    with pytest.raises(InputError) as info:
        build_training_config(_training_flags(nepochs="many"))
    assert "many" in info.value.actual
    assert info.value.where == "--nepochs"

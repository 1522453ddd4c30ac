"""train/infer command lines: flag parsing, YAML precedence, and clean errors (no training but
one tiny epoch with ``--architecture unet``, ``resnet`` and ``ffno``)."""

import subprocess
import sys

import numpy as np
import pytest

from ptycho.cli.main import build_parser, main
from ptycho.cli.train_cmd import configs_from_args


def _configs(argv):
    return configs_from_args(build_parser().parse_args(["train", *argv]))


def test_yaml_values_survive_when_flags_are_absent(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("nepochs: 7\nbatch_size: 8\ngridsize: 2\nmodel:\n  probe_big: false\n")
    config, _ = _configs(["--config", str(config_file)])
    assert (config.nepochs, config.batch_size, config.model.gridsize) == (7, 8, 2)
    assert config.model.probe_big is False


def test_explicit_flags_beat_the_file_which_beats_defaults(tmp_path):
    config_file = tmp_path / "run.yaml"
    config_file.write_text("nepochs: 7\nlearning_rate: 0.0005\n")
    config, execution = _configs(["--config", str(config_file), "--nepochs", "3", "--N", "128",
                                  "--probe_big", "False", "--n-groups", "40",
                                  "--num-workers", "2", "--precision", "bf16-mixed"])
    assert config.nepochs == 3 and config.learning_rate == 0.0005
    assert config.model.N == 128 and config.model.probe_big is False
    assert config.n_groups == 40
    assert config.batch_size == 16  # default
    assert execution.num_workers == 2 and execution.precision == "bf16-mixed"


@pytest.mark.parametrize("text, expected", [("false", False), ("False", False), ("true", True),
                                            ("0", False), ("yes", True)])
def test_bool_flags_parse_their_value(text, expected):
    config, _ = _configs(["--intensity_scale_trainable", text])
    assert config.intensity_scale_trainable is expected


def test_training_recipe_flags():
    config, _ = _configs(["--lr_schedule", "cosine", "--lr-warmup-epochs", "0.5",
                          "--lr_min", "1e-5", "--grad-clip-norm", "2"])
    assert (config.lr_schedule, config.lr_warmup_epochs, config.lr_min,
            config.grad_clip_norm) == ("cosine", 0.5, 1e-5, 2.0)
    config, _ = _configs([])
    assert config.lr_schedule == "plateau" and config.grad_clip_norm is None  # unchanged default
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        _configs(["--lr_schedule", "onecycle"])
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for flag in ("--lr_schedule", "--lr_warmup_epochs", "--lr_min", "--grad_clip_norm"):
        assert flag in help_text


def test_n_images_is_a_deprecated_alias_of_n_groups():
    with pytest.warns(DeprecationWarning):
        config, _ = _configs(["--n_images", "30"])
    assert config.n_groups == 30


@pytest.mark.parametrize("argv, where", [
    (["train", "--train_data_file", "missing.npz"], "missing.npz"),
    (["train", "--train_data_file", "x.npz", "--gridsize", "0"], "gridsize"),
    (["train", "--train_data_file", "x.npz", "--N", "100"], "N"),
    (["train", "--train_data_file", "x.npz", "--grad_clip_norm", "-1"], "--grad_clip_norm"),
    (["train", "--train_data_file", "x.npz", "--lr_min", "0.5"], "--lr_min"),
    (["train", "--train_data_file", "x.npz", "--lr_warmup_epochs", "-1"], "--lr_warmup_epochs"),
    (["infer", "--model_path", "nowhere", "--test_data", "missing.npz"], "missing.npz"),
])
def test_bad_input_gives_exit_2_and_one_line(argv, where, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and where in err[0]
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_output_dir_that_is_a_file_is_refused(tmp_path, capsys, small_scan):
    from ptycho.data.npz import write_scan_npz

    scan = tmp_path / "scan.npz"
    write_scan_npz(scan, small_scan)
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    assert main(["train", "--train_data_file", str(scan), "--output_dir", str(blocker)]) == 2
    assert "output path is a file" in capsys.readouterr().err


def test_help_is_fast_and_loads_no_backend():
    code = ("import sys, time; t=time.perf_counter(); from ptycho.cli.main import main\n"
            "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "heavy=[m for m in ('torch','tensorflow','keras','lightning','numpy') if m in sys.modules]\n"
            "print(heavy, time.perf_counter()-t, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    heavy, _ = result.stderr.strip().rsplit("]", 1)
    assert heavy + "]" == "[]"
    assert "--train_data_file" in result.stdout and "--n-groups" in result.stdout


@pytest.mark.parametrize("architecture, backend", [("unet", "pytorch"), ("unet", "tensorflow"),
                                                   ("resnet", "pytorch"),
                                                   ("resnet", "tensorflow"),
                                                   ("ffno", "pytorch"), ("ffno", "tensorflow")])
def test_train_one_epoch_with_the_unet_architecture(tmp_path, capsys, small_scan, backend,
                                                    architecture):
    """``--architecture unet`` (or ``resnet``, ``ffno``) trains (one tiny epoch), the archive
    records it, ``inspect`` shows it, the archive predicts and ``infer`` reconstructs."""
    pytest.importorskip("torch" if backend == "pytorch" else "tensorflow")
    from ptycho.archive import load_trained_model, read_archive
    from ptycho.data.grouping import GroupedData
    from ptycho.data.npz import write_scan_npz

    scan = tmp_path / "scan.npz"
    write_scan_npz(scan, small_scan)
    out = tmp_path / "model"
    assert main(["train", "--train_data_file", str(scan), "--output_dir", str(out),
                 "--architecture", architecture, "--backend", backend, "--nepochs", "1",
                 "--n_groups", "16", "--batch_size", "8", "--n_filters_scale", "1",
                 "--quiet", "--logger", "none", "--accelerator", "cpu"]) == 0
    assert read_archive(out).manifest["model_config"]["architecture"] == architecture
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    assert any(line.split() == ["architecture", architecture]
               for line in capsys.readouterr().out.splitlines())
    model, _ = load_trained_model(out)
    assert model.model_config.architecture == architecture
    grouped = GroupedData.from_scan(small_scan, 1)
    pred = model.predict([grouped.X(slice(0, 4)) * np.float32(model.intensity_scale),
                          grouped.coords(slice(0, 4))["relative"]])
    assert pred.shape == (4, 64, 64, 1) and np.isfinite(pred).all()
    recon = tmp_path / "recon"
    assert main(["infer", "--model_path", str(out), "--test_data", str(scan), "--output_dir",
                 str(recon), "--quiet"]) == 0
    with np.load(recon / "reconstruction.npz") as outputs:
        assert np.isfinite(outputs["object"]).all()

"""``--probe-modes M``: flags and config files, the archive of a mixed-state model, and
train -> archive -> inspect -> load -> infer (-> refine) with 2 probe modes in both backends
(one tiny epoch each), several scans with modes, and ``refine --probe-modes``."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics
from ptycho.archive import load_trained_model, read_archive, write_archive
from ptycho.cli.main import build_parser, main
from ptycho.cli.train_cmd import configs_from_args
from ptycho.data.npz import write_scan_npz
from ptycho.errors import ArchiveError
from ptycho_testing import FakeArchiveModel, make_test_scan

TINY = ["--nepochs", "1", "--batch_size", "8", "--n_filters_scale", "1", "--quiet",
        "--logger", "none", "--accelerator", "cpu"]


@pytest.fixture(scope="module")
def mixed_file(tmp_path_factory):
    """A 25-position N=64 scan of 2 incoherent modes (80 % / 20 %) written as NPZ."""
    path = tmp_path_factory.mktemp("modes") / "modes.npz"
    write_scan_npz(path, make_test_scan(n_side=5, second_mode_power=0.2))
    return path


def _config(argv):
    return configs_from_args(build_parser().parse_args(["train", *argv]))[0]


def test_probe_modes_flag_config_file_and_help(tmp_path):
    assert _config([]).model.probe_modes == 1
    assert _config(["--probe-modes", "3"]).model.probe_modes == 3
    assert _config(["--probe_modes", "2"]).model.probe_modes == 2
    config_file = tmp_path / "run.yaml"
    config_file.write_text("model:\n  probe_modes: 2\n")
    assert _config(["--config", str(config_file)]).model.probe_modes == 2
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--probe_modes" in help_text and "orthogonalised" in help_text
    refine_help = build_parser()._subparsers._group_actions[0].choices["refine"].format_help()
    assert "--probe-modes" in refine_help


def test_archive_stores_the_modes_and_checks_them(tmp_path):
    model = FakeArchiveModel(b"payload", probe_modes=2)
    model.probe = physics.initial_probe_modes(physics.default_probe(64), 2).astype(np.complex64)
    path = write_archive(tmp_path / "ok", model, {}, nphotons=1e5)
    archive = read_archive(path)
    np.testing.assert_array_equal(archive.probe, model.probe)
    assert archive.manifest["model_config"]["probe_modes"] == 2
    model.model_config.probe_modes = 3           # the manifest says 3, probe.npy holds 2
    with pytest.raises(ArchiveError, match=r"invalid probe .*\(3, 64, 64\)"):
        read_archive(write_archive(tmp_path / "bad", model, {}, nphotons=1e5))
    single = FakeArchiveModel(b"payload")        # (64, 64): unchanged layout
    assert read_archive(write_archive(tmp_path / "one", single, {}, nphotons=1e5)
                        ).probe.shape == (64, 64)


@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_train_two_probe_modes_then_infer_and_refine(tmp_path, capsys, backend, mixed_file):
    pytest.importorskip("torch" if backend == "pytorch" else "ptycho.backends.tensorflow")
    out = tmp_path / "model"
    assert main(["train", "--train_data_file", str(mixed_file), "--output_dir", str(out),
                 "--backend", backend, "--probe-modes", "2", "--probe_trainable",
                 *TINY]) == 0, capsys.readouterr().err
    archive = read_archive(out)
    assert archive.manifest["model_config"]["probe_modes"] == 2
    assert archive.probe.shape == (2, 64, 64)
    powers = physics.mode_powers(archive.probe)
    assert powers[0] > powers[1] > 0.1 * powers.sum()           # about 80 % / 20 %
    gram = archive.probe.reshape(2, -1).conj() @ archive.probe.reshape(2, -1).T
    assert abs(gram[0, 1]) < 1e-5 * abs(gram[0, 0])             # orthogonalised after training
    model, _ = load_trained_model(out)
    np.testing.assert_array_equal(model.probe, archive.probe)   # the payload holds the same
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    assert "2 incoherent modes" in capsys.readouterr().out

    inference = tmp_path / "inference"
    assert main(["infer", "--model_path", str(out), "--test_data", str(mixed_file),
                 "--output_dir", str(inference), "--quiet", "--refine-iterations", "1",
                 "--refine-probe"]) == 0, capsys.readouterr().err
    with np.load(inference / "reconstruction.npz") as result:
        assert np.isfinite(result["object"]).all() and result["object"].ndim == 2
    with np.load(inference / "refined" / "reconstruction.npz") as refined:
        assert refined["probe"].shape == (2, 64, 64)       # the solver ran the model's modes
    if backend == "tensorflow":  # the modes convert like the (N, N) probe
        from ptycho.parity.weights import convert_archive

        converted, _, _ = convert_archive(out, tmp_path / "converted", "pytorch")
        np.testing.assert_array_equal(read_archive(converted).probe, archive.probe)


@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_several_scans_each_with_probe_modes(tmp_path, capsys, mixed_file, backend):
    """One scan of 2 modes, one of a single mode (its second made from mode 0): each sample
    meets its scan's modes, the archive holds (2, 2, 64, 64) probes and a new scan is
    stitched with its own modes."""
    pytest.importorskip("torch" if backend == "pytorch" else "ptycho.backends.tensorflow")
    single = tmp_path / "single.npz"
    write_scan_npz(single, make_test_scan(n_side=5, seed=1))
    out = tmp_path / "model"
    assert main(["train", "--train_data_file", str(mixed_file), str(single), "--output_dir",
                 str(out), "--probe-modes", "2", "--backend", backend, *TINY]) == 0, \
        capsys.readouterr().err
    archive = read_archive(out)
    assert archive.probes.shape == (2, 2, 64, 64)
    np.testing.assert_array_equal(archive.probe, archive.probes[0])
    second = physics.mode_powers(archive.probes[1])
    np.testing.assert_allclose(second / second.sum(), [1 / 1.05, 0.05 / 1.05], atol=1e-4)
    assert main(["infer", "--model_path", str(out), "--test_data", str(mixed_file),
                 "--output_dir", str(tmp_path / "inference"), "--quiet"]) == 0


def test_refine_with_probe_modes(tmp_path, capsys, mixed_file):
    out = tmp_path / "refined"
    assert main(["refine", "--scan", str(mixed_file), "--output_dir", str(out), "--iterations",
                 "2", "--probe-modes", "2", "--refine-probe", "--device", "cpu"]) == 0, \
        capsys.readouterr().err
    with np.load(out / "reconstruction.npz") as result:
        assert result["probe"].shape == (2, 64, 64)

"""``ptychopinn train --train_data_file A.npz B.npz``: flags and config files, then train ->
archive -> load -> infer with two scans in both backends (one tiny epoch each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ptycho import physics
from ptycho.cli.main import build_parser, main
from ptycho.cli.train_cmd import configs_from_args
from ptycho_testing import make_library_scans

TINY = ["--nepochs", "1", "--batch_size", "8", "--n_filters_scale", "1", "--quiet",
        "--logger", "none", "--accelerator", "cpu"]


def _config(argv):
    return configs_from_args(build_parser().parse_args(["train", *argv]))[0]


def test_one_file_stays_a_path_several_become_a_list(tmp_path):
    assert _config(["--train_data_file", "a.npz"]).train_data_file == Path("a.npz")
    both = [Path("a.npz"), Path("b.npz")]
    assert _config(["--train_data_file", "a.npz", "b.npz"]).train_data_file == both
    assert _config(["--train-data-file", "a.npz", "--train_data_file", "b.npz"]
                   ).train_data_file == both  # the flag may be repeated
    config_file = tmp_path / "run.yaml"
    config_file.write_text("train_data_file: [a.npz, b.npz]\n")
    assert _config(["--config", str(config_file)]).train_data_file == both
    config_file.write_text("train_data_file: a.npz\n")
    assert _config(["--config", str(config_file)]).train_data_file == Path("a.npz")
    help_text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert "--train_data_file FILE [FILE ...]" in help_text and "library" in help_text


@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_train_on_two_scans_then_infer(tmp_path, capsys, backend):
    """The archive keeps the first scan's probe, lists both scans with their photon counts and
    normalisation, and holds both probes; it loads and reconstructs a third scan."""
    pytest.importorskip("torch" if backend == "pytorch" else "ptycho.backends.tensorflow")
    from ptycho.archive import load_trained_model, read_archive

    a, b = make_library_scans(tmp_path)
    out = tmp_path / "model"
    assert main(["train", "--train_data_file", a.source, b.source, "--output_dir", str(out),
                 "--backend", backend, *TINY]) == 0, capsys.readouterr().err
    archive = read_archive(out)
    manifest = archive.manifest
    assert manifest["training_config"]["train_data_file"] == [a.source, b.source]
    records = manifest["training_scans"]
    assert [r["file"] for r in records] == [a.source, b.source]
    assert [r["n_positions"] for r in records] == [25, 36]
    assert [r["n_groups"] for r in records] == [25, 36]
    assert records[1]["nphotons"] == pytest.approx(100 * records[0]["nphotons"], rel=0.02)
    assert records[1]["intensity_scale"] == pytest.approx(10 * records[0]["intensity_scale"],
                                                          rel=0.01)
    assert manifest["nphotons"] == records[0]["nphotons"]
    probes = [physics.normalize_probe(scan.probe, 4.0) for scan in (a, b)]
    np.testing.assert_allclose(archive.probes, probes, rtol=1e-6)
    np.testing.assert_allclose(archive.probe, probes[0], rtol=1e-6)
    model, _ = load_trained_model(out)
    assert model.backend == backend and np.isfinite(model.intensity_scale)
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    assert any(line.split()[:3] == ["training", "scans", "2:"]
               for line in capsys.readouterr().out.splitlines())

    capsys.readouterr()
    inference = tmp_path / "inference"
    assert main(["infer", "--model_path", str(out), "--test_data", b.source, "--output_dir",
                 str(inference), "--quiet"]) == 0, capsys.readouterr().err
    with np.load(inference / "reconstruction.npz") as result:
        assert np.isfinite(result["object"]).all() and result["object"].ndim == 2
    if backend == "tensorflow":  # conversion keeps the library records and probes
        from ptycho.parity.weights import convert_archive

        convert_archive(out, tmp_path / "converted", "pytorch")
        converted = read_archive(tmp_path / "converted")
        assert converted.manifest["training_scans"] == records
        np.testing.assert_array_equal(converted.probes, archive.probes)


def test_one_file_archive_has_no_library_members(tmp_path, capsys):
    pytest.importorskip("torch")
    import zipfile

    from ptycho.archive import read_archive

    a, _ = make_library_scans(tmp_path)
    out = tmp_path / "model"
    assert main(["train", "--train_data_file", a.source, "--output_dir", str(out), *TINY]) == 0
    archive = read_archive(out)
    assert archive.manifest["training_config"]["train_data_file"] == a.source
    assert "training_scans" not in archive.manifest and archive.probes is None
    assert sorted(zipfile.ZipFile(out / "wts.h5.zip").namelist()) == [
        "manifest.json", "probe.npy", "weights.pt"]

"""``ptychopinn infer --adapt-epochs K``: test-time adaptation from the command line (small CPU
runs, both backends)."""

import numpy as np
import pytest

from ptycho.archive import load_trained_model, read_archive
from ptycho.cli.main import main

TRAIN = ["--nepochs", "1", "--n_filters_scale", "1", "--batch_size", "4", "--accelerator", "cpu",
         "--logger", "none", "--quiet"]


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """(training scan, new scan): 25 positions each, other objects, probes and photon counts."""
    from ptycho.data.npz import write_scan_npz
    from ptycho_testing import make_test_scan

    folder = tmp_path_factory.mktemp("adapt_cli")
    train_path, new_path = folder / "train.npz", folder / "new.npz"
    write_scan_npz(train_path, make_test_scan(n_side=5))
    assert main(["simulate", "--object", "grf:8", "--probe", "defocused", "--scan", "raster",
                 "--step", "8", "--N", "64", "--object-size", "96", "--nphotons", "1e6",
                 "--seed", "1", "--out", str(new_path), "--quiet"]) == 0
    return train_path, new_path


def _train(scans, folder, *extra) -> str:
    assert main(["train", "--train_data_file", str(scans[0]), "--output_dir", str(folder),
                 *TRAIN, *extra]) == 0
    return str(folder)


@pytest.mark.parametrize("backend", ["pytorch", "tensorflow"])
def test_infer_adapts_then_reconstructs_and_refines(backend, scans, tmp_path, capsys):
    if backend == "tensorflow":
        pytest.importorskip("tensorflow")
    model = _train(scans, tmp_path / "model", "--backend", backend)
    capsys.readouterr()
    out = tmp_path / "recon"
    refine = ["--refine-iterations", "1"] if backend == "pytorch" else []  # (backend-neutral)
    assert main(["infer", "--model_path", model, "--test_data", str(scans[1]), "--output_dir",
                 str(out), "--adapt-epochs", "1", "--adapt-learning-rate", "3e-4", *refine,
                 "--quiet"]) == 0
    stdout = capsys.readouterr().out
    adapted = out / "adapted_model"
    assert ("adapted the model on 25 positions: 1 epoch in " in stdout
            and f"s; archive: {adapted / 'wts.h5.zip'}" in stdout), stdout
    assert "(adapted); outputs in" in stdout
    assert sorted(p.name for p in adapted.iterdir()) == ["history.csv", "loss_curve.png",
                                                         "wts.h5.zip"]
    assert (out / "reconstruction.npz").exists() and (out / "metrics.json").exists()
    if refine:  # refinement starts from the adapted network's reconstruction
        assert "refined:" in stdout and (out / "refined" / "reconstruction.npz").exists()
    manifest = read_archive(adapted).manifest
    assert manifest["backend"] == backend
    assert manifest["training_config"]["learning_rate"] == 3e-4
    assert manifest["training_config"]["init_weights"] == str(tmp_path / "model" / "wts.h5.zip")
    # the reconstruction is the adapted model's
    from ptycho.data.io import read_scan
    from ptycho.workflows.inference import reconstruct

    adapted_model, _ = load_trained_model(adapted)
    with np.load(out / "reconstruction.npz") as npz:
        np.testing.assert_allclose(npz["object"],
                                   reconstruct(adapted_model, read_scan(scans[1])).stitched.object,
                                   rtol=0, atol=1e-5)


@pytest.mark.parametrize("argv, where", [(["--adapt-epochs", "-1"], "--adapt-epochs"),
                                         (["--adapt-epochs", "1", "--adapt-learning-rate", "0"],
                                          "--adapt-learning-rate"),
                                         (["--adapt-learning-rate", "nan"],
                                          "--adapt-learning-rate")])
def test_bad_adapt_values_exit_2_before_reading(argv, where, tmp_path, capsys):
    code = main(["infer", "--model_path", str(tmp_path / "nowhere"), "--test_data",
                 str(tmp_path / "absent.npz"), "--output_dir", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: invalid value in {where}: ")
    assert list(tmp_path.iterdir()) == []


def test_a_supervised_model_is_refused_before_anything_is_written(scans, tmp_path, capsys):
    model = _train(scans, tmp_path / "model", "--model_type", "supervised")
    capsys.readouterr()
    out = tmp_path / "recon"
    code = main(["infer", "--model_path", model, "--test_data", str(scans[1]), "--output_dir",
                 str(out), "--adapt-epochs", "2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: supervised model in {tmp_path / 'model' / 'wts.h5.zip'}"
                             ":model_config.model_type: a PINN model"), err[0]
    assert not out.exists()

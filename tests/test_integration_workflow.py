"""train -> save -> load -> infer through the CLI with the TensorFlow backend, each step in its
own process (the PyTorch cycle is in tests/torch/test_integration_workflow_torch.py)."""

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")


@pytest.mark.parametrize("gridsize, batch_size", [(1, 16), (2, 16)])
def test_full_cycle_tensorflow(simulated_scan_file, cli, tmp_path, gridsize, batch_size):
    model_dir = tmp_path / "model"
    cli("train", "--train_data_file", simulated_scan_file, "--output_dir", model_dir,
        "--nepochs", "1", "--gridsize", gridsize, "--batch_size", batch_size,
        "--backend", "tensorflow", "--n_groups", "32", "--n_filters_scale", "1", "--quiet")
    manifest = json.loads(__import__("zipfile").ZipFile(model_dir / "wts.h5.zip")
                          .read("manifest.json"))
    assert manifest["backend"] == "tensorflow" and manifest["payload"] == "model.weights.h5"
    assert (model_dir / "history.csv").is_file() and (model_dir / "loss_curve.png").is_file()

    out_dir = tmp_path / "recon"
    result = cli("infer", "--model_path", model_dir, "--test_data", simulated_scan_file,
                 "--output_dir", out_dir)
    assert "tensorflow model" in result.stdout  # backend chosen from the archive's manifest
    with np.load(out_dir / "reconstruction.npz") as recon:
        assert np.iscomplexobj(recon["object"]) and np.isfinite(recon["object"]).all()
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert {"amplitude", "phase", "registration_shift_px"} <= set(metrics)

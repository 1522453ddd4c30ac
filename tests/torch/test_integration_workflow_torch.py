"""train -> save -> load -> infer through the CLI, each step in its own process (PyTorch)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest


@pytest.mark.parametrize("gridsize, batch_size", [(1, 16), (2, 16), (2, 32)])
def test_full_cycle_cli(simulated_scan_file, cli, tmp_path, gridsize, batch_size):
    scan_file = simulated_scan_file
    model_dir = tmp_path / "model"
    cli("train", "--train_data_file", scan_file, "--output_dir", model_dir, "--nepochs", "1",
         "--gridsize", gridsize, "--batch_size", batch_size, "--backend", "pytorch",
         "--n_groups", "48", "--quiet", "--logger", "none")
    for name in ("wts.h5.zip", "history.csv", "loss_curve.png"):
        assert (model_dir / name).is_file(), name

    out_dir = tmp_path / "recon"
    result = cli("infer", "--model_path", model_dir, "--test_data", scan_file,
                  "--output_dir", out_dir, "--batch-size", "32")
    assert "reconstructed" in result.stdout
    for name in ("reconstruction.npz", "reconstructed_amplitude.png", "reconstructed_phase.png",
                 "metrics.json", "comparison.png"):
        assert (out_dir / name).is_file(), name
    with np.load(out_dir / "reconstruction.npz") as recon:
        obj = recon["object"]
        assert obj.ndim == 2 and np.iscomplexobj(obj)
        assert np.isfinite(obj).all()
        truth = np.load(scan_file)["objectGuess"]
        assert 0 <= recon["x0_px"] < truth.shape[1] and 0 <= recon["y0_px"] < truth.shape[0]
        n_positions = len(np.load(scan_file)["xcoords"])
        assert len(recon["xcoords"]) == n_positions  # every position anchors a group
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert set(metrics["amplitude"]) >= {"psnr_db", "ssim", "mae", "frc50_px", "frc_half_bit_px"}
    assert set(metrics["phase"]) >= {"psnr_db", "ssim", "mae", "frc50_px", "frc_half_bit_px"}


def test_upstream_spellings_work(simulated_scan_file, tmp_path):
    scan_file = simulated_scan_file
    """ptycho_train / ptycho_inference entry points and --n_images (deprecated alias)."""
    from shutil import which

    bin_dir = str(Path(sys.executable).parent)
    train = which("ptycho_train", path=bin_dir)
    infer = which("ptycho_inference", path=bin_dir)
    assert train and infer
    model_dir = tmp_path / "m"
    result = subprocess.run([train, "--train_data_file", str(scan_file), "--output_dir",
                             str(model_dir), "--nepochs", "1", "--n_images", "32", "--quiet",
                             "--logger", "none"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "deprecated" in result.stderr
    result = subprocess.run([infer, "--model_path", str(model_dir), "--test_data", str(scan_file),
                             "--output_dir", str(tmp_path / "o"), "--stitch-weight", "crop"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "reconstruction.npz").is_file()

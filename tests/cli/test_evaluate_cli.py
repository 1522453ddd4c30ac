"""``ptychopinn evaluate``: files written, printed table, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import ndimage

import ptycho.cli.main as cli_main
from ptycho.data.npz import write_scan_npz
from ptycho.data.scan import Scan
from ptycho.physics import extract_patches
from ptycho.stitching import stitch_patches

N = 16
METRIC_KEYS = {"psnr_db", "ssim", "mae", "frc50_px", "frc_half_bit_px"}


def _object(rng, size=80):
    amplitude = 0.6 + 0.1 * ndimage.gaussian_filter(rng.normal(size=(size, size)), 2.0) / 0.1
    phase = ndimage.gaussian_filter(rng.normal(size=(size, size)), 2.0) * 8
    return (np.clip(amplitude, 0.2, 1.0) * np.exp(1j * phase)).astype(np.complex64)


def _scan(rng, with_truth=True):
    grid = np.arange(20.0, 61.0, 4.0)
    xcoords, ycoords = (a.ravel() for a in np.meshgrid(grid, grid))
    diffraction = rng.random((len(xcoords), N, N)).astype(np.float32)
    obj = _object(rng)
    scan = Scan(diffraction=diffraction, xcoords=xcoords, ycoords=ycoords,
                probe=np.ones((N, N), np.complex64), object_guess=obj if with_truth else None)
    return scan, obj


@pytest.fixture
def files(tmp_path, rng):
    scan, obj = _scan(rng)
    scan_path = tmp_path / "scan.npz"
    write_scan_npz(scan_path, scan)
    patches = extract_patches(obj, scan.xcoords, scan.ycoords, N)
    stitched = stitch_patches(patches, np.stack([scan.xcoords, scan.ycoords], 1), M=8)
    recon_dir = tmp_path / "run"
    recon_dir.mkdir()
    recon_path = recon_dir / "reconstruction.npz"
    np.savez(recon_path, object=stitched.object * np.exp(0.3j), x0_px=stitched.x0_px,
             y0_px=stitched.y0_px, weight=stitched.weight, xcoords=scan.xcoords,
             ycoords=scan.ycoords)
    return scan_path, recon_path, stitched, obj


@pytest.fixture
def main(monkeypatch):
    """``ptychopinn`` main() with only the evaluate subcommand (others may not exist yet)."""
    monkeypatch.setattr(cli_main, "COMMANDS", ("evaluate",))
    return cli_main.main


def _check_metrics_file(path):
    metrics = json.loads(path.read_text())
    assert set(metrics) == {"amplitude", "phase", "registration_shift_px"}
    assert set(metrics["amplitude"]) == METRIC_KEYS
    assert set(metrics["phase"]) == METRIC_KEYS
    assert len(metrics["registration_shift_px"]) == 2
    return metrics


def test_evaluate_writes_metrics_and_figure_next_to_the_reconstruction(files, main, capsys):
    scan_path, recon_path, _, _ = files
    assert main(["evaluate", str(recon_path), "--truth", str(scan_path)]) == 0
    out_dir = recon_path.parent
    metrics = _check_metrics_file(out_dir / "metrics.json")
    # the stitched truth patches reproduce the truth: registration ~0, near-perfect scores
    assert metrics["registration_shift_px"] == pytest.approx([0.0, 0.0], abs=0.05)
    assert metrics["amplitude"]["ssim"] > 0.99
    assert metrics["phase"]["ssim"] > 0.99
    png = (out_dir / "comparison.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert sorted(p.name for p in out_dir.iterdir()) == ["comparison.png", "metrics.json",
                                                         "reconstruction.npz"]
    printed = capsys.readouterr().out
    assert "amplitude" in printed and "phase" in printed and "metrics.json" in printed


def test_evaluate_accepts_an_hdf5_truth_scan(files, main, tmp_path):
    from ptycho.data.hdf5 import write_scan_hdf5
    from ptycho.data.npz import read_scan_npz

    scan_path, recon_path, _, _ = files
    truth = tmp_path / "truth.h5"
    write_scan_hdf5(truth, read_scan_npz(scan_path))
    out = tmp_path / "from_hdf5"
    assert main(["evaluate", str(recon_path), "--truth", str(truth), "--output_dir", str(out),
                 "--plot", "false"]) == 0
    assert _check_metrics_file(out / "metrics.json")["amplitude"]["ssim"] > 0.99


def test_evaluate_npy_with_origin_and_kebab_output_dir(files, main, tmp_path):
    scan_path, _, _, obj = files
    npy = tmp_path / "object.npy"
    np.save(npy, obj[10:70, 12:72])
    out = tmp_path / "results"
    status = main(["evaluate", str(npy), "--truth", str(scan_path), "--x0", "12", "--y0", "10",
                   "--output-dir", str(out), "--plot", "false"])
    assert status == 0
    metrics = _check_metrics_file(out / "metrics.json")
    assert metrics["amplitude"]["mae"] < 1e-6
    assert not (out / "comparison.png").exists()


def test_remove_phase_ramp_reports_the_ramp(files, main, tmp_path, capsys):
    scan_path, _, _, obj = files
    rows, cols = np.indices(obj.shape)
    npy = tmp_path / "ramped.npy"
    np.save(npy, obj * np.exp(1j * (0.04 * rows - 0.03 * cols)))
    out = tmp_path / "deramped"
    assert main(["evaluate", str(npy), "--truth", str(scan_path), "--output-dir", str(out),
                 "--plot", "false", "--remove-phase-ramp"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["phase_ramp_rad_per_px"] == pytest.approx([0.04, -0.03], abs=1e-4)
    assert metrics["phase"]["ssim"] > 0.99
    assert "phase ramp removed [rows, cols]: [0.04, -0.03] rad/px" in capsys.readouterr().out


def test_scan_without_object_guess_exits_2_with_one_line(files, main, tmp_path, rng, capsys):
    _, recon_path, _, _ = files
    scan, _ = _scan(rng, with_truth=False)
    bare = tmp_path / "bare.npz"
    write_scan_npz(bare, scan)
    assert main(["evaluate", str(recon_path), "--truth", str(bare)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: ") and "objectGuess" in err


@pytest.mark.parametrize("missing", ["recon", "truth"])
def test_missing_file_exits_2_with_one_line(files, main, tmp_path, capsys, missing):
    scan_path, recon_path, _, _ = files
    absent = tmp_path / "absent.npz"
    argv = ["evaluate", str(absent if missing == "recon" else recon_path),
            "--truth", str(absent if missing == "truth" else scan_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("error: file not found") and "absent.npz" in err


def test_reconstruction_without_object_key_exits_2(files, main, tmp_path, capsys):
    scan_path, _, _, _ = files
    bad = tmp_path / "bad.npz"
    np.savez(bad, x0_px=0.0, y0_px=0.0)
    assert main(["evaluate", str(bad), "--truth", str(scan_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "bad.npz:object" in err


def test_register_is_light_and_parses_both_spellings():
    code = ("import sys, argparse; import ptycho.cli.evaluate_cmd as m; "
            "p = argparse.ArgumentParser(); m.register(p.add_subparsers()); "
            "a = p.parse_args(['evaluate', 'r.npz', '--truth', 's.npz', '--output_dir', 'o']); "
            "assert a.output_dir == 'o' and a.truth == 's.npz' and a.registration == 'auto'; "
            "heavy = [n for n in ('numpy', 'scipy', 'skimage', 'matplotlib', 'torch', "
            "'tensorflow', 'ptycho.evaluation') if n in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


def test_evaluation_package_imports_no_deep_learning_framework():
    code = ("import sys, ptycho.evaluation; "
            "print([n for n in ('torch', 'tensorflow', 'keras', 'matplotlib') "
            "if n in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"

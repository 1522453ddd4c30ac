"""``ptychopinn refine`` and ``ptychopinn infer --refine-iterations``: command lines, files,
progress lines (small CPU runs)."""

import csv
import logging

import numpy as np
import pytest

from ptycho.cli.main import build_parser, main
from ptycho.cli.refine_cmd import REFINE_FLAGS, options_from_args
from ptycho.refine import RefineOptions

REFINE_FILES = ["comparison.png", "metrics.json", "misfit.png", "reconstructed_amplitude.png",
                "reconstructed_phase.png", "reconstruction.npz", "refine_history.csv"]


@pytest.fixture(scope="module")
def scan_file(tmp_path_factory):
    """25 positions, N=64, written by ``ptychopinn simulate`` (with objectGuess)."""
    path = tmp_path_factory.mktemp("refine") / "scan.npz"
    assert main(["simulate", "--object", "grf:8", "--probe", "defocused", "--scan", "raster",
                 "--step", "8", "--N", "64", "--object-size", "96", "--nphotons", "1e6",
                 "--seed", "1", "--out", str(path), "--quiet"]) == 0
    return path


def _history(folder) -> dict:
    with open(folder / "refine_history.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def _iteration_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "ptycho.refine" and r.getMessage().startswith("iteration ")]


def test_refine_from_flat_then_from_its_reconstruction_then_evaluate(scan_file, tmp_path,
                                                                     capsys, caplog):
    caplog.set_level(logging.INFO, logger="ptycho.refine")
    first = tmp_path / "first"
    assert main(["refine", "--scan", str(scan_file), "--iterations", "3", "--batch-size", "8",
                 "--device", "cpu", "--output_dir", str(first)]) == 0
    out = capsys.readouterr().out
    assert "refined 25 positions from flat: 3 iterations in" in out
    assert "amplitude" in out and "phase" in out  # the metrics table
    assert sorted(p.name for p in first.iterdir()) == REFINE_FILES
    history = _history(first)
    assert history["iteration"] == [1, 2, 3]
    assert set(history) >= {"misfit", "time_s", "amplitude_ssim", "phase_ssim",
                            "amplitude_psnr_db", "phase_psnr_db"}
    assert history["misfit"][0] > history["misfit"][1] > history["misfit"][2]
    # one progress line per iteration, showing the misfit of the history
    lines = _iteration_lines(caplog)
    assert len(lines) == 3 and lines[2].startswith("iteration 3/3: misfit ")
    assert float(lines[2].split("misfit ")[1].split(",")[0]) == pytest.approx(
        history["misfit"][2], rel=1e-5)
    assert "amplitude SSIM" in lines[0] and "phase SSIM" in lines[0]
    with np.load(first / "reconstruction.npz") as npz:
        n = 64
        assert npz["probe"].shape == (n, n) and npz["xcoords_start"].shape == (25,)
        np.testing.assert_array_equal(npz["xcoords"], npz["xcoords_start"])  # not refined

    caplog.clear()
    second = tmp_path / "second"
    assert main(["refine", "--scan", str(scan_file), "--init", str(first / "reconstruction.npz"),
                 "--iterations", "2", "--batch-size", "8", "--refine-positions",
                 "--position-start-iteration", "0", "--device", "cpu",
                 "--output_dir", str(second)]) == 0
    assert "from reconstruction.npz: 2 iterations" in capsys.readouterr().out
    assert len(_iteration_lines(caplog)) == 2
    continued = _history(second)
    assert continued["misfit"][0] < history["misfit"][0]  # started from the first result
    with np.load(second / "reconstruction.npz") as npz:
        assert np.abs(npz["xcoords"] - npz["xcoords_start"]).max() > 0  # positions moved

    assert main(["evaluate", str(second / "reconstruction.npz"), "--truth", str(scan_file),
                 "--output_dir", str(tmp_path / "evaluation")]) == 0
    assert (tmp_path / "evaluation" / "metrics.json").exists()


def test_flags_map_onto_refine_options_and_default_to_them():
    args = build_parser().parse_args(["refine", "--scan", "s.npz", "--output_dir", "o",
                                      "--batch_size", "4", "--refine-probe",
                                      "--refine-positions", "false", "--noise-model", "poisson",
                                      "--position-affine", "false"])
    options = options_from_args(args, REFINE_FLAGS)
    expected = RefineOptions(batch_size=4, refine_probe=True, refine_positions=False,
                             noise_model="poisson", position_affine=False)
    assert options == expected
    defaults = options_from_args(build_parser().parse_args(
        ["refine", "--scan", "s.npz", "--output_dir", "o"]), REFINE_FLAGS)
    assert defaults == RefineOptions()


def test_help_shows_the_refine_options_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["refine", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    defaults = RefineOptions()
    assert f"passes over all scan positions (default: {defaults.iterations})" in text
    assert f"(default: {defaults.batch_size})" in text and "(default: None)" not in text


@pytest.mark.parametrize("argv, where", [
    (["--iterations", "0"], "--iterations"),
    (["--batch-size", "0"], "--batch-size"),
    (["--seed", "-1"], "--seed"),
    (["--position-start-iteration", "-2"], "--position-start-iteration"),
])
def test_bad_solver_flags_exit_2_before_reading(argv, where, tmp_path, capsys):
    code = main(["refine", "--scan", str(tmp_path / "absent.npz"), "--output_dir",
                 str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"error: invalid value in {where}: ")
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def trained_model(tmp_path_factory):
    """A one-epoch model on a 25-position scan, and that scan (ground truth included)."""
    from ptycho.data.npz import write_scan_npz
    from ptycho_testing import make_test_scan

    folder = tmp_path_factory.mktemp("refine_infer")
    scan_path = folder / "scan.npz"
    write_scan_npz(scan_path, make_test_scan(n_side=5))
    assert main(["train", "--train_data_file", str(scan_path), "--output_dir",
                 str(folder / "model"), "--nepochs", "1", "--n_filters_scale", "1",
                 "--batch_size", "4", "--backend", "pytorch", "--accelerator", "cpu",
                 "--logger", "none", "--quiet"]) == 0
    return folder / "model", scan_path


def test_infer_with_refine_iterations(trained_model, tmp_path, capsys, caplog):
    model, scan_path = trained_model
    caplog.set_level(logging.INFO, logger="ptycho.infer")
    out = tmp_path / "recon"
    assert main(["infer", "--model_path", str(model), "--test_data", str(scan_path),
                 "--output_dir", str(out), "--refine-iterations", "2",
                 "--refine-probe"]) == 0
    stdout = capsys.readouterr().out
    assert (out / "reconstruction.npz").exists() and (out / "metrics.json").exists()
    assert sorted(p.name for p in (out / "refined").iterdir()) == REFINE_FILES
    assert "network:" in stdout and "refined:" in stdout and "outputs in " in stdout
    assert stdout.count("amplitude") >= 2
    assert len([r for r in caplog.records if r.getMessage().startswith("iteration ")]) == 2
    with np.load(out / "reconstruction.npz") as network, \
            np.load(out / "refined" / "reconstruction.npz") as refined:
        assert "probe" not in network.files and "probe" in refined.files
        assert refined["object"].ndim == 2 and refined["weight"].shape == refined["object"].shape
    assert _history(out / "refined")["iteration"] == [1, 2]


def test_infer_refine_iterations_must_not_be_negative(tmp_path, capsys):
    code = main(["infer", "--model_path", str(tmp_path / "nowhere"), "--test_data",
                 str(tmp_path / "absent.npz"), "--output_dir", str(tmp_path / "o"),
                 "--refine-iterations", "-1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--refine-iterations" in err[0]
    assert list(tmp_path.iterdir()) == []

"""Files of ``ptychopinn refine`` (:mod:`ptycho.workflows.refinement`), from a made-up result:
no solver run."""

import csv
import json
import logging

import numpy as np
import pytest

from ptycho.errors import InputError
from ptycho.evaluation import Reconstruction, read_reconstruction
from ptycho.refine import RefineOptions, RefineResult
from ptycho.stitching import StitchedObject
from ptycho.workflows.outputs import save_reconstruction_npz
from ptycho.workflows.refinement import (
    TRUTH_METRIC_KEYS,
    IterationLog,
    initial_from_reconstruction,
    truth_metrics_callback,
    write_refine_outputs,
)


@pytest.fixture(scope="module")
def scan():
    from ptycho_testing import make_test_scan

    return make_test_scan(n_side=4, step_px=8.0)


def _result(scan, history=None) -> RefineResult:
    """The ground truth cropped to the scanned area, as the solver would return it."""
    half = scan.N // 2
    x0 = int(scan.xcoords.min()) - half
    y0 = int(scan.ycoords.min()) - half
    size = int(scan.xcoords.max() - scan.xcoords.min()) + scan.N
    obj = scan.object_guess[y0:y0 + size, x0:x0 + size].astype(np.complex64)
    weight = np.ones(obj.shape, np.float32)
    weight[:2] = 0.0
    positions = np.column_stack([scan.xcoords + 0.25, scan.ycoords - 0.5])
    history = history or {"iteration": [1, 2, 3], "misfit": [4.0, 2.0, 1.5],
                          "time_s": [0.1, 0.2, 0.3], "phase_ssim": [0.5, 0.6, 0.7]}
    return RefineResult(object=obj, x0_px=float(x0), y0_px=float(y0), weight=weight,
                        probe=(scan.probe * 2).astype(np.complex64), positions_xy=positions,
                        history=history, options=RefineOptions(iterations=3))


def test_write_refine_outputs_files_and_contents(tmp_path, scan):
    result = _result(scan)
    metrics = write_refine_outputs(result, tmp_path / "out", scan)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "comparison.png", "metrics.json", "misfit.png", "reconstructed_amplitude.png",
        "reconstructed_phase.png", "reconstruction.npz", "refine_history.csv"]
    with np.load(out / "reconstruction.npz") as npz:
        assert set(npz.files) == {"object", "x0_px", "y0_px", "weight", "xcoords", "ycoords",
                                  "probe", "xcoords_start", "ycoords_start"}
        np.testing.assert_array_equal(npz["object"], result.object)
        np.testing.assert_array_equal(npz["weight"], result.weight)
        assert float(npz["x0_px"]) == result.x0_px and float(npz["y0_px"]) == result.y0_px
        np.testing.assert_array_equal(npz["xcoords"], result.positions_xy[:, 0])
        np.testing.assert_array_equal(npz["ycoords"], result.positions_xy[:, 1])
        np.testing.assert_array_equal(npz["xcoords_start"], scan.xcoords)
        np.testing.assert_array_equal(npz["ycoords_start"], scan.ycoords)
        assert npz["probe"].dtype == np.complex64 and npz["probe"].shape == (scan.N, scan.N)
        np.testing.assert_array_equal(npz["probe"], result.probe)
    with open(out / "refine_history.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["iteration", "misfit", "time_s", "phase_ssim"]
    assert [[float(v) for v in row] for row in rows[1:]] == [
        [1, 4.0, 0.1, 0.5], [2, 2.0, 0.2, 0.6], [3, 1.5, 0.3, 0.7]]
    # the cropped truth scores as the truth; metrics.json holds the returned dict
    assert metrics["amplitude"]["ssim"] > 0.99 and metrics["phase"]["ssim"] > 0.99
    assert json.loads((out / "metrics.json").read_text())["phase"]["ssim"] == pytest.approx(
        metrics["phase"]["ssim"])
    # infer/evaluate's reader accepts the file, covered pixels = weight > 0
    recon = read_reconstruction(out / "reconstruction.npz")
    assert recon.valid.sum() == (result.weight > 0).sum()
    assert not list(out.glob(".*.tmp"))


def test_write_refine_outputs_without_truth_and_iteration_column_first(tmp_path, scan):
    from dataclasses import replace

    history = {"misfit": [3.0, -1.0], "iteration": [1, 2], "time_s": [0.5, 1.0]}
    metrics = write_refine_outputs(_result(scan, history), tmp_path,
                                   replace(scan, object_guess=None))
    assert metrics == {}
    assert not (tmp_path / "metrics.json").exists() and not (tmp_path / "comparison.png").exists()
    assert (tmp_path / "misfit.png").stat().st_size > 0  # a negative misfit: linear axis
    lines = (tmp_path / "refine_history.csv").read_text().splitlines()
    assert lines == ["iteration,misfit,time_s", "1,3.0,0.5", "2,-1.0,1.0"]


def test_extra_arrays_may_not_replace_standard_keys(tmp_path):
    stitched = StitchedObject(object=np.ones((4, 4), np.complex64), x0_px=0.0, y0_px=0.0,
                              weight=np.ones((4, 4), np.float32))
    with pytest.raises(ValueError, match="xcoords"):
        save_reconstruction_npz(stitched, np.zeros((2, 2)), tmp_path / "r.npz",
                                extra={"xcoords": np.ones(2)})
    assert not (tmp_path / "r.npz").exists()


def test_truth_metrics_callback(scan):
    from dataclasses import replace

    assert truth_metrics_callback(replace(scan, object_guess=None)) is None
    values = truth_metrics_callback(scan)(1, _result(scan))
    assert set(values) == set(TRUTH_METRIC_KEYS)
    assert values["amplitude_ssim"] > 0.99 and values["phase_psnr_db"] > 40


def test_iteration_log_lines(scan, caplog):
    from types import SimpleNamespace

    logger = logging.getLogger("test.refine")
    log_line = IterationLog(2, metrics=lambda k, snapshot: {"amplitude_ssim": 0.5,
                                                            "phase_ssim": 0.25},
                            logger=logger)
    caplog.set_level(logging.INFO, logger="test.refine")
    history = {"iteration": [], "misfit": [], "time_s": []}
    for iteration, misfit in ((1, 4.0), (2, 2.0)):
        history["iteration"].append(iteration)
        history["misfit"].append(misfit)
        history["time_s"].append(0.1 * iteration)
        snapshot = SimpleNamespace(history=history)
        assert log_line(iteration, snapshot) == {"amplitude_ssim": 0.5, "phase_ssim": 0.25}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2
    assert lines[0].startswith("iteration 1/2: misfit 4, 0.1 s")
    assert lines[1] == "iteration 2/2: misfit 2, 0.2 s, amplitude SSIM 0.500, phase SSIM 0.250"


def test_initial_object_must_overlap_the_scan(scan):
    inside = Reconstruction(object=np.ones((20, 20)), x0_px=float(scan.xcoords.min()),
                            y0_px=float(scan.ycoords.min()), weight=np.ones((20, 20)),
                            source="r.npz")
    initial = initial_from_reconstruction(inside, scan)
    assert initial.valid.all() and initial.x0_px == inside.x0_px
    far = Reconstruction(object=np.ones((20, 20)), x0_px=5000.0, y0_px=0.0, source="far.npz")
    with pytest.raises(InputError, match="no overlap in --init far.npz"):
        initial_from_reconstruction(far, scan)
    uncovered = Reconstruction(object=np.ones((20, 20)), x0_px=inside.x0_px,
                               y0_px=inside.y0_px, weight=np.zeros((20, 20)), source="z.npz")
    with pytest.raises(InputError, match="0 covered pixels"):
        initial_from_reconstruction(uncovered, scan)

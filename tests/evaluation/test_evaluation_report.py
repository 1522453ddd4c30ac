"""metrics.json, the text table, comparison.png, reconstruction files and evaluate_and_report."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import ndimage

from ptycho.data.scan import Scan
from ptycho.errors import InputError
from ptycho.evaluation import (
    compare_reconstruction,
    comparison_figure,
    evaluate_and_report,
    format_metrics_table,
    read_reconstruction,
    write_metrics_json,
)
from ptycho.physics import extract_patches
from ptycho.stitching import stitch_patches


def smooth_object(rng: np.random.Generator, size: int = 64, sigma: float = 2.5) -> np.ndarray:
    """Smooth random complex object (size, size)."""
    amplitude = 0.6 + 0.15 * ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma) / 0.1
    phase = ndimage.gaussian_filter(rng.normal(size=(size, size)), sigma) / 0.1
    return np.clip(amplitude, 0.2, 1.0) * np.exp(1j * phase)


METRICS = {
    "amplitude": {"psnr_db": math.inf, "ssim": 1.0, "mae": 0.0, "frc50_px": 2.0,
                  "frc_half_bit_px": 2.0},
    "phase": {"psnr_db": 31.5, "ssim": 0.9, "mae": 0.01, "frc50_px": 3.2,
              "frc_half_bit_px": math.nan},
    "registration_shift_px": [0.25, -1.5],
}


def test_metrics_json_is_strict_json_and_atomic(tmp_path):
    path = write_metrics_json(tmp_path / "out" / "metrics.json", METRICS)
    text = path.read_text()
    assert "Infinity" not in text and "NaN" not in text
    loaded = json.loads(text)
    assert loaded["amplitude"]["psnr_db"] is None
    assert loaded["phase"]["frc_half_bit_px"] is None
    assert loaded["phase"]["psnr_db"] == 31.5
    assert loaded["registration_shift_px"] == [0.25, -1.5]
    assert [p.name for p in path.parent.iterdir()] == ["metrics.json"]


def test_metrics_table_lists_both_components():
    lines = format_metrics_table(METRICS).splitlines()
    assert lines[1].split()[0] == "amplitude" and "inf" in lines[1]
    assert lines[2].split()[0] == "phase" and "n/a" in lines[2]
    assert "[0.250, -1.500]" in lines[3]


def test_comparison_figure_writes_a_png_and_no_temporary_file(tmp_path, rng):
    truth = smooth_object(rng, 48)
    result = compare_reconstruction(truth * 0.8 + 0.01 * rng.normal(size=truth.shape), 0, 0, truth)
    path = comparison_figure(result, tmp_path / "comparison.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["comparison.png"]


def test_evaluate_and_report_on_a_stitched_object(tmp_path, rng):
    truth = smooth_object(rng, 64).astype(np.complex64)
    grid = np.arange(16.0, 49.0, 4.0)
    x, y = (a.ravel() for a in np.meshgrid(grid, grid))
    stitched = stitch_patches(extract_patches(truth, x, y, 16), np.stack([x, y], 1), M=8)
    scan = Scan(diffraction=np.ones((len(x), 16, 16), np.float32), xcoords=x, ycoords=y,
                probe=np.ones((16, 16), np.complex64), object_guess=truth, source="sim.npz")
    metrics = evaluate_and_report(stitched, scan, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["comparison.png", "metrics.json"]
    assert json.loads((tmp_path / "metrics.json").read_text())["amplitude"]["ssim"] == \
        pytest.approx(metrics["amplitude"]["ssim"])
    assert metrics["phase"]["ssim"] > 0.999
    scan.object_guess = None
    with pytest.raises(InputError, match="sim.npz:objectGuess"):
        evaluate_and_report(stitched, scan, tmp_path)


def test_read_reconstruction_files(tmp_path, rng):
    obj = smooth_object(rng, 20)
    np.save(tmp_path / "o.npy", obj)
    recon = read_reconstruction(tmp_path / "o.npy")
    assert (recon.x0_px, recon.y0_px, recon.weight, recon.scan_xy) == (0.0, 0.0, None, None)
    assert read_reconstruction(tmp_path / "o.npy", 3.0, -2.5).y0_px == -2.5
    np.savez(tmp_path / "r.npz", object=obj[..., None], x0_px=4.0, y0_px=5.0,
             weight=np.ones(obj.shape, np.float32), xcoords=[1.0, 2.0], ycoords=[3.0, 4.0])
    recon = read_reconstruction(tmp_path / "r.npz")
    assert recon.object.shape == (20, 20) and recon.object.dtype == np.complex128
    assert (recon.x0_px, recon.y0_px) == (4.0, 5.0)
    assert recon.valid.all()
    np.testing.assert_array_equal(recon.scan_xy, [[1.0, 3.0], [2.0, 4.0]])
    assert read_reconstruction(tmp_path / "r.npz", x0_px=0.0).x0_px == 0.0


@pytest.mark.parametrize("case, message", [
    ("pickle", "pickled object array"),
    ("suffix", "unsupported file type"),
    ("nan", "non-finite values"),
    ("no_origin", "r.npz:x0_px"),
    ("weight", "r.npz:weight"),
])
def test_read_reconstruction_rejects_bad_files(tmp_path, case, message):
    obj = np.ones((8, 8), np.complex64)
    path = tmp_path / "r.npz"
    if case == "pickle":
        np.savez(path, object=np.array([{"a": 1}], dtype=object), x0_px=0.0, y0_px=0.0)
    elif case == "suffix":
        path = tmp_path / "r.txt"
        path.write_text("1")
    elif case == "nan":
        np.savez(path, object=np.full((8, 8), np.nan + 0j), x0_px=0.0, y0_px=0.0)
    elif case == "no_origin":
        np.savez(path, object=obj)
    elif case == "weight":
        np.savez(path, object=obj, x0_px=0.0, y0_px=0.0, weight=np.ones((4, 4)))
    with pytest.raises(InputError, match=message):
        read_reconstruction(path)

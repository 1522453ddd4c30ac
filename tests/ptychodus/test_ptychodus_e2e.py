"""End to end: the real ptychodus 1.7.0 PtychoPINN reconstructor drives ptychopinn, headless.

A driver script (written to ``tmp_path``, run with ``sys.executable`` because ptychodus spawns
its worker processes with the ``spawn`` start method, which re-imports ``__main__``) does what
a ptychodus user does (reference notes, section 5):

    simulate a scan -> export_training_data (train + test NPZ) -> train (spawned child)
    -> reconstruct -> save_model('model.zip') -> a NEW library: load_model_from_file('model.zip')
    -> reconstruct again -> (a third library with GridSize 2: the clear mismatch error)

The simulated scan: a smooth random complex object (Gaussian random fields, 20 px correlation,
amplitude in [0.5, 1], phase in [-pi/2, pi/2]), the default probe ``physics.default_probe(64)``
as a ``(1, 64, 64)`` ProbeSequence, 121 raster positions at a 7 px step, Poisson counts stored
as uint16 intensity (3e5 photons per pattern), positions in metres (1e-8 m pixels, object
centre at 0 m).

Quality floor (calibrated on this scan, 2 epochs, NumFiltersScale 1, batch 16): the
reconstructed amplitude scores a PSNR 0.9-1.3 dB above a flat (constant) object and a lower
MAE; the floor is flat + 0.5 dB. The phase is not held to a floor: with a real, centro-symmetric
probe and gridsize 1 each pattern is equally explained by the object and its twin (conjugate,
rotated by 180 degrees about the patch centre), so a 2-epoch model recovers the local mean
transmission (amplitude) but not yet the phase.

Placement: ptychodus gives the output object the input object's pixel size and centre (it does
not know where our stitched canvas sits), so the comparison places the canvas with our
stitching convention (``ptycho.stitching``: canvas pixel (0, 0) is object pixel
``round(COM) - M//2 - pad``), which is exact on the truth grid.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("ptychodus",
                    reason="ptychodus is not installed (pip install 'ptychopinn[ptychodus]')")

CROP_PX = 20  # the M ptychodus passes to reassemble_position
AMPLITUDE_PSNR_MARGIN_DB = 0.5

DRIVER = textwrap.dedent(r'''
    """Drive ptychodus 1.7.0's PtychoPINN reconstructor headless; print one JSON line."""
    import json
    import sys
    import time
    from pathlib import Path

    import numpy as np

    N = 64
    OBJECT_PX = 144
    CORRELATION_PX = 20.0
    STEP_PX = 7.0
    N_POSITIONS = 121
    NPHOTONS = 3e5
    PIXEL_M = 1e-8
    SEED = 7


    def simulate():
        from ptycho import physics
        from ptycho.data.sim_objects import compose_object, gaussian_random_field
        from ptycho.data.sim_positions import make_positions
        from ptycho.data.simulation import draw_counts, expected_intensity, scale_to_photons

        rng = np.random.default_rng(SEED)
        shape = (OBJECT_PX, OBJECT_PX)
        truth = compose_object(gaussian_random_field(shape, rng, CORRELATION_PX),
                               gaussian_random_field(shape, rng, CORRELATION_PX))
        truth = truth.astype(np.complex64)
        probe = physics.default_probe(N).astype(np.complex64)
        pos = make_positions("raster", OBJECT_PX, N, step=STEP_PX, n_positions=N_POSITIONS)
        intensity, _ = scale_to_photons(
            expected_intensity(truth, probe, pos.xcoords, pos.ycoords), NPHOTONS)
        counts = draw_counts(intensity, rng)
        assert counts.max() <= np.iinfo(np.uint16).max
        return truth, probe, pos.xcoords, pos.ycoords, counts.astype(np.uint16)


    def reconstruct_input(probe, x_px, y_px, counts):
        from ptychodus.api.geometry import PixelGeometry
        from ptychodus.api.object import Object, ObjectCenter
        from ptychodus.api.probe import ProbeSequence
        from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
        from ptychodus.api.product import Product, ProductMetadata
        from ptychodus.api.reconstruct import ReconstructInput

        pixel = PixelGeometry(width_m=PIXEL_M, height_m=PIXEL_M)
        centre_px = (OBJECT_PX - 1) / 2  # ptychodus's centred-pixel convention; centre at 0 m
        positions = ProbePositionSequence([
            ProbePosition(i, (x - centre_px) * PIXEL_M, (y - centre_px) * PIXEL_M)
            for i, (x, y) in enumerate(zip(x_px, y_px))])
        metadata = ProductMetadata(name="simulated", comments="", detector_distance_m=2.0,
                                   photon_energy_eV=10000.0, probe_photon_count=NPHOTONS,
                                   exposure_time_s=0.0, mass_attenuation_m2_per_kg=0.0,
                                   tomography_angle_deg=0.0)
        product = Product(
            metadata=metadata, probe_positions=positions,
            probes=ProbeSequence(array=probe[None].astype(np.complex128), opr_weights=None,
                                 pixel_geometry=pixel),
            object_=Object(array=np.ones((OBJECT_PX, OBJECT_PX), np.complex64),
                           pixel_geometry=pixel, center=ObjectCenter(0.0, 0.0),
                           layer_spacing_m=[]),
            losses=[])
        return ReconstructInput(counts, np.zeros((N, N), bool), product)


    def pinn(gridsize=1):
        """A NEW library (fresh settings), as a new ptychodus session would have."""
        from ptychodus.api.settings import SettingsRegistry
        from ptychodus.model.ptychopinn import PtychoPINNReconstructorLibrary

        lib = PtychoPINNReconstructorLibrary(SettingsRegistry(), is_developer_mode_enabled=False)
        lib.model_settings.gridsize.set_value(gridsize)
        lib.model_settings.n_filters_scale.set_value(1)
        lib.training_settings.nepochs.set_value(2)
        lib.training_settings.batch_size.set_value(16)
        lib.training_settings.nphotons.set_value(NPHOTONS)
        reconstructors = {r.name: r for r in lib}
        return reconstructors["PINN"]


    def main(work):
        timings = {}
        start = time.perf_counter()
        truth, probe, x_px, y_px, counts = simulate()
        inp = reconstruct_input(probe, x_px, y_px, counts)
        rec = pinn()
        data_dir, out_dir = work / "data", work / "train_out"
        data_dir.mkdir()
        rec.export_training_data(data_dir / "train_data.npz", inp)
        rec.export_training_data(data_dir / "test_data.npz", inp)
        timings["setup_s"] = time.perf_counter() - start

        t = time.perf_counter()
        train_outputs = list(rec.train(data_dir, out_dir))
        timings["train_s"] = time.perf_counter() - t

        t = time.perf_counter()
        out1 = list(rec.reconstruct(inp))[-1].product
        timings["reconstruct_s"] = time.perf_counter() - t

        rec.save_model(work / "model.zip")
        rec2 = pinn()
        rec2.load_model_from_file(work / "model.zip")
        t = time.perf_counter()
        out2 = list(rec2.reconstruct(inp))[-1].product
        timings["reconstruct_reopened_s"] = time.perf_counter() - t

        rec3 = pinn(gridsize=2)
        rec3.load_model_from_file(work / "model.zip")
        mismatch = None
        t = time.perf_counter()
        try:
            list(rec3.reconstruct(inp))
        except Exception as exc:  # ptychodus wraps child errors in ChildError
            mismatch = {"type": type(exc).__name__, "message": str(exc),
                        "child_type": getattr(exc, "child_exception_type", None)}
        timings["mismatch_s"] = time.perf_counter() - t

        obj1, obj2 = out1.object_, out2.object_
        np.savez(work / "result.npz", recon=obj1.get_layer(0), reopened=obj2.get_layer(0),
                 truth=truth, x_px=x_px, y_px=y_px)
        return {
            "n_train_outputs": len(train_outputs),
            "train_out_files": sorted(p.name for p in out_dir.iterdir()),
            "model_zip": (work / "model.zip").is_file(),
            "object_dtype": str(obj1.get_layer(0).dtype),
            "object_layers": obj1.num_layers,
            "object_shape": list(obj1.get_layer(0).shape),
            "pixel_width_m": obj1.get_pixel_geometry().width_m,
            "center_m": [obj1.get_center().x_m, obj1.get_center().y_m],
            "n_positions_out": len(out1.probe_positions),
            "mismatch": mismatch,
            "timings": timings,
        }


    if __name__ == "__main__":  # mandatory: ptychodus spawns children that re-import this file
        print("E2E_RESULT " + json.dumps(main(Path(sys.argv[1]))), flush=True)
''')


@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    root = tmp_path_factory.mktemp("ptychodus_e2e")
    work, cwd = root / "work", root / "cwd"
    work.mkdir()
    cwd.mkdir()
    script = root / "driver.py"
    script.write_text(DRIVER)
    env = dict(os.environ, MPLBACKEND="Agg", TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONDONTWRITEBYTECODE="1")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(script), str(work)], check=False, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    elapsed = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("E2E_RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"driver failed (rc={proc.returncode})\nstdout:\n{proc.stdout[-4000:]}\n"
        f"stderr:\n{proc.stderr[-8000:]}")
    summary = json.loads(lines[-1][len("E2E_RESULT "):])
    summary["elapsed_s"] = elapsed
    arrays = dict(np.load(work / "result.npz"))
    return {"summary": summary, "arrays": arrays, "work": work, "cwd": cwd}


def test_train_writes_model_where_ptychodus_expects_it(e2e):
    summary = e2e["summary"]
    assert summary["n_train_outputs"] == 1
    # model_manager.save -> exactly <output_path>/wts.h5.zip; save_outputs -> the rest
    assert "wts.h5.zip" in summary["train_out_files"]
    expected = {"history.csv", "loss_curve.png", "reconstruction.npz"}
    assert expected <= set(summary["train_out_files"])
    assert summary["model_zip"]


def test_nothing_written_to_the_working_directory(e2e):
    assert sorted(p.name for p in e2e["cwd"].iterdir()) == []


def test_reconstruction_is_a_complex_2d_object_with_input_geometry(e2e):
    summary = e2e["summary"]
    assert summary["object_dtype"].startswith("complex")
    assert summary["object_layers"] == 1
    assert summary["pixel_width_m"] == pytest.approx(1e-8)
    assert summary["center_m"] == [0.0, 0.0]
    assert summary["n_positions_out"] == 121
    recon = e2e["arrays"]["recon"]
    assert recon.ndim == 2 and np.all(np.isfinite(recon))


def test_reopened_model_reconstructs_the_same_object(e2e):
    arrays = e2e["arrays"]
    assert arrays["recon"].shape == arrays["reopened"].shape
    np.testing.assert_allclose(arrays["reopened"], arrays["recon"], rtol=1e-4, atol=1e-5)


def test_gridsize_mismatch_reaches_the_user(e2e):
    mismatch = e2e["summary"]["mismatch"]
    assert mismatch is not None, "a gridsize-2 reconstruction with a gridsize-1 model must fail"
    assert mismatch["child_type"] == "InputError"
    assert "gridsize mismatch" in mismatch["message"]
    assert "GridSize to 1" in mismatch["message"]


def _metrics(recon, x_px, y_px, truth):
    from ptycho.evaluation import evaluate_reconstruction
    from ptycho.stitching import canvas_geometry

    scan_xy = np.column_stack([x_px, y_px])
    centre, pad = canvas_geometry(scan_xy, CROP_PX)  # gridsize 1: offsets are the positions
    x0 = centre[0] - CROP_PX // 2 - pad
    y0 = centre[1] - CROP_PX // 2 - pad
    # The placement is exact (same pixel grid), so no further registration: a sub-pixel
    # registration of a 2-epoch reconstruction would only chase noise.
    return evaluate_reconstruction(recon, x0, y0, truth, scan_xy=scan_xy, registration="none")


def test_reconstruction_beats_a_flat_object(e2e):
    arrays = e2e["arrays"]
    recon = arrays["recon"]
    args = (arrays["x_px"], arrays["y_px"], arrays["truth"])
    got = _metrics(recon, *args)
    flat = _metrics(np.ones_like(recon), *args)
    amp, flat_amp = got["amplitude"], flat["amplitude"]
    summary = (f"amplitude PSNR {amp['psnr_db']:.2f} dB (flat {flat_amp['psnr_db']:.2f}), "
               f"MAE {amp['mae']:.4f} (flat {flat_amp['mae']:.4f}); timings "
               f"{e2e['summary']['timings']}, total {e2e['summary']['elapsed_s']:.1f} s")
    print(summary)
    assert amp["psnr_db"] >= flat_amp["psnr_db"] + AMPLITUDE_PSNR_MARGIN_DB, summary
    assert amp["mae"] < flat_amp["mae"], summary

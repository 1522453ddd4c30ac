"""``ptychopinn infer --product-out``: a ptychodus product holding our reconstruction."""

import numpy as np
import pytest

from ptycho.cli.main import main
from ptycho.data.npz import write_scan_npz
from ptycho.data.products import Product, read_product, write_product


@pytest.fixture(scope="module")
def trained(tmp_path_factory, small_scan):
    folder = tmp_path_factory.mktemp("product")
    scan_path = folder / "scan.npz"
    write_scan_npz(scan_path, small_scan)
    assert main(["train", "--train_data_file", str(scan_path), "--output_dir", str(folder / "m"),
                 "--nepochs", "1", "--n_groups", "16", "--n_filters_scale", "1", "--quiet",
                 "--logger", "none"]) == 0
    return folder, scan_path


def test_product_with_explicit_geometry(trained, tmp_path):
    folder, scan_path = trained
    out = tmp_path / "recon.h5"
    assert main(["infer", "--model_path", str(folder / "m"), "--test_data", str(scan_path),
                 "--output_dir", str(tmp_path / "o"), "--product-out", str(out),
                 "--pixel-size-m", "1e-8", "--photon-energy-ev", "8000",
                 "--detector-distance-m", "2.0"]) == 0
    product = read_product(out)
    recon = np.load(tmp_path / "o" / "reconstruction.npz")
    np.testing.assert_array_equal(product.object[0], recon["object"])
    # canvas pixel (0, 0) must sit at world x = x0_px * pixel (scan pixel (0, 0) is the origin)
    height, width = recon["object"].shape
    expected_cx = (float(recon["x0_px"]) + (width - 1) / 2) * 1e-8
    expected_cy = (float(recon["y0_px"]) + (height - 1) / 2) * 1e-8
    assert product.object_center_x_m == pytest.approx(expected_cx)
    assert product.object_center_y_m == pytest.approx(expected_cy)
    np.testing.assert_allclose(product.probe_position_x_m, np.load(scan_path)["xcoords"] * 1e-8)


def test_product_from_reference_keeps_metadata_and_geometry(trained, tmp_path, small_scan):
    folder, scan_path = trained
    height, width = small_scan.object_guess.shape
    reference = Product(detector_object_distance_m=1.5, photon_energy_eV=9000.0,
                        probe_position_x_m=np.zeros(3), probe_position_y_m=np.zeros(3),
                        probe=small_scan.probe, object=small_scan.object_guess,
                        object_pixel_width_m=2e-8, object_pixel_height_m=3e-8,
                        object_center_x_m=1e-6, object_center_y_m=-2e-6, name="beamtime")
    write_product(tmp_path / "in.h5", reference)
    out = tmp_path / "recon.npz"
    assert main(["infer", "--model_path", str(folder / "m"), "--test_data", str(scan_path),
                 "--output_dir", str(tmp_path / "o"), "--product-in", str(tmp_path / "in.h5"),
                 "--product-out", str(out)]) == 0
    product = read_product(out)
    recon = np.load(tmp_path / "o" / "reconstruction.npz")
    assert product.name == "beamtime" and product.photon_energy_eV == 9000.0
    canvas_h, canvas_w = recon["object"].shape
    # ptychodus mapping x_m = (x_px - (W-1)/2) * dx + cx, applied to the canvas centre pixel
    centre_px_x = float(recon["x0_px"]) + (canvas_w - 1) / 2
    centre_px_y = float(recon["y0_px"]) + (canvas_h - 1) / 2
    assert product.object_center_x_m == pytest.approx((centre_px_x - (width - 1) / 2) * 2e-8 + 1e-6)
    assert product.object_center_y_m == pytest.approx((centre_px_y - (height - 1) / 2) * 3e-8 - 2e-6)


def test_product_out_without_geometry_fails_before_work(trained, tmp_path, capsys):
    folder, scan_path = trained
    assert main(["infer", "--model_path", str(folder / "m"), "--test_data", str(scan_path),
                 "--output_dir", str(tmp_path / "o"), "--product-out",
                 str(tmp_path / "r.h5")]) == 2
    assert "--pixel-size-m" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_product_written_by_us_loads_in_ptychodus(trained, tmp_path):
    pytest.importorskip("ptychodus")
    from ptychodus.api.io import load_product

    folder, scan_path = trained
    out = tmp_path / "recon.h5"
    assert main(["infer", "--model_path", str(folder / "m"), "--test_data", str(scan_path),
                 "--output_dir", str(tmp_path / "o"), "--product-out", str(out),
                 "--pixel-size-m", "1e-8", "--photon-energy-ev", "8000",
                 "--detector-distance-m", "2.0"]) == 0
    loaded = load_product(out)
    assert np.iscomplexobj(loaded.object_.get_array())


def test_product_keeps_every_probe_mode_of_the_scan():
    """Without a reference product, the output product's probe is the scan's, all its modes."""
    from ptycho.stitching import StitchedObject
    from ptycho.workflows.product_export import reconstruction_product
    from ptycho_testing import make_test_scan

    scan = make_test_scan(n_side=3, second_mode_power=0.2)
    stitched = StitchedObject(object=np.ones((80, 80), np.complex64), x0_px=0.0, y0_px=0.0,
                              weight=np.ones((80, 80), np.float32))
    product = reconstruction_product(stitched, scan, pixel_size_m=1e-8, photon_energy_eV=8e3,
                                     detector_distance_m=2.0)
    assert product.probe.shape == (1, 2, 64, 64)
    np.testing.assert_array_equal(product.probe[0], scan.probe_modes)

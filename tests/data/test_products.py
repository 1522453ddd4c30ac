"""ptychodus product files: our reader/writer, interop with ptychodus 1.7.0, coordinates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from ptycho.data.products import (
    Product,
    object_center_for_canvas,
    positions_m_to_px,
    positions_px_to_m,
    read_product,
    write_product,
)
from ptycho.errors import InputError

SUFFIXES = (".h5", ".hdf5", ".npz")


def _complex(rng, shape, dtype=np.complex64):
    return (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(dtype)


def make_product(rng, *, n_opr=1, n_modes=2, n_layers=1, losses=True, opr=False,
                 dtype=np.complex64, polarization="left_circular") -> Product:
    n_positions = 7
    return Product(
        name="test product",
        comments="made by test_products.py",
        detector_object_distance_m=1.875,
        photon_energy_eV=8765.4,
        probe_photon_count=1.25e9,
        exposure_time_s=0.05,
        mass_attenuation_m2_per_kg=3.5,
        tomography_angle_deg=12.5,
        tilt_angle_deg=-1.5,
        focus_object_distance_m=2.5e-4,
        far_field=False,
        polarization=polarization,
        probe_position_indexes=np.array([3, 1, 4, 1, 5, 9, 2]),
        probe_position_x_m=rng.normal(size=n_positions) * 1e-6,
        probe_position_y_m=rng.normal(size=n_positions) * 1e-6,
        probe_photon_counts=rng.uniform(1, 2, size=n_positions) * 1e6,
        probe=_complex(rng, (n_opr, n_modes, 16, 16), dtype),
        probe_pixel_width_m=1.1e-8,
        probe_pixel_height_m=1.3e-8,
        opr_weights=rng.normal(size=(n_positions, n_opr)) if opr else None,
        object=_complex(rng, (n_layers, 24, 30), dtype),
        object_center_x_m=1.5e-6,
        object_center_y_m=-2.5e-6,
        object_pixel_width_m=1.2e-8,
        object_pixel_height_m=1.4e-8,
        object_layer_spacing_m=np.arange(1, n_layers) * 1e-6,
        loss_epochs=np.array([0, 1, 2, 5]) if losses else None,
        loss_values=np.array([4.0, 3.0, 2.5, 2.25]) if losses else None,
    )


SCALARS = ("name", "comments", "detector_object_distance_m", "photon_energy_eV",
           "probe_photon_count", "exposure_time_s", "mass_attenuation_m2_per_kg",
           "tomography_angle_deg", "tilt_angle_deg", "focus_object_distance_m", "far_field",
           "polarization", "probe_pixel_width_m", "probe_pixel_height_m", "object_center_x_m",
           "object_center_y_m", "object_pixel_width_m", "object_pixel_height_m")
ARRAYS = ("probe_position_indexes", "probe_position_x_m", "probe_position_y_m",
          "probe_photon_counts", "probe", "opr_weights", "object", "object_layer_spacing_m",
          "loss_epochs", "loss_values")


def assert_products_equal(actual: Product, expected: Product) -> None:
    for key in SCALARS:
        assert getattr(actual, key) == getattr(expected, key), key
    for key in ARRAYS:
        a, e = getattr(actual, key), getattr(expected, key)
        if e is None:
            assert a is None, key
            continue
        assert a.dtype == e.dtype, key
        np.testing.assert_array_equal(a, e, err_msg=key)


# ------------------------------------------------------------------------------------------------
# Our writer and reader
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("variant", ["full", "minimal", "multi"])
def test_round_trip(tmp_path, rng, suffix, variant):
    if variant == "full":
        product = make_product(rng, opr=True, n_opr=2)
    elif variant == "multi":
        product = make_product(rng, n_layers=3, losses=False, dtype=np.complex128,
                               polarization=None)
    else:
        product = Product(detector_object_distance_m=2.0, photon_energy_eV=9000.0,
                          probe_position_x_m=[0.0, 1e-7], probe_position_y_m=[0.0, -1e-7],
                          probe=np.ones((8, 8), np.complex64), object=np.ones((12, 12)),
                          object_pixel_width_m=1e-8, object_pixel_height_m=1e-8)
    path = tmp_path / f"product{suffix}"
    write_product(path, product)
    assert_products_equal(read_product(path), product)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]  # no temporary left over


def test_product_normalises_shapes_and_defaults():
    product = Product(detector_object_distance_m=1, photon_energy_eV=8000,
                      probe_position_x_m=[0.0, 1.0, 2.0], probe_position_y_m=[0, 0, 0],
                      probe=np.ones((3, 8, 8), np.complex128), object=np.ones((10, 11)),
                      object_pixel_width_m=2e-8, object_pixel_height_m=3e-8)
    assert product.probe.shape == (1, 3, 8, 8)
    assert product.object.shape == (1, 10, 11)
    assert product.object.dtype == np.complex128
    np.testing.assert_array_equal(product.probe_position_indexes, [0, 1, 2])
    assert product.probe_position_indexes.dtype == np.int64
    assert product.probe_position_y_m.dtype == np.float64
    assert (product.probe_pixel_width_m, product.probe_pixel_height_m) == (2e-8, 3e-8)
    assert product.object_layer_spacing_m.shape == (0,)
    assert product.loss_values.shape == product.loss_epochs.shape == (0,)
    assert product.name == "Unnamed" and product.far_field is True
    assert product.probe_modes.shape == (3, 8, 8)


@pytest.mark.parametrize("kwargs, field", [
    ({"probe_position_y_m": [0.0]}, "probe_position_y_m"),
    ({"object_layer_spacing_m": [1e-6]}, "object_layer_spacing_m"),
    ({"opr_weights": np.ones((2, 3))}, "opr_weights"),
    ({"probe": np.ones((1, 1, 1, 8, 8), complex)}, "probe"),
    ({"object_pixel_width_m": 0.0}, "object_pixel_width_m"),
    ({"loss_values": [1.0, 2.0], "loss_epochs": [0]}, "loss_epochs"),
])
def test_product_rejects_inconsistent_fields(kwargs, field):
    base = {"detector_object_distance_m": 1, "photon_energy_eV": 8000,
            "probe_position_x_m": [0.0, 1e-7], "probe_position_y_m": [0.0, 1e-7],
            "probe": np.ones((8, 8), complex), "object": np.ones((10, 10), complex),
            "object_pixel_width_m": 1e-8, "object_pixel_height_m": 1e-8}
    base.update(kwargs)
    with pytest.raises(InputError) as info:
        Product(**base)
    assert info.value.where == f"Product.{field}"


def test_h5_writer_follows_cross_version_recommendation(tmp_path, rng):
    product = make_product(rng, losses=False, polarization=None)
    path = tmp_path / "p.h5"
    write_product(path, product)
    with h5py.File(path, "r") as h5:
        attrs = h5.attrs
        for key in ("name", "comments", "detector_object_distance_m", "photon_energy_eV",
                    "probe_energy_eV", "probe_photon_count", "exposure_time_s",
                    "mass_attenuation_m2_per_kg", "mass_attenuation_m2_kg",
                    "tomography_angle_deg", "tilt_angle_deg", "focus_object_distance_m",
                    "far_field"):
            assert key in attrs, key
        assert "polarization" not in attrs
        assert attrs["probe_energy_eV"] == attrs["photon_energy_eV"] == 8765.4
        assert h5["probe"].shape == (1, 2, 16, 16)
        assert h5["object"].shape == (1, 24, 30)
        assert set(h5["probe"].attrs) == {"pixel_width_m", "pixel_height_m"}
        assert {"center_x_m", "center_y_m", "pixel_width_m",
                "pixel_height_m"} <= set(h5["object"].attrs)
        assert "opr_weights" not in h5
        for key in ("object_layer_spacing_m", "loss_epochs", "loss_values"):
            assert h5[key].shape == (0,) and h5[key].dtype == np.float64, key
        assert h5["probe_position_indexes"].dtype == np.int64
    write_product(path, make_product(rng, opr=True, n_opr=2))
    with h5py.File(path, "r") as h5:
        assert isinstance(h5["opr_weights"], h5py.Dataset)
        assert h5["opr_weights"].shape == (7, 2)
        assert h5["loss_epochs"].dtype == np.int64


def test_npz_writer_is_pickle_free_with_both_energy_keys(tmp_path, rng):
    path = tmp_path / "p.npz"
    write_product(path, make_product(rng))
    with np.load(path, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    assert all(array.dtype.kind != "O" for array in arrays.values())
    assert arrays["name"].dtype.kind == "U" and arrays["name"].shape == ()
    assert str(arrays["polarization"]) == "left_circular"
    assert arrays["far_field"].dtype == np.bool_
    assert arrays["probe_energy_eV"] == arrays["photon_energy_eV"]
    assert "mass_attenuation_m2_kg" in arrays
    assert arrays["probe"].ndim == 4 and arrays["object"].ndim == 3


def test_readers_accept_legacy_and_low_dimensional_layouts(tmp_path, rng):
    probe2d = _complex(rng, (8, 8))
    object2d = _complex(rng, (12, 13))
    # HDF5 in the Nov-2025 spelling: legacy energy and mass-attenuation names, `costs`,
    # no loss_epochs, no probe pixel attributes, 2-D probe and object.
    h5_path = tmp_path / "legacy.hdf5"
    with h5py.File(h5_path, "w") as h5:
        h5.attrs["detector_object_distance_m"] = 1.5
        h5.attrs["probe_energy_eV"] = 7000.0
        h5.attrs["mass_attenuation_m2_kg"] = 2.0
        h5.attrs["name"] = np.bytes_(b"legacy")
        h5.create_dataset("probe_position_indexes", data=np.arange(3))
        h5.create_dataset("probe_position_x_m", data=np.zeros(3))
        h5.create_dataset("probe_position_y_m", data=np.ones(3) * 1e-7)
        h5.create_dataset("probe", data=probe2d)
        obj = h5.create_dataset("object", data=object2d)
        for key, value in (("center_x_m", 0.0), ("center_y_m", 0.0), ("pixel_width_m", 1e-8),
                           ("pixel_height_m", 2e-8)):
            obj.attrs[key] = value
        h5.create_dataset("costs", data=[3.0, 2.0, 1.0])
    product = read_product(h5_path)
    assert product.photon_energy_eV == 7000.0
    assert product.mass_attenuation_m2_per_kg == 2.0
    assert product.name == "legacy"
    np.testing.assert_array_equal(product.probe[0, 0], probe2d)
    np.testing.assert_array_equal(product.object[0], object2d)
    assert (product.probe_pixel_width_m, product.probe_pixel_height_m) == (1e-8, 2e-8)
    np.testing.assert_array_equal(product.loss_values, [3.0, 2.0, 1.0])
    np.testing.assert_array_equal(product.loss_epochs, [0, 1, 2])

    npz_path = tmp_path / "legacy.npz"
    np.savez(npz_path, detector_object_distance_m=1.5, photon_energy_eV=7000.0,
             probe_position_indexes=np.arange(3), probe_position_x_m=np.zeros(3),
             probe_position_y_m=np.zeros(3), probe=probe2d[np.newaxis], object=object2d,
             object_center_x_m=0.0, object_center_y_m=0.0, object_pixel_width_m=1e-8,
             object_pixel_height_m=1e-8, costs=np.array([5.0, 4.0]))
    product = read_product(npz_path)
    assert product.probe.shape == (1, 1, 8, 8)
    np.testing.assert_array_equal(product.loss_epochs, [0, 1])
    np.testing.assert_array_equal(product.loss_values, [5.0, 4.0])


def _drop_h5(path: Path, key: str, attr_of: str | None = None) -> None:
    with h5py.File(path, "a") as h5:
        if attr_of is None:
            if key in h5:
                del h5[key]
            else:
                del h5.attrs[key]
        else:
            del h5[attr_of].attrs[key]


@pytest.mark.parametrize("key, attr_of, where", [
    ("detector_object_distance_m", None, "p.h5:detector_object_distance_m"),
    ("object", None, "p.h5:object"),
    ("probe", None, "p.h5:probe"),
    ("probe_position_x_m", None, "p.h5:probe_position_x_m"),
    ("center_x_m", "object", "p.h5:object.attrs['center_x_m']"),
])
def test_missing_required_h5_item_names_file_and_key(tmp_path, rng, key, attr_of, where):
    path = tmp_path / "p.h5"
    write_product(path, make_product(rng))
    _drop_h5(path, key, attr_of)
    with pytest.raises(InputError) as info:
        read_product(path)
    assert info.value.where == where
    assert key in str(info.value) and "p.h5" in str(info.value)


def test_missing_energy_needs_both_spellings(tmp_path, rng):
    path = tmp_path / "p.h5"
    write_product(path, make_product(rng))
    _drop_h5(path, "photon_energy_eV")
    assert read_product(path).photon_energy_eV == 8765.4  # legacy alias still there
    _drop_h5(path, "probe_energy_eV")
    with pytest.raises(InputError, match="photon_energy_eV") as info:
        read_product(path)
    assert info.value.where == "p.h5:photon_energy_eV"


@pytest.mark.parametrize("key", ["photon_energy_eV", "object", "probe", "object_center_y_m",
                                 "probe_position_indexes"])
def test_missing_required_npz_key_names_file_and_key(tmp_path, rng, key):
    path = tmp_path / "p.npz"
    write_product(path, make_product(rng))
    with np.load(path, allow_pickle=False) as npz:
        contents = {k: npz[k] for k in npz.files if k != key}
    if key == "photon_energy_eV":
        del contents["probe_energy_eV"]
    np.savez(path, **contents)
    with pytest.raises(InputError) as info:
        read_product(path)
    assert info.value.where == f"p.npz:{key}"
    assert str(info.value).startswith("missing key in p.npz:" + key)


def test_malformed_items_raise_input_error(tmp_path, rng):
    path = tmp_path / "p.npz"
    write_product(path, make_product(rng))
    with np.load(path, allow_pickle=False) as npz:
        contents = {k: npz[k] for k in npz.files}
    contents["object"] = np.ones((2, 3, 4, 5), complex)
    np.savez(path, **contents)
    with pytest.raises(InputError, match=r"wrong shape in p\.npz:object"):
        read_product(path)
    contents["object"] = np.array([{"a": 1}], dtype=object)
    np.savez(path, **contents)
    with pytest.raises(InputError, match="pickled"):
        read_product(path)


def test_bad_paths(tmp_path):
    with pytest.raises(InputError, match="unsupported file type"):
        read_product(tmp_path / "p.txt")
    with pytest.raises(InputError, match="file not found"):
        read_product(tmp_path / "absent.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="unreadable HDF5"):
        read_product(tmp_path / "junk.h5")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="unreadable NPZ"):
        read_product(tmp_path / "junk.npz")


def test_failed_write_leaves_destination_untouched(tmp_path, rng, monkeypatch):
    path = tmp_path / "p.npz"
    original = make_product(rng)
    write_product(path, original)
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(RuntimeError):
        write_product(path, make_product(rng))
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npz"]
    assert zipfile.is_zipfile(path)


def test_module_imports_without_ptychodus():
    code = ("import sys; sys.modules['ptychodus'] = None; "
            "import ptycho.data.products as m; assert 'ptychodus' not in str(m.Product)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------
# Coordinates
# ------------------------------------------------------------------------------------------------


def test_pixel_metre_round_trip(rng):
    geometry = (1.5e-6, -2.5e-6, 1.2e-8, 1.4e-8, (24, 31))
    x_m = rng.normal(size=50) * 1e-7 + 1.5e-6
    y_m = rng.normal(size=50) * 1e-7 - 2.5e-6
    x_px, y_px = positions_m_to_px(x_m, y_m, *geometry)
    back_x, back_y = positions_px_to_m(x_px, y_px, *geometry)
    np.testing.assert_allclose(back_x, x_m, rtol=0, atol=1e-20)
    np.testing.assert_allclose(back_y, y_m, rtol=0, atol=1e-20)
    # The object centre is the centre pixel ((W-1)/2, (H-1)/2); x is the column, y the row.
    cx, cy = positions_m_to_px(1.5e-6, -2.5e-6, *geometry)
    assert (float(cx), float(cy)) == (15.0, 11.5)
    x1, y1 = positions_m_to_px(1.5e-6 + 1.2e-8, -2.5e-6 + 2 * 1.4e-8, *geometry)
    assert float(x1) == pytest.approx(16.0) and float(y1) == pytest.approx(13.5)


@pytest.mark.parametrize("canvas_shape, x0, y0", [((11, 14), 5, 3), ((10, 9), -2.5, 7.25),
                                                  ((40, 41), 0, 0)])
def test_object_center_for_canvas_registers_canvas_pixels(rng, canvas_shape, x0, y0):
    ref_shape, ref_cx, ref_cy, dx, dy = (30, 35), 2e-6, -1e-6, 1e-8, 2e-8
    cx, cy = object_center_for_canvas(x0, y0, canvas_shape, ref_cx, ref_cy, dx, dy, ref_shape)
    # Every world position lands on canvas pixel = reference pixel - (x0, y0).
    x_m = ref_cx + rng.normal(size=20) * 1e-7
    y_m = ref_cy + rng.normal(size=20) * 1e-7
    ref_x, ref_y = positions_m_to_px(x_m, y_m, ref_cx, ref_cy, dx, dy, ref_shape)
    can_x, can_y = positions_m_to_px(x_m, y_m, cx, cy, dx, dy, canvas_shape)
    np.testing.assert_allclose(can_x, ref_x - x0, atol=1e-9)
    np.testing.assert_allclose(can_y, ref_y - y0, atol=1e-9)


def test_object_center_for_identical_canvas_is_reference_center():
    assert object_center_for_canvas(0, 0, (20, 30), 1e-6, 2e-6, 1e-8, 1e-8, (20, 30)) == \
        pytest.approx((1e-6, 2e-6), abs=1e-18)


def test_product_positions_px(rng):
    product = make_product(rng)
    x_px, y_px = product.positions_px()
    expected = positions_m_to_px(product.probe_position_x_m, product.probe_position_y_m,
                                 product.object_center_x_m, product.object_center_y_m,
                                 product.object_pixel_width_m, product.object_pixel_height_m,
                                 (24, 30))
    np.testing.assert_array_equal(x_px, expected[0])
    np.testing.assert_array_equal(y_px, expected[1])


# ------------------------------------------------------------------------------------------------
# Interop with ptychodus 1.7.0 (skipped when ptychodus is not installed)
# ------------------------------------------------------------------------------------------------


def _ptychodus_io(suffix):
    """(load, save) callables of ptychodus 1.7.0 for ``suffix``."""
    from ptychodus.api.io import load_product, save_product
    from ptychodus.plugins.npz_product_file import NPZProductFileIO

    if suffix == ".npz":
        io = NPZProductFileIO()
        return io.read, io.write
    return load_product, save_product


def _to_ptychodus(product: Product):
    from ptychodus.api.diffraction import Polarization
    from ptychodus.api.geometry import PixelGeometry
    from ptychodus.api.object import Object, ObjectCenter
    from ptychodus.api.probe import ProbeSequence
    from ptychodus.api.probe_positions import ProbePosition, ProbePositionSequence
    from ptychodus.api.product import LossValue, ProductMetadata
    from ptychodus.api.product import Product as PtyProduct

    metadata = ProductMetadata(
        name=product.name, comments=product.comments,
        detector_distance_m=product.detector_object_distance_m,
        photon_energy_eV=product.photon_energy_eV, probe_photon_count=product.probe_photon_count,
        exposure_time_s=product.exposure_time_s,
        mass_attenuation_m2_per_kg=product.mass_attenuation_m2_per_kg,
        tomography_angle_deg=product.tomography_angle_deg,
        focus_object_distance_m=product.focus_object_distance_m,
        tilt_angle_deg=product.tilt_angle_deg,
        polarization=None if product.polarization is None else Polarization(product.polarization),
        far_field=product.far_field)
    counts = product.probe_photon_counts
    positions = ProbePositionSequence([
        ProbePosition(int(i), float(x), float(y),
                      probe_photon_count=None if counts is None else float(counts[k]))
        for k, (i, x, y) in enumerate(zip(product.probe_position_indexes,
                                          product.probe_position_x_m, product.probe_position_y_m))])
    probes = ProbeSequence(array=product.probe, opr_weights=product.opr_weights,
                           pixel_geometry=PixelGeometry(product.probe_pixel_width_m,
                                                        product.probe_pixel_height_m))
    obj = Object(array=product.object,
                 pixel_geometry=PixelGeometry(product.object_pixel_width_m,
                                              product.object_pixel_height_m),
                 center=ObjectCenter(product.object_center_x_m, product.object_center_y_m),
                 layer_spacing_m=list(product.object_layer_spacing_m))
    losses = [LossValue(int(e), float(v))
              for e, v in zip(product.loss_epochs, product.loss_values)]
    return PtyProduct(metadata=metadata, probe_positions=positions, probes=probes, object_=obj,
                      losses=losses)


def _assert_matches_ptychodus(ours: Product, theirs) -> None:
    md = theirs.metadata
    assert md.name == ours.name and md.comments == ours.comments
    assert md.detector_distance_m == ours.detector_object_distance_m
    assert md.photon_energy_eV == ours.photon_energy_eV
    assert md.probe_photon_count == ours.probe_photon_count
    assert md.exposure_time_s == ours.exposure_time_s
    assert md.mass_attenuation_m2_per_kg == ours.mass_attenuation_m2_per_kg
    assert md.tomography_angle_deg == ours.tomography_angle_deg
    assert md.tilt_angle_deg == ours.tilt_angle_deg
    assert md.focus_object_distance_m == ours.focus_object_distance_m
    assert md.far_field == ours.far_field
    assert (None if md.polarization is None else md.polarization.value) == ours.polarization
    positions = theirs.probe_positions
    np.testing.assert_array_equal(positions.get_indexes(), ours.probe_position_indexes)
    np.testing.assert_array_equal(positions.get_coordinates_x_m(), ours.probe_position_x_m)
    np.testing.assert_array_equal(positions.get_coordinates_y_m(), ours.probe_position_y_m)
    counts = positions.get_probe_photon_counts()
    if ours.probe_photon_counts is None:
        assert counts is None
    else:
        np.testing.assert_array_equal(counts, ours.probe_photon_counts)
    probes = theirs.probes
    assert probes.get_array().dtype == ours.probe.dtype
    np.testing.assert_array_equal(probes.get_array(), ours.probe)
    weights = probes.get_opr_weights_or_none()
    if ours.opr_weights is None:
        assert weights is None
    else:
        np.testing.assert_array_equal(weights, ours.opr_weights)
    assert probes.get_pixel_geometry().width_m == ours.probe_pixel_width_m
    assert probes.get_pixel_geometry().height_m == ours.probe_pixel_height_m
    obj = theirs.object_
    assert obj.get_array().dtype == ours.object.dtype
    np.testing.assert_array_equal(obj.get_array(), ours.object)
    geometry = obj.get_geometry()
    assert geometry.center_x_m == ours.object_center_x_m
    assert geometry.center_y_m == ours.object_center_y_m
    assert geometry.pixel_width_m == ours.object_pixel_width_m
    assert geometry.pixel_height_m == ours.object_pixel_height_m
    np.testing.assert_array_equal(np.asarray(obj.layer_spacing_m, np.float64),
                                  ours.object_layer_spacing_m)
    assert [int(loss.epoch) for loss in theirs.losses] == ours.loss_epochs.tolist()
    assert [float(loss.value) for loss in theirs.losses] == ours.loss_values.tolist()


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("variant", ["full", "multi"])
def test_ptychodus_reads_our_product(tmp_path, rng, suffix, variant):
    pytest.importorskip("ptychodus")
    product = (make_product(rng, opr=True, n_opr=2) if variant == "full"
               else make_product(rng, n_layers=3, losses=False, polarization=None,
                                 dtype=np.complex128))
    path = tmp_path / f"ours{suffix}"
    write_product(path, product)
    load, _ = _ptychodus_io(suffix)
    _assert_matches_ptychodus(product, load(path))


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("variant", ["full", "multi"])
def test_we_read_ptychodus_product(tmp_path, rng, suffix, variant):
    pytest.importorskip("ptychodus")
    product = (make_product(rng, opr=True, n_opr=2) if variant == "full"
               else make_product(rng, n_layers=3, losses=False, polarization=None,
                                 dtype=np.complex128))
    theirs = _to_ptychodus(product)
    path = tmp_path / f"theirs{suffix}"
    _, save = _ptychodus_io(suffix)
    save(path, theirs)
    ours = read_product(path)
    _assert_matches_ptychodus(ours, theirs)
    assert_products_equal(ours, product)


def test_pixel_mapping_matches_ptychodus(rng):
    pytest.importorskip("ptychodus")
    from ptychodus.api.object import ObjectGeometry, ObjectPosition
    from ptychodus.api.probe_positions import ProbePosition

    geometry = ObjectGeometry(width_px=31, height_px=24, pixel_width_m=1.2e-8,
                              pixel_height_m=1.4e-8, center_x_m=1.5e-6, center_y_m=-2.5e-6)
    args = (1.5e-6, -2.5e-6, 1.2e-8, 1.4e-8, (24, 31))
    for x_m, y_m in rng.normal(size=(5, 2)) * 1e-7:
        theirs = geometry.map_coordinates_probe_to_object(ProbePosition(0, x_m, y_m))
        x_px, y_px = positions_m_to_px(x_m, y_m, *args)
        assert float(x_px) == pytest.approx(theirs.x_px, abs=1e-9)
        assert float(y_px) == pytest.approx(theirs.y_px, abs=1e-9)
        back = geometry.map_coordinates_object_to_probe(ObjectPosition(0, 3.25, 7.5))
        bx, by = positions_px_to_m(3.25, 7.5, *args)
        assert float(bx) == pytest.approx(back.x_m, abs=1e-18)
        assert float(by) == pytest.approx(back.y_m, abs=1e-18)

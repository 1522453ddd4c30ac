"""CXI input and detector geometry on read (crop, bin, masks, saturation, probe file)."""

from __future__ import annotations

import functools
import tracemalloc

import h5py
import numpy as np
import pytest
from scipy.constants import c, e, h

from ptycho.cli.main import main
from ptycho.data import lazy
from ptycho.data.cxi import object_pixel_size_m, read_scan_cxi, wavelength_m, write_scan_cxi
from ptycho.data.io import read_scan
from ptycho.data.reading import ReadOptions
from ptycho.errors import InputError

N = 64
ENERGY_J = 8e3 * e  # 8 keV
DISTANCE_M = 2.0
PIXEL_M = 75e-6


@functools.lru_cache(maxsize=1)
def _scan_arrays():
    """25 positions (object pixels), uint32 counts (25, 64, 64) and the probe of a test scan."""
    from ptycho_testing import make_test_scan

    scan = make_test_scan(n_side=5)
    counts = np.rint(scan.diffraction.astype(np.float64) ** 2).astype(np.uint32)
    return scan.xcoords, scan.ycoords, counts, scan.probe


def _translation(x_px, y_px, window=N, bin_factor=1):
    """Sample translations (M, 3) in metres for beam positions in object pixels."""
    dx = object_pixel_size_m(wavelength_m(ENERGY_J), DISTANCE_M, window, PIXEL_M)
    return -np.column_stack([x_px * dx, y_px * dx, np.zeros_like(x_px)])


def _write(path, frames, *, probe=None, mask=None, window=N, x=None, y=None):
    x0, y0, _, probe0 = _scan_arrays()
    x, y = (x0, y0) if x is None else (x, y)
    return write_scan_cxi(path, frames, _translation(x, y, window), energy_J=ENERGY_J,
                          distance_m=DISTANCE_M, pixel_size_m=PIXEL_M,
                          probe=probe0 if probe is None else probe, mask=mask)


def _edit(path, key, value):
    with h5py.File(path, "r+") as handle:
        if key in handle:
            del handle[key]
        if value is not None:
            handle[key] = value


def test_cxi_round_trip_matches_the_same_scan_in_npz(tmp_path):
    x, y, counts, probe = _scan_arrays()
    bad = np.zeros((N, N), bool)
    bad[5, 7] = bad[40, 12] = True
    npz = tmp_path / "scan.npz"
    np.savez(npz, xcoords=x, ycoords=y, diff3d=counts, probeGuess=probe, bad_pixels=bad)
    cxi = _write(tmp_path / "scan.cxi", counts, mask=bad.astype(np.uint8))

    reference, scan = read_scan(npz), read_scan(cxi)

    np.testing.assert_allclose(scan.xcoords, reference.xcoords, rtol=0, atol=1e-9)
    np.testing.assert_allclose(scan.ycoords, reference.ycoords, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(scan.diffraction, reference.diffraction)
    np.testing.assert_array_equal(scan.probe, reference.probe)
    np.testing.assert_array_equal(scan.bad_pixels, bad)
    assert scan.measured_domain == "intensity" and scan.diffraction.dtype == np.float32
    assert np.all(scan.diffraction[:, bad] == 0)  # masked pixels are set to 0 on read
    # the object pixel size: wavelength * distance / (N * detector pixel)
    wavelength = h * c / ENERGY_J
    assert wavelength == pytest.approx(1.5498e-10, rel=1e-4)
    assert object_pixel_size_m(wavelength, DISTANCE_M, N, PIXEL_M) == pytest.approx(
        wavelength * DISTANCE_M / (N * PIXEL_M))
    assert any("object pixel 6.458e-08 m" in note for note in scan.notes)


def test_translation_axes_flip_and_transpose(tmp_path):
    x, y, counts, _ = _scan_arrays()
    cxi = _write(tmp_path / "scan.cxi", counts)
    swapped = read_scan(cxi, options=ReadOptions(translation_axes="-y,-x"))
    np.testing.assert_allclose(swapped.xcoords, y, atol=1e-9)
    np.testing.assert_allclose(swapped.ycoords, x, atol=1e-9)
    flipped = read_scan(cxi, options=ReadOptions(translation_axes="x,-y"))
    np.testing.assert_allclose(flipped.xcoords, -x, atol=1e-9)
    np.testing.assert_allclose(flipped.ycoords, y, atol=1e-9)


def _probe_file(folder, n):
    path = folder / f"probe{n}.npy"
    np.save(path, _scan_arrays()[3][:n, :n])
    return path


def _blob_counts(count=6):
    """Integer counts symmetric about the DC pixel (N/2, N/2): their centre of mass is exact."""
    rows = np.arange(N) - N // 2
    gauss = np.exp(-(rows[:, None] ** 2 + rows[None, :] ** 2) / (2 * 4.0 ** 2))
    scale = np.arange(1, count + 1)[:, None, None]
    return np.rint(1000 * scale * gauss).astype(np.uint16)


def _off_centre(patterns, shape=(100, 90), corner=(23, 11)):
    raw = np.zeros((len(patterns),) + shape, patterns.dtype)
    raw[:, corner[0]:corner[0] + N, corner[1]:corner[1] + N] = patterns
    return raw


@pytest.mark.parametrize("suffix", [".cxi", ".npz", ".h5"])
def test_crop_around_the_centre_of_mass_recovers_an_off_centre_pattern(tmp_path, suffix):
    patterns = _blob_counts()
    raw = _off_centre(patterns)
    x, y = np.arange(6.0) * 5 + 40, np.full(6, 40.0)
    path = tmp_path / f"scan{suffix}"
    if suffix == ".cxi":
        _write(path, raw, x=x, y=y)
    elif suffix == ".npz":
        np.savez(path, xcoords=x, ycoords=y, diff3d=raw, probeGuess=_scan_arrays()[3])
    else:
        with h5py.File(path, "w") as handle:
            handle["xcoords"], handle["ycoords"], handle["diffraction"] = x, y, raw
            handle["probeGuess"] = _scan_arrays()[3]

    scan = read_scan(path, options=ReadOptions(crop_px=N))

    np.testing.assert_array_equal(scan.diffraction, np.sqrt(patterns.astype(np.float64)
                                                            ).astype(np.float32))
    assert any("rows 23..86, columns 11..74" in note for note in scan.notes), scan.notes
    # the same window from an explicit centre (the DC pixel's detector coordinates)
    given = read_scan(path, options=ReadOptions(crop_px=N, centre_px=(23 + 32.3, 11 + 31.8)))
    np.testing.assert_array_equal(given.diffraction, scan.diffraction)


def test_non_square_frames_need_crop_and_a_window_must_fit(tmp_path):
    raw = _off_centre(_blob_counts())
    path = _write(tmp_path / "scan.cxi", raw, x=np.arange(6.0), y=np.zeros(6))
    with pytest.raises(InputError, match="non-square patterns in scan.cxi:entry_1/data_1/data"):
        read_scan(path)
    with pytest.raises(InputError, match="crop window outside the frames in --detector-centre"):
        read_scan(path, options=ReadOptions(crop_px=N, centre_px=(10.0, 45.0)))
    with pytest.raises(InputError, match="invalid value in --crop"):
        read_scan(path, options=ReadOptions(crop_px=96))
    with pytest.raises(InputError, match="invalid value in --bin"):
        read_scan(path, options=ReadOptions(crop_px=N, bin_factor=3))


def test_bin_sums_counts_and_a_binned_pixel_is_bad_if_any_of_its_pixels_is(tmp_path):
    x, y, counts, probe = _scan_arrays()
    mask = np.zeros((N, N), np.uint8)
    mask[10, 11] = 1  # one raw pixel of binned pixel (5, 5)
    path = _write(tmp_path / "scan.cxi", counts, probe=probe[::2, ::2], mask=mask)

    scan = read_scan(path, options=ReadOptions(bin_factor=2))

    summed = counts.astype(np.int64).reshape(-1, 32, 2, 32, 2).sum(axis=(2, 4))
    expected_bad = np.zeros((32, 32), bool)
    expected_bad[5, 5] = True
    summed[:, expected_bad] = 0
    assert scan.N == 32
    np.testing.assert_array_equal(scan.bad_pixels, expected_bad)
    np.testing.assert_allclose(np.square(scan.diffraction, dtype=np.float64), summed, rtol=1e-6)
    # the object pixel wavelength * distance / (N * K * p) is that of the 64-pixel window
    np.testing.assert_allclose(scan.xcoords, x, atol=1e-9)
    cropped = read_scan(path, options=ReadOptions(crop_px=32, centre_px=(32, 32),
                                                  probe_file=str(_probe_file(tmp_path, 32))))
    np.testing.assert_allclose(cropped.xcoords, x / 2, atol=1e-9)  # half the window: 2x pixel
    # amplitudes are binned as intensities
    npz = tmp_path / "amplitudes.npz"
    np.savez(npz, xcoords=x, ycoords=y, diff3d=np.sqrt(counts).astype(np.float32),
             probeGuess=probe[::2, ::2])
    binned = read_scan(npz, options=ReadOptions(bin_factor=2))
    np.testing.assert_allclose(np.square(binned.diffraction[:, ~expected_bad], dtype=np.float64),
                               summed[:, ~expected_bad], rtol=1e-5)


def test_mask_file_saturation_and_probe_file_are_carried_into_the_scan(tmp_path):
    _, _, counts, probe = _scan_arrays()
    raw = np.zeros((len(counts), 80, 80), counts.dtype)
    raw[:, 8:72, 8:72] = counts
    file_mask = np.zeros((80, 80), np.uint8)
    file_mask[40, 41] = 1
    raw[:, 40, 41] = 2**32 - 1  # a gap/overflow marker under the file's mask
    path = _write(tmp_path / "scan.cxi", raw, mask=file_mask)
    user_raw = np.zeros((80, 80), bool)
    user_raw[38, 38] = True
    np.save(tmp_path / "raw_mask.npy", user_raw)
    modes = np.stack([probe, 0.3 * probe])
    np.save(tmp_path / "probe.npy", modes)

    scan = read_scan(path, options=ReadOptions(
        crop_px=N, centre_px=(40.0, 40.0), mask_file=str(tmp_path / "raw_mask.npy"),
        saturation_counts=5e4, probe_file=str(tmp_path / "probe.npy")))

    expected = np.zeros((N, N), bool)
    expected[32, 33] = expected[30, 30] = True
    np.testing.assert_array_equal(scan.bad_pixels, expected)
    assert np.all(scan.diffraction[:, expected] == 0)
    assert scan.saturation_counts == 5e4 and scan.subset([0, 1]).saturation_counts == 5e4
    np.testing.assert_array_equal(scan.probe, probe)  # mode 0 of the --probe stack
    assert any("probe has 2 modes" in note for note in scan.notes)
    # an (N, N) mask file is combined on the final grid
    small = np.zeros((N, N), bool)
    small[0, 0] = True
    np.savez(tmp_path / "small_mask.npz", mask=small)
    combined = read_scan(path, options=ReadOptions(
        crop_px=N, centre_px=(40.0, 40.0), mask_file=str(tmp_path / "small_mask.npz")))
    small[32, 33] = True  # the file's own mask
    np.testing.assert_array_equal(combined.bad_pixels, small)
    with pytest.raises(InputError, match=r"wrong shape in raw_mask\.npy"):
        np.save(tmp_path / "raw_mask.npy", np.zeros((70, 70), bool))
        read_scan(path, options=ReadOptions(crop_px=N, mask_file=str(tmp_path / "raw_mask.npy")))


def test_a_streamed_cxi_read_does_not_load_the_stack(tmp_path, monkeypatch):
    count = 160
    rng = np.random.default_rng(0)
    patterns = rng.poisson(_blob_counts(1)[0] / 50.0 + 0.5, (count, N, N)).astype(np.uint16)
    raw = _off_centre(patterns, shape=(128, 128), corner=(30, 34))  # 5.2 MB of uint16
    x, y = np.meshgrid(np.arange(16.0) * 3, np.arange(10.0) * 3)
    path = _write(tmp_path / "big.cxi", raw, x=x.ravel(), y=y.ravel())
    eager = read_scan_cxi(path, lazy=False, options=ReadOptions(crop_px=N, centre_px=(62, 66)))
    monkeypatch.setattr(lazy, "CHUNK_BYTES", 2**20)  # 8 raw frames per read

    tracemalloc.start()
    scan = read_scan_cxi(path, lazy=True, options=ReadOptions(crop_px=N, centre_px=(62, 66)))
    power = scan.mean_photons_per_pattern()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    assert isinstance(scan.diffraction, lazy.LazyPatterns) and scan.diffraction.shape == (count, N, N)
    assert peak < raw.nbytes / 2, peak  # float32 amplitudes alone would be 2.6 MB
    assert power == eager.mean_photons_per_pattern()
    np.testing.assert_array_equal(scan.diffraction[[3, 150, 7]], eager.diffraction[[3, 150, 7]])
    np.testing.assert_array_equal(np.asarray(scan.diffraction), eager.diffraction)


@pytest.mark.parametrize("key, value, what", [
    ("entry_1/sample_1/geometry_1/translation", None, "missing dataset"),
    ("entry_1/sample_1/geometry_1/translation", np.zeros((3, 3)), "length mismatch"),
    ("entry_1/instrument_1/source_1/energy", 8000.0, "invalid value"),  # eV, not J
    ("entry_1/instrument_1/detector_1/distance", None, "missing dataset"),
    ("entry_1/instrument_1/detector_1/x_pixel_size", 75.0, "invalid value"),  # micrometres
    ("entry_1/instrument_1/detector_1/mask", np.zeros((3, 3)), "wrong shape"),
    ("entry_1/instrument_1/source_1/probe", np.ones((32, 32), np.complex64), "size mismatch"),
    ("entry_1/instrument_1/source_1/probe", None, "missing dataset"),
])
def test_missing_or_inconsistent_cxi_fields_name_the_file_and_path(tmp_path, key, value, what):
    path = _write(tmp_path / "scan.cxi", _scan_arrays()[2])
    _edit(path, key, value)
    with pytest.raises(InputError) as caught:
        read_scan(path)
    assert caught.value.what == what and caught.value.where.startswith("scan.cxi:"), caught.value
    assert len(str(caught.value).splitlines()) == 1


def test_cli_inspect_and_train_then_infer_on_a_cxi(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, _, counts, probe = _scan_arrays()
    raw = np.zeros((len(counts), 72, 80), counts.dtype)
    raw[:, 3:67, 9:73] = counts
    path = _write(tmp_path / "scan.cxi", raw)
    np.save(tmp_path / "probe.npy", probe)
    reading = ["--crop", "64", "--detector-centre", "35,41", "--saturation", "1e6",
               "--probe", str(tmp_path / "probe.npy")]

    assert main(["inspect", str(path), *reading]) == 0
    text = capsys.readouterr().out
    assert "scan (.npz, .h5, .hdf5, .cxi)" in text and "64 x 64 px" in text
    assert "saturation" in text and "cropped 64x64 of the 72x80 frames" in text

    assert main(["train", "--train_data_file", str(path), "--output_dir", "model", "--nepochs",
                 "1", "--n_filters_scale", "1", "--batch_size", "8", "--logger", "none",
                 "--accelerator", "cpu", "--quiet", *reading]) == 0
    assert main(["infer", "--model_path", "model", "--test_data", str(path), "--output_dir",
                 "recon", "--quiet", *reading]) == 0
    result = np.load(tmp_path / "recon" / "reconstruction.npz")
    np.testing.assert_allclose(result["xcoords"], x, atol=1e-9)
    assert np.all(np.isfinite(result["object"]))

"""Scan NPZ reading: one clear error per bad input, accepted layouts, measurement domain."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ptycho.data.npz import read_scan_npz, write_scan_npz
from ptycho.data.scan import Scan
from ptycho.errors import InputError

M, N = 10, 16


def _arrays(rng, **changes) -> dict:
    """A small valid scan: 10 positions, 16 x 16 amplitudes, a 64 x 64 object."""
    arrays = {
        "xcoords": rng.uniform(10, 50, M),
        "ycoords": rng.uniform(10, 50, M),
        "diff3d": rng.random((M, N, N)).astype(np.float32) * 5,
        "probeGuess": (rng.standard_normal((N, N)) + 1j * rng.standard_normal((N, N))
                       ).astype(np.complex64),
        "objectGuess": np.ones((64, 64), np.complex64),
    }
    for key, value in changes.items():
        if value is None:
            arrays.pop(key)
        else:
            arrays[key] = value
    return arrays


def _save(tmp_path: Path, arrays: dict, name: str = "scan.npz") -> Path:
    path = tmp_path / name
    np.savez(path, **arrays)
    return path


def _error(path: Path, **kwargs) -> InputError:
    with pytest.raises(InputError) as info:
        read_scan_npz(path, **kwargs)
    assert isinstance(info.value, ValueError)
    return info.value


# ---------------------------------------------------------------------------------------------
# One error per bad input
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["xcoords", "ycoords", "diff3d", "probeGuess"])
def test_missing_required_key(tmp_path, rng, key):
    error = _error(_save(tmp_path, _arrays(rng, **{key: None})))
    assert error.what == "missing key"
    assert error.where == f"scan.npz:{key}"


def test_diffraction_alias_key(tmp_path, rng):
    arrays = _arrays(rng)
    arrays["diffraction"] = arrays.pop("diff3d")
    scan = read_scan_npz(_save(tmp_path, arrays))
    np.testing.assert_array_equal(scan.diffraction, arrays["diffraction"])


def test_coordinate_length_mismatch(tmp_path, rng):
    error = _error(_save(tmp_path, _arrays(rng, ycoords=rng.uniform(10, 50, M - 1))))
    assert error.what == "length mismatch"
    assert error.where == "scan.npz:ycoords"


def test_pattern_count_mismatch(tmp_path, rng):
    error = _error(_save(tmp_path, _arrays(rng, diff3d=rng.random((M + 2, N, N)))))
    assert error.what == "length mismatch"
    assert error.where == "scan.npz:diff3d"
    assert str(M) in error.expected


def test_non_square_patterns(tmp_path, rng):
    error = _error(_save(tmp_path, _arrays(rng, diff3d=rng.random((M, N, N - 4)))))
    assert error.what == "non-square patterns"
    assert error.where == "scan.npz:diff3d"


def test_probe_pattern_size_mismatch(tmp_path, rng):
    probe = np.ones((N * 2, N * 2), np.complex64)
    error = _error(_save(tmp_path, _arrays(rng, probeGuess=probe)))
    assert error.what == "size mismatch"
    assert error.where == "scan.npz:probeGuess"


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_patterns(tmp_path, rng, bad):
    diff = rng.random((M, N, N)).astype(np.float32)
    diff[3, 4, 5] = bad
    error = _error(_save(tmp_path, _arrays(rng, diff3d=diff)))
    assert error.what == "non-finite values"
    assert error.where == "scan.npz:diff3d"


@pytest.mark.parametrize("key", ["xcoords", "probeGuess", "objectGuess"])
def test_non_finite_other_arrays(tmp_path, rng, key):
    arrays = _arrays(rng)
    arrays[key] = arrays[key].copy()
    arrays[key].flat[1] = np.nan
    error = _error(_save(tmp_path, arrays))
    assert error.what == "non-finite values"
    assert error.where == f"scan.npz:{key}"


def test_negative_patterns(tmp_path, rng):
    diff = rng.random((M, N, N))
    diff[0, 0, 0] = -1.0
    error = _error(_save(tmp_path, _arrays(rng, diff3d=diff)))
    assert error.what == "negative values"
    assert error.where == "scan.npz:diff3d"


def test_empty_scan(tmp_path, rng):
    arrays = _arrays(rng, xcoords=np.zeros(0), ycoords=np.zeros(0),
                     diff3d=np.zeros((0, N, N), np.float32))
    error = _error(_save(tmp_path, arrays))
    # the generic empty-array check on the coordinates fires before the "empty scan" check
    assert error.what in ("empty scan", "empty array")
    assert error.where == "scan.npz:xcoords"


def test_positions_outside_object(tmp_path, rng):
    x = rng.uniform(10, 50, M)
    x[4] = 70.0  # object is 64 wide
    error = _error(_save(tmp_path, _arrays(rng, xcoords=x)))
    assert error.what == "positions outside objectGuess"
    assert error.where.startswith("scan.npz:") and "xcoords" in error.where
    assert "70.0" in error.actual


def test_complex_diffraction(tmp_path, rng):
    diff = rng.random((M, N, N)) + 0j
    error = _error(_save(tmp_path, _arrays(rng, diff3d=diff)))
    assert error.what == "complex diffraction"
    assert error.where == "scan.npz:diff3d"


@pytest.mark.parametrize("key", ["xcoords", "diff3d", "probeGuess"])
def test_pickled_object_array_is_refused(tmp_path, rng, key):
    arrays = _arrays(rng)
    pickled = np.empty(arrays[key].shape[:1], dtype=object)
    for i in range(len(pickled)):
        pickled[i] = arrays[key][i]
    arrays[key] = pickled
    path = _save(tmp_path, arrays)  # np.savez pickles object arrays (allow_pickle default)
    error = _error(path)
    assert error.what == "pickled object array"
    assert error.where == f"scan.npz:{key}"


def test_truncated_zip(tmp_path, rng):
    path = _save(tmp_path, _arrays(rng))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    error = _error(path)
    assert error.what == "unreadable NPZ"
    assert "scan.npz" in error.where


def test_not_an_npz(tmp_path):
    path = tmp_path / "scan.npz"
    path.write_bytes(b"this is not a zip archive at all" * 10)
    error = _error(path)
    assert error.what == "unreadable NPZ"
    assert "scan.npz" in error.where


def test_corrupt_member(tmp_path, rng):
    arrays = _arrays(rng, diff3d=np.full((M, N, N), 1234.5, np.float32))
    path = _save(tmp_path, arrays)
    data = bytearray(path.read_bytes())
    marker = np.full(8, 1234.5, np.float32).tobytes()
    offset = data.find(marker)
    assert offset > 0
    data[offset: offset + 4] = np.float32(99.0).tobytes()  # the CRC no longer matches
    path.write_bytes(bytes(data))
    error = _error(path)
    assert error.what == "corrupt member"
    assert error.where == "scan.npz:diff3d"


def test_missing_file(tmp_path):
    error = _error(tmp_path / "absent.npz")
    assert error.what == "file not found"
    assert "absent.npz" in error.where


def test_all_zero_patterns(tmp_path, rng):
    error = _error(_save(tmp_path, _arrays(rng, diff3d=np.zeros((M, N, N), np.float32))))
    assert error.what == "all-zero patterns"
    assert error.where == "scan.npz:diff3d"


def test_invalid_measurement_key(tmp_path, rng):
    error = _error(_save(tmp_path, _arrays(rng, measurement=np.array("photons"))))
    assert error.what == "invalid value"
    assert error.where == "scan.npz:measurement"


def test_invalid_measurement_argument(tmp_path, rng):
    error = _error(_save(tmp_path, _arrays(rng)), measurement="counts")
    assert error.what == "invalid value"


# ---------------------------------------------------------------------------------------------
# Accepted layouts
# ---------------------------------------------------------------------------------------------

def test_pattern_layouts_give_identical_data(tmp_path, rng):
    arrays = _arrays(rng)
    diff = arrays["diff3d"]
    scans = []
    for name, layout in (("mnn", diff), ("nnm", np.moveaxis(diff, 0, -1)),
                         ("mnn1", diff[..., None])):
        path = _save(tmp_path, dict(arrays, diff3d=layout), f"{name}.npz")
        scans.append(read_scan_npz(path))
    for scan in scans:
        assert scan.diffraction.shape == (M, N, N)
        np.testing.assert_array_equal(scan.diffraction, diff)
        np.testing.assert_array_equal(scan.xcoords, arrays["xcoords"])
        np.testing.assert_array_equal(scan.probe, arrays["probeGuess"])


def test_multimode_probe_keeps_every_mode_and_mode_zero_as_the_probe(tmp_path, rng, caplog):
    arrays = _arrays(rng)
    modes = np.stack([arrays["probeGuess"], 2 * arrays["probeGuess"], 3 * arrays["probeGuess"]])
    with caplog.at_level(logging.WARNING):
        scan = read_scan_npz(_save(tmp_path, dict(arrays, probeGuess=modes)))
    assert scan.probe.shape == (N, N)
    np.testing.assert_array_equal(scan.probe, arrays["probeGuess"])
    np.testing.assert_array_equal(scan.probe_modes, modes)
    np.testing.assert_array_equal(scan.subset([0, 1]).probe_modes, modes)
    assert any("3 modes" in note and "mode 0" in note for note in scan.notes)


@pytest.mark.parametrize("shape", ["1nn", "nn1"])
def test_single_mode_probe_layouts(tmp_path, rng, shape):
    arrays = _arrays(rng)
    probe = arrays["probeGuess"][None] if shape == "1nn" else arrays["probeGuess"][..., None]
    scan = read_scan_npz(_save(tmp_path, dict(arrays, probeGuess=probe)))
    np.testing.assert_array_equal(scan.probe, arrays["probeGuess"])
    assert scan.probe_modes is None and scan.probe_stack().shape == (1, N, N)
    assert not any("modes" in note for note in scan.notes)


def test_optional_keys_default(tmp_path, rng):
    scan = read_scan_npz(_save(tmp_path, _arrays(rng, objectGuess=None)))
    assert scan.object_guess is None and scan.bad_pixels is None
    np.testing.assert_array_equal(scan.xcoords_start, scan.xcoords)
    np.testing.assert_array_equal(scan.scan_index, np.zeros(M))
    assert scan.source.endswith("scan.npz")


# ---------------------------------------------------------------------------------------------
# Measurement domain
# ---------------------------------------------------------------------------------------------

def test_float_amplitudes_stay(tmp_path, rng):
    arrays = _arrays(rng)
    scan = read_scan_npz(_save(tmp_path, arrays))
    assert scan.measured_domain == "amplitude"
    np.testing.assert_array_equal(scan.diffraction, arrays["diff3d"])


def test_uint16_counts_become_amplitudes(tmp_path, rng):
    counts = rng.integers(0, 60000, (M, N, N)).astype(np.uint16)
    scan = read_scan_npz(_save(tmp_path, _arrays(rng, diff3d=counts)))
    assert scan.measured_domain == "intensity"
    np.testing.assert_allclose(scan.diffraction, np.sqrt(counts.astype(np.float64)), rtol=1e-6)
    assert any("integer dtype" in note for note in scan.notes)
    assert scan.mean_photons_per_pattern() == pytest.approx(
        counts.astype(np.float64).sum(axis=(1, 2)).mean(), rel=1e-5)


def test_bad_pixels_key_means_intensity(tmp_path, rng):
    arrays = _arrays(rng, bad_pixels=np.zeros((N, N), np.uint8))
    scan = read_scan_npz(_save(tmp_path, arrays))
    assert scan.measured_domain == "intensity"
    np.testing.assert_allclose(scan.diffraction, np.sqrt(arrays["diff3d"]), rtol=1e-6)
    assert scan.bad_pixels.dtype == bool and scan.bad_pixels.shape == (N, N)


def test_measurement_key_means_intensity(tmp_path, rng):
    arrays = _arrays(rng, measurement=np.array("intensity"))
    scan = read_scan_npz(_save(tmp_path, arrays))
    assert scan.measured_domain == "intensity"
    np.testing.assert_allclose(scan.diffraction, np.sqrt(arrays["diff3d"]), rtol=1e-6)


def test_measurement_key_amplitude_beats_integer_dtype(tmp_path, rng):
    counts = rng.integers(1, 100, (M, N, N)).astype(np.uint16)
    scan = read_scan_npz(_save(tmp_path, _arrays(rng, diff3d=counts,
                                                 measurement=np.array("amplitude"))))
    assert scan.measured_domain == "amplitude"
    np.testing.assert_array_equal(scan.diffraction, counts.astype(np.float32))


def test_measurement_argument_overrides(tmp_path, rng):
    counts = rng.integers(1, 100, (M, N, N)).astype(np.uint16)
    path = _save(tmp_path, _arrays(rng, diff3d=counts, bad_pixels=np.zeros((N, N), bool)))
    as_amplitude = read_scan_npz(path, measurement="amplitude")
    assert as_amplitude.measured_domain == "amplitude"
    np.testing.assert_array_equal(as_amplitude.diffraction, counts.astype(np.float32))
    floats = _save(tmp_path, _arrays(rng), "floats.npz")
    as_intensity = read_scan_npz(floats, measurement="intensity")
    assert as_intensity.measured_domain == "intensity"
    with np.load(floats) as raw:
        np.testing.assert_allclose(as_intensity.diffraction, np.sqrt(raw["diff3d"]), rtol=1e-6)


# ---------------------------------------------------------------------------------------------
# Round trip
# ---------------------------------------------------------------------------------------------

def test_write_read_round_trip(tmp_path, rng):
    arrays = _arrays(rng)
    scan = Scan(diffraction=arrays["diff3d"], xcoords=arrays["xcoords"],
                ycoords=arrays["ycoords"], probe=arrays["probeGuess"],
                xcoords_start=arrays["xcoords"] + 0.25, ycoords_start=arrays["ycoords"] - 0.5,
                scan_index=np.arange(M) % 2, object_guess=arrays["objectGuess"] * (1 + 1j))
    path = tmp_path / "out" / "round.npz"
    write_scan_npz(path, scan, extra={"seed": np.array(7)})
    back = read_scan_npz(path)
    np.testing.assert_array_equal(back.diffraction, scan.diffraction)
    np.testing.assert_array_equal(back.xcoords, scan.xcoords)
    np.testing.assert_array_equal(back.ycoords, scan.ycoords)
    np.testing.assert_array_equal(back.xcoords_start, scan.xcoords_start)
    np.testing.assert_array_equal(back.ycoords_start, scan.ycoords_start)
    np.testing.assert_array_equal(back.scan_index, scan.scan_index)
    np.testing.assert_array_equal(back.probe, scan.probe)
    np.testing.assert_array_equal(back.object_guess, scan.object_guess)
    assert back.measured_domain == "amplitude"
    with np.load(path, allow_pickle=False) as raw:
        assert int(raw["seed"]) == 7
    assert [p.name for p in path.parent.iterdir()] == ["round.npz"]  # no temp file left


def test_round_trip_keeps_the_bad_pixel_mask(tmp_path, rng):
    arrays = _arrays(rng)
    bad = np.zeros(arrays["diff3d"].shape[1:], bool)
    bad[3, 5] = True
    bad[7, 1] = True
    scan = Scan(diffraction=arrays["diff3d"], xcoords=arrays["xcoords"],
                ycoords=arrays["ycoords"], probe=arrays["probeGuess"], bad_pixels=bad)
    write_scan_npz(tmp_path / "masked.npz", scan)
    back = read_scan_npz(tmp_path / "masked.npz")
    np.testing.assert_array_equal(back.bad_pixels, bad)
    # still amplitudes; the masked pixels get the reader's documented fill
    np.testing.assert_array_equal(back.diffraction[:, ~bad], scan.diffraction[:, ~bad])
    assert back.measured_domain == "amplitude"


def test_round_trip_of_intensity_scan_stays_amplitude(tmp_path, rng):
    counts = rng.integers(1, 1000, (M, N, N)).astype(np.uint16)
    first = read_scan_npz(_save(tmp_path, _arrays(rng, diff3d=counts)))
    write_scan_npz(tmp_path / "again.npz", first)
    second = read_scan_npz(tmp_path / "again.npz")
    assert second.measured_domain == "amplitude"  # written as amplitude, not re-rooted
    np.testing.assert_array_equal(second.diffraction, first.diffraction)

"""Probe modes on read and write: every mode of a (modes, N, N) probe is kept (Scan.probe_modes,
mode 0 as Scan.probe) from NPZ, HDF5, CXI, --probe FILE and the ptychodus RawData; bad stacks
are refused; the starting probe of an M-mode model (Scan.initial_probe)."""

from __future__ import annotations

import numpy as np
import pytest

from ptycho import physics
from ptycho.data.cxi import object_pixel_size_m, wavelength_m, write_scan_cxi
from ptycho.data.hdf5 import write_scan_hdf5
from ptycho.data.io import read_scan
from ptycho.data.npz import write_scan_npz
from ptycho.data.reading import ReadOptions
from ptycho.data.simulation import mixed_state_probe
from ptycho.errors import InputError
from ptycho.raw_data import RawData
from ptycho_testing import make_test_scan


@pytest.fixture(scope="module")
def scan():
    """A 16-position N=64 scan whose probe is 2 modes (80 % / 20 %)."""
    base = make_test_scan(n_side=4)
    base.probe_modes = mixed_state_probe(base.probe, 0.2, seed=1).astype(np.complex64)
    base.probe = base.probe_modes[0]
    return base


def _check_modes(read, scan):
    np.testing.assert_array_equal(read.probe_modes, scan.probe_modes)
    np.testing.assert_array_equal(read.probe, scan.probe_modes[0])
    assert any("probe has 2 modes" in note for note in read.notes)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_npz_and_hdf5_scans_keep_their_probe_modes(scan, tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    (write_scan_npz if suffix == ".npz" else write_scan_hdf5)(path, scan)
    _check_modes(read_scan(path), scan)


def test_cxi_source_probe_modes_are_kept(scan, tmp_path):
    counts = np.rint(np.square(scan.diffraction.astype(np.float64))).astype(np.uint32)
    step = object_pixel_size_m(wavelength_m(1.28e-15), 2.0, 64, 75e-6)
    translation = -np.column_stack([scan.xcoords * step, scan.ycoords * step,
                                    np.zeros(scan.n_positions)])
    path = write_scan_cxi(tmp_path / "scan.cxi", counts, translation, energy_J=1.28e-15,
                          distance_m=2.0, pixel_size_m=75e-6, probe=scan.probe_modes)
    _check_modes(read_scan(path), scan)


@pytest.mark.parametrize("name", ["probe.npy", "probe.npz"])
def test_a_probe_file_brings_its_modes(scan, tmp_path, name):
    single = make_test_scan(n_side=4)
    write_scan_npz(tmp_path / "single.npz", single)
    probe_file = tmp_path / name
    if name.endswith(".npy"):
        np.save(probe_file, scan.probe_modes)
    else:
        np.savez(probe_file, probeGuess=scan.probe_modes)
    read = read_scan(tmp_path / "single.npz", options=ReadOptions(probe_file=str(probe_file)))
    _check_modes(read, scan)


def test_a_probe_mode_of_zeros_is_refused(scan, tmp_path):
    arrays = dict(np.load(_written(scan, tmp_path)))
    arrays["probeGuess"] = np.stack([scan.probe, np.zeros_like(scan.probe)])
    np.savez(tmp_path / "zero_mode.npz", **arrays)
    with pytest.raises(InputError, match=r"all-zero probe mode in zero_mode\.npz:probeGuess.*"
                                         r"mode 1 of 2"):
        read_scan(tmp_path / "zero_mode.npz")


def _written(scan, folder):
    path = folder / "modes.npz"
    write_scan_npz(path, scan)
    return path


def test_rawdata_keeps_a_2d_probe_guess_and_passes_the_modes(scan):
    """ptychodus passes (modes, N, N): the legacy attribute stays mode 0, the scan has all."""
    raw = RawData.from_coords_without_pc(scan.xcoords, scan.ycoords, scan.diffraction,
                                         scan.probe_modes, np.zeros(scan.n_positions, int))
    assert raw.probeGuess.shape == (64, 64)
    np.testing.assert_array_equal(raw.probeGuess, scan.probe_modes[0])
    np.testing.assert_array_equal(raw.scan.probe_modes, scan.probe_modes)
    single = RawData.from_coords_without_pc(scan.xcoords, scan.ycoords, scan.diffraction,
                                            scan.probe[..., None], None)
    assert single.scan.probe_modes is None


def test_initial_probe_of_an_m_mode_model(scan):
    np.testing.assert_array_equal(scan.initial_probe(1), scan.probe)          # as before
    two = scan.initial_probe(2)
    np.testing.assert_allclose(two, physics.orthogonalize_modes(scan.probe_modes), rtol=1e-6)
    three = scan.initial_probe(3)                       # the third made from mode 0
    share = physics.mode_powers(three) / physics.mode_powers(three).sum()
    np.testing.assert_allclose(share, [0.8 / 1.05, 0.2 / 1.05, 0.05 / 1.05], atol=0.01)
    copies = make_test_scan(n_side=4)
    copies.probe_modes = np.stack([copies.probe, 1j * copies.probe])
    with pytest.raises(InputError, match="unusable probe modes.*no power of its own"):
        copies.initial_probe(2)

"""Streamed scans (HDF5, memory-mapped NPZ) behave exactly like the in-memory NPZ."""

from __future__ import annotations

import pickle
import zipfile

import h5py
import numpy as np
import pytest

from ptycho import physics
from ptycho.data.grouping import GroupedData
from ptycho.data.hdf5 import read_scan_hdf5, write_scan_hdf5
from ptycho.data.io import read_scan
from ptycho.data.lazy import LAZY_THRESHOLD_ENV, LazyPatterns, iter_chunks, pattern_power
from ptycho.data.npz import read_scan_npz, write_scan_npz
from ptycho.errors import InputError

M, N = 30, 16


def _counts_arrays(rng, count=M, n=N) -> dict:
    """Small scan whose patterns are uint16 counts (so the readers convert to amplitude)."""
    return {
        "xcoords": rng.uniform(20, 44, count),
        "ycoords": rng.uniform(20, 44, count),
        "diff3d": rng.poisson(3.0, (count, n, n)).astype(np.uint16),
        "probeGuess": (rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
                       ).astype(np.complex64),
        "objectGuess": (rng.random((64, 64)) * np.exp(1j * rng.random((64, 64)))
                        ).astype(np.complex64),
    }


def _write_h5(path, arrays: dict, *, key: str = "diffraction", measurement: str | None = None,
              chunks=(4, N, N)):
    chunks = chunks[:1] + arrays["diff3d"].shape[1:] if "diff3d" in arrays else chunks
    with h5py.File(path, "w") as handle:
        for name, value in arrays.items():
            if name == "diff3d":
                handle.create_dataset(key, data=value, chunks=chunks if value.ndim == 3 else None)
            else:
                handle.create_dataset(name, data=value)
        if measurement is not None:
            handle.attrs["measurement"] = measurement
    return path


@pytest.fixture
def counts_files(tmp_path, rng):
    arrays = _counts_arrays(rng)
    npz = tmp_path / "scan.npz"
    np.savez(npz, **arrays)  # stored (uncompressed) members: memory-mappable
    h5 = _write_h5(tmp_path / "scan.h5", arrays)
    return arrays, npz, h5


def test_streamed_readers_give_lazy_stacks_with_identical_values(counts_files):
    _, npz, h5 = counts_files
    eager = read_scan_npz(npz)
    mapped = read_scan_npz(npz, lazy=True)
    hdf5 = read_scan(h5, lazy=True)
    assert isinstance(eager.diffraction, np.ndarray)
    for scan, kind in ((mapped, "memmap"), (hdf5, "hdf5")):
        assert isinstance(scan.diffraction, LazyPatterns)
        assert scan.diffraction.stored.kind == kind
        assert scan.diffraction.shape == (M, N, N) and scan.diffraction.dtype == np.float32
        assert scan.n_positions == M and scan.N == N and scan.measured_domain == "intensity"
        np.testing.assert_array_equal(np.asarray(scan.diffraction), eager.diffraction)
        np.testing.assert_array_equal(scan.probe, eager.probe)
        np.testing.assert_array_equal(scan.object_guess, eager.object_guess)
        assert scan.mean_photons_per_pattern() == eager.mean_photons_per_pattern()
        assert (physics.diffraction_norm_factor(scan.diffraction)
                == physics.diffraction_norm_factor(eager.diffraction))
        assert "streamed from disk" in scan.notes[-1]


@pytest.mark.parametrize("gridsize", [1, 2])
def test_streamed_scans_give_identical_training_samples(counts_files, gridsize):
    from ptycho.backends.pytorch.data import GroupedDataset

    _, npz, h5 = counts_files
    scans = [read_scan_npz(npz), read_scan_npz(npz, lazy=True), read_scan(h5, lazy=True)]
    grouped = [GroupedData.from_scan(s, gridsize, seed=3) for s in scans]
    rows = np.array([5, 2, 2, 17, 0, 29, 11])  # unsorted with a repeat, like a shuffled batch
    reference = GroupedDataset(grouped[0], np.arange(len(grouped[0])), with_truth=True)
    for other in grouped[1:]:
        assert other.norm_factor == grouped[0].norm_factor
        np.testing.assert_array_equal(other.nn_indices, grouped[0].nn_indices)
        np.testing.assert_array_equal(other.X(rows), grouped[0].X(rows))
        dataset = GroupedDataset(other, np.arange(len(other)), with_truth=True)
        got, want = dataset.__getitems__(list(rows)), reference.__getitems__(list(rows))
        for key in want:
            assert np.array_equal(got[key].numpy(), want[key].numpy()), key


def test_streamed_scans_give_identical_reconstruction(tmp_path, rng):
    import torch

    from ptycho.backends.pytorch.model import PtychoPINN
    from ptycho.backends.pytorch.trained_model import TorchTrainedModel
    from ptycho.config.config import ModelConfig
    from ptycho.workflows.inference import reconstruct

    arrays = _counts_arrays(rng, count=24, n=64)
    npz = tmp_path / "scan64.npz"
    np.savez(npz, **arrays)
    h5 = _write_h5(tmp_path / "scan64.h5", arrays)
    torch.manual_seed(0)
    module = PtychoPINN(ModelConfig(N=64, n_filters_scale=1), physics.default_probe(64), 2.0)
    model = TorchTrainedModel(module)
    results = [reconstruct(model, scan, batch_size=8, chunk_groups=8)
               for scan in (read_scan_npz(npz), read_scan_npz(npz, lazy=True),
                            read_scan(h5, lazy=True))]
    for other in results[1:]:
        np.testing.assert_array_equal(other.stitched.object, results[0].stitched.object)
        np.testing.assert_array_equal(other.stitched.weight, results[0].stitched.weight)
        np.testing.assert_array_equal(other.positions_xy, results[0].positions_xy)


def test_hdf5_round_trip_of_an_amplitude_scan(tmp_path, small_scan):
    path = write_scan_hdf5(tmp_path / "scan.hdf5", small_scan, chunk_patterns=16)
    for lazy in (True, False, None):
        scan = read_scan(path, lazy=lazy)
        assert isinstance(scan.diffraction, LazyPatterns) == bool(lazy)
        assert scan.measured_domain == "amplitude"
        np.testing.assert_array_equal(np.asarray(scan.diffraction), small_scan.diffraction)
        np.testing.assert_array_equal(scan.xcoords, small_scan.xcoords)
        np.testing.assert_array_equal(scan.object_guess, small_scan.object_guess)
    # and a streamed scan writes back chunk by chunk
    again = write_scan_hdf5(tmp_path / "again.h5", read_scan(path, lazy=True))
    np.testing.assert_array_equal(np.asarray(read_scan(again).diffraction), small_scan.diffraction)


def test_lazy_indexing_follows_numpy(counts_files):
    _, npz, h5 = counts_files
    eager = read_scan_npz(npz).diffraction
    for lazy in (read_scan_npz(npz, lazy=True).diffraction, read_scan(h5, lazy=True).diffraction):
        mask = np.zeros(M, bool)
        mask[[1, 4, 9]] = True
        keys = [3, -1, np.int64(7), slice(2, 9), slice(None, None, 4), slice(20, 5, -3),
                [4, 1, 1, 28], np.array([[0, 29], [3, 3]]), mask, (slice(0, 5), 2),
                ([6, 2], slice(1, 4), 0), (Ellipsis, 0), np.array([], np.int64),
                # sparse selection: runs are read one by one from HDF5
                np.array([0, 1, 2, 29, 28, 15])]
        for key in keys:
            np.testing.assert_array_equal(lazy[key], eager[key], err_msg=repr(key))
        assert len(lazy) == M and lazy.ndim == 3 and lazy.size == eager.size
        with pytest.raises(IndexError):
            lazy[M]
        with pytest.raises(IndexError):
            lazy[[0, M]]


def test_lazy_stack_pickles_and_reopens(counts_files):
    _, _, h5 = counts_files
    lazy = read_scan(h5, lazy=True).diffraction
    first = lazy[[3, 1]]
    clone = pickle.loads(pickle.dumps(lazy))
    assert len(pickle.dumps(lazy)) < 4096  # the patterns are not pickled
    np.testing.assert_array_equal(clone[[3, 1]], first)
    lazy.close()
    np.testing.assert_array_equal(lazy[[3, 1]], first)  # reopened on demand


def test_chunk_helpers_match_whole_array_reductions(rng):
    patterns = (rng.random((37, 8, 8)) * 10).astype(np.float32)
    chunks = list(iter_chunks(patterns, 5))
    assert [lo for lo, _ in chunks] == list(range(0, 37, 5))
    np.testing.assert_array_equal(np.concatenate([c for _, c in chunks]), patterns)
    whole = np.square(patterns, dtype=np.float64).sum(axis=(-2, -1))
    np.testing.assert_array_equal(pattern_power(patterns), whole)
    counts = rng.poisson(5.0, (10, 8, 8)).astype(np.uint16)
    expected = float(np.sqrt(16 / np.square(counts, dtype=np.float64).sum(axis=(-2, -1)).mean()))
    assert physics.diffraction_norm_factor(counts) == expected
    assert physics.diffraction_norm_factor(counts[0]) == pytest.approx(
        np.sqrt(16 / np.square(counts[0], dtype=np.float64).sum()))


# ---------------------------------------------------------------------------------------------
# Validation (chunk by chunk) and fallbacks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("bad", "what"), [("nan", "non-finite values"),
                                           ("negative", "negative values"),
                                           ("zero", "all-zero patterns")])
def test_streamed_validation_reports_like_the_in_memory_reader(tmp_path, rng, bad, what):
    arrays = _counts_arrays(rng)
    diff = arrays["diff3d"].astype(np.float32)
    if bad == "nan":
        diff[3, 2, 2] = np.nan
        diff[29, 0, 0] = np.inf
    elif bad == "negative":
        diff[0, 0, 0] = diff[17, 1, 1] = -1
    else:
        diff[:] = 0
    arrays["diff3d"] = diff
    npz = tmp_path / "bad.npz"
    np.savez(npz, **arrays)
    h5 = _write_h5(tmp_path / "bad.h5", arrays)
    errors = []
    for reader in (lambda: read_scan_npz(npz), lambda: read_scan_npz(npz, lazy=True),
                   lambda: read_scan(h5, lazy=True)):
        with pytest.raises(InputError) as info:
            reader()
        errors.append(info.value)
    assert {e.what for e in errors} == {what}
    assert len({e.actual for e in errors}) == 1
    assert errors[2].where == "bad.h5:diffraction"


def test_threshold_decides_streaming(counts_files, monkeypatch):
    _, npz, h5 = counts_files
    assert isinstance(read_scan(npz).diffraction, np.ndarray)  # small: read into memory
    assert isinstance(read_scan(h5).diffraction, np.ndarray)
    monkeypatch.setenv(LAZY_THRESHOLD_ENV, "1000")
    assert isinstance(read_scan(npz).diffraction, LazyPatterns)
    assert isinstance(read_scan(h5).diffraction, LazyPatterns)
    assert isinstance(read_scan_npz(npz).diffraction, np.ndarray)  # read_scan_npz: opt-in only
    monkeypatch.setenv(LAZY_THRESHOLD_ENV, "lots")
    with pytest.raises(InputError, match=LAZY_THRESHOLD_ENV):
        read_scan(npz)


def test_compressed_and_transposed_stacks_are_read_into_memory(tmp_path, rng):
    arrays = _counts_arrays(rng)
    compressed = tmp_path / "compressed.npz"
    np.savez_compressed(compressed, **arrays)
    with zipfile.ZipFile(compressed) as archive:
        assert archive.getinfo("diff3d.npy").compress_type == zipfile.ZIP_DEFLATED
    transposed = tmp_path / "transposed.npz"
    np.savez(transposed, **dict(arrays, diff3d=np.moveaxis(arrays["diff3d"], 0, -1)))
    reference = read_scan_npz(compressed).diffraction
    for path in (compressed, transposed):
        scan = read_scan_npz(path, lazy=True)
        assert isinstance(scan.diffraction, np.ndarray)
        np.testing.assert_array_equal(scan.diffraction, reference)


def test_hdf5_layouts_measurement_and_errors(tmp_path, rng):
    arrays = _counts_arrays(rng)
    amplitude = dict(arrays, diff3d=np.sqrt(arrays["diff3d"]).astype(np.float32))
    # diff3d alias, (M, N, N, 1) layout, measurement attribute
    path = _write_h5(tmp_path / "alias.h5", dict(arrays, diff3d=arrays["diff3d"][..., None]
                                                 .astype(np.float32)),
                     key="diff3d", measurement="intensity", chunks=(4, N, N, 1))
    for lazy in (True, False):
        scan = read_scan_hdf5(path, lazy=lazy)
        assert scan.measured_domain == "intensity"
        np.testing.assert_array_equal(np.asarray(scan.diffraction), amplitude["diff3d"])
    # measurement attribute as bytes, overridden by the argument
    path = _write_h5(tmp_path / "amp.h5", amplitude, measurement=np.bytes_(b"amplitude"))
    assert read_scan(path).measured_domain == "amplitude"
    assert read_scan(path, "intensity", lazy=True).measured_domain == "intensity"
    # found by its signature whatever the suffix
    renamed = tmp_path / "scan.data"
    renamed.write_bytes(path.read_bytes())
    assert read_scan(renamed).measured_domain == "amplitude"
    # one error per problem, naming the file and dataset
    missing = _write_h5(tmp_path / "missing.h5", {k: v for k, v in arrays.items() if k != "diff3d"})
    with pytest.raises(InputError, match=r"missing dataset in missing.h5:diffraction"):
        read_scan(missing)
    bad = _write_h5(tmp_path / "badmeasure.h5", arrays, measurement="counts")
    with pytest.raises(InputError, match="badmeasure.h5:measurement"):
        read_scan(bad, lazy=True)
    mismatch = _write_h5(tmp_path / "mismatch.h5", dict(arrays, xcoords=arrays["xcoords"][:-1]))
    with pytest.raises(InputError, match="length mismatch"):
        read_scan(mismatch, lazy=True)
    not_hdf5 = tmp_path / "fake.h5"
    not_hdf5.write_bytes(b"not an hdf5 file")
    with pytest.raises(InputError, match="unreadable HDF5"):
        read_scan(not_hdf5)
    with pytest.raises(InputError, match="file not found"):
        read_scan(tmp_path / "absent.h5")


def test_write_scan_npz_output_is_memory_mappable(tmp_path, small_scan):
    path = tmp_path / "scan.npz"
    write_scan_npz(path, small_scan)
    scan = read_scan(path, lazy=True)
    assert isinstance(scan.diffraction, LazyPatterns)
    np.testing.assert_array_equal(np.asarray(scan.diffraction), small_scan.diffraction)


def test_infer_cli_reads_a_streamed_hdf5_scan_like_the_npz(tmp_path, monkeypatch, small_scan):
    import torch

    from ptycho.archive import write_archive
    from ptycho.backends.pytorch.model import PtychoPINN
    from ptycho.backends.pytorch.trained_model import TorchTrainedModel
    from ptycho.cli.main import main
    from ptycho.config.config import ModelConfig, TrainingConfig

    torch.manual_seed(0)
    config = TrainingConfig(model=ModelConfig(N=64, n_filters_scale=1))
    module = PtychoPINN(config.model, physics.default_probe(64), 3.0)
    write_archive(tmp_path / "model", TorchTrainedModel(module), config, nphotons=1e5)
    scan = small_scan.subset(np.arange(36))
    write_scan_npz(tmp_path / "scan.npz", scan)
    write_scan_hdf5(tmp_path / "scan.h5", scan)
    monkeypatch.setenv(LAZY_THRESHOLD_ENV, "1")  # stream both (the NPZ is memory-mapped)
    objects = []
    for name in ("scan.npz", "scan.h5"):
        out = tmp_path / f"out_{name}"
        assert main(["infer", "--model_path", str(tmp_path / "model"), "--test_data",
                     str(tmp_path / name), "--output_dir", str(out), "--quiet"]) == 0
        with np.load(out / "reconstruction.npz") as recon:
            objects.append(recon["object"])
    np.testing.assert_array_equal(objects[0], objects[1])


def test_open_hdf5_turns_open_failures_into_one_line_errors(tmp_path):
    from ptycho.data.hdf5 import open_hdf5

    fake = tmp_path / "fake.h5"
    fake.write_bytes(b"not an hdf5 file")
    with pytest.raises(InputError) as caught:
        open_hdf5(fake, "a valid HDF5 file", with_type=True)
    assert (caught.value.what, caught.value.expected) == ("unreadable HDF5", "a valid HDF5 file")
    assert caught.value.actual.startswith("OSError: ") and "\n" not in caught.value.actual
    with pytest.raises(InputError) as caught:
        open_hdf5(tmp_path / "absent.h5", "a valid HDF5 file", "an HDF5 scan file")
    assert (caught.value.what, caught.value.expected) == ("file not found",
                                                          "an existing HDF5 scan file")
    with pytest.raises(InputError) as caught:
        open_hdf5(tmp_path, "a valid HDF5 file", "a .cxi scan file")
    assert (caught.value.what, caught.value.expected, caught.value.actual) == (
        "not a file", "a .cxi scan file", "a directory")
    # without the kind of file, a missing path is unreadable like any other OSError
    with pytest.raises(InputError, match="unreadable HDF5"):
        open_hdf5(tmp_path / "absent.h5", "a valid HDF5 file")
    good = tmp_path / "good.h5"
    with h5py.File(good, "w") as handle:
        handle["x"] = np.arange(3)
    with open_hdf5(good, "a valid HDF5 file") as handle:
        np.testing.assert_array_equal(handle["x"][()], np.arange(3))


def test_first_line_quotes_one_line_of_an_exception():
    from ptycho.errors import first_line

    error = OSError("  first line that is long\nsecond line")
    assert first_line(error) == "first line that is long"
    assert first_line(error, with_type=True, max_chars=10) == "OSError: first line"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(ValueError(" \n "), with_type=True) == "ValueError"

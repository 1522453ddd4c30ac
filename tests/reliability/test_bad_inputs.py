"""The bad-input catalogue: every malformed NPZ, YAML file or command line gives exit status 2
and one line ``error: <what> in <file/key>: <expected> (got <actual>)`` on stderr, no
traceback, and writes nothing."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np
import pytest
from reliability_helpers import files_in, make_test_scan

from ptycho.cli.main import main

ERROR_LINE = re.compile(r"^error: (?P<what>.+?) in (?P<where>.+?): (?P<expected>.+)$")
TRAIN = ("--n_filters_scale", "1", "--nepochs", "1", "--batch_size", "4", "--logger", "none",
         "--accelerator", "cpu", "--quiet")


@functools.lru_cache(maxsize=1)
def _valid_arrays() -> dict:
    scan = make_test_scan(n_side=5)
    return {"xcoords": scan.xcoords, "ycoords": scan.ycoords, "diff3d": scan.diffraction,
            "probeGuess": scan.probe, "objectGuess": scan.object_guess}


def _npz(folder: Path, name: str = "bad.npz", **changes) -> Path:
    arrays = dict(_valid_arrays())
    for key, value in changes.items():
        if value is None:
            arrays.pop(key, None)
        else:
            arrays[key] = value
    path = folder / name
    np.savez(path, **arrays)
    return path


def _train(folder: Path, scan: Path, *extra: str) -> list[str]:
    return ["train", "--train_data_file", str(scan), "--output_dir", str(folder / "out"),
            *TRAIN, *extra]


def _with(**changes):
    """A case training on a scan NPZ with ``changes`` applied to the valid arrays."""
    return lambda folder: _train(folder, _npz(folder, **changes))


def _modified(key: str, edit):
    def build(folder):
        value = np.array(_valid_arrays()[key], copy=True)
        return _train(folder, _npz(folder, **{key: edit(value)}))
    return build


def _set(index, value):
    def edit(array):
        array[index] = value
        return array
    return edit


def _bytes_case(transform):
    def build(folder):
        path = _npz(folder)
        path.write_bytes(transform(path.read_bytes()))
        return _train(folder, path)
    return build


def _corrupt_member(data: bytes) -> bytes:
    buffer = bytearray(data)
    offset = buffer.find(b"diff3d.npy") + 200  # inside the pattern data: the CRC breaks
    buffer[offset] ^= 0xFF
    return bytes(buffer)


def _pickled(folder):
    value = np.empty(25, dtype=object)
    for i in range(25):
        value[i] = float(i)
    return _train(folder, _npz(folder, xcoords=value))


def _one_point(folder):
    arrays = _valid_arrays()
    return _train(folder, _npz(folder, xcoords=arrays["xcoords"][:1],
                               ycoords=arrays["ycoords"][:1], diff3d=arrays["diff3d"][:1]))


def _small_patterns(folder):
    arrays = _valid_arrays()
    return _train(folder, _npz(folder, diff3d=arrays["diff3d"][:, 16:48, 16:48],
                               probeGuess=arrays["probeGuess"][16:48, 16:48]))


def _yaml(text: str, *extra: str):
    def build(folder):
        config = folder / "run.yaml"
        config.write_text(text)
        return _train(folder, _npz(folder), "--config", str(config), *extra)
    return build


def _output_is_file(folder):
    (folder / "out").write_text("a file, not a folder")
    return _train(folder, _npz(folder))


def _output_under_file(folder):
    (folder / "plain.txt").write_text("a file")
    return ["train", "--train_data_file", str(_npz(folder)), "--output_dir",
            str(folder / "plain.txt" / "out"), *TRAIN]


def _unwritable(folder):
    locked = folder / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    return ["train", "--train_data_file", str(_npz(folder)), "--output_dir",
            str(locked / "out"), *TRAIN]


def _library(second, *extra: str):
    """A case training on two scans: bad.npz (valid) and ``second(folder)``."""
    return lambda folder: _train(folder, _npz(folder), "--train_data_file",
                                 str(second(folder)), *extra)


def _big_patterns(folder):
    """A valid scan of 128 x 128 patterns (the 64 x 64 ones zero-padded)."""
    arrays = _valid_arrays()
    return _npz(folder, "big.npz", diff3d=np.pad(arrays["diff3d"], ((0, 0), (32, 32), (32, 32))),
                probeGuess=np.pad(arrays["probeGuess"], 32))


def _infer(model: str, folder: Path, *extra: str) -> list[str]:
    return ["infer", "--model_path", model, "--test_data", str(_npz(folder)), "--output_dir",
            str(folder / "out"), "--quiet", *extra]


def _infer_bad_archive(folder):
    model = folder / "model"
    model.mkdir()
    (model / "wts.h5.zip").write_bytes(b"PK\x03\x04 not really a zip")
    return _infer(str(model), folder)


def _duplicate(folder):
    x, y = _valid_arrays()["xcoords"].copy(), _valid_arrays()["ycoords"].copy()
    x[7], y[7] = x[2], y[2]
    return _train(folder, _npz(folder, xcoords=x, ycoords=y))


def _refine(folder: Path, *extra: str, scan: Path | None = None) -> list[str]:
    return ["refine", "--scan", str(scan or _npz(folder)), "--output_dir", str(folder / "out"),
            "--iterations", "1", "--device", "cpu", "--quiet", *extra]


def _refine_init(make):
    """A ``refine --init`` case; ``make(folder)`` writes the reconstruction file to start from."""
    return lambda folder: _refine(folder, "--init", str(make(folder)))


def _init_file(name: str, **arrays):
    def make(folder):
        np.savez(folder / name, **arrays)
        return folder / name
    return make


def _truncated_init(folder):
    path = _init_file("init.npz", object=np.ones((64, 64), np.complex64), x0_px=0.0,
                      y0_px=0.0)(folder)
    path.write_bytes(path.read_bytes()[:200])
    return path


def _cxi(changes: dict | None = None, *extra: str, command=None):
    """A case reading ``bad.cxi`` (the valid scan as CXI, ``changes`` {CXI path: value or None
    to delete} applied) with ``extra`` flags; ``command(folder, path, *extra)`` builds the
    argument list (default: train)."""
    def build(folder):
        import h5py

        from ptycho.data.cxi import object_pixel_size_m, wavelength_m, write_scan_cxi

        arrays = _valid_arrays()
        counts = np.rint(np.square(arrays["diff3d"], dtype=np.float64)).astype(np.uint32)
        dx = object_pixel_size_m(wavelength_m(1.28e-15), 2.0, 64, 75e-6)
        path = write_scan_cxi(folder / "bad.cxi", counts,
                              -np.column_stack([arrays["xcoords"], arrays["ycoords"]]) * dx,
                              energy_J=1.28e-15, distance_m=2.0, pixel_size_m=75e-6,
                              probe=arrays["probeGuess"])
        with h5py.File(path, "r+") as handle:
            for key, value in (changes or {}).items():
                if key in handle:
                    del handle[key]
                if value is not None:
                    handle[key] = value
        return (command or _train)(folder, path, *extra)
    return build


def _file(name: str, value):
    """Write ``value`` (an array, or a function giving one) as ``name`` (.npy) in the case
    folder; return its path."""
    def make(folder):
        np.save(folder / name, value() if callable(value) else value)
        return str(folder / name)
    return make


def _mode_copies() -> np.ndarray:
    """Two probe modes that are one mode (the second is 2j times the first)."""
    probe = _valid_arrays()["probeGuess"]
    return np.stack([probe, 2j * probe])


def _reading(*flags, command=None):
    """A case with reading ``flags`` (callables take the folder and give the value)."""
    def build(folder):
        values = [flag(folder) if callable(flag) else flag for flag in flags]
        return (command or _train)(folder, _npz(folder), *values)
    return build


def _infer_scan(folder, scan, *extra):
    return ["infer", "--model_path", str(folder / "nowhere"), "--test_data", str(scan),
            "--output_dir", str(folder / "out"), "--quiet", *extra]


def _inspect(folder, scan, *extra):
    return ["inspect", str(scan), *extra]


def _refine_scan(folder, scan, *extra):
    return _refine(folder, *extra, scan=scan)


def _resume_nothing(folder):
    (folder / "previous").mkdir()
    return ["train", "--resume", str(folder / "previous"), "--quiet"]


def _simulate(*extra: str, out: str = "sim.cxi", realistic: bool = True,
              modes: str | None = None):
    def build(folder):
        argv = ["simulate", "--out", str(folder / out), "--quiet", *extra]
        return argv + (["--realistic"] if realistic else []) + (
            ["--probe-modes", modes] if modes else [])
    return build


N = 25
CASES = {
    # --- scan NPZ: missing keys
    "missing xcoords": (_with(xcoords=None), "missing key", "bad.npz:xcoords"),
    "missing ycoords": (_with(ycoords=None), "missing key", "bad.npz:ycoords"),
    "missing diff3d": (_with(diff3d=None), "missing key", "bad.npz:diff3d"),
    "missing probeGuess": (_with(probeGuess=None), "missing key", "bad.npz:probeGuess"),
    # --- wrong dtypes
    "string patterns": (_with(diff3d=np.full((N, 64, 64), "x")), "wrong dtype", "bad.npz:diff3d"),
    "boolean positions": (_with(xcoords=np.ones(N, bool)), "wrong dtype", "bad.npz:xcoords"),
    "string probe": (_with(probeGuess=np.full((64, 64), "p")), "wrong dtype",
                     "bad.npz:probeGuess"),
    "string scan_index": (_with(scan_index=np.full(N, "ab")), "wrong dtype",
                          "bad.npz:scan_index"),
    "complex patterns": (_modified("diff3d", lambda a: a.astype(np.complex64)),
                         "complex diffraction", "bad.npz:diff3d"),
    # --- values
    "NaN pattern": (_modified("diff3d", _set((3, 5, 7), np.nan)), "non-finite values",
                    "bad.npz:diff3d"),
    "Inf position": (_modified("xcoords", _set(4, np.inf)), "non-finite values",
                     "bad.npz:xcoords"),
    "NaN probe": (_modified("probeGuess", _set((2, 2), np.nan)), "non-finite values",
                  "bad.npz:probeGuess"),
    "negative amplitudes": (_modified("diff3d", _set((0, 0, 0), -1.0)), "negative values",
                            "bad.npz:diff3d"),
    "all-zero patterns": (_with(diff3d=np.zeros((N, 64, 64), np.float32)), "all-zero patterns",
                          "bad.npz:diff3d"),
    # --- several training scans (--train_data_file A.npz B.npz)
    "library: pattern sizes differ": (_library(_big_patterns), "patch size mismatch",
                                      "big.npz:diff3d"),
    "library: second scan missing": (_library(lambda f: f / "absent.npz"), "file not found",
                                     "absent.npz"),
    "library: trainable probe": (_library(lambda f: _npz(f, "second.npz"), "--probe_trainable"),
                                 "invalid value", "--probe_trainable"),
    "all-zero probe": (_with(probeGuess=np.zeros((64, 64), np.complex64)), "all-zero probe",
                       "bad.npz:probeGuess"),
    "overflowing amplitudes": (_modified("diff3d", lambda a: a.astype(np.float64) * 1e300),
                               "values out of range", "bad.npz:diff3d"),
    "invalid measurement key": (_with(measurement=np.array("photons")), "invalid value",
                                "bad.npz:measurement"),
    # --- shapes and lengths
    "coordinate length mismatch": (_modified("ycoords", lambda a: a[:-1]), "length mismatch",
                                   "bad.npz:ycoords"),
    "pattern count mismatch": (_modified("diff3d", lambda a: a[:-2]), "length mismatch",
                               "bad.npz:diff3d"),
    "non-square patterns": (_modified("diff3d", lambda a: a[:, :, :60]), "non-square patterns",
                            "bad.npz:diff3d"),
    "single 2-D pattern": (_modified("diff3d", lambda a: a[0]), "wrong shape", "bad.npz:diff3d"),
    "probe/pattern size mismatch": (_with(probeGuess=np.ones((32, 32), np.complex64)),
                                    "size mismatch", "bad.npz:probeGuess"),
    "unsupported pattern size": (_small_patterns, "unsupported pattern size", "bad.npz:diff3d"),
    "empty scan": (_with(xcoords=np.zeros(0), ycoords=np.zeros(0),
                         diff3d=np.zeros((0, 64, 64), np.float32)),
                   ("empty scan", "empty array"), "bad.npz:xcoords"),
    "1-point scan": (_one_point, "scan too small to train", "bad.npz:xcoords"),
    "duplicate positions": (_duplicate, "duplicate scan positions", "bad.npz:xcoords/ycoords"),
    "positions outside objectGuess": (_modified("xcoords", _set(4, 5000.0)),
                                      "positions outside objectGuess", "bad.npz:xcoords/ycoords"),
    # --- file integrity
    "pickled object array": (_pickled, "pickled object array", "bad.npz:xcoords"),
    "truncated zip": (_bytes_case(lambda d: d[: len(d) // 2]), "unreadable NPZ", "bad.npz"),
    "not a zip": (_bytes_case(lambda d: b"GARBAGE" * 100), "unreadable NPZ", "bad.npz"),
    "corrupt member": (_bytes_case(_corrupt_member), "corrupt member", "bad.npz:diff3d"),
    # --- YAML configuration
    "YAML unknown key": (_yaml("nepoch: 3\n"), "unknown key", "run.yaml:nepoch"),
    "YAML wrong type": (_yaml("batch_size: many\n"), "wrong type", "run.yaml:batch_size"),
    "YAML out of range": (_yaml("learning_rate: -0.1\n"), "invalid value",
                          "run.yaml:learning_rate"),
    "YAML bad gridsize": (_yaml("model:\n  gridsize: 0\n"), "invalid value", "run.yaml:gridsize"),
    "YAML syntax": (_yaml("nepochs: [3\n"), "invalid YAML", "run.yaml"),
    "YAML not a mapping": (_yaml("- 1\n- 2\n"), "wrong structure", "run.yaml"),
    # --- command line
    "nonexistent scan": (lambda f: _train(f, f / "absent.npz"), "file not found", "absent.npz"),
    "nonexistent config": (lambda f: _train(f, _npz(f), "--config", str(f / "absent.yaml")),
                           "file not found", "absent.yaml"),
    "output dir is a file": (_output_is_file, "output path is a file", "--output_dir"),
    "output dir under a file": (_output_under_file, "output path is not a folder",
                                "--output_dir"),
    "unwritable output dir": (_unwritable, "output folder not writable", "--output_dir"),
    "gridsize too large": (lambda f: _train(f, _npz(f), "--gridsize", "6"),
                           "scan too small for gridsize", "--gridsize"),
    "N not supported": (lambda f: _train(f, _npz(f), "--N", "100"), "invalid value", "--N"),
    "N unlike the data": (lambda f: _train(f, _npz(f), "--N", "128"), "patch size mismatch",
                          "bad.npz:diff3d"),
    "batch size 0": (lambda f: _train(f, _npz(f), "--batch_size", "0"), "invalid value",
                     "--batch_size"),
    "more groups than positions": (lambda f: _train(f, _npz(f), "--n_groups", "99"),
                                   "more groups than positions", "--n_groups"),
    "targets not refine": (lambda f: _train(f, _npz(f), "--targets", "lsqml"), "invalid value",
                           "--targets"),
    "targets with 0 iterations": (lambda f: _train(f, _npz(f), "--targets", "refine:0"),
                                  "invalid value", "--targets"),
    "infer: no model": (lambda f: _infer(str(f / "nowhere"), f), "model not found", "nowhere"),
    "infer: damaged archive": (_infer_bad_archive, "unreadable archive", "wts.h5.zip"),
    "resume: no checkpoint": (_resume_nothing, "no resumable checkpoint", "--resume"),
    # --- iterative refinement (ptychopinn refine, infer --refine-iterations)
    "refine: no scan": (lambda f: _refine(f, scan=f / "absent.npz"), "file not found",
                        "absent.npz"),
    "refine: 0 iterations": (lambda f: _refine(f, "--iterations", "0"), "invalid value",
                             "--iterations"),
    "refine: batch size 0": (lambda f: _refine(f, "--batch-size", "0"), "invalid value",
                             "--batch-size"),
    "refine: negative probe start": (lambda f: _refine(f, "--probe-start-iteration", "-1"),
                                     "invalid value", "--probe-start-iteration"),
    "refine: cuda without a GPU": (lambda f: _refine(f, "--device", "cuda"), "no GPU",
                                   "--device"),
    "refine: init not found": (_refine_init(lambda f: f / "absent_init.npz"), "file not found",
                               "absent_init.npz"),
    "refine: init truncated": (_refine_init(_truncated_init), "unreadable file", "init.npz"),
    "refine: init without object": (_refine_init(_init_file("init.npz", x0_px=0.0, y0_px=0.0)),
                                    "missing key", "init.npz:object"),
    "refine: init of another scan": (
        _refine_init(_init_file("init.npz", object=np.ones((40, 40), np.complex64),
                                x0_px=5000.0, y0_px=0.0)), "no overlap", "--init init.npz"),
    "refine: init covering nothing": (
        _refine_init(_init_file("init.npz", object=np.ones((80, 80), np.complex64), x0_px=0.0,
                                y0_px=0.0, weight=np.zeros((80, 80)))), "no overlap",
        "--init init.npz"),
    "infer: negative refine iterations": (
        lambda f: _infer(str(f / "nowhere"), f, "--refine-iterations", "-1"), "invalid value",
        "--refine-iterations"),
    # --- test-time adaptation (infer --adapt-epochs)
    "infer: negative adapt epochs": (
        lambda f: _infer(str(f / "nowhere"), f, "--adapt-epochs", "-1"), "invalid value",
        "--adapt-epochs"),
    "infer: adapt learning rate 0": (
        lambda f: _infer(str(f / "nowhere"), f, "--adapt-epochs", "2", "--adapt-learning-rate",
                         "0"), "invalid value", "--adapt-learning-rate"),
    # --- reading options (every format; train, infer, inspect, evaluate, refine)
    "--crop 1": (_reading("--crop", "1"), "invalid value", "--crop"),
    "--crop larger than the frames": (_reading("--crop", "80"), "invalid value", "--crop"),
    "--bin 0": (_reading("--bin", "0", command=_infer_scan), "invalid value", "--bin"),
    "--bin not dividing the window": (_reading("--bin", "3"), "invalid value", "--bin"),
    "--detector-centre not ROW,COL": (_reading("--detector-centre", "12", command=_inspect),
                                      "invalid value", "--detector-centre"),
    "crop window outside the frames": (_reading("--crop", "32", "--detector-centre", "3,3"),
                                       "crop window outside the frames", "--detector-centre"),
    "--saturation 0": (_reading("--saturation", "0", command=_refine_scan), "invalid value",
                       "--saturation"),
    "--saturation below every count": (_reading("--saturation", "0.5"), "no valid pixels",
                                       "--saturation"),
    "refine: --saturation below every count": (
        _reading("--saturation", "0.5", command=_refine_scan), "no valid pixels", "--saturation"),
    "--mask not found": (_reading("--mask", lambda f: str(f / "absent_mask.npy")),
                         "file not found", "absent_mask.npy"),
    "--mask of another shape": (_reading("--mask", _file("mask.npy", np.zeros((50, 50), bool))),
                                "wrong shape", "mask.npy"),
    "--mask not 2-D": (_reading("--mask", _file("mask.npy", np.zeros(64, bool))), "wrong shape",
                       "mask.npy"),
    "--probe not found": (_reading("--probe", lambda f: str(f / "absent_probe.npy"),
                                   command=_infer_scan), "file not found", "absent_probe.npy"),
    "--probe of another size": (_reading("--probe", _file("probe.npy", np.ones((32, 32),
                                                                                np.complex64))),
                                "size mismatch", "probe.npy"),
    "--translation-axes x,x": (_cxi(None, "--translation-axes", "x,x"), "invalid value",
                               "--translation-axes"),
    # --- CXI files
    "CXI: no frames": (_cxi({"entry_1/data_1/data": None,
                             "entry_1/instrument_1/detector_1/data": None}),
                       "missing dataset", "bad.cxi:entry_1/data_1/data"),
    "CXI: 2-D frames": (_cxi({"entry_1/data_1/data": np.ones((64, 64), np.uint32)}),
                        "wrong shape", "bad.cxi:entry_1/data_1/data"),
    "CXI: complex frames": (_cxi({"entry_1/data_1/data": np.ones((N, 64, 64), np.complex64)}),
                            "complex diffraction", "bad.cxi:entry_1/data_1/data"),
    "CXI: non-square frames": (_cxi({"entry_1/data_1/data": np.ones((N, 64, 70), np.uint32)}),
                               "non-square patterns", "bad.cxi:entry_1/data_1/data"),
    "CXI: negative counts": (_cxi({"entry_1/data_1/data": -np.ones((N, 64, 64), np.int32)}),
                             "negative values", "bad.cxi:entry_1/data_1/data"),
    "CXI: no translation": (_cxi({"entry_1/sample_1/geometry_1/translation": None}),
                            "missing dataset", "bad.cxi:entry_1/sample_1/geometry_1/translation"),
    "CXI: translation per frame": (_cxi({"entry_1/sample_1/geometry_1/translation":
                                         np.zeros((N - 1, 3))}),
                                   "length mismatch", "bad.cxi:entry_1/sample_1/geometry_1"),
    "CXI: translation (M, 1)": (_cxi({"entry_1/sample_1/geometry_1/translation": np.zeros((N, 1))}),
                                "wrong shape", "bad.cxi:entry_1/sample_1/geometry_1/translation"),
    "CXI: NaN translation": (_cxi({"entry_1/sample_1/geometry_1/translation":
                                   np.full((N, 3), np.nan)}),
                             "non-finite values", "bad.cxi:entry_1/sample_1/geometry_1"),
    "CXI: repeated translation": (_cxi({"entry_1/sample_1/geometry_1/translation":
                                        np.zeros((N, 3))}),
                                  "duplicate scan positions", "bad.cxi:entry_1/sample_1"),
    "CXI: no distance": (_cxi({"entry_1/instrument_1/detector_1/distance": None}),
                         "missing dataset", "bad.cxi:entry_1/instrument_1/detector_1/distance"),
    "CXI: distance 0": (_cxi({"entry_1/instrument_1/detector_1/distance": 0.0}),
                        "invalid value", "bad.cxi:entry_1/instrument_1/detector_1/distance"),
    "CXI: pixel size in micrometres": (_cxi({"entry_1/instrument_1/detector_1/x_pixel_size": 75.0}),
                                       "invalid value", "detector_1/x_pixel_size"),
    "CXI: no y pixel size": (_cxi({"entry_1/instrument_1/detector_1/y_pixel_size": None}),
                             "missing dataset", "detector_1/y_pixel_size"),
    "CXI: energy in eV": (_cxi({"entry_1/instrument_1/source_1/energy": 8000.0}),
                          "invalid value", "bad.cxi:entry_1/instrument_1/source_1/energy"),
    "CXI: energy not a number": (_cxi({"entry_1/instrument_1/source_1/energy": "8 keV"}),
                                 "wrong dtype", "bad.cxi:entry_1/instrument_1/source_1/energy"),
    "CXI: mask of another shape": (_cxi({"entry_1/instrument_1/detector_1/mask":
                                         np.zeros((3, 3), np.uint8)}),
                                   "wrong shape", "bad.cxi:entry_1/instrument_1/detector_1/mask"),
    "CXI: no probe": (_cxi({"entry_1/instrument_1/source_1/probe": None}, command=_inspect),
                      "missing dataset", "bad.cxi:entry_1/instrument_1/source_1/probe"),
    "CXI: probe of another size": (_cxi({"entry_1/instrument_1/source_1/probe":
                                         np.ones((2, 32, 32), np.complex64)}),
                                   "size mismatch", "bad.cxi:entry_1/instrument_1/source_1/probe"),
    "CXI: not HDF5": (lambda f: _train(f, _write_text(f / "bad.cxi", "not an HDF5 file")),
                      "unreadable HDF5", "bad.cxi"),
    # --- mixed-state probe (--probe-modes M)
    "--probe-modes 0": (lambda f: _train(f, _npz(f), "--probe-modes", "0"), "invalid value",
                        "--probe_modes"),
    "--probe-modes 17": (lambda f: _train(f, _npz(f), "--probe-modes", "17"), "invalid value",
                         "--probe_modes"),
    "YAML probe_modes 0": (_yaml("model:\n  probe_modes: 0\n"), "invalid value",
                           "run.yaml:probe_modes"),
    "probe modes linearly dependent": (
        lambda f: _train(f, _npz(f, probeGuess=_mode_copies()), "--probe-modes", "2"),
        "unusable probe modes", "bad.npz:probe"),
    "a probe mode of zeros": (
        _with(probeGuess=np.stack([_valid_arrays()["probeGuess"],
                                   np.zeros((64, 64), np.complex64)])),
        "all-zero probe mode", "bad.npz:probeGuess"),
    "refine: --probe-modes 0": (lambda f: _refine(f, "--probe-modes", "0"), "invalid value",
                                "--probe-modes"),
    "refine: --probe file of dependent modes": (
        _reading("--probe", _file("probe.npy", _mode_copies), "--probe-modes", "2",
                 command=_refine_scan), "unusable probe modes", "bad.npz:probe"),
    # --- simulate --realistic (each refused before anything is simulated or written)
    "simulate: detector flag without --realistic": (
        _simulate("--dead-fraction", "0.1", out="sim.npz", realistic=False),
        "option needs --realistic", "--dead-fraction"),
    "simulate --realistic: NPZ output": (_simulate(out="sim.npz"), "invalid file name", "--out"),
    "simulate: CXI output without --realistic": (_simulate(realistic=False), "invalid file name",
                                                 "--out"),
    "simulate --realistic: --beam-offset 1.5,2": (_simulate("--beam-offset", "1.5,2"),
                                                  "invalid value", "--beam-offset"),
    "simulate --realistic: --beam-offset beyond N/2": (_simulate("--beam-offset", "40,0"),
                                                       "invalid value", "--beam-offset"),
    "simulate --realistic: --beamstop-radius -1": (_simulate("--beamstop-radius", "-1"),
                                                   "invalid value", "--beamstop-radius"),
    "simulate --realistic: --dead-fraction 2": (_simulate("--dead-fraction", "2"),
                                                "invalid value", "--dead-fraction"),
    "simulate --realistic: --gap-width 99": (_simulate("--gap-width", "99"), "invalid value",
                                             "--gap-width"),
    "simulate --realistic: --hot-pixels -1": (_simulate("--hot-pixels", "-1"), "invalid value",
                                              "--hot-pixels"),
    "simulate --realistic: --saturation-level 0": (_simulate("--saturation-level", "0"),
                                                   "invalid value", "--saturation-level"),
    "simulate: --probe-modes 3": (_simulate("--probe-modes", "3"), "invalid value",
                                  "--probe-modes"),
    "simulate: --mode-power 0.7": (_simulate("--mode-power", "0.7", realistic=False,
                                             out="sim.npz", modes="2"),
                                   "invalid value", "--mode-power"),
}



def _write_text(path: Path, text: str) -> Path:
    path.write_text(text)
    return path



def test_the_catalogue_is_large_enough():
    assert len(CASES) >= 30


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_error_line(case, tmp_path, capsys, monkeypatch):
    build, what, where = CASES[case]
    if case == "unwritable output dir" and os.geteuid() == 0:
        pytest.skip("root ignores folder permissions ('output dir under a file' covers the check)")
    if case == "refine: cuda without a GPU" and _cuda_available():
        pytest.skip("a GPU is visible: --device cuda is valid here")
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path)
    before = files_in(tmp_path)
    capsys.readouterr()

    code = main(argv)

    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 2, err
    assert len(errors) == 1 and "Traceback" not in err, err
    match = ERROR_LINE.match(errors[0])
    assert match, errors[0]
    assert match["what"] in ((what,) if isinstance(what, str) else what), errors[0]
    assert where in match["where"], errors[0]
    assert files_in(tmp_path) == before  # nothing half-written (or written at all)


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _error_kinds() -> dict[str, set[str]]:
    """``what`` of every InputError/ArchiveError raised in the package -> the modules."""
    import ast

    root = Path(__file__).resolve().parents[2] / "src" / "ptycho"
    kinds: dict[str, set[str]] = {}
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            first = node.args[0]
            if name in ("InputError", "ArchiveError") and isinstance(first, ast.Constant):
                kinds.setdefault(first.value, set()).add(str(path.relative_to(root)))
    return kinds


def test_troubleshooting_lists_every_error():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "troubleshooting.md").read_text()
    missing = {what: sorted(where) for what, where in _error_kinds().items()
               if f"`{what}`" not in doc}
    assert not missing, f"add these errors to docs/troubleshooting.md: {missing}"
    for text in ("BackendUnavailableError", "--resume", "status 3", "130", "143"):
        assert text in doc

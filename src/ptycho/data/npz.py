"""Read and write the PtychoPINN scan NPZ (never unpickling), with one clear error per problem.

Keys
----
Required: ``xcoords``, ``ycoords`` (M,), ``diff3d`` (alias ``diffraction``) in layout
(M, N, N), (N, N, M) or (M, N, N, 1), ``probeGuess`` (N, N), (N, N, 1) or (modes, N, N).
Optional: ``xcoords_start``, ``ycoords_start``, ``scan_index``, ``objectGuess`` (H, W),
``bad_pixels`` (N, N), ``measurement`` ('amplitude' or 'intensity').

Measurement domain (design section 2): ``diff3d`` holds amplitudes unless the file says
``measurement='intensity'``, carries ``bad_pixels`` (a ptychodus export), or stores an integer
dtype; intensities are converted to amplitudes with ``sqrt``.

Large scans: with ``lazy=True`` (or ``lazy=None`` and a stack larger than
:func:`ptycho.data.lazy.lazy_threshold_bytes`) an uncompressed ``diff3d`` member (``np.savez``)
in the (M, N, N) layout is memory-mapped and validated chunk by chunk; ``Scan.diffraction`` is
then a :class:`ptycho.data.lazy.LazyPatterns`. The HDF5 reader (:mod:`ptycho.data.hdf5`)
shares this validation.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ptycho.data import lazy as _lazy
from ptycho.data.detector import resolve_geometry
from ptycho.data.reading import ReadOptions, scan_probe
from ptycho.data.scan import Scan
from ptycho.errors import InputError, first_line
from ptycho.fileio import atomic_path

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("xcoords", "ycoords", "probeGuess")
DIFFRACTION_KEYS = ("diff3d", "diffraction")


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} array of shape {tuple(array.shape)}"


def _check_duplicate_positions(xcoords: np.ndarray, ycoords: np.ndarray, where: str) -> None:
    """Refuse exactly repeated (x, y) positions, naming the first repeated pair."""
    if len(xcoords) < 2:
        return
    _, first, inverse = np.unique(np.column_stack([xcoords, ycoords]), axis=0,
                                  return_index=True, return_inverse=True)
    repeats = np.flatnonzero(first[inverse.reshape(-1)] != np.arange(len(xcoords)))
    if repeats.size:
        j = int(repeats[0])
        i = int(first[inverse.reshape(-1)[j]])
        raise InputError("duplicate scan positions", where,
                         "distinct (x, y) positions, one pattern each",
                         f"positions {i} and {j} both at (x={xcoords[i]:.6g}, y={ycoords[i]:.6g}); "
                         f"{repeats.size} repeated in all")


class MemberReader:
    """Base of the scan readers (NPZ here, HDF5 in :mod:`ptycho.data.hdf5`).

    Subclasses set ``name`` and ``keys`` and provide ``get(key)`` (array or None), ``stored``
    and ``close``; :meth:`require` words a missing member as the file type does (``MEMBER``,
    ``EXPECTED``).
    """

    MEMBER = "key"
    EXPECTED = f"the scan NPZ keys {', '.join(REQUIRED_KEYS + ('diff3d',))}"
    name: str
    keys: set[str]

    def get(self, key: str) -> np.ndarray | None:
        raise NotImplementedError

    def require(self, key: str) -> np.ndarray:
        value = self.get(key)
        if value is None:
            raise InputError(f"missing {self.MEMBER}", f"{self.name}:{key}", self.EXPECTED,
                             f"{self.MEMBER}s {sorted(self.keys)}")
        return value


class NpzReader(MemberReader):
    """Lazy, pickle-free access to the arrays of one NPZ with file-and-key error messages."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        try:
            self._npz = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise InputError("file not found", str(path), "an existing .npz scan file") from None
        except IsADirectoryError:
            raise InputError("not a file", str(path), "a .npz scan file", "a directory") from None
        except Exception as exc:  # not a zip, truncated, encrypted, unsupported compression...
            raise InputError("unreadable NPZ", str(path), "a valid NumPy .npz archive",
                             first_line(exc, with_type=True, max_chars=200)) from None
        self.keys = set(self._npz.files)

    def get(self, key: str) -> np.ndarray | None:
        if key not in self.keys:
            return None
        try:
            return np.asarray(self._npz[key])
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise InputError("pickled object array", f"{self.name}:{key}",
                                 "a plain numeric array (pickles are never loaded)") from None
            raise InputError("unreadable array", f"{self.name}:{key}", "a valid .npy member",
                             first_line(exc, with_type=True, max_chars=200)) from None
        except Exception as exc:  # bad CRC, zlib error, truncated member, absurd header...
            raise InputError("corrupt member", f"{self.name}:{key}", "a readable .npy member",
                             type(exc).__name__) from None

    def stored(self, key: str) -> _lazy.StoredArray | None:
        """The member as a memory-mappable array, or None when it is compressed."""
        return _lazy.npz_member(self.path, key)

    def close(self) -> None:
        self._npz.close()


def check_real_finite(array: np.ndarray, where: str, *, allow_complex: bool = False,
                       allow_empty: bool = False) -> None:
    """Raise :class:`InputError` naming ``where`` unless ``array`` is numeric (real, or complex
    with ``allow_complex``), non-empty (unless ``allow_empty``) and finite."""
    if array.dtype.kind not in ("i", "u", "f") + (("c",) if allow_complex else ()):
        expected = "a numeric array" if allow_complex else "a real numeric array"
        raise InputError("wrong dtype", where, expected, str(array.dtype))
    if array.size == 0 and not allow_empty:
        raise InputError("empty array", where, "at least one element", _describe(array))
    if array.dtype.kind in ("f", "c") and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError("non-finite values", where, "finite numbers", f"{bad} NaN/Inf values")


def _coords(reader: NpzReader, key: str, required: bool) -> np.ndarray | None:
    array = reader.require(key) if required else reader.get(key)
    if array is None:
        return None
    where = f"{reader.name}:{key}"
    check_real_finite(array, where, allow_empty=True)
    if array.ndim != 1:
        array = np.squeeze(array)
        if array.ndim != 1:
            raise InputError("wrong shape", where, "a 1-D array of positions", _describe(array))
    return array.astype(np.float64)


def diffraction_layout(array: np.ndarray, n_positions: int, where: str, square: bool = True
                       ) -> np.ndarray:
    """Patterns as (M, N, N) from (M, N, N), (M, N, N, 1) or (N, N, M); else InputError.

    ``square=False`` also accepts (M, H, W) frames (to be cropped by ``--crop``).
    """
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise InputError("wrong shape", where, "patterns as (M, N, N), (N, N, M) or (M, N, N, 1)",
                         _describe(array))
    if array.shape[0] == n_positions and (array.shape[1] == array.shape[2] or not square):
        return array
    if array.shape[2] == n_positions and array.shape[0] == array.shape[1]:
        log.info("%s: transposed patterns from (N, N, M) to (M, N, N)", where)
        return np.ascontiguousarray(np.moveaxis(array, -1, 0))
    if array.shape[1] != array.shape[2] and array.shape[0] != array.shape[1]:
        raise InputError("non-square patterns", where, "square N x N patterns", _describe(array))
    raise InputError("length mismatch", where, f"{n_positions} patterns, one per position",
                     _describe(array))


def probe_mode_stack(array: np.ndarray, where: str, notes: list[str]) -> np.ndarray:
    """Every mode of an (N, N), (N, N, 1) or (modes, N, N) probe as complex64 (K, N, N).

    A probe of K > 1 modes is noted in ``notes`` (mode 0 is the probe of a single-mode model,
    all of them start a mixed-state one: ``--probe-modes``); bad probes raise InputError
    (wrong shape, all zero, a mode of zeros, values beyond complex64).
    """
    check_real_finite(array, where, allow_complex=True)
    if array.ndim == 3 and array.shape[-1] == 1 and array.shape[0] == array.shape[1]:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1] != array.shape[2]:
        raise InputError("wrong shape", where, "a square probe (N, N) or (modes, N, N)",
                         _describe(array))
    if not np.any(array[0]):
        raise InputError("all-zero probe", where, "a probe with non-zero values")
    empty = [k for k in range(len(array)) if not np.any(array[k])]
    if empty:
        raise InputError("all-zero probe mode", where, "every probe mode with non-zero values",
                         f"mode {empty[0]} of {len(array)} is all zero")
    with np.errstate(over="ignore"):
        probe = array.astype(np.complex64)
    if not np.all(np.isfinite(probe)):
        raise InputError("values out of range", where, "magnitudes within the complex64 range "
                         "(< 3.4e38)", f"max |value| {np.abs(array).max():.3g}")
    if len(probe) > 1:
        note = (f"{where}: probe has {len(probe)} modes; mode 0 for a single-mode model, all "
                f"of them with --probe-modes > 1")
        log.info(note)
        notes.append(note)
    return probe


def probe_mode0(array: np.ndarray, where: str, notes: list[str]) -> np.ndarray:
    """Mode 0 of an (N, N), (N, N, 1) or (modes, N, N) probe as complex64 (N, N).

    A note on other modes is logged and appended to ``notes``; bad probes raise InputError
    (:func:`probe_mode_stack`).
    """
    return probe_mode_stack(array, where, notes)[0]


def resolve_measurement(reader_keys: set[str], file_value: str | None, dtype: np.dtype,
                        requested: str) -> tuple[str, str]:
    """Decide whether ``diff3d`` holds amplitudes or intensities; return ``(domain, reason)``."""
    if requested in ("amplitude", "intensity"):
        return requested, "requested"
    if file_value is not None:
        return file_value, "the file's 'measurement' key"
    if "bad_pixels" in reader_keys:
        return "intensity", "a 'bad_pixels' key (ptychodus export)"
    if np.issubdtype(dtype, np.integer):
        return "intensity", f"an integer dtype ({dtype})"
    return "amplitude", "the default"


def read_scan_npz(path: str | Path, measurement: str = "auto", *, lazy: bool | None = False,
                  options: ReadOptions | None = None) -> Scan:
    """Read and validate a scan NPZ; return a :class:`Scan` holding amplitudes.

    Parameters
    ----------
    path : path to the ``.npz`` file
    measurement : {'auto', 'amplitude', 'intensity'}
        Domain of ``diff3d``; 'auto' follows the rules in the module docstring.
    lazy : bool or None
        Memory-map an uncompressed ``diff3d`` instead of reading it (True), only when it is
        larger than :func:`ptycho.data.lazy.lazy_threshold_bytes` (None), or never (False).
    options : ReadOptions, optional
        Crop, binning, masks, saturation and probe applied on read
        (:mod:`ptycho.data.reading`).

    Raises
    ------
    ptycho.errors.InputError
        One per problem, naming the file and key.
    """
    path = Path(path)
    if measurement not in ("auto", "amplitude", "intensity"):
        raise InputError("invalid value", "--measurement", "auto, amplitude or intensity", measurement)
    reader = NpzReader(path)
    try:
        return read_members(reader, measurement, lazy, options)
    finally:
        reader.close()


def _streamed_patterns(reader, key: str, n_positions: int, lazy: bool | None, square: bool = True
                       ) -> _lazy.StoredArray | None:
    """The stored pattern stack to stream, or None to read it into memory."""
    if lazy is False:
        return None
    stored = reader.stored(key)
    if stored is None:
        if lazy:
            log.warning("%s:%s is compressed and cannot be streamed; reading it into memory",
                        reader.name, key)
        return None
    if not stored.is_pattern_stack(n_positions, square):
        return None  # other layouts and their errors: the in-memory path
    if lazy is None and stored.amplitude_nbytes() <= _lazy.lazy_threshold_bytes():
        return None
    return stored


def read_members(reader: MemberReader, measurement: str, lazy: bool | None = False,
                 options: ReadOptions | None = None) -> Scan:
    """Validate the members of an open scan file (NPZ or HDF5 reader) into a :class:`Scan`.

    ``options`` (:class:`ptycho.data.reading.ReadOptions`) crops and bins the frames
    (:mod:`ptycho.data.detector`; then ``bad_pixels`` may also be raw-detector-sized), adds
    ``--mask``, ``--saturation`` and ``--probe``.
    """
    options = options or ReadOptions()
    name = reader.name
    xcoords = _coords(reader, "xcoords", True)
    ycoords = _coords(reader, "ycoords", True)
    if len(xcoords) != len(ycoords):
        raise InputError("length mismatch", f"{name}:ycoords", f"{len(xcoords)} values like xcoords",
                         f"{len(ycoords)} values")
    if len(xcoords) == 0:
        raise InputError("empty scan", f"{name}:xcoords", "at least one scan position", "0")
    n_positions = len(xcoords)
    _check_duplicate_positions(xcoords, ycoords, f"{name}:xcoords/ycoords")

    diff_key = next((k for k in DIFFRACTION_KEYS if k in reader.keys), None)
    if diff_key is None:
        reader.require("diff3d")
    where = f"{name}:{diff_key}"
    square = options.crop_px is None
    stored = _streamed_patterns(reader, diff_key, n_positions, lazy, square)
    raw = reader.require(diff_key) if stored is None else None
    raw_dtype = raw.dtype if stored is None else stored.dtype
    if raw_dtype.kind == "c":
        raise InputError("complex diffraction", where, "real amplitudes or counts", str(raw_dtype))
    if raw_dtype.kind not in ("i", "u", "f"):
        raise InputError("wrong dtype", where, "a real numeric array", str(raw_dtype))
    if stored is None:
        raw = diffraction_layout(raw, n_positions, where, square)

    file_measurement = reader.get("measurement")
    file_value = None
    if file_measurement is not None:
        file_value = str(file_measurement.reshape(-1)[0]) if file_measurement.size else ""
        if file_value not in ("amplitude", "intensity"):
            raise InputError("invalid value", f"{name}:measurement", "'amplitude' or 'intensity'",
                             repr(file_value))
    domain, reason = resolve_measurement(reader.keys, file_value, raw_dtype, measurement)

    masks = options.masks()
    bad_pixels = reader.get("bad_pixels")
    if bad_pixels is not None:
        if bad_pixels.dtype.kind not in "biuf":
            raise InputError("wrong dtype", f"{name}:bad_pixels", "a boolean or numeric mask",
                             str(bad_pixels.dtype))
        masks.insert(0, (np.asarray(bad_pixels).astype(bool), f"{name}:bad_pixels"))
    geometry = resolve_geometry(options, raw if stored is None else stored,
                                domain == "intensity", masks, where)

    if stored is None:
        if geometry is not None:
            raw = geometry.transform(raw, domain == "intensity")
        check_real_finite(raw, where)
        if raw.dtype.kind in ("i", "f") and np.any(raw < 0):
            bad = int(np.count_nonzero(raw < 0))
            raise InputError("negative values", where, "amplitudes or counts >= 0", f"{bad} negative values")
        if not np.any(raw):
            raise InputError("all-zero patterns", where, "at least one non-zero pattern")
        pattern_shape = raw.shape[1:]
    else:  # streamed: values are checked chunk by chunk
        pattern_shape = (geometry.n,) * 2 if geometry is not None else stored.pattern_shape

    notes: list[str] = []
    modes, probe_where = scan_probe(options, reader.get("probeGuess") if options.probe_file
                                    else reader.require("probeGuess"), f"{name}:probeGuess", notes)
    if modes.shape[-1] != pattern_shape[-1]:
        raise InputError("size mismatch", probe_where,
                         f"a {pattern_shape[-1]}x{pattern_shape[-1]} probe like the patterns",
                         f"{modes.shape[-2]}x{modes.shape[-1]}")
    if stored is not None:
        diffraction = _lazy.LazyPatterns(stored, intensity=domain == "intensity", geometry=geometry)
        _lazy.validate_patterns(diffraction, where)
    elif domain == "intensity":  # chunk by chunk: no float64 copy of the whole stack
        diffraction = np.empty(raw.shape, np.float32)
        for lo, chunk in _lazy.iter_chunks(raw):
            diffraction[lo:lo + len(chunk)] = np.sqrt(chunk.astype(np.float64))
    else:
        diffraction = raw.astype(np.float32, copy=False)
    if stored is None and raw.dtype.itemsize > 4 and not np.all(np.isfinite(diffraction)):
        raise InputError("values out of range", where, "patterns within the float32 range "
                         "(< 3.4e38 after conversion to amplitude)", f"max {np.max(raw):.3g}")
    if domain == "intensity":
        note = f"{name}: diffraction read as intensity (counts) because of {reason}; converted to amplitude"
    else:
        note = f"{name}: diffraction read as amplitude ({reason})"
    if stored is not None:
        note += f"; streamed from disk ({stored.kind})"
    log.info(note)
    notes.append(note)
    if geometry is not None:
        notes.append(f"{name}: {geometry.describe()}")

    xstart = _coords(reader, "xcoords_start", False)
    ystart = _coords(reader, "ycoords_start", False)
    for key, value in (("xcoords_start", xstart), ("ycoords_start", ystart)):
        if value is not None and len(value) != n_positions:
            raise InputError("length mismatch", f"{name}:{key}", f"{n_positions} values like xcoords",
                             f"{len(value)} values")
    scan_index = reader.get("scan_index")
    if scan_index is not None:
        scan_index = np.asarray(scan_index).reshape(-1)
        check_real_finite(scan_index, f"{name}:scan_index", allow_empty=True)
        if len(scan_index) != n_positions:
            raise InputError("length mismatch", f"{name}:scan_index", f"{n_positions} values",
                             f"{len(scan_index)} values")
        scan_index = scan_index.astype(np.int64)

    object_guess = reader.get("objectGuess")
    if object_guess is not None:
        where = f"{name}:objectGuess"
        check_real_finite(object_guess, where, allow_complex=True)
        object_guess = np.squeeze(object_guess)
        if object_guess.ndim != 2:
            raise InputError("wrong shape", where, "a 2-D complex object (H, W)", _describe(object_guess))
        with np.errstate(over="ignore"):
            object_guess = object_guess.astype(np.complex64)
        if not np.all(np.isfinite(object_guess)):
            raise InputError("values out of range", where,
                             "magnitudes within the complex64 range (< 3.4e38)")
        height, width = object_guess.shape
        outside = (xcoords < 0) | (xcoords > width - 1) | (ycoords < 0) | (ycoords > height - 1)
        if np.any(outside):
            first = int(np.flatnonzero(outside)[0])
            raise InputError(
                "positions outside objectGuess", f"{name}:xcoords/ycoords",
                f"0 <= x <= {width - 1} and 0 <= y <= {height - 1} (object pixels)",
                f"{int(outside.sum())} outside, first (x={xcoords[first]:.1f}, y={ycoords[first]:.1f})")

    return Scan(diffraction=diffraction, xcoords=xcoords, ycoords=ycoords, probe=modes[0],
                probe_modes=modes if len(modes) > 1 else None,
                xcoords_start=xstart, ycoords_start=ystart, scan_index=scan_index,
                object_guess=object_guess,
                bad_pixels=None if geometry is None else geometry.bad,
                saturation_counts=options.saturation_counts, measured_domain=domain,
                measured_reason=reason, source=str(reader.path), notes=notes)


def write_scan_npz(path: str | Path, scan: Scan, *, extra: dict | None = None) -> None:
    """Write ``scan`` as a PtychoPINN NPZ (amplitudes in ``diff3d``), atomically.

    ``extra`` adds plain arrays (e.g. simulation metadata); nothing is pickled. The scan's
    ``bad_pixels`` mask is kept (the explicit ``measurement='amplitude'`` keeps the reader from
    taking its presence for a ptychodus export of counts); ``saturation_counts`` is a reading
    option (``--saturation``), not stored.
    """
    arrays = {
        "xcoords": scan.xcoords,
        "ycoords": scan.ycoords,
        "xcoords_start": scan.xcoords_start,
        "ycoords_start": scan.ycoords_start,
        "diff3d": np.asarray(scan.diffraction, np.float32),
        "probeGuess": np.asarray(scan.probe_stack() if scan.probe_modes is not None
                                 else scan.probe, np.complex64),
        "scan_index": scan.scan_index,
        "measurement": np.array("amplitude"),
    }
    if scan.object_guess is not None:
        arrays["objectGuess"] = np.asarray(scan.object_guess, np.complex64)
    if scan.bad_pixels is not None:
        arrays["bad_pixels"] = np.asarray(scan.bad_pixels, bool)
    for key, value in (extra or {}).items():
        arrays[key] = np.asarray(value)
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)

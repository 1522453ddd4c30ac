"""Read and write scans stored in HDF5 (patterns streamed from disk with h5py).

Layout (all datasets at the file root; see ``docs/data-formats.md``)
--------------------------------------------------------------------
Required: ``xcoords``, ``ycoords`` (M,), ``diffraction`` (alias ``diff3d``) (M, N, N) or
(M, N, N, 1), best chunked along M (e.g. ``chunks=(64, N, N)``; (N, N, M) is accepted but
always read into memory), ``probeGuess`` (N, N) or (modes, N, N).
Optional: ``objectGuess`` (H, W), ``xcoords_start``, ``ycoords_start``, ``scan_index`` (M,),
``bad_pixels`` (N, N), and the measurement domain 'amplitude' or 'intensity' as a root
attribute ``measurement`` (or a scalar string dataset of that name).

The same rules as for NPZ apply (:mod:`ptycho.data.npz`): counts (``measurement='intensity'``,
a ``bad_pixels`` dataset or an integer dtype) are converted to amplitudes, and every problem is
one :class:`ptycho.errors.InputError` naming the file and dataset. Patterns larger than
:func:`ptycho.data.lazy.lazy_threshold_bytes` (or all, with ``lazy=True``) stay on disk:
``Scan.diffraction`` is a :class:`ptycho.data.lazy.LazyPatterns` and they are validated chunk
by chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptycho.data import lazy as _lazy
from ptycho.data.npz import DIFFRACTION_KEYS, REQUIRED_KEYS, MemberReader, read_members
from ptycho.data.reading import ReadOptions
from ptycho.data.scan import Scan
from ptycho.errors import InputError, first_line
from ptycho.fileio import atomic_path

HDF5_SUFFIXES = (".h5", ".hdf5")
DEFAULT_CHUNK_PATTERNS = 64


def _as_text(value) -> np.ndarray:
    if isinstance(value, np.ndarray) and value.dtype.kind in ("S", "O") and value.size == 1:
        value = value.reshape(-1)[0]
    if isinstance(value, (bytes, np.bytes_)):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        return np.array(value)
    return np.asarray(value)


def open_hdf5(path: Path, valid: str, file: str | None = None, *, with_type: bool = False,
              max_chars: int | None = None):
    """Open ``path`` read-only with h5py; a file that cannot be opened is one InputError line.

    Parameters
    ----------
    path : Path
    valid : str
        What a readable file is, the ``expected`` of an ``"unreadable HDF5"`` error
        (e.g. ``"a valid HDF5 file"``).
    file : str, optional
        The kind of file with its article (e.g. ``"an HDF5 scan file"``): a missing path is then
        ``"file not found"`` (expected ``"an existing HDF5 scan file"``: the article replaced)
        and a folder ``"not a file"``. Without it (for callers that checked both before) they
        are ``"unreadable HDF5"`` like any other ``OSError``.
    with_type, max_chars
        How the ``OSError`` is quoted (:func:`ptycho.errors.first_line`).

    Returns
    -------
    h5py.File
        Open for reading; use it as a context manager to close it.

    Raises
    ------
    ptycho.errors.InputError
        Missing path, a folder, or not an HDF5 file (truncated, another format, no permission).
    """
    import h5py

    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if file is not None and isinstance(exc, FileNotFoundError):
            raise InputError("file not found", str(path),
                             "an existing " + file.split(" ", 1)[1]) from None
        if file is not None and isinstance(exc, IsADirectoryError):
            raise InputError("not a file", str(path), file, "a directory") from None
        raise InputError("unreadable HDF5", str(path), valid,
                         first_line(exc, with_type=with_type, max_chars=max_chars)) from None


class Hdf5Reader(MemberReader):
    """:class:`ptycho.data.npz.NpzReader`'s interface over the root datasets of an HDF5 file."""

    MEMBER = "dataset"
    EXPECTED = f"the scan HDF5 datasets {', '.join(REQUIRED_KEYS + ('diffraction',))}"

    def __init__(self, path: Path):
        import h5py

        self.path = path
        self.name = path.name
        self._file = open_hdf5(path, "a valid HDF5 file", "an HDF5 scan file")
        self.keys = {key for key, item in self._file.items() if isinstance(item, h5py.Dataset)}
        if "measurement" in self._file.attrs:
            self.keys.add("measurement")

    def get(self, key: str) -> np.ndarray | None:
        if key not in self.keys:
            return None
        try:
            if key == "measurement" and key not in self._file:
                return _as_text(self._file.attrs[key])
            value = self._file[key][()]
        except (OSError, ValueError, TypeError) as exc:
            raise InputError("unreadable dataset", f"{self.name}:{key}", "a readable numeric dataset",
                             first_line(exc)) from None
        return _as_text(value)

    def stored(self, key: str) -> _lazy.StoredArray | None:
        dataset = self._file[key]
        return _lazy.StoredArray(path=str(self.path), dtype=dataset.dtype,
                                 shape=tuple(int(s) for s in dataset.shape), dataset=dataset.name)

    def close(self) -> None:
        self._file.close()


def read_scan_hdf5(path: str | Path, measurement: str = "auto", *, lazy: bool | None = None,
                   options: ReadOptions | None = None) -> Scan:
    """Read and validate an HDF5 scan; return a :class:`Scan` holding amplitudes.

    Parameters
    ----------
    path : path to the HDF5 file
    measurement : {'auto', 'amplitude', 'intensity'}
    lazy : bool or None
        Stream the patterns from disk (True), only when larger than
        :func:`ptycho.data.lazy.lazy_threshold_bytes` (None, the default), or read them into
        memory (False).
    options : ReadOptions, optional
        Crop, binning, masks, saturation and probe applied on read
        (:mod:`ptycho.data.reading`).
    """
    path = Path(path)
    if measurement not in ("auto", "amplitude", "intensity"):
        raise InputError("invalid value", "--measurement", "auto, amplitude or intensity", measurement)
    reader = Hdf5Reader(path)
    try:
        if not any(key in reader.keys for key in DIFFRACTION_KEYS):
            reader.require("diffraction")
        return read_members(reader, measurement, lazy, options)
    finally:
        reader.close()  # a streamed stack reopens the file itself


def write_scan_hdf5(path: str | Path, scan: Scan, *, chunk_patterns: int = DEFAULT_CHUNK_PATTERNS,
                    compression: str | None = None, dtype=np.float32) -> Path:
    """Write ``scan`` in the HDF5 layout (amplitudes in ``diffraction``), atomically.

    Patterns are copied chunk by chunk, so a streamed scan is never loaded whole.

    Parameters
    ----------
    chunk_patterns : int
        Patterns per HDF5 chunk (chunks are ``(chunk_patterns, N, N)``).
    compression : str, optional
        h5py compression filter (e.g. 'gzip'); None stores raw chunks (fastest to stream).
    dtype : float dtype of the stored amplitudes
    """
    import h5py

    path = Path(path)
    count, n = scan.n_positions, scan.N
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.attrs["measurement"] = "amplitude"
            for key, value in (("xcoords", scan.xcoords), ("ycoords", scan.ycoords),
                               ("xcoords_start", scan.xcoords_start),
                               ("ycoords_start", scan.ycoords_start),
                               ("scan_index", scan.scan_index)):
                handle.create_dataset(key, data=np.asarray(value))
            handle.create_dataset("probeGuess", data=np.asarray(scan.probe_stack(), np.complex64)
                                  if scan.probe_modes is not None
                                  else np.asarray(scan.probe, np.complex64))
            if scan.object_guess is not None:
                handle.create_dataset("objectGuess", data=np.asarray(scan.object_guess, np.complex64))
            if scan.bad_pixels is not None:
                handle.create_dataset("bad_pixels", data=np.asarray(scan.bad_pixels, bool))
            chunks = (max(1, min(chunk_patterns, count)), n, n)
            dataset = handle.create_dataset("diffraction", shape=(count, n, n), dtype=dtype,
                                            chunks=chunks, compression=compression)
            for lo, block in _lazy.iter_chunks(scan.diffraction):
                dataset[lo:lo + len(block)] = block.astype(dtype, copy=False)
    return path

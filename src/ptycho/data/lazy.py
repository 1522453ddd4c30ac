"""Out-of-core pattern stacks: HDF5 datasets and memory-mapped NPZ members, read in chunks.

A scan whose patterns do not fit in memory keeps them on disk. :class:`LazyPatterns` stands in
for the ``(M, N, N)`` float32 amplitude array of :class:`ptycho.data.scan.Scan`: it has
``shape``, ``dtype``, ``ndim`` and ``len``, and indexing it (an integer, a slice or an index
array, in any order and with repeats) reads only the selected patterns and converts them from
counts to amplitudes when the file holds intensities. ``np.asarray`` materialises the whole
stack (avoid it for large scans). Everything that needs all patterns (validation, the mean
photon count, the dataset normalisation) goes through :func:`iter_chunks` /
:func:`pattern_power`, which read at most about :data:`CHUNK_BYTES` at a time.

Two storage kinds are supported (see ``docs/data-formats.md``):

* an HDF5 dataset (read with h5py; the file is reopened after ``fork`` and when unpickled);
* the raw bytes of an uncompressed ``.npy`` member of an NPZ written by ``np.savez`` (not
  ``np.savez_compressed``), memory-mapped at the member's data offset inside the zip file.

Readers (:func:`ptycho.data.io.read_scan`) stream a stack whose float32 amplitudes would take
more than :func:`lazy_threshold_bytes` (512 MiB, environment variable
``PTYCHOPINN_LAZY_BYTES``) and read smaller ones into memory.
"""

from __future__ import annotations

import logging
import os
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ptycho.errors import InputError

log = logging.getLogger(__name__)

LAZY_THRESHOLD_ENV = "PTYCHOPINN_LAZY_BYTES"
DEFAULT_LAZY_THRESHOLD_BYTES = 512 * 2**20
CHUNK_BYTES = 64 * 2**20
"""Float64 bytes per chunk of patterns processed at once (2048 patterns at N=64)."""
HDF5_CACHE_BYTES = 32 * 2**20


def lazy_threshold_bytes() -> int:
    """Float32 size above which readers stream patterns (``PTYCHOPINN_LAZY_BYTES`` overrides)."""
    value = os.environ.get(LAZY_THRESHOLD_ENV)
    if not value:
        return DEFAULT_LAZY_THRESHOLD_BYTES
    try:
        return int(float(value))
    except ValueError:
        raise InputError("invalid value", LAZY_THRESHOLD_ENV, "a number of bytes", value) from None


def chunk_length(pattern_shape, itemsize: int = 8, budget: int | None = None) -> int:
    """Patterns per chunk so that one chunk of ``itemsize``-byte values fits ``budget``
    (default :data:`CHUNK_BYTES`)."""
    per_pattern = max(1, int(np.prod(pattern_shape, dtype=np.int64)) * itemsize)
    return max(1, (budget or CHUNK_BYTES) // per_pattern)


def iter_chunks(patterns, length: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, patterns[start:start + length])`` as ndarrays along the first axis."""
    total = int(patterns.shape[0])
    length = length or chunk_length(patterns.shape[1:])
    for lo in range(0, total, length):
        yield lo, np.asarray(patterns[lo:lo + length])


def pattern_power(patterns) -> np.ndarray:
    """``sum_xy pattern**2`` of every pattern, float64 (M,), computed chunk by chunk.

    Gives the same values as ``np.square(patterns, dtype=np.float64).sum(axis=(-2, -1))``
    without a float64 copy of the whole stack; lazy stacks cache the result.
    """
    cached = getattr(patterns, "pattern_power", None)
    if callable(cached):
        return cached()
    if not isinstance(patterns, np.ndarray) or patterns.ndim != 3:
        patterns = np.asarray(patterns)
        if patterns.ndim != 3:
            return np.square(patterns, dtype=np.float64).sum(axis=(-2, -1)).reshape(-1)
    power = np.empty(patterns.shape[0], np.float64)
    for lo, chunk in iter_chunks(patterns):
        power[lo:lo + len(chunk)] = np.square(chunk, dtype=np.float64).sum(axis=(-2, -1))
    return power


@dataclass(frozen=True)
class StoredArray:
    """Where a raw pattern stack lives on disk (picklable; opened on demand).

    Attributes
    ----------
    path : str
    dtype : numpy dtype of the stored values
    shape : tuple, the stored shape ((M, N, N) or (M, N, N, 1))
    dataset : str or None
        HDF5 dataset path; None for raw bytes at ``offset`` (a memory map).
    offset : int
        Byte offset of the data in the file (memory maps).
    fortran_order : bool
        Column-major ``.npy`` data.
    """

    path: str
    dtype: np.dtype
    shape: tuple
    dataset: str | None = None
    offset: int = 0
    fortran_order: bool = False

    @property
    def kind(self) -> str:
        return "hdf5" if self.dataset is not None else "memmap"

    @property
    def pattern_shape(self) -> tuple:
        return tuple(self.shape[1:3])

    def is_pattern_stack(self, n_positions: int, square: bool = True) -> bool:
        """True for an (M, N, N) or (M, N, N, 1) layout with M = ``n_positions``, N > 0
        (with ``square=False`` also (M, H, W): frames to be cropped)."""
        shape = self.shape
        if len(shape) == 4 and shape[-1] == 1:
            shape = shape[:3]
        return (len(shape) == 3 and shape[0] == n_positions and shape[1] > 0 and shape[2] > 0
                and (shape[1] == shape[2] or not square))

    def amplitude_nbytes(self) -> int:
        """Bytes of the whole stack as float32 amplitudes."""
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def open(self):
        """Return ``(array, keepalive)``: an h5py Dataset (and its File) or a read-only memmap."""
        if self.dataset is None:
            order = "F" if self.fortran_order else "C"
            return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset,
                             shape=self.shape, order=order), None
        import h5py

        handle = h5py.File(self.path, "r", rdcc_nbytes=HDF5_CACHE_BYTES)
        return handle[self.dataset], handle


class LazyPatterns:
    """Read-only (M, N, N) float32 amplitude stack backed by a :class:`StoredArray`.

    Parameters
    ----------
    stored : StoredArray
    intensity : bool
        The file holds counts: selections are converted with ``sqrt`` (in float64, like the
        in-memory reader, so both give identical amplitudes).
    geometry : ptycho.data.detector.FrameGeometry, optional
        Crop, binning and bad pixels applied to every frame as it is read (then the stack is
        (M, N, N) with the geometry's N, and :meth:`read_raw` returns transformed values).
    """

    dtype = np.dtype(np.float32)
    ndim = 3

    def __init__(self, stored: StoredArray, *, intensity: bool, geometry=None):
        self.stored = stored
        self.intensity = bool(intensity)
        self.geometry = geometry
        self.shape = tuple(int(s) for s in stored.shape[:1])
        self.shape += ((geometry.n, geometry.n) if geometry is not None
                       else tuple(int(s) for s in stored.shape[1:3]))
        self._chunk = chunk_length(stored.shape[1:3])
        self._squeeze = len(stored.shape) == 4
        self._power: np.ndarray | None = None
        self._handle = None
        self._pid: int | None = None

    def __repr__(self) -> str:
        domain = "intensity" if self.intensity else "amplitude"
        return (f"LazyPatterns({self.stored.kind} {self.stored.path!r}, shape={self.shape}, "
                f"stored {self.stored.dtype} {domain})")

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    # -- storage ----------------------------------------------------------------------------

    def _source(self):
        if self._handle is None or self._pid != os.getpid():
            self._handle = self.stored.open()
            self._pid = os.getpid()
        return self._handle[0]

    def close(self) -> None:
        """Close the HDF5 file (it is reopened on the next read)."""
        if self._handle is not None and self._handle[1] is not None and self._pid == os.getpid():
            self._handle[1].close()
        self._handle = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state

    def _frames(self, raw: np.ndarray) -> np.ndarray:
        raw = raw[..., 0] if self._squeeze else raw
        return raw if self.geometry is None else self.geometry.transform(raw, self.intensity)

    def read_raw(self, start: int, stop: int) -> np.ndarray:
        """Stored values of patterns ``start:stop`` (no conversion to amplitude; cropped and
        binned by the geometry), shape (n, N, N)."""
        return self._frames(np.asarray(self._source()[start:stop]))

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Stored values of the patterns ``rows`` (1-D, in range, any order, repeats allowed)."""
        source = self._source()
        if len(rows) == 0:
            raw = np.empty((0,) + tuple(source.shape[1:]), source.dtype)
        elif isinstance(source, np.ndarray):
            raw = source[rows]
        else:
            unique, inverse = np.unique(rows, return_inverse=True)
            lo, hi = int(unique[0]), int(unique[-1]) + 1
            if hi - lo <= 2 * len(unique) + 64:  # dense selection: one contiguous read
                raw = source[lo:hi][unique - lo]
            else:  # sparse: read each contiguous run (h5py needs increasing indices)
                breaks = np.flatnonzero(np.diff(unique) != 1) + 1
                runs = np.split(unique, breaks)
                raw = np.concatenate([source[int(run[0]):int(run[-1]) + 1] for run in runs])
            if len(unique) != len(rows) or np.any(unique != rows):
                raw = raw[inverse.reshape(-1)]
        return self._frames(np.asarray(raw))

    def convert(self, raw: np.ndarray) -> np.ndarray:
        """Stored values -> float32 amplitudes (a new in-memory array)."""
        if self.intensity:
            with np.errstate(invalid="ignore"):
                return np.sqrt(raw.astype(np.float64)).astype(np.float32)
        return np.array(raw, np.float32)

    # -- array protocol ---------------------------------------------------------------------

    def __getitem__(self, key):
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        count = self.shape[0]
        if first is Ellipsis:
            first, rest = slice(None), (Ellipsis, *rest)
        if isinstance(first, (int, np.integer)):
            index = int(first)
            if not -count <= index < count:
                raise IndexError(f"index {index} is out of bounds for {count} patterns")
            index %= count
            result = self.convert(self.read_raw(index, index + 1))[0]
            lead = 0
        elif isinstance(first, slice):
            start, stop, step = first.indices(count)
            if step == 1:
                result = self.convert(self.read_raw(start, max(start, stop)))
            else:
                result = self.convert(self._read_rows(np.arange(start, stop, step)))
            lead = 1
        else:
            index = np.asarray(first)
            if index.dtype == bool:
                if index.shape != (count,):
                    raise IndexError(f"boolean index of shape {index.shape} for {count} patterns")
                index = np.flatnonzero(index)
            if index.dtype.kind not in "iu":
                raise IndexError(f"patterns are indexed by integers, not {index.dtype}")
            flat = index.reshape(-1).astype(np.int64)
            if flat.size and (flat.min() < -count or flat.max() >= count):
                raise IndexError(f"index out of bounds for {count} patterns")
            flat = np.where(flat < 0, flat + count, flat)
            result = self.convert(self._read_rows(flat)).reshape(index.shape + self.shape[1:])
            lead = index.ndim
        if rest:
            result = result[(slice(None),) * lead + tuple(rest)]
        return result

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, np.float32)
        for lo in range(0, self.shape[0], self._chunk):
            hi = min(lo + self._chunk, self.shape[0])
            out[lo:hi] = self.convert(self.read_raw(lo, hi))
        return out if dtype is None else out.astype(dtype, copy=False)

    def pattern_power(self) -> np.ndarray:
        """``sum_xy amplitude**2`` of every pattern, float64 (M,), cached."""
        if self._power is None:
            power = np.empty(self.shape[0], np.float64)
            for lo in range(0, self.shape[0], self._chunk):
                hi = min(lo + self._chunk, self.shape[0])
                amplitude = self.convert(self.read_raw(lo, hi))
                power[lo:hi] = np.square(amplitude, dtype=np.float64).sum(axis=(-2, -1))
            self._power = power
        return self._power


def validate_patterns(patterns: LazyPatterns, where: str) -> None:
    """Check a stored stack chunk by chunk (finite, >= 0, not all zero) and cache its power.

    Raises the same :class:`InputError` messages as the in-memory reader.
    """
    kind = patterns.stored.dtype.kind
    count = patterns.shape[0]
    length = patterns._chunk
    non_finite = negative = 0
    any_nonzero = False
    power = np.empty(count, np.float64)
    for lo in range(0, count, length):
        hi = min(lo + length, count)
        raw = patterns.read_raw(lo, hi)
        if kind == "f":
            non_finite += int(raw.size - np.count_nonzero(np.isfinite(raw)))
        if kind in ("i", "f"):
            negative += int(np.count_nonzero(raw < 0))
        any_nonzero = any_nonzero or bool(np.any(raw))
        power[lo:hi] = np.square(patterns.convert(raw), dtype=np.float64).sum(axis=(-2, -1))
    if non_finite:
        raise InputError("non-finite values", where, "finite numbers", f"{non_finite} NaN/Inf values")
    if negative:
        raise InputError("negative values", where, "amplitudes or counts >= 0",
                         f"{negative} negative values")
    if not any_nonzero:
        raise InputError("all-zero patterns", where, "at least one non-zero pattern")
    patterns._power = power


def npz_member(path, key: str) -> StoredArray | None:
    """The uncompressed ``.npy`` member ``key`` of an NPZ as a memory-mappable StoredArray.

    Returns None when the member is compressed (``np.savez_compressed``), encrypted, holds
    objects or is not a plain ``.npy`` (the caller then reads it into memory as usual).
    """
    path = str(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            member = key + ".npy" if key + ".npy" in names else key
            info = archive.getinfo(member)
    except (KeyError, OSError, zipfile.BadZipFile):
        return None
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return None
    try:
        with open(path, "rb") as handle:
            handle.seek(info.header_offset)
            local = handle.read(30)
            if len(local) < 30 or local[:4] != b"PK\x03\x04":
                return None
            name_len, extra_len = struct.unpack("<HH", local[26:30])
            start = info.header_offset + 30 + name_len + extra_len
            handle.seek(start)
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                return None
            offset = handle.tell()
    except (OSError, ValueError):
        return None
    if dtype.hasobject or dtype.kind not in "iuf":
        return None
    data_bytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offset - start + data_bytes > info.file_size:
        return None
    return StoredArray(path=path, dtype=dtype, shape=tuple(int(s) for s in shape), offset=offset,
                       fortran_order=bool(fortran_order))

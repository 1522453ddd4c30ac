"""Read a scan from any supported file: NPZ (:mod:`ptycho.data.npz`), HDF5
(:mod:`ptycho.data.hdf5`) or CXI (:mod:`ptycho.data.cxi`).

Large pattern stacks (uncompressed NPZ members, HDF5 datasets) are streamed from disk when
they exceed :func:`ptycho.data.lazy.lazy_threshold_bytes`; see ``docs/data-formats.md``.
"""

from __future__ import annotations

from pathlib import Path

from ptycho.data.reading import ReadOptions
from ptycho.data.scan import Scan

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def is_hdf5(path: str | Path) -> bool:
    """True for a ``.h5``/``.hdf5`` name or a file starting with the HDF5 signature."""
    from ptycho.data.hdf5 import HDF5_SUFFIXES

    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES:
        return True
    if path.suffix.lower() == ".npz" or not path.is_file():
        return False
    try:
        with open(path, "rb") as handle:
            return handle.read(len(HDF5_MAGIC)) == HDF5_MAGIC
    except OSError:
        return False


def open_scan_reader(path: str | Path):
    """The member reader of a scan file: :class:`ptycho.data.hdf5.Hdf5Reader` or
    :class:`ptycho.data.npz.NpzReader` (``keys``, ``get``, ``require``, ``stored``); call its
    ``close()`` when done."""
    if is_hdf5(path):
        from ptycho.data.hdf5 import Hdf5Reader

        return Hdf5Reader(Path(path))
    from ptycho.data.npz import NpzReader

    return NpzReader(Path(path))


def read_scan(path: str | Path, measurement: str = "auto", *, lazy: bool | None = None,
              options: ReadOptions | None = None) -> Scan:
    """Read and validate a scan file (NPZ, HDF5 or CXI, by suffix or content).

    Parameters
    ----------
    path : path to a ``.npz``, ``.h5``, ``.hdf5`` or ``.cxi`` scan
    measurement : {'auto', 'amplitude', 'intensity'}
        What the stored patterns are (see :mod:`ptycho.data.npz`).
    lazy : bool or None
        Stream the patterns from disk: always (True), when the stack is larger than
        :func:`ptycho.data.lazy.lazy_threshold_bytes` (None, default), never (False).
        Compressed NPZ members are always read into memory.
    options : ReadOptions, optional
        Detector crop and binning, masks, saturation, probe file, CXI translation axes
        (:mod:`ptycho.data.reading`); the defaults read the file as it is.
    """
    from ptycho.data.cxi import is_cxi

    if is_cxi(path):
        from ptycho.data.cxi import read_scan_cxi

        return read_scan_cxi(path, measurement, lazy=lazy, options=options)
    if is_hdf5(path):
        from ptycho.data.hdf5 import read_scan_hdf5

        return read_scan_hdf5(path, measurement, lazy=lazy, options=options)
    from ptycho.data.npz import read_scan_npz

    return read_scan_npz(path, measurement, lazy=lazy, options=options)

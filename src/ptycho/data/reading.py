"""Options applied while reading a scan, and the mask and probe files they name.

:class:`ReadOptions` is what the command-line reading flags (``ptycho.cli.reading``) become and
what :func:`ptycho.data.io.read_scan` passes to every reader (NPZ, HDF5, CXI):

- detector geometry (``--crop``, ``--bin``, ``--detector-centre``; :mod:`ptycho.data.detector`),
- bad pixels from ``--mask FILE`` (combined with the scan's own mask into ``Scan.bad_pixels``),
- ``--saturation COUNTS`` (carried as ``Scan.saturation_counts``),
- ``--probe FILE`` (replaces the scan's probe; :func:`read_probe_modes`),
- ``--translation-axes`` (CXI only: how the sample translation maps to object x and y).

Every invalid value raises :class:`ptycho.errors.InputError` naming the flag.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from numbers import Integral
from pathlib import Path

import numpy as np

from ptycho.errors import InputError, first_line

log = logging.getLogger(__name__)

#: CXI paths (also looked up in --mask / --probe files that are CXI files).
CXI_MASK = "entry_1/instrument_1/detector_1/mask"
CXI_PROBE = "entry_1/instrument_1/source_1/probe"
MASK_KEYS = ("mask", "bad_pixels", CXI_MASK)
PROBE_KEYS = ("probeGuess", "probe", CXI_PROBE)
DEFAULT_TRANSLATION_AXES = "-x,-y"


def parse_translation_axes(spec: str) -> np.ndarray:
    """The (2, 2) matrix taking the sample translation ``(t_x, t_y)`` to the beam position
    ``(x, y)`` on the object (x = column, y = row), from ``"X,Y"``.

    Each of X and Y is one of ``x``, ``y``, ``-x``, ``-y`` (``+x``, ``+y`` also accepted) and
    names the translation component (with its sign) that gives the object x (column) and y
    (row); both components must be used once. The CXI convention is ``-x,-y`` (the beam
    moves opposite to the sample); ``-y,-x`` transposes, ``x,-y`` flips x, and so on.
    """
    parts = [part.strip().lower() for part in str(spec).split(",")]
    axes = [part.lstrip("+-") for part in parts]
    if len(parts) != 2 or sorted(axes) != ["x", "y"] or any(p.count("-") + p.count("+") > 1
                                                            or p[-1] not in "xy" for p in parts):
        raise InputError("invalid value", "--translation-axes",
                         "X,Y: each of x, y, -x, -y, both axes once (CXI default: -x,-y)",
                         repr(spec))
    matrix = np.zeros((2, 2))
    for row, part in enumerate(parts):
        matrix[row, "xy".index(part[-1])] = -1.0 if part.startswith("-") else 1.0
    return matrix


@dataclass(frozen=True)
class ReadOptions:
    """How to read a scan file (all optional; the defaults read it as it is).

    Attributes
    ----------
    crop_px : int or None
        ``--crop C``: cut a C x C window (raw detector pixels) around the beam centre.
    bin_factor : int
        ``--bin K``: sum K x K pixels (after cropping); the patterns are N = C / K.
    centre_px : (row, col) float or None
        ``--detector-centre ROW,COL``: beam centre in raw detector pixels (default: the centre
        of mass of the mean frame).
    mask_file : str or None
        ``--mask FILE``: bad pixels (nonzero = bad), (H, W) raw detector or (N, N).
    saturation_counts : float or None
        ``--saturation COUNTS``: pixels at or above it are excluded in that pattern.
    probe_file : str or None
        ``--probe FILE``: probe guess (.npy, .npz, HDF5, CXI or a ptychodus product).
    translation_axes : str
        ``--translation-axes X,Y`` (CXI only): see :func:`parse_translation_axes`.

    Raises
    ------
    ptycho.errors.InputError
        On construction, for a value out of range (naming the flag).
    """

    crop_px: int | None = None
    bin_factor: int = 1
    centre_px: tuple[float, float] | None = None
    mask_file: str | None = None
    saturation_counts: float | None = None
    probe_file: str | None = None
    translation_axes: str = DEFAULT_TRANSLATION_AXES

    def __post_init__(self) -> None:
        if self.crop_px is not None and not (isinstance(self.crop_px, Integral)
                                             and self.crop_px >= 2):
            raise InputError("invalid value", "--crop", "a window side in detector pixels >= 2",
                             str(self.crop_px))
        if not (isinstance(self.bin_factor, Integral) and self.bin_factor >= 1):
            raise InputError("invalid value", "--bin", "an integer binning factor >= 1",
                             str(self.bin_factor))
        if self.centre_px is not None and (len(self.centre_px) != 2 or not all(
                math.isfinite(v) for v in self.centre_px)):
            raise InputError("invalid value", "--detector-centre",
                             "ROW,COL: two finite numbers in detector pixels", str(self.centre_px))
        if self.saturation_counts is not None and not (math.isfinite(self.saturation_counts)
                                                       and self.saturation_counts > 0):
            raise InputError("invalid value", "--saturation", "a count level > 0",
                             str(self.saturation_counts))
        parse_translation_axes(self.translation_axes)

    def masks(self) -> list[tuple[np.ndarray, str]]:
        """``[(mask, where)]`` of ``--mask`` (bool, True = bad), or ``[]``."""
        if self.mask_file is None:
            return []
        return [read_mask_file(self.mask_file)]


def parse_centre(text: str) -> tuple[float, float]:
    """``"ROW,COL"`` -> ``(row, col)`` floats (``--detector-centre``)."""
    parts = str(text).split(",")
    try:
        values = tuple(float(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 2 or not all(math.isfinite(v) for v in values):
        raise InputError("invalid value", "--detector-centre",
                         "ROW,COL: two finite numbers in detector pixels", repr(text))
    return values


def _open_array(path: Path, keys: tuple[str, ...], kind: str) -> tuple[np.ndarray, str]:
    """The first of ``keys`` (else the only array) of a .npy, .npz or HDF5 file, and its
    ``file:key`` name for messages."""
    from ptycho.data.io import is_hdf5

    expected = f"an existing {kind} file (.npy, .npz, .h5 or .cxi)"
    if not path.exists():
        raise InputError("file not found", str(path), expected)
    if path.is_dir():
        raise InputError("not a file", str(path), expected, "a directory")
    if path.suffix.lower() == ".npy":
        try:
            return np.load(path, allow_pickle=False), path.name
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise InputError("pickled object array", path.name,
                                 "a plain numeric array (pickles are never loaded)") from None
            raise InputError("unreadable file", str(path), f"a {kind} .npy array",
                             first_line(exc)) from None
        except (OSError, EOFError) as exc:
            raise InputError("unreadable file", str(path), f"a {kind} .npy array",
                             type(exc).__name__) from None
    if path.suffix.lower() == ".cxi" or is_hdf5(path):
        return _hdf5_array(path, keys, kind)
    from ptycho.data.npz import NpzReader

    reader = NpzReader(path)
    try:
        key = next((k for k in keys if k in reader.keys), None)
        if key is None and len(reader.keys) == 1:
            key = next(iter(reader.keys))
        if key is None:
            raise InputError("missing key", f"{path.name}:{keys[0]}",
                             f"the {kind} as one of the keys {', '.join(keys[:2])} (or the only "
                             "array)", f"keys {sorted(reader.keys)}")
        return reader.get(key), f"{path.name}:{key}"
    finally:
        reader.close()


def _hdf5_array(path: Path, keys: tuple[str, ...], kind: str) -> tuple[np.ndarray, str]:
    import h5py

    from ptycho.data.hdf5 import open_hdf5

    with open_hdf5(path, f"a valid HDF5 {kind} file") as handle:
        key = next((k for k in keys if isinstance(handle.get(k), h5py.Dataset)), None)
        if key is None:
            raise InputError("missing dataset", f"{path.name}:{keys[0]}",
                             f"the {kind} as one of the datasets {', '.join(keys)}",
                             f"root items {sorted(handle.keys())}")
        try:
            return np.asarray(handle[key][()]), f"{path.name}:{key}"
        except (OSError, ValueError, TypeError) as exc:
            raise InputError("unreadable dataset", f"{path.name}:{key}", "a readable numeric dataset",
                             first_line(exc)) from None


def read_mask_file(path) -> tuple[np.ndarray, str]:
    """A bad-pixel mask file: ``(mask, where)``, mask (H, W) bool with True = bad.

    The file is a ``.npy`` array, an ``.npz`` or HDF5 file holding ``mask`` or ``bad_pixels``
    (or a single array), or a CXI file (its ``entry_1/instrument_1/detector_1/mask``); any
    nonzero value marks a bad pixel.
    """
    array, where = _open_array(Path(path), MASK_KEYS, "bad-pixel mask")
    if array.dtype.kind not in "biuf":
        raise InputError("wrong dtype", where, "a boolean or numeric mask (nonzero = bad)",
                         str(array.dtype))
    if array.ndim != 2:
        raise InputError("wrong shape", where, "a 2-D mask (H, W) or (N, N)",
                         f"{array.dtype} array of shape {tuple(array.shape)}")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        raise InputError("non-finite values", where, "finite numbers (nonzero = bad)",
                         f"{int(np.count_nonzero(~np.isfinite(array)))} NaN/Inf values")
    return array != 0, where


def read_probe_modes(path) -> tuple[np.ndarray, str]:
    """A probe file: ``(modes, where)``, modes (modes, N, N) or (N, N) as stored (unchecked).

    Accepted: a ``.npy`` array; an ``.npz`` or HDF5 file holding ``probeGuess`` or ``probe``
    (or a single array); a CXI file (``entry_1/instrument_1/source_1/probe``); a ptychodus
    product (``.h5``/``.hdf5``/``.npz`` with ``probe_position_x_m``: its probe modes of OPR
    component 0). The readers keep every mode (:func:`scan_probe`).
    """
    path = Path(path)
    if _is_product(path):
        from ptycho.data.products import read_product

        return np.asarray(read_product(path).probe_modes), f"{path.name}:probe"
    return _open_array(path, PROBE_KEYS, "probe")


def _is_product(path: Path) -> bool:
    """A ptychodus product file (``probe_position_x_m`` present)."""
    import zipfile

    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in (".npz", ".h5", ".hdf5"):
        return False
    if suffix == ".npz":
        try:
            with zipfile.ZipFile(path) as archive:
                return "probe_position_x_m.npy" in archive.namelist()
        except (zipfile.BadZipFile, OSError):
            return False
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return "probe_position_x_m" in handle
    except OSError:
        return False


def scan_probe(options: ReadOptions | None, stored, where: str, notes: list[str]
               ) -> tuple[np.ndarray, str]:
    """The probe of a scan being read and where it came from (for messages).

    ``--probe FILE`` when given, else the file's own ``stored`` array found at ``where``
    (None: missing, an InputError at ``where``); every mode, complex64 (K, N, N) with K = 1
    for a single-mode probe (:func:`ptycho.data.npz.probe_mode_stack`): the scan's ``probe``
    is mode 0 and its ``probe_modes`` all K when K > 1.
    """
    from ptycho.data.npz import probe_mode_stack

    if options is not None and options.probe_file is not None:
        modes, where = read_probe_modes(options.probe_file)
        notes.append(f"probe from --probe {where}")
    elif stored is None:
        raise InputError("missing dataset", where, "a probe guess in the file or --probe FILE")
    else:
        modes = stored
    return probe_mode_stack(modes, where, notes), where

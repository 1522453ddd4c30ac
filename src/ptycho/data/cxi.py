"""Read (and write) ptychography scans in the CXI format (Coherent X-ray Imaging, HDF5).

Mapping (``docs/data-formats.md``)
----------------------------------
- frames: ``entry_1/data_1/data`` (else ``entry_1/instrument_1/detector_1/data``), (M, H, W)
  detector counts (integer or float), converted to amplitudes with ``sqrt`` like the other
  readers' counts; ``--measurement amplitude`` says they are amplitudes already.
- positions: ``entry_1/sample_1/geometry_1/translation`` (M, 3) (or (M, 2)) in metres is the
  sample's translation, so the beam's position on the object is its negative: object column
  ``x = -t_x / dx_col``, row ``y = -t_y / dx_row`` (``--translation-axes`` flips or transposes
  for instruments with other conventions). The origin of the object pixel coordinates is the
  zero of the translation (positions may be negative).
- object pixel size: ``dx = wavelength * distance / (C * p)`` with C the window side in raw
  detector pixels (= N x K after ``--crop``/``--bin``) and p the raw detector pixel
  (``x_pixel_size`` for columns, ``y_pixel_size`` for rows), i.e. wavelength x distance /
  (N x binned detector pixel); wavelength = h c / E.
- ``entry_1/instrument_1/detector_1/distance`` (m), ``x_pixel_size``/``y_pixel_size`` (m),
  ``entry_1/instrument_1/source_1/energy`` (J, as CXI specifies: 8 keV is 1.28e-15 J).
- ``entry_1/instrument_1/detector_1/mask`` (H, W) (optional): nonzero = do not use; becomes
  ``Scan.bad_pixels`` with ``--mask`` (:mod:`ptycho.data.detector`).
- probe: ``entry_1/instrument_1/source_1/probe`` ((modes,) N, N) complex on the final N x N
  grid, or ``--probe FILE``. Every mode is kept (as by the NPZ and HDF5 readers): mode 0 is
  ``Scan.probe``, a stack of K > 1 modes also ``Scan.probe_modes``.
- ground truth (simulated scans, ptychopinn-specific): ``entry_1/sample_1/ptychopinn_truth/
  object`` (H, W) complex becomes ``Scan.object_guess`` (what ``evaluate`` and ``infer`` score
  against); its pixels are object pixels of the positions read with the default
  ``--translation-axes``.

Large stacks stream from disk like HDF5 scans (:mod:`ptycho.data.lazy`): each frame is
cropped and binned as it is read, the raw stack is never held in memory.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ptycho.data import lazy as _lazy
from ptycho.data.detector import resolve_geometry
from ptycho.data.hdf5 import open_hdf5
from ptycho.data.npz import _check_duplicate_positions, check_real_finite
from ptycho.data.reading import CXI_MASK, CXI_PROBE, ReadOptions, parse_translation_axes, scan_probe
from ptycho.data.scan import Scan
from ptycho.errors import InputError, first_line
from ptycho.fileio import atomic_path

log = logging.getLogger(__name__)

CXI_SUFFIXES = (".cxi",)
DATA_PATHS = ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data")
TRANSLATION = "entry_1/sample_1/geometry_1/translation"
DETECTOR = "entry_1/instrument_1/detector_1"
DISTANCE = f"{DETECTOR}/distance"
X_PIXEL_SIZE = f"{DETECTOR}/x_pixel_size"
Y_PIXEL_SIZE = f"{DETECTOR}/y_pixel_size"
ENERGY = "entry_1/instrument_1/source_1/energy"
#: ptychopinn-specific group of a simulated scan's ground truth (not part of CXI):
#: ``object`` (H, W) complex64 on the object-pixel grid of the positions read (its pixel (0, 0)
#: is object pixel (0, 0), the translation's zero), ``probe`` (modes, N, N) complex64, and
#: ``xcoords_px``/``ycoords_px`` (M,) float64 exact positions.
TRUTH = "entry_1/sample_1/ptychopinn_truth"
TRUTH_OBJECT = f"{TRUTH}/object"

#: Plausible ranges of the scalars (a value outside is almost surely in other units).
_RANGES = {
    DISTANCE: (1e-4, 1e3, "a sample-detector distance in metres"),
    X_PIXEL_SIZE: (1e-8, 1e-2, "a detector pixel size in metres (e.g. 7.5e-05)"),
    Y_PIXEL_SIZE: (1e-8, 1e-2, "a detector pixel size in metres (e.g. 7.5e-05)"),
    ENERGY: (1e-19, 1e-12, "a photon energy in joules, as CXI specifies (8 keV = 1.28e-15 J)"),
}


def wavelength_m(energy_J: float) -> float:
    """Photon wavelength (m) of a photon energy in joules: ``h c / E``."""
    from scipy.constants import c, h

    return h * c / energy_J


def object_pixel_size_m(wavelength: float, distance_m: float, window_px: int,
                        detector_pixel_m: float) -> float:
    """Object pixel size (m) of a far-field pattern: ``wavelength * distance / (C * p)``.

    ``window_px`` is the pattern side C in raw detector pixels (N x K after binning by K) and
    ``detector_pixel_m`` the raw detector pixel p; equivalently N and the binned pixel K p.
    """
    return wavelength * distance_m / (window_px * detector_pixel_m)


def is_cxi(path: str | Path) -> bool:
    """True for a ``.cxi`` name, or an HDF5 file with an ``entry_1`` group and no root
    ``xcoords`` (a CXI file under another suffix)."""
    path = Path(path)
    if path.suffix.lower() in CXI_SUFFIXES:
        return True
    if path.suffix.lower() == ".npz" or not path.is_file():
        return False
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return "entry_1" in handle and "xcoords" not in handle
    except OSError:
        return False


def _dataset(handle, key: str, name: str, expected: str, required: bool = True):
    """The h5py Dataset at ``key`` (None when absent and not ``required``)."""
    import h5py

    item = handle.get(key)
    if item is None:
        if not required:
            return None
        parent = key.rsplit("/", 1)[0]
        while parent and not isinstance(handle.get(parent), h5py.Group):
            parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
        group = handle[parent] if parent else handle
        raise InputError("missing dataset", f"{name}:{key}", expected,
                         f"items in {parent or '/'}: {sorted(group.keys())}")
    if not isinstance(item, h5py.Dataset):
        raise InputError("not a dataset", f"{name}:{key}", expected, type(item).__name__)
    return item


def _read(dataset, name: str) -> np.ndarray:
    try:
        return np.asarray(dataset[()])
    except (OSError, ValueError, TypeError) as exc:
        raise InputError("unreadable dataset", f"{name}:{dataset.name.lstrip('/')}",
                         "a readable numeric dataset", first_line(exc, max_chars=200)) from None


def _scalar(handle, key: str, name: str) -> float:
    """A positive scalar in its plausible range (:data:`_RANGES`)."""
    low, high, expected = _RANGES[key]
    value = _read(_dataset(handle, key, name, expected), name)
    where = f"{name}:{key}"
    if value.dtype.kind not in "iuf" or value.size != 1:
        raise InputError("wrong shape" if value.dtype.kind in "iuf" else "wrong dtype", where,
                         f"{expected}: one number", f"{value.dtype} array of shape {value.shape}")
    number = float(value.reshape(-1)[0])
    if not low <= number <= high:
        raise InputError("invalid value", where, f"{expected}, between {low:g} and {high:g}",
                         f"{number:g}")
    return number


def read_scan_cxi(path: str | Path, measurement: str = "auto", *, lazy: bool | None = None,
                  options: ReadOptions | None = None) -> Scan:
    """Read a CXI file as a :class:`Scan` of amplitudes (mapping in the module docstring).

    Parameters
    ----------
    path : path to the ``.cxi`` file
    measurement : {'auto', 'amplitude', 'intensity'}
        'auto' and 'intensity': the frames are detector counts; 'amplitude': already
        amplitudes.
    lazy : bool or None
        Stream the frames from disk (True), only when their float32 amplitudes would exceed
        :func:`ptycho.data.lazy.lazy_threshold_bytes` (None, default), or read them into memory
        chunk by chunk (False).
    options : ReadOptions, optional
        Crop, binning, masks, saturation, probe and translation axes.

    Raises
    ------
    ptycho.errors.InputError
        A missing or inconsistent field, naming the file and the CXI path.
    """
    path = Path(path)
    options = options or ReadOptions()
    if measurement not in ("auto", "amplitude", "intensity"):
        raise InputError("invalid value", "--measurement", "auto, amplitude or intensity", measurement)
    with open_hdf5(path, "a valid CXI (HDF5) file", "a .cxi scan file", max_chars=200) as handle:
        return _read_cxi(handle, path, measurement, lazy, options)


def _read_cxi(handle, path: Path, measurement: str, lazy: bool | None, options: ReadOptions
              ) -> Scan:
    name = path.name
    key = next((k for k in DATA_PATHS if k in handle), DATA_PATHS[0])
    data = _dataset(handle, key, name, f"CXI frames (M, H, W) at {DATA_PATHS[0]} or "
                    f"{DATA_PATHS[1]}")
    where = f"{name}:{key}"
    if data.ndim != 3:
        raise InputError("wrong shape", where, "frames (M, H, W)",
                         f"{data.dtype} array of shape {data.shape}")
    if data.dtype.kind == "c":
        raise InputError("complex diffraction", where, "real detector counts", str(data.dtype))
    if data.dtype.kind not in "iuf":
        raise InputError("wrong dtype", where, "real numeric detector counts", str(data.dtype))
    count = int(data.shape[0])
    if count == 0:
        raise InputError("empty scan", where, "at least one frame", "0")

    translation = _read(_dataset(handle, TRANSLATION, name, "the sample translation (M, 3) in "
                                 "metres"), name)
    t_where = f"{name}:{TRANSLATION}"
    check_real_finite(translation, t_where)
    if translation.ndim != 2 or translation.shape[1] not in (2, 3):
        raise InputError("wrong shape", t_where, "translations (M, 3) in metres",
                         f"{translation.dtype} array of shape {translation.shape}")
    if len(translation) != count:
        raise InputError("length mismatch", t_where, f"{count} translations, one per frame",
                         f"{len(translation)}")
    distance = _scalar(handle, DISTANCE, name)
    pixel_x = _scalar(handle, X_PIXEL_SIZE, name)
    pixel_y = _scalar(handle, Y_PIXEL_SIZE, name)
    energy = _scalar(handle, ENERGY, name)

    masks = options.masks()
    mask = _dataset(handle, CXI_MASK, name, "", required=False)
    if mask is not None:
        values = _read(mask, name)
        if values.dtype.kind not in "biuf":
            raise InputError("wrong dtype", f"{name}:{CXI_MASK}",
                             "an integer or boolean mask (nonzero = do not use)", str(values.dtype))
        check_real_finite(values, f"{name}:{CXI_MASK}")
        masks.insert(0, (values != 0, f"{name}:{CXI_MASK}"))

    if measurement == "auto":
        domain, reason = "intensity", "CXI frames (detector counts)"
    else:
        domain, reason = measurement, "requested"
    intensity = domain == "intensity"
    stored = _lazy.StoredArray(path=str(path), dtype=data.dtype,
                               shape=tuple(int(s) for s in data.shape), dataset=data.name)
    geometry = resolve_geometry(options, stored, intensity, masks, where)
    window = geometry.size if geometry is not None else int(data.shape[1])
    n = geometry.n if geometry is not None else window

    notes: list[str] = []
    probe_data = _dataset(handle, CXI_PROBE, name, "", required=False)
    modes, probe_where = scan_probe(options, None if probe_data is None else _read(probe_data, name),
                                    f"{name}:{CXI_PROBE}", notes)
    if modes.shape[-1] != n:
        raise InputError("size mismatch", probe_where, f"a {n}x{n} probe like the patterns read",
                         f"{modes.shape[-2]}x{modes.shape[-1]}")

    wavelength = wavelength_m(energy)
    pixel_col = object_pixel_size_m(wavelength, distance, window, pixel_x)
    pixel_row = object_pixel_size_m(wavelength, distance, window, pixel_y)
    beam_m = translation[:, :2].astype(np.float64) @ parse_translation_axes(
        options.translation_axes).T
    xcoords, ycoords = beam_m[:, 0] / pixel_col, beam_m[:, 1] / pixel_row
    _check_duplicate_positions(xcoords, ycoords, t_where)

    patterns = _lazy.LazyPatterns(stored, intensity=intensity, geometry=geometry)
    _lazy.validate_patterns(patterns, where)
    streamed = lazy or (lazy is None and stored.amplitude_nbytes() > _lazy.lazy_threshold_bytes())
    if streamed:
        diffraction = patterns
    else:
        diffraction = np.asarray(patterns)
        patterns.close()
    note = (f"{name}: diffraction read as {domain} because of {reason}"
            + ("; converted to amplitude" if intensity else "")
            + (f"; streamed from disk ({stored.kind})" if streamed else ""))
    log.info(note)
    notes.append(note)
    if geometry is not None:
        notes.append(f"{name}: {geometry.describe()}")
    pixel_note = (f"{name}: object pixel {pixel_col:.4g} m (columns) x {pixel_row:.4g} m (rows): "
                  f"wavelength {wavelength:.4g} m, distance {distance:.4g} m, {window} detector "
                  f"pixels of {pixel_x:.4g} x {pixel_y:.4g} m; beam position = translation mapped "
                  f"by --translation-axes {options.translation_axes}")
    log.info(pixel_note)
    notes.append(pixel_note)
    return Scan(diffraction=diffraction, xcoords=xcoords, ycoords=ycoords, probe=modes[0],
                probe_modes=modes if len(modes) > 1 else None,
                object_guess=_truth_object(handle, name),
                bad_pixels=None if geometry is None else geometry.bad,
                saturation_counts=options.saturation_counts, measured_domain=domain,
                measured_reason=reason, source=str(path), notes=notes)


def _truth_object(handle, name: str) -> np.ndarray | None:
    """The ground-truth object of :data:`TRUTH_OBJECT`, (H, W) complex64, or None."""
    item = _dataset(handle, TRUTH_OBJECT, name, "", required=False)
    if item is None:
        return None
    value = _read(item, name)
    where = f"{name}:{TRUTH_OBJECT}"
    if value.ndim != 2 or value.dtype.kind not in "fc":
        raise InputError("wrong shape" if value.dtype.kind in "fc" else "wrong dtype", where,
                         "a ground-truth object (H, W) complex", f"{value.dtype} array of shape "
                         f"{value.shape}")
    check_real_finite(value, where, allow_complex=True)
    return value.astype(np.complex64)


def write_scan_cxi(path: str | Path, frames, translation_m: np.ndarray, *, energy_J: float,
                   distance_m: float, pixel_size_m: float, probe: np.ndarray | None = None,
                   mask: np.ndarray | None = None, chunk_patterns: int = 64,
                   datasets: dict[str, np.ndarray] | None = None) -> Path:
    """Write frames and geometry in the CXI layout read by :func:`read_scan_cxi`, atomically.

    Parameters
    ----------
    frames : array-like (M, H, W)
        Detector counts (stored with their dtype, chunk by chunk along M: a
        :class:`ptycho.data.lazy.LazyPatterns` or memory map is never loaded whole), at
        ``entry_1/instrument_1/detector_1/data`` with ``entry_1/data_1/data`` a soft link.
    translation_m : ndarray (M, 3) or (M, 2)
        Sample translation, metres (the beam position on the object is its negative).
    energy_J, distance_m, pixel_size_m : float
        Photon energy (J), sample-detector distance (m), square detector pixel (m).
    probe : ndarray ((modes,) N, N) complex, optional
    mask : ndarray (H, W), optional
        Nonzero = do not use (stored as uint8).
    chunk_patterns : int
        Frames per HDF5 chunk.
    datasets : dict of {path: array or str}, optional
        Further datasets at these paths (e.g. ``detector_1/saturation_value`` or the
        :data:`TRUTH` group of a simulation); a path's groups are created.
    """
    import h5py

    path = Path(path)
    translation = np.asarray(translation_m, np.float64)
    if translation.shape[1] == 2:
        translation = np.column_stack([translation, np.zeros(len(translation))])
    shape = tuple(int(s) for s in frames.shape)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["cxi_version"] = 150
        entry = handle.create_group("entry_1")
        detector = entry.create_group("instrument_1/detector_1")
        data = detector.create_dataset("data", shape=shape, dtype=frames.dtype,
                                       chunks=(max(1, min(chunk_patterns, shape[0])),) + shape[1:])
        for lo in range(0, shape[0], chunk_patterns):
            data[lo:lo + chunk_patterns] = np.asarray(frames[lo:lo + chunk_patterns])
        entry.create_group("data_1")["data"] = h5py.SoftLink(data.name)
        detector["distance"] = float(distance_m)
        detector["x_pixel_size"] = float(pixel_size_m)
        detector["y_pixel_size"] = float(pixel_size_m)
        if mask is not None:
            detector["mask"] = np.asarray(mask).astype(np.uint8)
        source = entry.create_group("instrument_1/source_1")
        source["energy"] = float(energy_J)
        if probe is not None:
            source["probe"] = np.asarray(probe, np.complex64)
        entry.create_group("sample_1/geometry_1")["translation"] = translation
        for key, value in (datasets or {}).items():
            handle[key] = value if isinstance(value, str) else np.asarray(value)
    return path

"""Read a reconstruction to evaluate: a ``reconstruction.npz`` or a bare complex ``.npy``.

``reconstruction.npz`` keys
---------------------------
``object``
    complex (H, W) (a trailing or leading axis of length 1 is dropped), the stitched object.
``x0_px``, ``y0_px``
    float scalars: truth column and row of ``object[0, 0]``
    (:class:`ptycho.stitching.StitchedObject`).
``weight`` (optional)
    (H, W) overlap weight; pixels with ``weight > 0`` are the covered ones.
``xcoords``, ``ycoords`` (optional)
    (M,) scan positions used, in truth pixels; their bounding box is the compared region.

A ``.npy`` holds only the complex (H, W) object; its origin is ``(0, 0)`` unless given.
Nothing is ever unpickled.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ptycho.errors import InputError, first_line

EXPECTED_KEYS = "object, x0_px, y0_px (optional weight, xcoords, ycoords)"


@dataclass
class Reconstruction:
    """A reconstruction and its placement on the ground-truth grid.

    Attributes
    ----------
    object : ndarray, shape (H, W), complex128
    x0_px, y0_px : float
        Truth column and row of ``object[0, 0]`` (pixels).
    weight : ndarray, shape (H, W), float64, optional
        Overlap weight (``> 0`` = covered).
    scan_xy : ndarray, shape (M, 2), float64, optional
        ``[x, y]`` positions used for the reconstruction (truth pixels).
    source : str
        File the reconstruction came from.
    """

    object: np.ndarray
    x0_px: float
    y0_px: float
    weight: np.ndarray | None = None
    scan_xy: np.ndarray | None = None
    source: str = "<memory>"

    @property
    def valid(self) -> np.ndarray | None:
        """Covered pixels ``weight > 0`` (H, W) bool, or None without a weight map."""
        return None if self.weight is None else np.asarray(self.weight) > 0


def _load(path: Path):
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputError("file not found", str(path),
                         "an existing reconstruction .npz or .npy file") from None
    except IsADirectoryError:
        raise InputError("not a file", str(path), "a reconstruction .npz or .npy file",
                         "a directory") from None
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError("pickled object array", str(path),
                             "a plain numeric array (pickles are never loaded)") from None
        raise InputError("unreadable file", str(path), "a NumPy .npz or .npy file",
                         first_line(exc)) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError("unreadable file", str(path), "a NumPy .npz or .npy file",
                         first_line(exc, with_type=True)) from None


def _member(npz, key: str, where: str) -> np.ndarray | None:
    if key not in npz.files:
        return None
    try:
        return np.asarray(npz[key])
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise InputError("pickled object array", where,
                             "a plain numeric array (pickles are never loaded)") from None
        raise InputError("unreadable array", where, "a valid .npy member",
                         first_line(exc)) from None
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError("corrupt member", where, "a readable .npy member",
                         type(exc).__name__) from None


def _image(array: np.ndarray, where: str) -> np.ndarray:
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[-1]):
        array = np.squeeze(array, axis=0 if array.shape[0] == 1 else -1)
    if array.ndim != 2 or min(array.shape) == 0:
        raise InputError("wrong shape", where, "a 2-D complex object (H, W)",
                         f"{array.dtype} array of shape {tuple(array.shape)}")
    if array.dtype.kind not in "iufc":
        raise InputError("wrong dtype", where, "a complex (or real) numeric array",
                         str(array.dtype))
    if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError("non-finite values", where, "finite numbers", f"{bad} NaN/Inf values")
    return array.astype(np.complex128)


def _scalar(array: np.ndarray | None, where: str, override: float | None) -> float:
    if override is not None:
        return float(override)
    if array is None:
        raise InputError("missing key", where, f"a reconstruction NPZ with keys {EXPECTED_KEYS}, "
                         "or the origin given with --x0/--y0")
    if array.size != 1 or array.dtype.kind not in "iuf":
        raise InputError("wrong value", where, "a real scalar in pixels",
                         f"{array.dtype} array of shape {tuple(array.shape)}")
    value = float(array.reshape(-1)[0])
    if not np.isfinite(value):
        raise InputError("non-finite value", where, "a finite origin in pixels", str(value))
    return value


def read_reconstruction(path: str | Path, x0_px: float | None = None,
                        y0_px: float | None = None) -> Reconstruction:
    """Read ``reconstruction.npz`` or a complex ``.npy`` (see the module docstring).

    Parameters
    ----------
    path : path to a ``.npz`` or ``.npy`` file
    x0_px, y0_px : float, optional
        Origin override (truth column/row of ``object[0, 0]``, pixels). For ``.npy`` files the
        default is 0; for ``.npz`` files the file's ``x0_px``/``y0_px``.

    Returns
    -------
    Reconstruction

    Raises
    ------
    ptycho.errors.InputError
        Missing or unreadable file, missing key, wrong shape, dtype or non-finite values.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".npz", ".npy"):
        raise InputError("unsupported file type", str(path),
                         "a reconstruction .npz or a complex .npy", repr(path.suffix or "no suffix"))
    loaded = _load(path)
    if suffix == ".npy":
        if not isinstance(loaded, np.ndarray):
            raise InputError("not an .npy array", str(path), "a complex (H, W) .npy array",
                             type(loaded).__name__)
        return Reconstruction(object=_image(loaded, path.name),
                              x0_px=float(x0_px) if x0_px is not None else 0.0,
                              y0_px=float(y0_px) if y0_px is not None else 0.0,
                              source=str(path))
    if not hasattr(loaded, "files"):
        raise InputError("not an .npz archive", str(path), "a reconstruction .npz archive",
                         type(loaded).__name__)
    name = path.name
    try:
        raw = _member(loaded, "object", f"{name}:object")
        if raw is None:
            raise InputError("missing key", f"{name}:object",
                             f"a reconstruction NPZ with keys {EXPECTED_KEYS}",
                             f"keys {sorted(loaded.files)}")
        obj = _image(raw, f"{name}:object")
        x0 = _scalar(_member(loaded, "x0_px", f"{name}:x0_px"), f"{name}:x0_px", x0_px)
        y0 = _scalar(_member(loaded, "y0_px", f"{name}:y0_px"), f"{name}:y0_px", y0_px)
        weight = _member(loaded, "weight", f"{name}:weight")
        if weight is not None:
            weight = np.squeeze(weight) if weight.ndim == 3 else weight
            if weight.shape != obj.shape or weight.dtype.kind not in "iuf":
                raise InputError("wrong shape", f"{name}:weight",
                                 f"a real array of shape {obj.shape} like the object",
                                 f"{weight.dtype} array of shape {tuple(weight.shape)}")
            weight = weight.astype(np.float64)
            if not np.all(np.isfinite(weight)):
                raise InputError("non-finite values", f"{name}:weight", "finite numbers")
        scan_xy = None
        xcoords = _member(loaded, "xcoords", f"{name}:xcoords")
        ycoords = _member(loaded, "ycoords", f"{name}:ycoords")
        if xcoords is not None and ycoords is not None:
            for key, value in (("xcoords", xcoords), ("ycoords", ycoords)):
                if value.dtype.kind not in "iuf":
                    raise InputError("wrong dtype", f"{name}:{key}", "real positions in pixels",
                                     str(value.dtype))
            xcoords = np.asarray(xcoords, np.float64).reshape(-1)
            ycoords = np.asarray(ycoords, np.float64).reshape(-1)
            if len(xcoords) != len(ycoords) or len(xcoords) == 0:
                raise InputError("length mismatch", f"{name}:ycoords",
                                 f"{len(xcoords)} values like xcoords", f"{len(ycoords)} values")
            if not (np.all(np.isfinite(xcoords)) and np.all(np.isfinite(ycoords))):
                raise InputError("non-finite values", f"{name}:xcoords/ycoords", "finite positions")
            scan_xy = np.stack([xcoords, ycoords], axis=1)
    finally:
        loaded.close()
    return Reconstruction(object=obj, x0_px=x0, y0_px=y0, weight=weight, scan_xy=scan_xy,
                          source=str(path))

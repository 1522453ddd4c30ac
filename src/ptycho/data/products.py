"""Read and write ptychodus *product* files (HDF5 ``.h5``/``.hdf5`` and ``.npz``).

A product is what ptychodus saves after (or before) a reconstruction: scan positions in metres,
the probe, the object with its world geometry, acquisition metadata and the loss history. This
module keeps its own :class:`Product` dataclass (no ptychodus import anywhere here) and reads and
writes the on-disk formats of ptychodus 1.7.0, staying readable by the Nov-2025 ptychodus reader
as far as the formats allow (reference notes, section 6).

HDF5 layout (root)
------------------
Attributes: ``name``, ``comments``, ``detector_object_distance_m`` (required),
``photon_energy_eV`` (required; legacy alias ``probe_energy_eV``), ``probe_photon_count``,
``exposure_time_s``, ``mass_attenuation_m2_per_kg`` (legacy alias ``mass_attenuation_m2_kg``),
``tomography_angle_deg``, ``tilt_angle_deg``, ``focus_object_distance_m``, ``far_field``,
``polarization`` (absent means None).

Datasets: ``probe_position_indexes`` (P,), ``probe_position_x_m``/``probe_position_y_m`` (P,),
optional ``probe_photon_counts`` (P,), ``probe`` (C, I, H, W) with attributes ``pixel_width_m``,
``pixel_height_m``, optional ``opr_weights`` (P, C), ``object`` (L, H, W) with attributes
``center_x_m``, ``center_y_m``, ``pixel_width_m``, ``pixel_height_m`` (all required),
``object_layer_spacing_m`` (L-1,), ``loss_epochs``/``loss_values`` (E,) (alias ``costs``).

NPZ layout
----------
The same vocabulary as flat keys; dataset attributes become prefixed keys
(``probe_pixel_width_m``, ``object_center_x_m``, ``object_pixel_height_m``, ...). Strings are
numpy ``<U`` scalars, ``far_field`` a numpy bool; nothing is ever pickled or unpickled.

Coordinates
-----------
ptychodus uses the centred-pixel convention: object pixel column ``x_px`` and row ``y_px`` of a
position at ``(x_m, y_m)`` are ``x_px = (x_m - center_x_m) / pixel_width_m + (W - 1) / 2`` and
``y_px = (y_m - center_y_m) / pixel_height_m + (H - 1) / 2``. See :func:`positions_m_to_px`,
:func:`positions_px_to_m` and :func:`object_center_for_canvas`.
"""

from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ptycho.errors import InputError, first_line
from ptycho.fileio import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "HDF5_SUFFIXES",
    "NPZ_SUFFIXES",
    "Product",
    "object_center_for_canvas",
    "positions_m_to_px",
    "positions_px_to_m",
    "read_product",
    "write_product",
]

HDF5_SUFFIXES = (".h5", ".hdf5")
NPZ_SUFFIXES = (".npz",)

#: Known polarization values of ptychodus 1.7.0 (others load in ptychodus as None).
POLARIZATIONS = ("left_circular", "right_circular")

_LEGACY_ENERGY = "probe_energy_eV"
_LEGACY_MASS_ATTENUATION = "mass_attenuation_m2_kg"


def _describe(array: np.ndarray) -> str:
    return f"{array.dtype} array of shape {tuple(array.shape)}"


# ------------------------------------------------------------------------------------------------
# Coercion helpers shared by the dataclass and the readers. ``where`` names the field (or the
# file and key) in error messages.
# ------------------------------------------------------------------------------------------------


def _as_complex(value: Any, where: str, ndims: Sequence[int], expected: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind in ("i", "u", "b"):
        array = array.astype(np.complex128)
    elif array.dtype.kind == "f":
        array = array.astype(np.complex64 if array.dtype.itemsize <= 4 else np.complex128)
    elif array.dtype.kind != "c":
        raise InputError("wrong dtype", where, "a complex array", str(array.dtype))
    if array.ndim not in ndims:
        raise InputError("wrong shape", where, expected, _describe(array))
    if array.size == 0:
        raise InputError("empty array", where, expected, _describe(array))
    # Non-finite pixels are kept (a diverged reconstruction is still a valid file); consumers
    # that need finite values check them.
    return array


def _as_real_1d(value: Any, where: str, *, finite: bool = True) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in ("i", "u", "f", "b"):
        raise InputError("wrong dtype", where, "a real numeric array", str(array.dtype))
    if array.ndim != 1:
        squeezed = np.squeeze(array) if array.size != 1 else array.reshape(1)
        if squeezed.ndim != 1:
            raise InputError("wrong shape", where, "a 1-D array", _describe(array))
        array = squeezed
    array = array.astype(np.float64)
    if finite and not np.all(np.isfinite(array)):
        bad = int(np.count_nonzero(~np.isfinite(array)))
        raise InputError("non-finite values", where, "finite numbers", f"{bad} NaN/Inf values")
    return array


def _as_int_1d(value: Any, where: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1:
        squeezed = np.squeeze(array) if array.size != 1 else array.reshape(1)
        if squeezed.ndim != 1:
            raise InputError("wrong shape", where, "a 1-D array of integers", _describe(array))
        array = squeezed
    if array.dtype.kind in ("i", "u"):
        return array.astype(np.int64)
    if array.dtype.kind == "f":
        # ptychodus writes an empty epoch list as float64; integral floats are accepted too.
        if np.all(np.isfinite(array)) and np.all(array == np.round(array)):
            return array.astype(np.int64)
        raise InputError("non-integer values", where, "integers", _describe(array))
    raise InputError("wrong dtype", where, "an integer array", str(array.dtype))


def _as_float(value: Any, where: str) -> float:
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in ("i", "u", "f", "b"):
        raise InputError("wrong value", where, "a real scalar", _describe(array))
    return float(array.reshape(-1)[0])


def _as_positive(value: Any, where: str) -> float:
    number = _as_float(value, where)
    if not (np.isfinite(number) and number > 0):
        raise InputError("invalid pixel size", where, "a finite size > 0 in metres", repr(number))
    return number


def _as_str(value: Any, where: str) -> str:
    if isinstance(value, (bytes, np.bytes_)):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, str):
        return str(value)
    array = np.asarray(value)
    if array.size == 1 and array.dtype.kind in ("U", "S", "O"):
        return _as_str(array.reshape(-1)[0], where)
    raise InputError("wrong value", where, "a string", _describe(array))


def _as_bool(value: Any, where: str) -> bool:
    array = np.asarray(value)
    if array.size != 1 or array.dtype.kind not in ("b", "i", "u", "f"):
        raise InputError("wrong value", where, "a boolean", _describe(array))
    return bool(array.reshape(-1)[0])


# ------------------------------------------------------------------------------------------------
# The product
# ------------------------------------------------------------------------------------------------


@dataclass(kw_only=True, eq=False)
class Product:
    """A ptychodus product held as plain NumPy arrays (independent of ptychodus).

    All arguments are keyword-only. Construction normalises the arrays (probe to 4-D, object to
    3-D, positions to float64, indexes to int64, real probe/object arrays to complex) and checks
    that they are consistent and that positions are finite (probe and object pixels may be NaN,
    as in a diverged reconstruction); problems raise :class:`ptycho.errors.InputError` naming
    ``Product.<field>``. Instances compare by identity (``eq=False``: fields are arrays).

    Attributes
    ----------
    detector_object_distance_m : float
        Object-to-detector distance, metres (required).
    photon_energy_eV : float
        Photon energy, eV (required).
    probe_position_x_m, probe_position_y_m : ndarray, shape (P,), float64
        Scan positions in the world frame, metres (x = column direction, y = row direction).
    probe : ndarray, shape (C_opr, I_modes, H, W), complex64 or complex128
        Probe: OPR components x incoherent modes. 2-D ``(H, W)`` and 3-D ``(I, H, W)`` inputs are
        promoted by prepending unit axes; real inputs are cast to complex.
    object : ndarray, shape (L, H, W), complex64 or complex128
        Object layers (2-D input is promoted to one layer).
    object_pixel_width_m, object_pixel_height_m : float
        Object pixel size, metres (required, > 0).
    name : str, default 'Unnamed'
    comments : str, default ''
    probe_photon_count : float, default 0.0
        Photons per exposure (whole product).
    exposure_time_s : float, default 0.0
    mass_attenuation_m2_per_kg : float, default 0.0
    tomography_angle_deg, tilt_angle_deg : float, default 0.0
    focus_object_distance_m : float, default 0.0
    far_field : bool, default True
    polarization : str or None, default None
        ``'left_circular'`` or ``'right_circular'`` in ptychodus 1.7.0.
    probe_position_indexes : ndarray, shape (P,), int64, default ``arange(P)``
        Scan indexes pairing positions with diffraction patterns (not row numbers).
    probe_photon_counts : ndarray, shape (P,), float64, optional
        Per-position photon counts, when measured.
    probe_pixel_width_m, probe_pixel_height_m : float, default: the object pixel size
        Probe pixel size, metres.
    opr_weights : ndarray, shape (P, C_opr), float, optional
        Orthogonal-probe-relaxation weights per position.
    object_center_x_m, object_center_y_m : float, default 0.0
        World position of the object array centre (pixel ``((W-1)/2, (H-1)/2)``), metres.
    object_layer_spacing_m : ndarray, shape (L-1,), float64, default empty
        Distances between consecutive object layers, metres.
    loss_epochs : ndarray, shape (E,), int64, default ``arange(E)``
    loss_values : ndarray, shape (E,), float64, default empty
    """

    detector_object_distance_m: float
    photon_energy_eV: float
    probe_position_x_m: np.ndarray
    probe_position_y_m: np.ndarray
    probe: np.ndarray
    object: np.ndarray
    object_pixel_width_m: float
    object_pixel_height_m: float
    name: str = "Unnamed"
    comments: str = ""
    probe_photon_count: float = 0.0
    exposure_time_s: float = 0.0
    mass_attenuation_m2_per_kg: float = 0.0
    tomography_angle_deg: float = 0.0
    tilt_angle_deg: float = 0.0
    focus_object_distance_m: float = 0.0
    far_field: bool = True
    polarization: str | None = None
    probe_position_indexes: np.ndarray | None = None
    probe_photon_counts: np.ndarray | None = None
    probe_pixel_width_m: float | None = None
    probe_pixel_height_m: float | None = None
    opr_weights: np.ndarray | None = None
    object_center_x_m: float = 0.0
    object_center_y_m: float = 0.0
    object_layer_spacing_m: np.ndarray | None = None
    loss_epochs: np.ndarray | None = None
    loss_values: np.ndarray | None = None

    def __post_init__(self) -> None:
        w = "Product."
        self.name = _as_str(self.name, w + "name")
        self.comments = _as_str(self.comments, w + "comments")
        for key in ("detector_object_distance_m", "photon_energy_eV", "probe_photon_count",
                    "exposure_time_s", "mass_attenuation_m2_per_kg", "tomography_angle_deg",
                    "tilt_angle_deg", "focus_object_distance_m", "object_center_x_m",
                    "object_center_y_m"):
            setattr(self, key, _as_float(getattr(self, key), w + key))
        self.far_field = _as_bool(self.far_field, w + "far_field")
        if self.polarization is not None:
            self.polarization = _as_str(self.polarization, w + "polarization")

        # Positions.
        self.probe_position_x_m = _as_real_1d(self.probe_position_x_m, w + "probe_position_x_m")
        self.probe_position_y_m = _as_real_1d(self.probe_position_y_m, w + "probe_position_y_m")
        n_positions = self.probe_position_x_m.size
        if self.probe_position_y_m.size != n_positions:
            raise InputError("length mismatch", w + "probe_position_y_m",
                             f"{n_positions} values, as many as probe_position_x_m",
                             str(self.probe_position_y_m.size))
        if self.probe_position_indexes is None:
            self.probe_position_indexes = np.arange(n_positions, dtype=np.int64)
        else:
            self.probe_position_indexes = _as_int_1d(self.probe_position_indexes,
                                                     w + "probe_position_indexes")
            if self.probe_position_indexes.size != n_positions:
                raise InputError("length mismatch", w + "probe_position_indexes",
                                 f"{n_positions} values, one per position",
                                 str(self.probe_position_indexes.size))
        if self.probe_photon_counts is not None:
            self.probe_photon_counts = _as_real_1d(self.probe_photon_counts,
                                                   w + "probe_photon_counts")
            if self.probe_photon_counts.size != n_positions:
                raise InputError("length mismatch", w + "probe_photon_counts",
                                 f"{n_positions} values, one per position",
                                 str(self.probe_photon_counts.size))

        # Object.
        obj = _as_complex(self.object, w + "object", (2, 3),
                          "a complex object (H, W) or (L, H, W)")
        self.object = obj[np.newaxis] if obj.ndim == 2 else obj
        self.object_pixel_width_m = _as_positive(self.object_pixel_width_m,
                                                 w + "object_pixel_width_m")
        self.object_pixel_height_m = _as_positive(self.object_pixel_height_m,
                                                  w + "object_pixel_height_m")
        n_layers = self.object.shape[0]
        if self.object_layer_spacing_m is None:
            self.object_layer_spacing_m = np.zeros(0, np.float64)
        else:
            self.object_layer_spacing_m = _as_real_1d(
                np.asarray(self.object_layer_spacing_m).reshape(-1), w + "object_layer_spacing_m")
        if self.object_layer_spacing_m.size != n_layers - 1:
            raise InputError("length mismatch", w + "object_layer_spacing_m",
                             f"{n_layers - 1} spacings for an object of {n_layers} layers",
                             str(self.object_layer_spacing_m.size))

        # Probe.
        probe = _as_complex(self.probe, w + "probe", (2, 3, 4),
                            "a complex probe (H, W), (I, H, W) or (C, I, H, W)")
        self.probe = probe.reshape((1,) * (4 - probe.ndim) + probe.shape)
        self.probe_pixel_width_m = _as_positive(
            self.object_pixel_width_m if self.probe_pixel_width_m is None
            else self.probe_pixel_width_m, w + "probe_pixel_width_m")
        self.probe_pixel_height_m = _as_positive(
            self.object_pixel_height_m if self.probe_pixel_height_m is None
            else self.probe_pixel_height_m, w + "probe_pixel_height_m")
        if self.opr_weights is not None:
            weights = np.asarray(self.opr_weights)
            if weights.dtype.kind not in ("i", "u", "f"):
                raise InputError("wrong dtype", w + "opr_weights", "a real array",
                                 str(weights.dtype))
            if weights.dtype.kind != "f":
                weights = weights.astype(np.float64)
            n_opr = self.probe.shape[0]
            if weights.ndim != 2 or weights.shape[1] != n_opr:
                raise InputError("wrong shape", w + "opr_weights",
                                 f"(P, {n_opr}): one weight per OPR component and position",
                                 _describe(weights))
            if weights.shape[0] != n_positions:
                log.warning("opr_weights has %d rows for %d positions", weights.shape[0],
                            n_positions)
            self.opr_weights = weights

        # Losses.
        if self.loss_values is None:
            self.loss_values = np.zeros(0, np.float64)
        self.loss_values = _as_real_1d(np.asarray(self.loss_values).reshape(-1),
                                       w + "loss_values", finite=False)
        if self.loss_epochs is None:
            self.loss_epochs = np.arange(self.loss_values.size, dtype=np.int64)
        else:
            epochs = np.asarray(self.loss_epochs)
            self.loss_epochs = (np.zeros(0, np.int64) if epochs.size == 0
                                else _as_int_1d(epochs, w + "loss_epochs"))
        if self.loss_epochs.size != self.loss_values.size:
            raise InputError("length mismatch", w + "loss_epochs",
                             f"{self.loss_values.size} epochs, one per loss value",
                             str(self.loss_epochs.size))

    # -- convenience ---------------------------------------------------------------------------

    @property
    def n_positions(self) -> int:
        """Number of scan positions P."""
        return int(self.probe_position_x_m.size)

    @property
    def object_shape(self) -> tuple[int, int]:
        """Object layer shape ``(H, W)`` in pixels."""
        return int(self.object.shape[-2]), int(self.object.shape[-1])

    @property
    def probe_modes(self) -> np.ndarray:
        """Incoherent probe modes of OPR component 0, shape (I, H, W), complex (a view)."""
        return self.probe[0]

    def positions_px(self) -> tuple[np.ndarray, np.ndarray]:
        """Scan positions in object pixels of this product's object grid.

        Returns
        -------
        x_px, y_px : ndarray, shape (P,), float64
            Column and row coordinates (section 2.2 centred-pixel convention).
        """
        return positions_m_to_px(self.probe_position_x_m, self.probe_position_y_m,
                                 self.object_center_x_m, self.object_center_y_m,
                                 self.object_pixel_width_m, self.object_pixel_height_m,
                                 self.object_shape)


# ------------------------------------------------------------------------------------------------
# Coordinates
# ------------------------------------------------------------------------------------------------


def positions_m_to_px(x_m, y_m, object_center_x_m: float, object_center_y_m: float,
                      pixel_width_m: float, pixel_height_m: float,
                      object_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Map world positions (metres) to object pixel coordinates (ptychodus 1.7.0 convention).

    ``x_px = (x_m - cx) / dx + (W - 1) / 2`` and ``y_px = (y_m - cy) / dy + (H - 1) / 2``.

    Parameters
    ----------
    x_m, y_m : array_like, shape (P,) or scalar, float
        World coordinates, metres.
    object_center_x_m, object_center_y_m : float
        World coordinates of the object array centre, metres.
    pixel_width_m, pixel_height_m : float
        Object pixel size, metres.
    object_shape : sequence of int
        Object shape; the last two entries are ``(H, W)``.

    Returns
    -------
    x_px, y_px : ndarray, float64, same shape as the inputs
        Column (x) and row (y) coordinates in object pixels.
    """
    height, width = int(object_shape[-2]), int(object_shape[-1])
    x_px = (np.asarray(x_m, np.float64) - object_center_x_m) / pixel_width_m + (width - 1) / 2
    y_px = (np.asarray(y_m, np.float64) - object_center_y_m) / pixel_height_m + (height - 1) / 2
    return x_px, y_px


def positions_px_to_m(x_px, y_px, object_center_x_m: float, object_center_y_m: float,
                      pixel_width_m: float, pixel_height_m: float,
                      object_shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`positions_m_to_px`: object pixels to world metres.

    ``x_m = cx + (x_px - (W - 1) / 2) * dx`` and ``y_m = cy + (y_px - (H - 1) / 2) * dy``.

    Parameters
    ----------
    x_px, y_px : array_like, shape (P,) or scalar, float
        Column and row coordinates in object pixels.
    object_center_x_m, object_center_y_m, pixel_width_m, pixel_height_m, object_shape
        As in :func:`positions_m_to_px`.

    Returns
    -------
    x_m, y_m : ndarray, float64, same shape as the inputs
        World coordinates, metres.
    """
    height, width = int(object_shape[-2]), int(object_shape[-1])
    x_m = object_center_x_m + (np.asarray(x_px, np.float64) - (width - 1) / 2) * pixel_width_m
    y_m = object_center_y_m + (np.asarray(y_px, np.float64) - (height - 1) / 2) * pixel_height_m
    return x_m, y_m


def object_center_for_canvas(x0_px: float, y0_px: float, canvas_shape: Sequence[int],
                             reference_center_x_m: float, reference_center_y_m: float,
                             pixel_w: float, pixel_h: float,
                             reference_shape: Sequence[int]) -> tuple[float, float]:
    """World centre of a reconstruction canvas placed on a reference object grid.

    The canvas (same pixel size as the reference) has its pixel (row 0, column 0) at reference
    object pixel (row ``y0_px``, column ``x0_px``). Its centre pixel ``((W_c-1)/2, (H_c-1)/2)``
    therefore lies at reference pixel ``(x0_px + (W_c-1)/2, y0_px + (H_c-1)/2)``, which is mapped
    to metres with the reference geometry. Saving the canvas with this centre makes ptychodus
    place every canvas pixel at the same world position as the reference pixel it stands for.

    Parameters
    ----------
    x0_px, y0_px : float
        Reference-grid column and row of canvas pixel (0, 0); may be fractional or negative.
    canvas_shape : sequence of int
        Canvas shape; the last two entries are ``(H_c, W_c)``.
    reference_center_x_m, reference_center_y_m : float
        World centre of the reference object, metres.
    pixel_w, pixel_h : float
        Pixel width and height (shared by both grids), metres.
    reference_shape : sequence of int
        Reference object shape; the last two entries are ``(H, W)``.

    Returns
    -------
    center_x_m, center_y_m : float
        World centre of the canvas, metres.
    """
    canvas_h, canvas_w = int(canvas_shape[-2]), int(canvas_shape[-1])
    x_m, y_m = positions_px_to_m(x0_px + (canvas_w - 1) / 2, y0_px + (canvas_h - 1) / 2,
                                 reference_center_x_m, reference_center_y_m, pixel_w, pixel_h,
                                 reference_shape)
    return float(x_m), float(y_m)


# ------------------------------------------------------------------------------------------------
# Public I/O
# ------------------------------------------------------------------------------------------------


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        return "h5"
    if suffix in NPZ_SUFFIXES:
        return "npz"
    raise InputError("unsupported file type", str(path),
                     "a ptychodus product file ending in .h5, .hdf5 or .npz", repr(path.suffix))


def read_product(path) -> Product:
    """Read a ptychodus product file (``.h5``/``.hdf5`` or ``.npz``, by suffix).

    Accepts files written by ptychodus 1.7.0, by the Nov-2025 ptychodus (legacy
    ``probe_energy_eV``/``mass_attenuation_m2_kg``, ``costs`` for ``loss_values``, no
    ``loss_epochs``) and by :func:`write_product`. Probes may be 2-, 3- or 4-D, objects 2- or 3-D.

    Parameters
    ----------
    path : str or os.PathLike
        Product file.

    Returns
    -------
    Product
        Arrays keep their stored complex dtype; positions are float64, indexes int64.

    Raises
    ------
    ptycho.errors.InputError
        Missing file, unknown suffix, unreadable file, or a missing/malformed item; the message
        names the file and the key (``product.h5:object.attrs['center_x_m']``).
    """
    path = Path(path)
    kind = _kind(path)
    if not path.exists():
        raise InputError("file not found", str(path), "an existing ptychodus product file")
    if path.is_dir():
        raise InputError("not a file", str(path), "a ptychodus product file", "a directory")
    fields = _read_h5_fields(path) if kind == "h5" else _read_npz_fields(path)
    try:
        return Product(**fields)
    except InputError as exc:
        where = exc.where
        if where.startswith("Product."):
            where = f"{path.name}:{_FIELD_TO_KEY[kind].get(where[8:], where[8:])}"
        raise InputError(exc.what, where, exc.expected, exc.actual) from None


def write_product(path, product: Product) -> None:
    """Write ``product`` as a ptychodus product file (format by suffix), atomically.

    Follows the cross-version recommendation of the reference notes (section 6.1): every field of
    ptychodus 1.7.0 plus the legacy ``probe_energy_eV`` and ``mass_attenuation_m2_kg``; always
    ``name``, ``comments``, ``exposure_time_s``, the probe pixel size, ``object_layer_spacing_m``
    and ``loss_epochs``/``loss_values`` (float64 when empty); ``opr_weights`` only when present,
    as a root item. The probe is written 4-D ``(C, I, H, W)``, the object 3-D ``(L, H, W)``, in
    their own complex dtype.

    Parameters
    ----------
    path : str or os.PathLike
        Destination ending in ``.h5``, ``.hdf5`` or ``.npz``; replaced atomically.
    product : Product
        What to write.

    Raises
    ------
    ptycho.errors.InputError
        Unsupported suffix.
    """
    path = Path(path)
    kind = _kind(path)
    if kind == "h5":
        _write_h5(path, product)
    else:
        _write_npz(path, product)


# ------------------------------------------------------------------------------------------------
# Key vocabulary
# ------------------------------------------------------------------------------------------------

_SCALAR_ATTRS = (  # (Product field, key, legacy key or None); all optional on read except two
    ("probe_photon_count", "probe_photon_count", None),
    ("exposure_time_s", "exposure_time_s", None),
    ("mass_attenuation_m2_per_kg", "mass_attenuation_m2_per_kg", _LEGACY_MASS_ATTENUATION),
    ("tomography_angle_deg", "tomography_angle_deg", None),
    ("tilt_angle_deg", "tilt_angle_deg", None),
    ("focus_object_distance_m", "focus_object_distance_m", None),
)

_H5_FIELD_KEYS = {
    "object_center_x_m": "object.attrs['center_x_m']",
    "object_center_y_m": "object.attrs['center_y_m']",
    "object_pixel_width_m": "object.attrs['pixel_width_m']",
    "object_pixel_height_m": "object.attrs['pixel_height_m']",
    "probe_pixel_width_m": "probe.attrs['pixel_width_m']",
    "probe_pixel_height_m": "probe.attrs['pixel_height_m']",
}
_FIELD_TO_KEY = {"h5": _H5_FIELD_KEYS, "npz": {}}


def _root_fields(get, require, name: str) -> dict:
    """The root-level scalar fields of a product, from either format.

    ``get(key, aliases)`` returns the stored value of the first present key or None;
    ``require(key, aliases)`` the same, raising the format's "missing key" error instead of
    returning None. ``name`` is the file name used in error messages.
    """
    fields: dict[str, Any] = {
        "detector_object_distance_m": _as_float(require("detector_object_distance_m"),
                                                f"{name}:detector_object_distance_m"),
        "photon_energy_eV": _as_float(require("photon_energy_eV", (_LEGACY_ENERGY,)),
                                      f"{name}:photon_energy_eV"),
    }
    for field_name, key, legacy in _SCALAR_ATTRS:
        value = get(key, (legacy,) if legacy else ())
        if value is not None:
            fields[field_name] = _as_float(value, f"{name}:{key}")
    for key, default in (("name", "Unnamed"), ("comments", "")):
        value = get(key)
        fields[key] = default if value is None else _as_str(value, f"{name}:{key}")
    value = get("far_field")
    if value is not None:
        fields["far_field"] = _as_bool(value, f"{name}:far_field")
    value = get("polarization")
    if value is not None:
        fields["polarization"] = _as_str(value, f"{name}:polarization")
    return fields


def _root_values(product: Product) -> dict[str, str | float | bool]:
    """The root-level scalars both formats write (HDF5 root attributes, NPZ keys), with the
    legacy ``probe_energy_eV`` and ``mass_attenuation_m2_kg`` beside their current names."""
    values: dict[str, str | float | bool] = {
        "name": product.name,
        "comments": product.comments,
        "detector_object_distance_m": float(product.detector_object_distance_m),
        "photon_energy_eV": float(product.photon_energy_eV),
        _LEGACY_ENERGY: float(product.photon_energy_eV),
        _LEGACY_MASS_ATTENUATION: float(product.mass_attenuation_m2_per_kg),
    }
    for field_name, key, _ in _SCALAR_ATTRS:
        values[key] = float(getattr(product, field_name))
    values["far_field"] = bool(product.far_field)
    if product.polarization is not None:
        values["polarization"] = product.polarization
    return values


def _missing(path: Path, key: str, expected: str, present: Sequence[str]) -> InputError:
    return InputError("missing key", f"{path.name}:{key}", expected,
                      f"keys {sorted(str(k) for k in present)}")


# ------------------------------------------------------------------------------------------------
# HDF5
# ------------------------------------------------------------------------------------------------


def _read_h5_fields(path: Path) -> dict:
    import h5py

    from ptycho.data.hdf5 import open_hdf5

    with open_hdf5(path, "a valid HDF5 product file", with_type=True) as h5:
        root = h5.attrs
        name = path.name

        def attr(key: str, aliases: Sequence[str] = ()) -> Any:
            for candidate in (key, *aliases):
                if candidate in root:
                    return root[candidate]
            return None

        def required_attr(key: str, aliases: Sequence[str] = ()) -> Any:
            value = attr(key, aliases)
            if value is None:
                also = f" (or the legacy {', '.join(aliases)})" if aliases else ""
                raise _missing(path, key, f"root attribute {key}{also}", list(root.keys()))
            return value

        def dataset(key: str, required: bool):
            if key not in h5:
                if required:
                    raise _missing(path, key, f"root dataset {key}", list(h5.keys()))
                return None
            item = h5[key]
            if not isinstance(item, h5py.Dataset):
                raise InputError("not a dataset", f"{name}:{key}", "an HDF5 dataset",
                                 type(item).__name__)
            return item

        def read(ds) -> np.ndarray:
            try:
                return np.asarray(ds[()])
            except (OSError, ValueError, TypeError) as exc:
                raise InputError("unreadable dataset", f"{name}:{ds.name.lstrip('/')}",
                                 "a readable numeric dataset",
                                 first_line(exc, with_type=True)) from None

        def ds_attr(ds, key: str, required: bool) -> float | None:
            label = f"{name}:{ds.name.lstrip('/')}.attrs['{key}']"
            if key not in ds.attrs:
                if required:
                    raise InputError("missing attribute", label, f"attribute {key} on the "
                                     f"{ds.name.lstrip('/')} dataset",
                                     f"attributes {sorted(ds.attrs.keys())}")
                return None
            return _as_float(ds.attrs[key], label)

        fields = _root_fields(attr, required_attr, name)
        h5_object = dataset("object", True)
        fields["object"] = read(h5_object)
        fields["object_center_x_m"] = ds_attr(h5_object, "center_x_m", True)
        fields["object_center_y_m"] = ds_attr(h5_object, "center_y_m", True)
        fields["object_pixel_width_m"] = ds_attr(h5_object, "pixel_width_m", True)
        fields["object_pixel_height_m"] = ds_attr(h5_object, "pixel_height_m", True)
        spacing = dataset("object_layer_spacing_m", False)
        if spacing is not None:
            fields["object_layer_spacing_m"] = read(spacing).reshape(-1)

        h5_probe = dataset("probe", True)
        fields["probe"] = read(h5_probe)
        fields["probe_pixel_width_m"] = ds_attr(h5_probe, "pixel_width_m", False)
        fields["probe_pixel_height_m"] = ds_attr(h5_probe, "pixel_height_m", False)
        weights = dataset("opr_weights", False)
        if weights is not None:
            fields["opr_weights"] = read(weights)
        elif "opr_weights" in h5_probe.attrs:  # Nov-2025 layout misunderstanding, read anyway
            fields["opr_weights"] = np.asarray(h5_probe.attrs["opr_weights"])

        for key in ("probe_position_indexes", "probe_position_x_m", "probe_position_y_m"):
            fields[key] = read(dataset(key, True))
        counts = dataset("probe_photon_counts", False)
        if counts is not None:
            fields["probe_photon_counts"] = read(counts)

        values = dataset("loss_values", False)
        if values is None:
            values = dataset("costs", False)
        epochs = dataset("loss_epochs", False)
        if values is not None:
            fields["loss_values"] = read(values).reshape(-1)
            if epochs is not None:
                fields["loss_epochs"] = read(epochs).reshape(-1)
    return fields


def _write_h5(path: Path, product: Product) -> None:
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        for key, value in _root_values(product).items():
            h5.attrs[key] = np.bool_(value) if isinstance(value, bool) else value

        h5.create_dataset("probe_position_indexes",
                          data=np.asarray(product.probe_position_indexes, np.int64))
        h5.create_dataset("probe_position_x_m",
                          data=np.asarray(product.probe_position_x_m, np.float64))
        h5.create_dataset("probe_position_y_m",
                          data=np.asarray(product.probe_position_y_m, np.float64))
        if product.probe_photon_counts is not None:
            h5.create_dataset("probe_photon_counts",
                              data=np.asarray(product.probe_photon_counts, np.float64))

        h5_probe = h5.create_dataset("probe", data=_probe_4d(product.probe))
        h5_probe.attrs["pixel_width_m"] = float(product.probe_pixel_width_m)
        h5_probe.attrs["pixel_height_m"] = float(product.probe_pixel_height_m)
        if product.opr_weights is not None:
            h5.create_dataset("opr_weights", data=np.asarray(product.opr_weights))

        h5_object = h5.create_dataset("object", data=_object_3d(product.object))
        h5_object.attrs["center_x_m"] = float(product.object_center_x_m)
        h5_object.attrs["center_y_m"] = float(product.object_center_y_m)
        h5_object.attrs["pixel_width_m"] = float(product.object_pixel_width_m)
        h5_object.attrs["pixel_height_m"] = float(product.object_pixel_height_m)
        h5.create_dataset("object_layer_spacing_m", data=_spacing(product))

        epochs, values = _losses(product)
        h5.create_dataset("loss_epochs", data=epochs)
        h5.create_dataset("loss_values", data=values)


# ------------------------------------------------------------------------------------------------
# NPZ
# ------------------------------------------------------------------------------------------------


def _read_npz_fields(path: Path) -> dict:
    name = path.name
    try:
        npz = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise InputError("unreadable NPZ", str(path), "a valid NumPy .npz product archive",
                         first_line(exc, with_type=True)) from None
    if not hasattr(npz, "files"):
        raise InputError("not an archive", str(path), "a NumPy .npz archive of named arrays",
                         "a single .npy array")
    with npz:
        keys = set(npz.files)

        def get(key: str, aliases: Sequence[str] = ()) -> np.ndarray | None:
            for candidate in (key, *aliases):
                if candidate in keys:
                    try:
                        return np.asarray(npz[candidate])
                    except ValueError as exc:
                        if "allow_pickle" in str(exc):
                            raise InputError("pickled object array", f"{name}:{candidate}",
                                             "a plain array (pickles are never loaded)") from None
                        raise InputError("unreadable array", f"{name}:{candidate}",
                                         "a valid .npy member", first_line(exc)) from None
                    except (zipfile.BadZipFile, OSError, EOFError) as exc:
                        raise InputError("corrupt member", f"{name}:{candidate}",
                                         "a readable .npy member", type(exc).__name__) from None
            return None

        def require(key: str, aliases: Sequence[str] = ()) -> np.ndarray:
            value = get(key, aliases)
            if value is None:
                also = f" (or the legacy {', '.join(aliases)})" if aliases else ""
                raise _missing(path, key, f"key {key}{also}", keys)
            return value

        fields = _root_fields(get, require, name)
        for key in ("probe_position_indexes", "probe_position_x_m", "probe_position_y_m",
                    "object", "probe"):
            fields[key] = require(key)
        for key in ("object_center_x_m", "object_center_y_m", "object_pixel_width_m",
                    "object_pixel_height_m"):
            fields[key] = _as_float(require(key), f"{name}:{key}")
        for key in ("probe_pixel_width_m", "probe_pixel_height_m"):
            value = get(key)
            if value is not None:
                fields[key] = _as_float(value, f"{name}:{key}")
        for key in ("object_layer_spacing_m", "opr_weights", "probe_photon_counts"):
            value = get(key)
            if value is not None:
                fields[key] = value.reshape(-1) if key == "object_layer_spacing_m" else value

        values = get("loss_values", ("costs",))
        if values is not None:
            fields["loss_values"] = values.reshape(-1)
            epochs = get("loss_epochs")
            if epochs is not None:
                fields["loss_epochs"] = epochs.reshape(-1)
    return fields


def _write_npz(path: Path, product: Product) -> None:
    contents: dict[str, np.ndarray] = {
        key: (np.array(value, dtype=np.str_) if isinstance(value, str)
              else np.bool_(value) if isinstance(value, bool) else np.float64(value))
        for key, value in _root_values(product).items()}
    contents.update({
        "probe_position_indexes": np.asarray(product.probe_position_indexes, np.int64),
        "probe_position_x_m": np.asarray(product.probe_position_x_m, np.float64),
        "probe_position_y_m": np.asarray(product.probe_position_y_m, np.float64),
        "probe": _probe_4d(product.probe),
        "probe_pixel_width_m": np.float64(product.probe_pixel_width_m),
        "probe_pixel_height_m": np.float64(product.probe_pixel_height_m),
        "object": _object_3d(product.object),
        "object_center_x_m": np.float64(product.object_center_x_m),
        "object_center_y_m": np.float64(product.object_center_y_m),
        "object_pixel_width_m": np.float64(product.object_pixel_width_m),
        "object_pixel_height_m": np.float64(product.object_pixel_height_m),
        "object_layer_spacing_m": _spacing(product),
    })
    if product.probe_photon_counts is not None:
        contents["probe_photon_counts"] = np.asarray(product.probe_photon_counts, np.float64)
    if product.opr_weights is not None:
        contents["opr_weights"] = np.asarray(product.opr_weights)
    contents["loss_epochs"], contents["loss_values"] = _losses(product)
    for key, value in contents.items():
        if np.asarray(value).dtype.kind == "O":  # pragma: no cover - guarded by construction
            raise InputError("object array", f"Product.{key}", "a plain array (never pickled)")
    # A file handle, not a name: numpy.savez would append '.npz' to the temporary name.
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **contents)


# ------------------------------------------------------------------------------------------------
# Writer helpers
# ------------------------------------------------------------------------------------------------


def _probe_4d(probe: np.ndarray) -> np.ndarray:
    probe = np.asarray(probe)
    return probe.reshape((1,) * (4 - probe.ndim) + probe.shape)


def _object_3d(obj: np.ndarray) -> np.ndarray:
    obj = np.asarray(obj)
    return obj[np.newaxis] if obj.ndim == 2 else obj


def _spacing(product: Product) -> np.ndarray:
    spacing = product.object_layer_spacing_m
    return np.zeros(0, np.float64) if spacing is None else np.asarray(spacing, np.float64)


def _losses(product: Product) -> tuple[np.ndarray, np.ndarray]:
    values = np.zeros(0) if product.loss_values is None else np.asarray(product.loss_values)
    if values.size == 0:
        # ptychodus writes an empty Python list, which HDF5/NumPy store as float64.
        return np.zeros(0, np.float64), np.zeros(0, np.float64)
    epochs = (np.arange(values.size) if product.loss_epochs is None
              else np.asarray(product.loss_epochs))
    return epochs.astype(np.int64), values.astype(np.float64)

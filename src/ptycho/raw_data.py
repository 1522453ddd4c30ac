"""Legacy ``RawData`` facade (the API ptychodus and old PtychoPINN scripts call).

A thin adapter over :class:`ptycho.data.scan.Scan` (the in-memory scan), the NPZ reader
:func:`ptycho.data.npz.read_scan_npz` and the grouping in :mod:`ptycho.data.grouping`; it has no
logic of its own beyond argument adaptation.

Measurement domain
------------------
``RawData.diff3d`` always holds **amplitudes** (sqrt of counts), like ``Scan.diffraction``.
Input is converted on the way in:

* :meth:`RawData.from_file` follows the NPZ rules of :mod:`ptycho.data.npz` (a ``bad_pixels``
  key, i.e. a ptychodus export, an integer dtype or ``measurement='intensity'`` mean counts).
* :meth:`RawData.from_coords_without_pc` (what ptychodus calls for inference) treats an
  **integer** ``diff3d`` (e.g. uint16 detector counts) as intensity and takes its square root,
  and a **floating-point** ``diff3d`` as amplitude. ``measurement='intensity'`` or
  ``'amplitude'`` overrides the guess.

Probes
------
``probeGuess`` may be ``(N, N)``, ``(N, N, 1)`` or ``(modes, N, N)`` (ptychodus 1.7.0 passes the
incoherent mode stack). The legacy attribute ``RawData.probeGuess`` stays 2-D (mode 0); the
whole stack travels with the scan (``RawData.scan.probe_modes``), so that a model trained
with ``ModelConfig.probe_modes`` > 1 starts from the modes ptychodus passed, and a
single-mode model from mode 0 as before.

Grouping (``generate_grouped_data``)
------------------------------------
``nsamples`` no larger than the number of scan positions means "a group anchored at every
position" (ptychodus passes ``nsamples=1`` and expects the whole scan); a larger value
oversamples (gridsize > 1 only: extra groups with fresh random neighbours; with gridsize 1 every
position is used once). ``gridsize=None`` takes ``ptycho.params.cfg['gridsize']`` (default 1),
as older ptychodus versions set it there.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ptycho import params
from ptycho.data import npz as _npz
from ptycho.data.grouping import GroupedData
from ptycho.data.scan import Scan
from ptycho.errors import InputError

log = logging.getLogger(__name__)

__all__ = ["RawData"]


def _probe_mode0(probe_guess, where: str = "probeGuess", notes: list | None = None) -> np.ndarray:
    """Mode 0 of a ``(N, N)``, ``(N, N, 1)`` or ``(modes, N, N)`` probe as complex64 ``(N, N)``."""
    return _npz.probe_mode0(np.asarray(probe_guess), where, notes if notes is not None else [])


class RawData:
    """One scan in the legacy attribute vocabulary, backed by a :class:`Scan`.

    Attributes (read-only views of the scan)
    ----------------------------------------
    xcoords, ycoords, xcoords_start, ycoords_start : ndarray (M,), float64, object pixels
    diff3d : ndarray (M, N, N), float32 **amplitudes**
    probeGuess : ndarray (N, N), complex64 (mode 0)
    scan_index : ndarray (M,), int64
    objectGuess : ndarray (H, W), complex64, or None
    scan : Scan
        The wrapped core object.
    """

    def __init__(self, xcoords=None, ycoords=None, xcoords_start=None, ycoords_start=None,
                 diff3d=None, probeGuess=None, scan_index=None, objectGuess=None, Y=None,
                 norm_Y_I=None, *, scan: Scan | None = None, measurement: str = "auto"):
        """Legacy constructor ``RawData(xcoords, ycoords, xcoords_start, ycoords_start, diff3d,
        probeGuess, scan_index, objectGuess=None)``, or ``RawData(scan=Scan(...))``."""
        if scan is None:
            scan = self._scan_from_arrays(xcoords, ycoords, diff3d, probeGuess, scan_index,
                                          objectGuess, measurement, xcoords_start, ycoords_start)
        self.scan = scan
        self.Y = Y
        self.norm_Y_I = norm_Y_I

    # -- constructors -------------------------------------------------------------------------

    @classmethod
    def from_scan(cls, scan: Scan) -> RawData:
        """Wrap an existing :class:`Scan`."""
        return cls(scan=scan)

    @classmethod
    def from_coords_without_pc(cls, xcoords, ycoords, diff3d, probeGuess, scan_index,
                               objectGuess=None, *, measurement: str = "auto") -> RawData:
        """Build from arrays (ptychodus inference); nominal positions equal the given ones.

        Parameters
        ----------
        xcoords, ycoords : array_like (M,), object pixels (x = column, y = row)
        diff3d : array_like (M, N, N) or (M, N, N, 1)
            Integer dtypes are counts (square-rooted); floats are amplitudes (module docstring).
        probeGuess : array_like (N, N), (N, N, 1) or (modes, N, N), complex; mode 0 for a
            single-mode model, every mode for ``ModelConfig.probe_modes`` > 1
        scan_index : array_like (M,), int
        objectGuess : array_like (H, W), complex, optional
        measurement : {'auto', 'amplitude', 'intensity'}
        """
        return cls(scan=cls._scan_from_arrays(xcoords, ycoords, diff3d, probeGuess, scan_index,
                                              objectGuess, measurement))

    @classmethod
    def from_file(cls, train_data_file_path, measurement: str = "auto") -> RawData:
        """Read a scan NPZ (``ptycho.data.npz.read_scan_npz``; a ptychodus export is counts)."""
        return cls(scan=_npz.read_scan_npz(Path(train_data_file_path), measurement))

    @staticmethod
    def _scan_from_arrays(xcoords, ycoords, diff3d, probe_guess, scan_index, object_guess,
                          measurement: str, xcoords_start=None, ycoords_start=None) -> Scan:
        if measurement not in ("auto", "amplitude", "intensity"):
            raise InputError("invalid value", "RawData measurement",
                             "'auto', 'amplitude' or 'intensity'", repr(measurement))
        for name, value in (("xcoords", xcoords), ("ycoords", ycoords), ("diff3d", diff3d),
                            ("probeGuess", probe_guess)):
            if value is None:
                raise InputError("missing array", f"RawData {name}", "an array")
        x = np.asarray(xcoords, np.float64).reshape(-1)
        y = np.asarray(ycoords, np.float64).reshape(-1)
        if len(x) != len(y) or len(x) == 0:
            raise InputError("length mismatch", "RawData ycoords",
                             f"{len(x)} (> 0) positions like xcoords", f"{len(y)}")
        raw = np.asarray(diff3d)
        _npz.check_real_finite(raw, "RawData diff3d")
        raw = _npz.diffraction_layout(raw, len(x), "RawData diff3d")
        notes: list[str] = []
        modes = _npz.probe_mode_stack(np.asarray(probe_guess), "RawData probeGuess", notes)
        if modes.shape[-1] != raw.shape[-1]:
            raise InputError("size mismatch", "RawData probeGuess",
                             f"a {raw.shape[-1]}x{raw.shape[-1]} probe like the patterns",
                             f"{modes.shape[-2]}x{modes.shape[-1]}")
        domain, reason = _npz.resolve_measurement(set(), None, raw.dtype, measurement)
        if domain == "intensity":
            diffraction = np.sqrt(raw.astype(np.float64)).astype(np.float32)
        else:
            diffraction = raw.astype(np.float32, copy=False)
        note = f"RawData: diff3d read as {domain} ({reason})"
        log.info(note)
        notes.append(note)
        if object_guess is not None:
            object_guess = np.squeeze(np.asarray(object_guess))
            if object_guess.ndim != 2:
                raise InputError("wrong shape", "RawData objectGuess",
                                 "a 2-D complex object (H, W)",
                                 f"shape {object_guess.shape}")
            object_guess = object_guess.astype(np.complex64)
        if scan_index is not None:
            scan_index = np.asarray(scan_index).reshape(-1).astype(np.int64)
        return Scan(diffraction=diffraction, xcoords=x, ycoords=y, probe=modes[0],
                    probe_modes=modes if len(modes) > 1 else None, xcoords_start=xcoords_start, ycoords_start=ycoords_start,
                    scan_index=scan_index, object_guess=object_guess, measured_domain=domain,
                    measured_reason=reason, source="<RawData>", notes=notes)

    # -- legacy attributes --------------------------------------------------------------------

    @property
    def xcoords(self) -> np.ndarray:
        return self.scan.xcoords

    @property
    def ycoords(self) -> np.ndarray:
        return self.scan.ycoords

    @property
    def xcoords_start(self) -> np.ndarray:
        return self.scan.xcoords_start

    @property
    def ycoords_start(self) -> np.ndarray:
        return self.scan.ycoords_start

    @property
    def diff3d(self) -> np.ndarray:
        return self.scan.diffraction

    @property
    def probeGuess(self) -> np.ndarray:
        return self.scan.probe

    @property
    def scan_index(self) -> np.ndarray:
        return self.scan.scan_index

    @property
    def objectGuess(self) -> np.ndarray | None:
        return self.scan.object_guess

    def __len__(self) -> int:
        return self.scan.n_positions

    def __repr__(self) -> str:
        return (f"RawData({self.scan.n_positions} positions, N={self.scan.N}, "
                f"source={self.scan.source!r})")

    # -- grouping -----------------------------------------------------------------------------

    def grouped(self, N: int | None = None, K: int = 4, nsamples: int = 1,
                gridsize: int | None = None, seed: int | None = None,
                sequential_sampling: bool = False) -> GroupedData:
        """The :class:`GroupedData` behind :meth:`generate_grouped_data` (same arguments)."""
        if gridsize is None:
            gridsize = int(params.get("gridsize", 1))
        if N not in (None, 0) and int(N) != self.scan.N:
            raise InputError("patch size mismatch", "generate_grouped_data N",
                             f"{self.scan.N}, the pattern size of the data", str(N))
        n_positions = self.scan.n_positions
        n_groups = None
        oversample = False
        if nsamples is not None and int(nsamples) > n_positions:
            if gridsize > 1:
                n_groups, oversample = int(nsamples), True
            else:
                log.info("nsamples=%d > %d positions with gridsize 1: using every position once",
                         nsamples, n_positions)
        return GroupedData.from_scan(self.scan, int(gridsize), neighbor_count=int(K),
                                     n_groups=n_groups, seed=0 if seed is None else int(seed),
                                     sequential=bool(sequential_sampling),
                                     enable_oversampling=oversample)

    def generate_grouped_data(self, N, K: int = 4, nsamples: int = 1, gridsize: int | None = None,
                              seed: int | None = None, sequential_sampling: bool = False,
                              dataset_path=None, enable_oversampling: bool = False,
                              neighbor_pool_size=None) -> dict:
        """Group the scan and return the legacy dict (``GroupedData.as_dict()``).

        Parameters
        ----------
        N : int
            Pattern size; must match the data (0 or None: take it from the data).
        K : int
            Neighbours a group's members are drawn from (K >= gridsize**2 - 1).
        nsamples : int
            ``<= M`` (scan positions): a group anchored at every position; ``> M``: that many
            groups (oversampling, gridsize > 1).
        gridsize : int, optional
            Default ``ptycho.params.cfg['gridsize']`` or 1.
        seed : int, optional
            Seed of the neighbour draws (default 0).
        sequential_sampling, dataset_path, enable_oversampling, neighbor_pool_size
            Accepted for compatibility; every position is always covered, so they have no effect.

        Returns
        -------
        dict
            ``diffraction``, ``X_full`` (b, N, N, C), ``Y``, ``coords_nn``, ``coords_offsets``,
            ``coords_relative``, ``coords_start_*``, ``coords_global``, ``nn_indices``,
            ``objectGuess``, ``norm_factor`` (see :meth:`GroupedData.as_dict`).
        """
        return self.grouped(N, K=K, nsamples=nsamples, gridsize=gridsize, seed=seed,
                            sequential_sampling=sequential_sampling).as_dict()

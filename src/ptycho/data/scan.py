"""The in-memory scan: diffraction amplitudes, positions, probe and optional ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Scan:
    """One ptychography scan in the package's conventions (design section 2).

    Attributes
    ----------
    diffraction : ndarray, shape (M, N, N)
        Measured far-field **amplitudes** (sqrt of counts), float32 or the source float dtype.
        Large scans hold a :class:`ptycho.data.lazy.LazyPatterns` instead (same shape and
        indexing, patterns read from disk on demand): code touching all patterns goes through
        ``ptycho.data.lazy.iter_chunks`` / ``pattern_power``.
    xcoords, ycoords : ndarray, shape (M,), float64
        Scan positions in object pixels (x = column, y = row).
    probe : ndarray, shape (N, N), complex64
        Probe guess (mode 0 of a multi-mode stack).
    probe_modes : ndarray, shape (K, N, N), complex64, or None
        Every mode of a probe given as K >= 2 incoherent modes (``probe`` is its mode 0);
        None for a single-mode probe. A model with ``ModelConfig.probe_modes`` M > 1 starts
        from them (:func:`ptycho.physics.initial_probe_modes`); see :meth:`probe_stack`.
    xcoords_start, ycoords_start : ndarray, shape (M,), float64
        Nominal positions (default: the same as ``xcoords``/``ycoords``).
    scan_index : ndarray, shape (M,), int64
    object_guess : ndarray, shape (H, W), complex64, optional
        Ground truth or initial object.
    bad_pixels : ndarray, shape (N, N), bool, optional
        Detector pixels not to use in any pattern (True = bad: dead, hot, module gap, beamstop),
        on the final N x N grid (after any crop/bin on read). The union of the file's own mask
        and ``--mask FILE``; None when nothing is masked.
    saturation_counts : float or None
        Per-frame saturation level in counts: in each pattern, pixels whose measured count
        (``amplitude**2``, before any normalisation, after binning) is at or above it are
        excluded from that pattern only. None (default): no saturation exclusion. Set by
        ``--saturation COUNTS``.
    measured_domain : {'amplitude', 'intensity'}
        What the file held before conversion to amplitude.
    measured_reason : str
        Why the reader decided ``measured_domain`` (e.g. "the file's 'measurement' key",
        "an integer dtype (uint16)", "requested"); empty when the scan was not read from data.
    source : str
        File name (for messages).
    """

    diffraction: np.ndarray
    xcoords: np.ndarray
    ycoords: np.ndarray
    probe: np.ndarray
    xcoords_start: np.ndarray | None = None
    ycoords_start: np.ndarray | None = None
    scan_index: np.ndarray | None = None
    object_guess: np.ndarray | None = None
    bad_pixels: np.ndarray | None = None
    saturation_counts: float | None = None
    probe_modes: np.ndarray | None = None
    measured_domain: str = "amplitude"
    measured_reason: str = ""
    source: str = "<memory>"
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.xcoords = np.asarray(self.xcoords, np.float64).reshape(-1)
        self.ycoords = np.asarray(self.ycoords, np.float64).reshape(-1)
        if self.xcoords_start is None:
            self.xcoords_start = self.xcoords.copy()
        if self.ycoords_start is None:
            self.ycoords_start = self.ycoords.copy()
        self.xcoords_start = np.asarray(self.xcoords_start, np.float64).reshape(-1)
        self.ycoords_start = np.asarray(self.ycoords_start, np.float64).reshape(-1)
        if self.scan_index is None:
            self.scan_index = np.zeros(len(self.xcoords), np.int64)

    @property
    def n_positions(self) -> int:
        """Number of scan positions M."""
        return int(self.diffraction.shape[0])

    @property
    def N(self) -> int:
        """Pattern size in pixels."""
        return int(self.diffraction.shape[-1])

    def probe_stack(self) -> np.ndarray:
        """Every probe mode given, (K, N, N) complex64: ``probe_modes``, else ``probe[None]``."""
        return self.probe_modes if self.probe_modes is not None else self.probe[None]

    def initial_probe(self, modes: int = 1) -> np.ndarray:
        """The starting probe of a model with ``modes`` incoherent modes (not normalised).

        1: ``probe`` (N, N), as always; M > 1: every mode given, completed and orthogonalised
        by :func:`ptycho.physics.initial_probe_modes`, (M, N, N) complex128.

        Raises
        ------
        ptycho.errors.InputError
            The modes given are linearly dependent (a kept mode has no power of its own), or
            mode 0 is too small to make the missing modes from.
        """
        if modes == 1:
            return self.probe
        from ptycho import physics
        from ptycho.errors import InputError

        try:
            return physics.initial_probe_modes(self.probe_stack(), modes)
        except ValueError as exc:
            raise InputError("unusable probe modes", f"{Path(self.source).name}:probe",
                             f"{modes} linearly independent probe modes (or fewer: the missing "
                             f"ones are made from mode 0)", str(exc)) from None

    def mean_photons_per_pattern(self) -> float:
        """Mean over patterns of the total counts ``sum(amplitude**2)`` (float64, chunk-wise)."""
        from ptycho.data.lazy import pattern_power

        return float(pattern_power(self.diffraction).mean())

    def subset(self, indices: np.ndarray) -> Scan:
        """A new scan with only the positions ``indices`` (shares the probe and object)."""
        indices = np.asarray(indices)
        return Scan(
            diffraction=self.diffraction[indices],
            xcoords=self.xcoords[indices],
            ycoords=self.ycoords[indices],
            probe=self.probe,
            xcoords_start=self.xcoords_start[indices],
            ycoords_start=self.ycoords_start[indices],
            scan_index=self.scan_index[indices],
            object_guess=self.object_guess,
            bad_pixels=self.bad_pixels,
            saturation_counts=self.saturation_counts,
            probe_modes=self.probe_modes,
            measured_domain=self.measured_domain,
            measured_reason=self.measured_reason,
            source=self.source,
            notes=list(self.notes),
        )

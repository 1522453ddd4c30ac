"""Realistic detector frames of a simulated scan: what a synchrotron pixel detector records.

:func:`simulate_realistic` runs :func:`ptycho.data.simulation.simulate` (the clean N x N scan,
exact Poisson counts of the package's forward model, a 2-mode probe by default) and turns each
pattern into a raw 2N x 2N detector frame (``docs/data-formats.md``, "Realistic simulated
scans"):

- **Window.** The beam centre (zero spatial frequency) sits at raw pixel
  ``(N + offset_row, N + offset_col)``, off the frame centre. The N x N window around it
  (rows ``centre_row - N/2 .. centre_row + N/2 - 1``, columns alike: the window that
  ``--crop N`` cuts, :mod:`ptycho.data.detector`) holds the clean scan's counts unchanged.
- **Outside the window** the frame holds the high-angle scattering of an object made of square
  pixels: the window's expected intensity repeated with period N and attenuated by
  ``s(k_row) s(k_col)``, ``s(k) = min(1, sinc^2(k / N) / sinc^2(1/2))`` (k in detector pixels
  from the beam centre, ``sinc(u) = sin(pi u) / (pi u)``), drawn as Poisson counts. The
  reconstruction's N x N model never sees it.
- **Defects** (raw pixels, all listed in the mask except saturation): a beamstop (disc of zero
  counts around the beam centre), dead pixels (random, zero counts), module gaps (one
  horizontal and one vertical stripe of zero counts crossing the window away from the centre),
  hot pixels (a constant high count in every frame) and saturation: counts are clipped at a
  stated level, as a counting detector does; the clipped pixels are NOT in the mask (the
  reader finds them with ``--saturation LEVEL``).
- **Geometry.** Energy, distance and detector pixel size give the object pixel
  ``dx = wavelength * distance / (N * pixel)`` of the N x N window; the sample translation is
  ``-(x, y) * dx`` in metres, so the CXI reader gives back the exact positions in object
  pixels.

Randomness: the clean scan uses ``seed`` as :func:`ptycho.data.simulation.simulate` does; the
detector (tail counts, dead and hot pixels) uses the independent child stream
``numpy.random.SeedSequence(seed).spawn(3)[2]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptycho.errors import InputError

__all__ = ["DetectorDefects", "RealisticScan", "simulate_realistic", "write_realistic_cxi"]

#: Photon energy (J) of the realistic scans: 8 keV.
ENERGY_J = 8e3 * 1.602176634e-19
#: Sample-detector distance (m).
DISTANCE_M = 2.0
#: Detector pixel side (m), a hybrid pixel detector's 75 um.
PIXEL_SIZE_M = 75e-6
#: Fraction of the valid window readings at or above the default saturation level.
SATURATED_FRACTION = 1e-3


@dataclass(frozen=True)
class DetectorDefects:
    """What the detector does to the frames (None = the default for N, see each field).

    Attributes
    ----------
    beam_offset_px : (row, col) int or None
        Beam centre minus the frame centre ``(N, N)``, raw pixels; default
        ``(-round(N / 10), round(N / 8))`` ((-6, 8) at N = 64). ``|offset| <= N / 2``.
    beamstop_radius_px : float or None
        Beamstop disc radius around the beam centre (pixels whose centre is within it);
        default ``max(1, N / 32)``.
    dead_fraction : float
        Fraction of the frame's pixels that are dead (random; zero counts), in [0, 0.5].
    gap_width_px : int or None
        Width of each module-gap stripe; default ``max(1, N // 32)``; 0 = no gaps.
    hot_pixels : int
        Number of hot pixels (random, inside the window, outside the beamstop), each reading
        half the saturation level in every frame.
    saturation_counts : int or None
        Counts are clipped at this level; default: the level reached by about
        :data:`SATURATED_FRACTION` of the valid window readings (2 significant digits).
    """

    beam_offset_px: tuple[int, int] | None = None
    beamstop_radius_px: float | None = None
    dead_fraction: float = 0.03
    gap_width_px: int | None = None
    hot_pixels: int = 2
    saturation_counts: int | None = None

    def resolved(self, N: int) -> DetectorDefects:
        """The defects with every default filled in for patterns of N pixels (checked)."""
        offset = self.beam_offset_px
        if offset is None:
            offset = (-int(round(N / 10)), int(round(N / 8)))
        if len(offset) != 2 or not all(isinstance(v, (int, np.integer)) and abs(v) <= N // 2
                                       for v in offset):
            raise InputError("invalid value", "--beam-offset",
                             f"ROW,COL: whole pixels within +-{N // 2} (N/2)", repr(offset))
        radius = max(1.0, N / 32) if self.beamstop_radius_px is None else self.beamstop_radius_px
        if not (isinstance(radius, (int, float)) and 0 <= radius <= N / 4):
            raise InputError("invalid value", "--beamstop-radius",
                             f"a radius in pixels from 0 to {N / 4:g} (N/4)", repr(radius))
        if not (isinstance(self.dead_fraction, (int, float)) and
                0 <= self.dead_fraction <= 0.5):
            raise InputError("invalid value", "--dead-fraction", "a fraction from 0 to 0.5",
                             repr(self.dead_fraction))
        gap = max(1, N // 32) if self.gap_width_px is None else self.gap_width_px
        if not (isinstance(gap, (int, np.integer)) and 0 <= gap <= N // 8):
            raise InputError("invalid value", "--gap-width",
                             f"a stripe width in pixels from 0 to {N // 8} (N/8)", repr(gap))
        if not (isinstance(self.hot_pixels, (int, np.integer)) and 0 <= self.hot_pixels <= 16):
            raise InputError("invalid value", "--hot-pixels", "a number of pixels from 0 to 16",
                             repr(self.hot_pixels))
        level = self.saturation_counts
        if level is not None and not (isinstance(level, (int, np.integer)) and level >= 1):
            raise InputError("invalid value", "--saturation-level", "a whole count >= 1",
                             repr(level))
        return DetectorDefects((int(offset[0]), int(offset[1])), float(radius),
                               float(self.dead_fraction), int(gap), int(self.hot_pixels), level)


@dataclass
class RealisticScan:
    """A realistic scan: raw detector frames, their geometry and the ground truth.

    Attributes
    ----------
    frames : ndarray, shape (M, 2N, 2N), uint32
        Raw detector counts (defects applied, clipped at ``saturation_counts``).
    mask : ndarray, shape (2N, 2N), bool
        True = do not use: beamstop, module gaps, dead and hot pixels (not saturation).
    centre_px : (row, col) int
        Beam centre in raw detector pixels.
    saturation_counts : int
        The clipping level (counts).
    translation_m : ndarray, shape (M, 3), float64
        Sample translation in metres (the beam position is its negative; z = 0).
    energy_J, distance_m, pixel_size_m : float
        Photon energy (J), sample-detector distance (m), detector pixel side (m).
    object_pixel_m : float
        Object pixel side of the N x N window (m).
    probe_guess : ndarray, shape (N, N), complex64
        The coherent probe the modes were made from (total power of the modes): the
        beamline's probe guess written as the CXI probe.
    defects : DetectorDefects
        The resolved defects.
    clean : ptycho.data.simulation.Simulation
        The clean N x N scan (same object, positions, modes and window counts): its ``scan``
        holds the ground truth (``object_guess``, ``probe_modes`` or ``probe``, positions in
        object pixels).
    """

    frames: np.ndarray
    mask: np.ndarray
    centre_px: tuple[int, int]
    saturation_counts: int
    translation_m: np.ndarray
    energy_J: float
    distance_m: float
    pixel_size_m: float
    object_pixel_m: float
    probe_guess: np.ndarray
    defects: DetectorDefects
    clean: object

    @property
    def N(self) -> int:
        """Pattern size of the window (pixels)."""
        return self.frames.shape[-1] // 2

    @property
    def true_probe(self) -> np.ndarray:
        """The probe that made the data, (modes, N, N) complex64."""
        scan = self.clean.scan
        return scan.probe_modes if scan.probe_modes is not None else scan.probe[None]


def _envelope(offsets: np.ndarray, n: int) -> np.ndarray:
    """``s(k) = min(1, sinc^2(k / n) / sinc^2(1/2))`` of detector offsets k (float64)."""
    return np.minimum(1.0, np.sinc(offsets / n) ** 2 / np.sinc(0.5) ** 2)


def _defect_mask(shape: tuple[int, int], centre: tuple[int, int], n: int,
                 defects: DetectorDefects, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(zero, hot, window)``: bool (H, W) masks of the zero-count pixels (beamstop, gaps,
    dead), of the hot pixels, and of the N x N window around ``centre``."""
    rows, cols = np.indices(shape)
    d_row, d_col = rows - centre[0], cols - centre[1]
    window = (d_row >= -n // 2) & (d_row < n // 2) & (d_col >= -n // 2) & (d_col < n // 2)
    beamstop = d_row ** 2 + d_col ** 2 <= defects.beamstop_radius_px ** 2
    gaps = np.zeros(shape, bool)
    if defects.gap_width_px:
        row0, col0 = centre[0] + n // 4, centre[1] - n // 3
        gaps[row0:row0 + defects.gap_width_px, :] = True
        gaps[:, col0:col0 + defects.gap_width_px] = True
    dead = rng.random(shape) < defects.dead_fraction
    zero = beamstop | gaps | dead
    candidates = np.flatnonzero(window & ~zero)
    hot = np.zeros(shape, bool)
    hot.flat[rng.choice(candidates, size=min(defects.hot_pixels, len(candidates)),
                        replace=False)] = True
    return zero, hot, window


def _auto_level(window_counts: np.ndarray) -> int:
    """The count reached by about :data:`SATURATED_FRACTION` of the readings, rounded down to
    2 significant digits (>= 1, so at least one reading reaches it)."""
    level = float(np.quantile(window_counts, 1.0 - SATURATED_FRACTION))
    if level < 1:
        return 1
    digits = 10 ** max(0, int(math.floor(math.log10(level))) - 1)
    return max(1, int(level // digits) * digits)


def simulate_realistic(*, N: int = 64, probe_kind: str = "default", probe_modes: int = 2,
                       second_mode_power: float = 0.2, defects: DetectorDefects | None = None,
                       seed: int = 0, **scan_args) -> RealisticScan:
    """Simulate a scan as a pixel detector records it (module docstring).

    Parameters
    ----------
    N : int
        Side of the reconstructed patterns (pixels); the frames are 2N x 2N.
    probe_kind : {'default', 'defocused'}
        The coherent probe (:func:`ptycho.data.sim_probes.make_probe`).
    probe_modes : {1, 2}
        2: :func:`ptycho.data.simulation.mixed_state_probe` with ``second_mode_power``.
    second_mode_power : float, in (0, 0.5]
        Fraction of the total power in mode 1.
    defects : DetectorDefects, optional
        Detector defects (default: :class:`DetectorDefects` ()).
    seed : int
        Seed of the scan and of the detector (module docstring).
    **scan_args
        ``object_kind``, ``scan_kind``, ``object_size``, ``step``, ``jitter``,
        ``n_positions``, ``nphotons`` of :func:`ptycho.data.simulation.simulate`.

    Returns
    -------
    RealisticScan

    Raises
    ------
    ptycho.errors.InputError
        An invalid argument (naming the command-line flag).
    """
    from ptycho.data.cxi import object_pixel_size_m, wavelength_m
    from ptycho.data.sim_probes import make_probe
    from ptycho.data.simulation import _seed, mixed_state_probe, simulate

    seed = _seed(seed)
    if probe_modes not in (1, 2) or isinstance(probe_modes, bool):
        raise InputError("invalid value", "--probe-modes", "1 or 2 simulated probe modes",
                         repr(probe_modes))
    defects = (defects or DetectorDefects()).resolved(int(N))
    coherent = make_probe(probe_kind, N)
    if probe_modes == 2:
        try:
            probe = mixed_state_probe(coherent, second_mode_power, seed)
        except InputError as exc:
            raise InputError(exc.what, "--mode-power", exc.expected, exc.actual) from None
    else:
        probe = coherent
    clean = simulate(N=N, seed=seed, probe=probe, **scan_args)
    n = clean.scan.N
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(3)[2])

    size = 2 * n
    centre = (n + defects.beam_offset_px[0], n + defects.beam_offset_px[1])
    zero, hot, window = _defect_mask((size, size), centre, n, defects, rng)
    d_row = np.arange(size) - centre[0]
    d_col = np.arange(size) - centre[1]
    # expected tail: the window's intensity repeated with period n, index n/2 = the beam centre
    src_row, src_col = (d_row + n // 2) % n, (d_col + n // 2) % n
    envelope = _envelope(d_row, n)[:, None] * _envelope(d_col, n)[None, :]
    frames = np.empty((len(clean.counts), size, size), np.uint32)
    win = np.s_[centre[0] - n // 2:centre[0] + n // 2, centre[1] - n // 2:centre[1] + n // 2]
    for index, (expected, counts) in enumerate(zip(clean.expected_intensity, clean.counts)):
        tail = rng.poisson(expected[np.ix_(src_row, src_col)] * envelope)
        tail[win] = counts
        frames[index] = tail
    frames[:, zero] = 0
    level = defects.saturation_counts
    if level is None:
        level = _auto_level(frames[:, window & ~zero & ~hot])
    frames[:, hot] = max(1, level // 2)
    np.minimum(frames, level, out=frames)

    wavelength = wavelength_m(ENERGY_J)
    dx = object_pixel_size_m(wavelength, DISTANCE_M, n, PIXEL_SIZE_M)
    scan = clean.scan
    translation = -np.column_stack([scan.xcoords * dx, scan.ycoords * dx,
                                    np.zeros(scan.n_positions)])
    total = math.sqrt(float(np.sum(np.abs(probe) ** 2)) / float(np.sum(np.abs(coherent) ** 2)))
    defects = DetectorDefects(defects.beam_offset_px, defects.beamstop_radius_px,
                              defects.dead_fraction, defects.gap_width_px, defects.hot_pixels,
                              int(level))
    return RealisticScan(frames=frames, mask=zero | hot, centre_px=centre,
                         saturation_counts=int(level), translation_m=translation,
                         energy_J=ENERGY_J, distance_m=DISTANCE_M, pixel_size_m=PIXEL_SIZE_M,
                         object_pixel_m=dx,
                         probe_guess=(coherent * total).astype(np.complex64),
                         defects=defects, clean=clean)


def write_realistic_cxi(path, realistic: RealisticScan):
    """Write a :class:`RealisticScan` as a CXI file, atomically; return the path.

    Written: the frames (uint32) at ``entry_1/instrument_1/detector_1/data``, the mask
    (beamstop, gaps, dead and hot pixels), the geometry, ``detector_1/saturation_value``
    (informative: the reader uses ``--saturation``), the probe guess
    (``RealisticScan.probe_guess``) at ``source_1/probe``, and in :data:`ptycho.data.cxi.TRUTH`
    the ground truth (``object``, the true ``probe`` modes, ``xcoords_px``/``ycoords_px``),
    the beam centre, the object pixel, the resolved defects and the ``sim_*`` metadata of the
    clean simulation (the seed among them).
    """
    from ptycho.data.cxi import DETECTOR, TRUTH, write_scan_cxi

    scan = realistic.clean.scan
    datasets = {
        f"{DETECTOR}/saturation_value": np.int64(realistic.saturation_counts),
        f"{TRUTH}/object": np.asarray(scan.object_guess, np.complex64),
        f"{TRUTH}/probe": np.asarray(realistic.true_probe, np.complex64),
        f"{TRUTH}/xcoords_px": np.asarray(scan.xcoords, np.float64),
        f"{TRUTH}/ycoords_px": np.asarray(scan.ycoords, np.float64),
        f"{TRUTH}/beam_centre_px": np.asarray(realistic.centre_px, np.int64),
        f"{TRUTH}/object_pixel_m": np.float64(realistic.object_pixel_m),
    }
    defects = realistic.defects
    for name in ("beam_offset_px", "beamstop_radius_px", "dead_fraction", "gap_width_px",
                 "hot_pixels", "saturation_counts"):
        datasets[f"{TRUTH}/{name}"] = np.asarray(getattr(defects, name))
    for key, value in realistic.clean.metadata.items():
        datasets[f"{TRUTH}/{key}"] = str(value) if value.dtype.kind == "U" else value
    path = write_scan_cxi(path, realistic.frames, realistic.translation_m,
                          energy_J=realistic.energy_J, distance_m=realistic.distance_m,
                          pixel_size_m=realistic.pixel_size_m, probe=realistic.probe_guess,
                          mask=realistic.mask, datasets=datasets)
    return path

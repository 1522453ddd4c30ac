"""Simulated far-field ptychography scans with Poisson noise (ground truth included).

Pipeline (design section 2, using the NumPy reference in :mod:`ptycho.physics`)::

    O = make_object(kind, size)             complex (H, W), amplitude [0.5, 1], phase [-pi/2, pi/2]
    P = make_probe(kind, N)                 complex (N, N), or given: (N, N) or (M, N, N) modes
    (x, y) = make_positions(kind, ...)      object pixels, every N x N patch inside O
    I_raw = far_field_amplitude(illuminate(extract_patches(O, x, y, N), P)) ** 2
                                            (modes: sum_k |F(P_k * patch)|**2, incoherent)
    I = I_raw * nphotons / mean_m sum_xy I_raw[m]      one scalar for the whole scan
    counts ~ Poisson(I)                     numpy.random.default_rng(seed)
    diff3d = sqrt(counts)                   float32 amplitudes

``O`` and ``P`` are rounded to complex64 *before* the forward model, so the stored
``objectGuess`` and ``probeGuess`` are exactly the fields that produced the data.

Randomness and determinism
--------------------------
One integer ``seed`` drives everything: the Poisson draw uses ``numpy.random.default_rng(seed)``;
the object and the positions (random pattern, jitter) use the independent child streams
``numpy.random.SeedSequence(seed).spawn(2)``. The same arguments and seed therefore give
bit-identical arrays; changing only the scan pattern does not change the object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ptycho.data.scan import Scan
from ptycho.data.sim_objects import (
    AMPLITUDE_RANGE,
    OBJECT_KINDS,
    PHASE_RANGE,
    SAMPLE_IMAGES,
    make_object,
)
from ptycho.data.sim_positions import SCAN_KINDS, ScanPositions, make_positions
from ptycho.data.sim_probes import PROBE_KINDS, make_probe
from ptycho.errors import InputError

__all__ = [
    "AMPLITUDE_RANGE", "OBJECT_KINDS", "PHASE_RANGE", "PROBE_KINDS", "SAMPLE_IMAGES",
    "SCAN_KINDS", "ScanPositions", "Simulation", "draw_counts", "expected_intensity",
    "make_object", "make_positions", "make_probe", "mixed_state_probe", "scale_to_photons",
    "simulate", "simulate_scan", "write_simulation",
]

#: Positions per chunk in :func:`expected_intensity` (bounds the temporary memory).
CHUNK_POSITIONS = 256


def expected_intensity(obj: np.ndarray, probe: np.ndarray, xcoords, ycoords) -> np.ndarray:
    """Noise-free far-field intensity ``|F{P * patch}|**2`` of every scan position (unscaled).

    Parameters
    ----------
    obj : ndarray, shape (H, W), complex
        Object transmission.
    probe : ndarray, shape (N, N), or (M, N, N) incoherent modes, complex
        Illumination; modes add their intensities, ``sum_k |F{P_k * patch}|**2``
        (:func:`ptycho.physics.mixed_state_intensity`).
    xcoords, ycoords : array_like, shape (M,), float
        Positions in object pixels (x = column, y = row).

    Returns
    -------
    ndarray, shape (M, N, N), float64
        ``far_field_amplitude(illuminate(extract_patches(obj, x, y, N), probe)) ** 2``, DC at
        ``(N/2, N/2)``, in the units of ``|probe * obj|**2`` (Parseval: each pattern sums to
        ``sum |P * patch|**2``).
    """
    from ptycho.physics import extract_patches, mixed_state_intensity

    probe = np.asarray(probe)
    n = int(probe.shape[-1])
    x = np.asarray(xcoords, np.float64).reshape(-1)
    y = np.asarray(ycoords, np.float64).reshape(-1)
    if len(x) != len(y):
        raise InputError("length mismatch", "ycoords", f"{len(x)} values like xcoords",
                         f"{len(y)} values")
    out = np.empty((len(x), n, n), np.float64)
    for start in range(0, len(x), CHUNK_POSITIONS):
        stop = start + CHUNK_POSITIONS
        patches = extract_patches(obj, x[start:stop], y[start:stop], n)
        out[start:stop] = mixed_state_intensity(patches, probe)
    return out


def mixed_state_probe(probe: np.ndarray, second_mode_power: float = 0.2,
                      seed: int = 0) -> np.ndarray:
    """A two-mode (partially coherent) probe made from a coherent one.

    Mode 1 is the probe times a first-order Hermite pattern of random orientation,
    ``P * (cos t He_1(u) + sin t He_1(v))`` (:func:`ptycho.physics.hermite_pattern`; ``t``
    uniform in [0, 2 pi) from ``numpy.random.default_rng(seed)``), made orthogonal to the
    probe (Gram-Schmidt); mode 0 is the probe. Both are scaled so that mode 1 carries
    ``second_mode_power`` of the total power and the total power ``sum |P_k|**2`` equals the
    given probe's.

    Parameters
    ----------
    probe : ndarray, shape (N, N), complex
    second_mode_power : float, in (0, 0.5]
        Fraction of the total power in mode 1 (e.g. 0.2: 80 % / 20 %).
    seed : int, >= 0

    Returns
    -------
    ndarray, shape (2, N, N), complex128
        Orthogonal modes ordered by power (:func:`ptycho.physics.mode_powers` gives
        ``(1 - f, f)`` times the probe's power).
    """
    from ptycho import physics

    probe = np.asarray(probe, np.complex128)
    if probe.ndim != 2 or probe.shape[0] != probe.shape[1] or not np.any(probe):
        raise InputError("wrong shape", "probe", "a non-zero square probe (N, N)",
                         f"shape {probe.shape}")
    fraction = second_mode_power
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or \
            not 0 < fraction <= 0.5:
        raise InputError("invalid value", "second_mode_power",
                         "a fraction of the power in (0, 0.5]", repr(fraction))
    angle = np.random.default_rng(_seed(seed)).uniform(0.0, 2.0 * math.pi)
    pattern = (math.cos(angle) * physics.hermite_pattern(probe, 1, 0)
               + math.sin(angle) * physics.hermite_pattern(probe, 0, 1))
    second = probe * pattern
    second = second - probe * (np.vdot(probe, second) / np.vdot(probe, probe))
    power = float(physics.mode_powers(probe)[0])
    return np.stack([probe * math.sqrt(1.0 - fraction),
                     second * math.sqrt(fraction * power / float(physics.mode_powers(second)[0]))])


def scale_to_photons(intensity: np.ndarray, nphotons: float) -> tuple[np.ndarray, float]:
    """Scale intensities so that the mean total per pattern is exactly ``nphotons``.

    Parameters
    ----------
    intensity : ndarray, shape (M, N, N), float
    nphotons : float, > 0
        Target mean expected counts per pattern.

    Returns
    -------
    scaled : ndarray, shape (M, N, N), float64, expected photon counts
    factor : float
        The single scalar applied to the whole scan.
    """
    nphotons = float(nphotons)
    if not (math.isfinite(nphotons) and nphotons > 0):
        raise InputError("invalid value", "--nphotons", "a finite number of photons > 0",
                         repr(nphotons))
    intensity = np.asarray(intensity, np.float64)
    mean_total = float(intensity.sum(axis=(-2, -1)).mean())
    if not mean_total > 0:
        raise InputError("zero signal", "simulation", "a probe and object that transmit light",
                         "all-zero diffraction")
    factor = nphotons / mean_total
    return intensity * factor, factor


def draw_counts(intensity: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon counts with the given expectation.

    Parameters
    ----------
    intensity : ndarray, any shape, float, >= 0, expected counts
    rng : numpy.random.Generator

    Returns
    -------
    ndarray, same shape, int64
    """
    return rng.poisson(np.asarray(intensity, np.float64)).astype(np.int64, copy=False)


@dataclass
class Simulation:
    """Everything a simulation produced.

    Attributes
    ----------
    scan : Scan
        Amplitudes ``sqrt(counts)`` (float32), positions, probe and ground-truth object.
    expected_intensity : ndarray, shape (M, N, N), float64
        Expected counts per pixel (after photon scaling).
    counts : ndarray, shape (M, N, N), int64
        The Poisson draw.
    photon_scale : float
        Factor applied to the raw ``|F{P O}|**2`` to reach ``nphotons`` per pattern.
    metadata : dict[str, ndarray]
        ``sim_*`` plain arrays written next to the scan (strings as 0-d unicode arrays).
    """

    scan: Scan
    expected_intensity: np.ndarray
    counts: np.ndarray
    photon_scale: float
    metadata: dict = field(default_factory=dict)


def _seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InputError("invalid value", "--seed", "a non-negative integer", repr(seed))
    return int(seed)


def simulate(object_kind: str = "lines", probe_kind: str = "default", scan_kind: str = "raster",
             N: int = 64, object_size: int = 256, step: float = 8.0, jitter: float = 0.0,
             n_positions: int | None = None, nphotons: float = 1e6,
             seed: int = 0, probe: np.ndarray | None = None) -> Simulation:
    """Simulate a noisy scan and return it with the noise-free intensity and the counts.

    Parameters
    ----------
    object_kind : str
        ``'lines'``, ``'grf'``, ``'image:NAME'`` or ``'image:NAME:PHASE_NAME'``
        (:func:`ptycho.data.sim_objects.make_object`).
    probe_kind : {'default', 'defocused'}
        :func:`ptycho.data.sim_probes.make_probe`.
    scan_kind : {'raster', 'spiral', 'random'}
        :func:`ptycho.data.sim_positions.make_positions`.
    N : int
        Pattern and probe size in pixels (even, >= 8).
    object_size : int
        Object height and width in pixels (>= N + 2 * jitter).
    step : float
        Scan step in pixels (grid spacing / mean neighbour distance / random density).
    jitter : float
        Maximum uniform position jitter per axis in pixels.
    n_positions : int, optional
        Number of positions (default: all that fit).
    nphotons : float
        Mean expected counts per pattern (exact, one scalar for the scan).
    seed : int
        Seed of every random draw (module docstring).
    probe : ndarray, shape (N, N) or (M, N, N), complex, optional
        The illumination instead of ``probe_kind`` (whose size N it sets): M incoherent modes
        add their intensities (e.g. :func:`mixed_state_probe`); the scan then holds mode 0
        as ``probe`` and every mode as ``probe_modes``.

    Returns
    -------
    Simulation

    Raises
    ------
    ptycho.errors.InputError
        Any invalid argument, or an object too small for the patches.
    """
    seed = _seed(seed)
    object_seq, position_seq = np.random.SeedSequence(seed).spawn(2)
    if isinstance(object_size, bool) or int(object_size) != object_size or object_size < 1:
        raise InputError("invalid value", "--object-size", "a positive number of pixels",
                         repr(object_size))
    object_size = int(object_size)

    if probe is None:
        probe = make_probe(probe_kind, N).astype(np.complex64)
    else:
        probe = np.asarray(probe).astype(np.complex64)
        if probe.ndim not in (2, 3) or probe.shape[-1] != probe.shape[-2] or \
                not np.all(np.isfinite(probe)) or not np.any(probe):
            raise InputError("wrong shape", "probe", "a finite, non-zero (N, N) or (M, N, N) "
                             "probe", f"shape {probe.shape}")
        probe_kind = f"given ({1 if probe.ndim == 2 else len(probe)} modes)"
    N = int(probe.shape[-1])
    positions = make_positions(scan_kind, object_size, N, step=step, jitter=jitter,
                               n_positions=n_positions, rng=np.random.default_rng(position_seq))
    obj = make_object(object_kind, object_size, np.random.default_rng(object_seq))
    obj = obj.astype(np.complex64)

    raw = expected_intensity(obj, probe, positions.xcoords, positions.ycoords)
    intensity, factor = scale_to_photons(raw, nphotons)
    del raw
    counts = draw_counts(intensity, np.random.default_rng(seed))
    amplitude = np.sqrt(counts, dtype=np.float64).astype(np.float32)

    from ptycho import __version__, physics

    metadata = {
        "sim_object": np.array(str(object_kind)),
        "sim_probe": np.array(str(probe_kind)),
        "sim_scan": np.array(str(scan_kind)),
        "sim_object_size": np.array(object_size, np.int64),
        "sim_step": np.array(float(step), np.float64),
        "sim_jitter": np.array(float(jitter), np.float64),
        "sim_nphotons": np.array(float(nphotons), np.float64),
        "sim_seed": np.array(seed, np.int64),
        "sim_photon_scale": np.array(factor, np.float64),
        "sim_amplitude_range": np.array(AMPLITUDE_RANGE, np.float64),
        "sim_phase_range": np.array(PHASE_RANGE, np.float64),
        "sim_version": np.array(str(__version__)),
    }
    if probe.ndim == 3:
        metadata["sim_probe_modes"] = np.array(len(probe), np.int64)
        metadata["sim_mode_power"] = physics.mode_powers(probe) / physics.mode_powers(probe).sum()
    note = (f"simulated: object={object_kind}, probe={probe_kind}, scan={scan_kind}, N={N}, "
            f"object {object_size}x{object_size}, step={float(step):g}, "
            f"jitter={float(jitter):g}, {len(positions.xcoords)} positions, "
            f"nphotons={float(nphotons):g}, seed={seed}")
    scan = Scan(diffraction=amplitude, xcoords=positions.xcoords, ycoords=positions.ycoords,
                probe=probe if probe.ndim == 2 else probe[0],
                probe_modes=probe if probe.ndim == 3 and len(probe) > 1 else None,
                xcoords_start=positions.xcoords_start,
                ycoords_start=positions.ycoords_start, object_guess=obj,
                measured_domain="amplitude", source="<simulation>", notes=[note])
    return Simulation(scan=scan, expected_intensity=intensity, counts=counts,
                      photon_scale=factor, metadata=metadata)


def simulate_scan(object_kind: str = "lines", probe_kind: str = "default",
                  scan_kind: str = "raster", N: int = 64, object_size: int = 256,
                  step: float = 8.0, jitter: float = 0.0, n_positions: int | None = None,
                  nphotons: float = 1e6, seed: int = 0) -> Scan:
    """Simulate a noisy scan; the :class:`Scan` part of :func:`simulate` (same arguments).

    Returns
    -------
    Scan
        ``diffraction`` (M, N, N) float32 amplitudes ``sqrt(counts)``; ``xcoords``/``ycoords``
        (M,) float64 object pixels (``*_start`` are the nominal, un-jittered positions);
        ``probe`` (N, N) complex64, the probe used; ``object_guess`` (H, W) complex64, the
        ground truth.
    """
    return simulate(object_kind=object_kind, probe_kind=probe_kind, scan_kind=scan_kind, N=N,
                    object_size=object_size, step=step, jitter=jitter, n_positions=n_positions,
                    nphotons=nphotons, seed=seed).scan


def write_simulation(path: str | Path, simulation: Simulation) -> None:
    """Write a simulation as a scan NPZ (``diff3d`` amplitudes, ground truth, ``sim_*`` keys)."""
    from ptycho.data.npz import write_scan_npz

    write_scan_npz(path, simulation.scan, extra=simulation.metadata)

"""Scan patterns for simulated scans: raster, Fermat spiral and uniform random positions.

All positions are in object pixels (x = column, y = row; design section 2). A position (x, y)
reads the patch rows ``y - N/2 .. y + N/2 - 1`` and columns ``x - N/2 .. x + N/2 - 1``, so the
whole patch lies inside an (H, W) object exactly when ``N/2 <= x <= W - N/2`` and
``N/2 <= y <= H - N/2`` (bilinear sampling at the upper bound reads its last row/column with
weight one). Nominal positions are confined to that box shrunk by ``jitter`` on every side;
jitter is then added as independent uniform offsets in ``[-jitter, +jitter]`` per axis, so
every final position keeps its patch inside the object.

Patterns
--------
``'raster'``
    Row-major grid (rows of constant y, x increasing) with spacing ``step``, centred in the
    allowed box. Grid coordinates are integers (the start is an integer pixel and the k-th
    point sits at ``start + round(k * step)``), so ``jitter=0`` gives integer positions.
    ``n_positions=K`` takes a centred sub-grid of about ``ceil(sqrt(K))`` columns (fewer when
    the box is narrower, then more rows) and keeps its first K points in row-major order.
``'spiral'``
    Fermat spiral ``r_k = c sqrt(k)``, ``theta_k = k * golden angle`` about the object centre,
    with ``c = step / 1.69`` so that the mean nearest-neighbour distance is about ``step``.
    All points that fall in the allowed box, innermost first; ``n_positions=K`` keeps the
    first K.
``'random'``
    Independent uniform positions in the allowed box; ``n_positions`` defaults to the area of
    the box divided by ``step**2`` (the raster density).

Asking for more positions than fit raises :class:`ptycho.errors.InputError`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ptycho.errors import InputError

SCAN_KINDS = ("raster", "spiral", "random")
GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))
#: Mean nearest-neighbour distance of the Fermat spiral ``r = sqrt(k)`` (measured).
SPIRAL_NN_FACTOR = 1.69


class ScanPositions(NamedTuple):
    """Final and nominal scan positions, each an ndarray of shape (M,), float64, object pixels."""

    xcoords: np.ndarray
    ycoords: np.ndarray
    xcoords_start: np.ndarray
    ycoords_start: np.ndarray


def _shape(object_shape: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(object_shape, (tuple, list)):
        height, width = object_shape
    else:
        height = width = object_shape
    return int(height), int(width)


def allowed_box(object_shape: int | tuple[int, int], N: int,
                jitter: float = 0.0) -> tuple[float, float, float, float]:
    """Range of nominal positions whose jittered patch stays inside the object.

    Parameters
    ----------
    object_shape : int or (H, W), pixels
    N : int, patch size in pixels
    jitter : float, >= 0, maximum jitter in pixels

    Returns
    -------
    (x_lo, x_hi, y_lo, y_hi) : floats, object pixels, inclusive bounds

    Raises
    ------
    ptycho.errors.InputError
        The object is smaller than ``N + 2 * jitter`` in either direction.
    """
    height, width = _shape(object_shape)
    margin = N / 2 + jitter
    need = N + 2 * jitter
    if height < need or width < need:
        raise InputError("object too small", "--object-size",
                         f"at least N + 2*jitter = {need:g} pixels per side for N={N}, "
                         f"jitter={jitter:g}", f"{height}x{width}")
    return margin, width - margin, margin, height - margin


def _raster_axis(lo: float, hi: float, count: int, step: float) -> np.ndarray:
    """``count`` integer coordinates spaced by ``step`` (rounded), centred in ``[lo, hi]``."""
    lo_i, hi_i = math.ceil(lo), math.floor(hi)
    slack = (hi_i - lo_i) - (count - 1) * step
    start = lo_i + math.floor(slack / 2)
    return start + np.round(np.arange(count) * step)


def _raster(box, step: float, n_positions: int | None) -> tuple[np.ndarray, np.ndarray]:
    x_lo, x_hi, y_lo, y_hi = box
    if math.floor(x_hi) < math.ceil(x_lo) or math.floor(y_hi) < math.ceil(y_lo):
        raise InputError("object too small", "--object-size",
                         "room for at least one integer raster position (N + 2*ceil(jitter) "
                         "pixels per side)", f"allowed x in [{x_lo:g}, {x_hi:g}], "
                         f"y in [{y_lo:g}, {y_hi:g}]")
    nx = math.floor((math.floor(x_hi) - math.ceil(x_lo)) / step) + 1
    ny = math.floor((math.floor(y_hi) - math.ceil(y_lo)) / step) + 1
    if n_positions is None:
        gx, gy = nx, ny
    else:
        if n_positions > nx * ny:
            raise InputError("too many positions", "--positions",
                             f"at most {nx * ny} raster positions ({nx} x {ny}) at step "
                             f"{step:g}; use a larger --object-size or smaller --step",
                             str(n_positions))
        gx = min(nx, math.ceil(math.sqrt(n_positions)))
        gy = min(ny, math.ceil(n_positions / gx))
    xs = _raster_axis(x_lo, x_hi, gx, step)
    ys = _raster_axis(y_lo, y_hi, gy, step)
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    x, y = xx.reshape(-1), yy.reshape(-1)
    if n_positions is not None:
        x, y = x[:n_positions], y[:n_positions]
    return x.astype(np.float64), y.astype(np.float64)


def _spiral(box, step: float, n_positions: int | None) -> tuple[np.ndarray, np.ndarray]:
    x_lo, x_hi, y_lo, y_hi = box
    cx, cy = (x_lo + x_hi) / 2, (y_lo + y_hi) / 2
    c = step / SPIRAL_NN_FACTOR
    reach = math.hypot(x_hi - x_lo, y_hi - y_lo) / 2
    count = math.ceil((reach / c) ** 2) + 2
    k = np.arange(count, dtype=np.float64)
    radius = c * np.sqrt(k)
    theta = k * GOLDEN_ANGLE
    x = cx + radius * np.cos(theta)
    y = cy + radius * np.sin(theta)
    inside = (x >= x_lo) & (x <= x_hi) & (y >= y_lo) & (y <= y_hi)
    x, y = x[inside], y[inside]
    if n_positions is not None:
        if n_positions > len(x):
            raise InputError("too many positions", "--positions",
                             f"at most {len(x)} spiral positions at step {step:g}; use a larger "
                             "--object-size or smaller --step", str(n_positions))
        x, y = x[:n_positions], y[:n_positions]
    return x, y


def _random(box, step: float, n_positions: int | None,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    x_lo, x_hi, y_lo, y_hi = box
    if n_positions is None:
        n_positions = max(1, round((x_hi - x_lo) * (y_hi - y_lo) / step ** 2))
    x = rng.uniform(x_lo, x_hi, size=n_positions)
    y = rng.uniform(y_lo, y_hi, size=n_positions)
    return x, y


def make_positions(kind: str, object_shape: int | tuple[int, int], N: int,
                   step: float = 8.0, jitter: float = 0.0, n_positions: int | None = None,
                   rng: np.random.Generator | int | None = None) -> ScanPositions:
    """Scan positions of one pattern, inside the object with a full N x N patch each.

    Parameters
    ----------
    kind : {'raster', 'spiral', 'random'}
        Pattern (module docstring).
    object_shape : int or (H, W)
        Object size in pixels.
    N : int
        Patch (probe) size in pixels.
    step : float, > 0
        Grid spacing (raster), mean nearest-neighbour distance (spiral) or density
        ``1/step**2`` (random), pixels.
    jitter : float, >= 0
        Maximum uniform jitter per axis in pixels (0: none).
    n_positions : int, optional
        Number of positions K (default: all that fit; see module docstring).
    rng : numpy.random.Generator or int, optional
        Randomness for 'random' and the jitter.

    Returns
    -------
    ScanPositions
        ``xcoords, ycoords`` (jittered) and ``xcoords_start, ycoords_start`` (nominal), each
        shape (M,), float64.

    Raises
    ------
    ptycho.errors.InputError
        Unknown kind, invalid step/jitter/K, object too small or more positions than fit.
    """
    if kind not in SCAN_KINDS:
        raise InputError("unknown scan kind", "--scan", ", ".join(SCAN_KINDS), repr(kind))
    step = float(step)
    jitter = float(jitter)
    if not (math.isfinite(step) and step > 0):
        raise InputError("invalid value", "--step", "a step > 0 pixels", repr(step))
    if not (math.isfinite(jitter) and jitter >= 0):
        raise InputError("invalid value", "--jitter", "a jitter >= 0 pixels", repr(jitter))
    if n_positions is not None:
        if isinstance(n_positions, bool) or int(n_positions) != n_positions or n_positions < 1:
            raise InputError("invalid value", "--positions", "a positive integer",
                             repr(n_positions))
        n_positions = int(n_positions)
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    box = allowed_box(object_shape, N, jitter)
    if kind == "raster":
        x, y = _raster(box, step, n_positions)
    elif kind == "spiral":
        x, y = _spiral(box, step, n_positions)
    else:
        x, y = _random(box, step, n_positions, rng)
    x_start, y_start = x.astype(np.float64), y.astype(np.float64)
    if jitter > 0:
        x = x_start + rng.uniform(-jitter, jitter, size=len(x_start))
        y = y_start + rng.uniform(-jitter, jitter, size=len(y_start))
    else:
        x, y = x_start.copy(), y_start.copy()
    return ScanPositions(x, y, x_start, y_start)

"""The solver's object canvas: where it lies on the scan grid and how it starts (NumPy only).

Canvas pixel ``(R, C)`` is object pixel ``(y0_px + R, x0_px + C)`` of the scan's coordinates,
with integer ``x0_px``/``y0_px``, so a canvas overlays ``objectGuess`` and the stitched output
of ``ptychopinn infer`` without resampling when their origins are whole pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptycho import physics
from ptycho.errors import InputError


@dataclass(frozen=True)
class CanvasGeometry:
    """Placement of an ``(height, width)`` canvas on the scan grid.

    Attributes
    ----------
    x0_px, y0_px : int
        Scan-coordinate column and row of canvas pixel ``[0, 0]``.
    height, width : int
        Canvas size in pixels.
    """

    x0_px: int
    y0_px: int
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width

    def window_origin_px(self, positions_xy: np.ndarray, N: int) -> np.ndarray:
        """Canvas row and column of each patch's first pixel, ``(M, 2)`` float64 ``[row, col]``.

        The patch of position (x, y) is ``O(y - N/2 + r, x - N/2 + c)`` (design section 2).
        """
        positions_xy = np.asarray(positions_xy, np.float64)
        return np.column_stack([positions_xy[:, 1] - N / 2 - self.y0_px,
                                positions_xy[:, 0] - N / 2 - self.x0_px])


def canvas_for_positions(positions_xy: np.ndarray, N: int, margin_px: float) -> CanvasGeometry:
    """The smallest whole-pixel canvas holding every N x N patch with ``margin_px`` to spare.

    Each patch needs N + 1 pixels per axis (bilinear sampling reads one more row and column),
    and a position may move by up to ``margin_px`` per axis during position refinement.

    Parameters
    ----------
    positions_xy : ndarray, shape (M, 2), float, ``[x, y]`` object pixels
    N : int, patch size in pixels
    margin_px : float, >= 0
    """
    positions_xy = np.asarray(positions_xy, np.float64)
    low = positions_xy.min(axis=0) - N / 2 - margin_px
    high = positions_xy.max(axis=0) - N / 2 + margin_px
    x0, y0 = (math.floor(v) - 1 for v in low)
    width = math.ceil(high[0]) + N + 2 - x0
    height = math.ceil(high[1]) + N + 2 - y0
    return CanvasGeometry(x0_px=int(x0), y0_px=int(y0), height=int(height), width=int(width))


def resample_onto(geometry: CanvasGeometry, image: np.ndarray, x0_px: float, y0_px: float,
                  valid: np.ndarray | None = None) -> np.ndarray:
    """Place a complex image given on another grid onto the canvas (bilinear).

    Canvas pixels that the image does not cover (outside it, or where ``valid`` is False) take
    the image's mean amplitude with the phase of its mean: a flat continuation that neither
    adds nor removes power.

    Parameters
    ----------
    geometry : CanvasGeometry
    image : ndarray, shape (h, w), complex
    x0_px, y0_px : float
        Scan-coordinate column and row of ``image[0, 0]``.
    valid : ndarray, shape (h, w), bool, optional
        Pixels of ``image`` that hold data (e.g. ``weight > 0`` of a stitched object).

    Returns
    -------
    ndarray, shape ``geometry.shape``, complex64
    """
    image = np.asarray(image, np.complex128)
    if image.ndim != 2 or image.size == 0:
        raise InputError("invalid shape", "initial object", "a non-empty 2-D complex image",
                         f"shape {image.shape}")
    if not np.all(np.isfinite(image)):
        raise InputError("non-finite values", "initial object", "finite complex values")
    valid = np.ones(image.shape, bool) if valid is None else np.asarray(valid, bool)
    rows = np.arange(geometry.height, dtype=np.float64) + geometry.y0_px - float(y0_px)
    cols = np.arange(geometry.width, dtype=np.float64) + geometry.x0_px - float(x0_px)
    rr, cc = np.meshgrid(rows, cols, indexing="ij")
    values = physics.bilinear_sample(np.where(valid, image, 0), rr, cc)
    coverage = physics.bilinear_sample(valid.astype(np.float64), rr, cc)
    covered = coverage > 0.999
    if not covered.any():
        raise InputError("no overlap", "initial object",
                         "an object covering part of the scanned area",
                         f"shape {image.shape} at x0={float(x0_px):g}, y0={float(y0_px):g}")
    inside = image[valid]
    fill = np.mean(np.abs(inside)) * np.exp(1j * np.angle(np.mean(inside)))
    return np.where(covered, values, fill).astype(np.complex64)

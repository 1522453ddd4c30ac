"""Reassemble predicted patches into one object by shift-and-sum (vectorised scatter-add).

Canvas geometry
---------------
The central M x M crop of each N x N patch is placed at its scan position relative to the
centre of mass (COM) of all positions, rounded to whole pixels, on a square canvas of side ``S = M + 2 * pad`` with
``pad = ceil(max |offset - COM|)`` rounded up to an even number. Canvas pixel ``(R, C)`` is
object pixel ``(y0_px + R, x0_px + C)`` with ``x0_px = round(COM_x) - M//2 - pad`` (likewise
y): canvas pixels coincide with object pixels, so the result overlays ``objectGuess``. Sub-pixel positions are splatted bilinearly; the sum is
divided by the (bilinear) overlap count plus 1e-9, so uncovered pixels are 0.

With ``pixel_weight`` (M, M) each crop pixel contributes with that weight, numerator and
denominator alike: a weighted average. :func:`probe_weight` gives the illumination weight
``|P|**2`` (pixels the probe barely lit count little), which removes most of the scan-step
texture that a uniform crop leaves after a short training. ``ptychopinn infer`` and
:func:`ptycho.workflows.inference.reconstruct` stitch that way by default (M = N/2); the
functions here default to the uniform crop, which the ptychodus path
(:func:`reassemble_position`, M=20) keeps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ptycho.errors import InputError

OVERLAP_EPS = 1e-9
DEFAULT_CROP_PX = 20
#: Largest canvas side (pixels) a Stitcher accepts: 32768 px needs 24 GiB of accumulators, far
#: beyond any real scan; larger spans mean positions in the wrong unit (metres, not pixels...).
MAX_CANVAS_SIDE_PX = 32768


@dataclass
class StitchedObject:
    """A stitched complex object and its placement on the scan's object grid.

    Attributes
    ----------
    object : ndarray, shape (S, S), complex64
    x0_px, y0_px : float
        Scan-coordinate column and row of ``object[0, 0]``.
    weight : ndarray, shape (S, S), float32
        Overlap count per pixel (0 = not covered); with ``pixel_weight`` the summed weights.
    """

    object: np.ndarray
    x0_px: float
    y0_px: float
    weight: np.ndarray


def canvas_geometry(offsets_xy: np.ndarray, M: int) -> tuple[np.ndarray, int]:
    """Return ``(centre_xy, pad)`` of the canvas for positions ``offsets_xy`` (n, 2).

    ``centre_xy`` is the centre of mass rounded to whole pixels, so that canvas pixels coincide
    with object pixels and patches at integer positions are placed without interpolation.
    """
    centre = np.round(offsets_xy.mean(axis=0)) if len(offsets_xy) else np.zeros(2)
    spread = float(np.max(np.abs(offsets_xy - centre))) if len(offsets_xy) else 0.0
    pad = int(math.ceil(spread))
    pad += pad % 2
    return centre, pad


class Stitcher:
    """Shift-and-sum accumulator: stitch patches chunk by chunk onto a fixed canvas.

    The canvas geometry is fixed from *all* positions first, then chunks of patches are added
    in any number of calls, so a scan of any length is stitched without holding all patches::

        stitcher = Stitcher(all_offsets_xy, M=20)
        for patches, offsets in chunks:          # in scan order
            stitcher.add(patches, offsets)
        stitched = stitcher.result()

    Every contribution is added to the canvas one at a time in patch order (``np.add.at``), so
    the result is bit-identical to :func:`stitch_patches` on all patches whatever the chunking.

    Parameters
    ----------
    offsets_xy : ndarray, shape (n, 2), float
        ``[x, y]`` of every patch centre that will be added (fixes the canvas).
    M : int
        Side of the central crop used from each patch.
    chunk_size : int
        Patches processed per vectorised step inside :meth:`add` (bounds temporary memory).
    pixel_weight : ndarray, shape (M, M), float >= 0, optional
        Weight of each crop pixel (default: 1 everywhere).
    """

    def __init__(self, offsets_xy: np.ndarray, M: int = DEFAULT_CROP_PX, *, chunk_size: int = 1024,
                 pixel_weight: np.ndarray | None = None):
        offsets_xy = np.asarray(offsets_xy, np.float64).reshape(-1, 2)
        if M < 1:
            raise ValueError(f"crop size M={M} must be >= 1")
        self.M = int(M)
        self.chunk_size = max(1, int(chunk_size))
        self.pixel_weight = None
        if pixel_weight is not None:
            weight = np.asarray(pixel_weight, np.float32)
            if weight.shape != (self.M, self.M) or not np.all(np.isfinite(weight)) \
                    or weight.min() < 0 or not weight.max() > 0:
                raise ValueError(f"pixel_weight must be finite, >= 0, not all 0, shape "
                                 f"({self.M}, {self.M}) (got shape {weight.shape})")
            self.pixel_weight = weight
        self.centre, self.pad = canvas_geometry(offsets_xy, self.M)
        self.side = self.M + 2 * self.pad
        if self.side > MAX_CANVAS_SIDE_PX:
            raise InputError(
                "scan too large to stitch", "scan positions (xcoords, ycoords)",
                f"positions in object pixels spanning at most {MAX_CANVAS_SIDE_PX - self.M} px",
                f"a span of {2 * self.pad} px (check the units of the coordinates)")
        self._alloc = self.side + 1  # room for the zero-weight far corner of a tile at the maximum spread
        self._numerator_re = np.zeros(self._alloc * self._alloc)
        self._numerator_im = np.zeros(self._alloc * self._alloc)
        self._weight = np.zeros(self._alloc * self._alloc)
        self.count = 0

    def add(self, patches: np.ndarray, offsets_xy: np.ndarray) -> None:
        """Add ``patches`` (n, N, N) complex centred at ``offsets_xy`` (n, 2) ``[x, y]``."""
        patches = np.asarray(patches)
        offsets_xy = np.asarray(offsets_xy, np.float64).reshape(-1, 2)
        if patches.ndim != 3 or patches.shape[1] != patches.shape[2] or len(offsets_xy) != len(patches):
            raise ValueError(f"patches {patches.shape} and offsets {offsets_xy.shape} do not match")
        height = patches.shape[1]
        M, pad, alloc = self.M, self.pad, self._alloc
        if M > height:
            raise ValueError(f"crop size M={M} must be in 1..{height}")
        start = height // 2 - M // 2
        span = np.arange(M + 1)
        for lo in range(0, len(patches), self.chunk_size):
            crops = patches[lo:lo + self.chunk_size, start:start + M, start:start + M].astype(np.complex64)
            shift = offsets_xy[lo:lo + self.chunk_size] - self.centre
            whole = np.floor(shift).astype(np.int64)
            if whole.size and (whole.min() < -pad or whole.max() > pad):
                raise ValueError("a patch position lies outside the canvas fixed by the positions "
                                 "given to Stitcher()")
            frac = (shift - whole).astype(np.float32)
            if self.pixel_weight is not None:
                crops = crops * self.pixel_weight
            tiles, row_w, col_w = _fractional_tiles(crops, frac)
            if self.pixel_weight is None:
                weight_tiles = row_w[:, :, None] * col_w[:, None, :]
            else:
                weight_tiles = _fractional_tiles(
                    np.broadcast_to(self.pixel_weight, crops.shape), frac)[0].real
            rows = pad + whole[:, 1, None] + span[None, :]
            cols = pad + whole[:, 0, None] + span[None, :]
            index = (rows[:, :, None] * alloc + cols[:, None, :]).ravel()
            np.add.at(self._numerator_re, index, tiles.real.ravel().astype(np.float64))
            np.add.at(self._numerator_im, index, tiles.imag.ravel().astype(np.float64))
            np.add.at(self._weight, index, weight_tiles.ravel().astype(np.float64))
        self.count += len(patches)

    def result(self) -> StitchedObject:
        """The stitched object of everything added so far."""
        side, alloc = self.side, self._alloc
        weight = self._weight.reshape(alloc, alloc)[:side, :side]
        numerator = (self._numerator_re.reshape(alloc, alloc)[:side, :side]
                     + 1j * self._numerator_im.reshape(alloc, alloc)[:side, :side])
        return StitchedObject(
            object=(numerator / (weight + OVERLAP_EPS)).astype(np.complex64),
            x0_px=float(self.centre[0] - self.M // 2 - self.pad),
            y0_px=float(self.centre[1] - self.M // 2 - self.pad),
            weight=weight.astype(np.float32),
        )


def stitch_patches(patches: np.ndarray, offsets_xy: np.ndarray, M: int = DEFAULT_CROP_PX,
                   chunk_size: int = 1024, pixel_weight: np.ndarray | None = None
                   ) -> StitchedObject:
    """Shift-and-sum the central M x M crops of ``patches`` at ``offsets_xy``.

    Parameters
    ----------
    patches : ndarray, shape (n, N, N), complex
        Object patches, each centred on its position.
    offsets_xy : ndarray, shape (n, 2), float
        ``[x, y]`` position of each patch centre in object pixels.
    M : int
        Side of the central crop used from each patch (<= N).
    chunk_size : int
        Patches processed per vectorised step (bounds memory; there is no per-patch loop).
    pixel_weight : ndarray, shape (M, M), optional
        Weight of each crop pixel (see :class:`Stitcher`; e.g. :func:`probe_weight`).

    Returns
    -------
    StitchedObject

    See :class:`Stitcher` to stitch patches that arrive in chunks.
    """
    patches = np.asarray(patches)
    offsets_xy = np.asarray(offsets_xy, np.float64).reshape(-1, 2)
    n, height, width = patches.shape
    if height != width or len(offsets_xy) != n:
        raise ValueError(f"patches {patches.shape} and offsets {offsets_xy.shape} do not match")
    if not 0 < M <= height:
        raise ValueError(f"crop size M={M} must be in 1..{height}")
    stitcher = Stitcher(offsets_xy, M, chunk_size=chunk_size, pixel_weight=pixel_weight)
    stitcher.add(patches, offsets_xy)
    return stitcher.result()


def probe_weight(probe: np.ndarray, M: int) -> np.ndarray:
    """Illumination weight of the central M x M crop: ``|P|**2`` scaled to a maximum of 1.

    A mixed-state probe weights by its summed mode intensity ``sum_k |P_k|**2``.

    Parameters
    ----------
    probe : ndarray, shape (N, N) or (modes, N, N), complex
    M : int, 1..N

    Returns
    -------
    ndarray, shape (M, M), float32
    """
    probe = np.asarray(probe)
    n = probe.shape[-1]
    if not 0 < M <= n:
        raise ValueError(f"crop size M={M} must be in 1..{n}")
    start = n // 2 - M // 2
    intensity = np.abs(probe[..., start:start + M, start:start + M]).astype(np.float64) ** 2
    if intensity.ndim == 3:
        intensity = intensity.sum(axis=0)
    peak = float(intensity.max())
    if not peak > 0:
        raise ValueError("the probe is zero in the central crop; cannot weight by it")
    return (intensity / peak).astype(np.float32)


def _fractional_tiles(crops: np.ndarray, frac_xy: np.ndarray):
    """Shift each (M, M) crop by its fractional ``[fx, fy]`` into an (M+1, M+1) tile (bilinear).

    Returns the tiles (n, M+1, M+1) and the separable weights of a tile of ones: rows (n, M+1)
    and columns (n, M+1).
    """
    n, m, _ = crops.shape
    dtype = np.result_type(crops.dtype, np.float32)
    fx = frac_xy[:, 0, None, None]
    fy = frac_xy[:, 1, None, None]
    by_cols = np.zeros((n, m, m + 1), dtype)
    by_cols[:, :, :m] = crops * (1 - fx)
    by_cols[:, :, 1:] += crops * fx
    tiles = np.zeros((n, m + 1, m + 1), dtype)
    tiles[:, :m, :] = by_cols * (1 - fy)
    tiles[:, 1:, :] += by_cols * fy

    def _edge_weights(f: np.ndarray) -> np.ndarray:
        w = np.ones((n, m + 1), np.float32)
        w[:, 0] = 1 - f
        w[:, m] = f
        w[:, 1:m] = 1.0
        return w

    return tiles, _edge_weights(frac_xy[:, 1]), _edge_weights(frac_xy[:, 0])


def reassemble_position(obj: np.ndarray, global_offsets: np.ndarray,
                        M: int = DEFAULT_CROP_PX) -> np.ndarray:
    """Legacy interface: stitch ``obj`` (n, N, N, 1) at ``global_offsets`` (n, 1, 2, 1).

    Returns
    -------
    ndarray, shape (S, S, 1), complex64
    """
    patches = np.asarray(obj)
    if patches.ndim == 4:
        patches = patches[..., 0]
    offsets = np.asarray(global_offsets, np.float64).reshape(len(patches), 2)
    return stitch_patches(patches, offsets, M=M).object[..., None]

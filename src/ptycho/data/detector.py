"""Detector geometry on read: crop a window around the beam centre, bin, apply bad-pixel masks.

Real detector frames are larger than the N x N patterns the model uses, off-centre, and have
bad pixels. Every reader (NPZ, HDF5, CXI) resolves one :class:`FrameGeometry` from the reading
options (:class:`ptycho.data.reading.ReadOptions`) and applies it to each frame as it is read,
so a streamed stack stays on disk (:class:`ptycho.data.lazy.LazyPatterns` applies it per read).

Conventions (``docs/data-formats.md``)
--------------------------------------
- **Window.** ``--crop C`` cuts a C x C window (raw detector pixels); ``--bin K`` then sums
  K x K blocks, so the patterns are N x N with ``N = C / K`` (C must be a multiple of K).
  Without ``--crop`` the window is the whole (square) frame.
- **Centre.** The beam centre (zero spatial frequency) is ``--detector-centre ROW,COL`` in raw
  detector pixels (0-based, row = slow axis), else the centre of mass of the mean frame
  (bad pixels excluded), rounded to the nearest pixel ``(r, c)``. The window starts at row
  ``r - K * (N // 2) - (K - 1) // 2`` (columns alike), so the centre pixel falls in binned pixel
  ``(N // 2, N // 2)`` - the DC pixel of the package's far-field convention (design section 2) -
  at its middle for odd K (for even K, the first of its two middle raw pixels). A window that
  does not fit inside the frames is refused (no padding).
- **Binning** sums counts (amplitudes are squared, summed and square-rooted). A binned pixel is
  bad when **any** of its K x K raw pixels is bad (no rescaling of partly valid blocks, which
  would break the Poisson statistics).
- **Bad pixels** (True = do not use) come from the file and ``--mask``, each either
  raw-detector-sized (H, W) (cropped and binned with the rule above) or already (N, N); their
  union is ``Scan.bad_pixels``. Their values are set to 0 in the patterns read, so gap or
  overflow markers (NaN, -1, 2**32 - 1) never reach validation, the photon count or the network.
- **Saturation** is not applied here: ``Scan.saturation_counts`` carries the level and the
  physics excludes, per pattern, the pixels whose counts (after binning) reach it. A binned
  pixel holding a saturated raw pixel reaches it too (counts are >= 0), so binning can only
  exclude more, never fewer.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ptycho.data import lazy as _lazy
from ptycho.errors import InputError

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FrameGeometry:
    """How raw (H, W) detector frames become (N, N) patterns (picklable, applied per read).

    Attributes
    ----------
    raw_shape : (H, W), raw detector pixels
    row0, col0 : int
        Top-left raw pixel of the window.
    size : int
        Window side C in raw pixels (``N * bin_factor``).
    bin_factor : int
        K: K x K raw pixels are summed into one.
    bad : ndarray, shape (N, N), bool, or None
        Pixels set to 0 after cropping and binning (True = bad); None when no mask was given.
    centre_px : (row, col), float, or None
        Beam centre in raw detector pixels (None: the frames were not cropped).
    centre_source : str
        Where ``centre_px`` came from (for notes and messages).
    """

    raw_shape: tuple[int, int]
    row0: int
    col0: int
    size: int
    bin_factor: int = 1
    bad: np.ndarray | None = None
    centre_px: tuple[float, float] | None = None
    centre_source: str = ""

    @property
    def n(self) -> int:
        """N: the side of the patterns produced."""
        return self.size // self.bin_factor

    @property
    def crops(self) -> bool:
        """True when the window is smaller than the frames."""
        return (self.size, self.size) != tuple(self.raw_shape)

    def transform(self, frames: np.ndarray, intensity: bool) -> np.ndarray:
        """Crop, bin and zero the bad pixels of raw frames.

        Parameters
        ----------
        frames : ndarray, shape (n, H, W), the stored values (counts or amplitudes)
        intensity : bool
            The values are counts (summed as they are) rather than amplitudes (squared, summed
            and square-rooted).

        Returns
        -------
        ndarray, shape (n, N, N)
            Still counts or amplitudes. The stored dtype without binning; int64 (integer
            counts) or float64 when binned.
        """
        c, k, n = self.size, self.bin_factor, self.n
        window = frames[:, self.row0:self.row0 + c, self.col0:self.col0 + c]
        if k == 1:
            values = np.array(window)
        else:
            blocks = (len(window), n, k, n, k)
            if not intensity:
                with np.errstate(over="ignore", invalid="ignore"):
                    values = np.sqrt(np.square(window, dtype=np.float64).reshape(blocks)
                                     .sum(axis=(2, 4)))
            else:
                dtype = np.int64 if window.dtype.kind in "iub" else np.float64
                with np.errstate(over="ignore", invalid="ignore"):
                    values = window.reshape(blocks).sum(axis=(2, 4), dtype=dtype)
        if self.bad is not None:
            values[:, self.bad] = 0
        return values

    def bin_mask(self, mask: np.ndarray) -> np.ndarray:
        """A raw (H, W) bool mask on the (N, N) grid: cropped, and True where any of a binned
        pixel's raw pixels is True."""
        c, k, n = self.size, self.bin_factor, self.n
        window = mask[self.row0:self.row0 + c, self.col0:self.col0 + c]
        return window.reshape(n, k, n, k).any(axis=(1, 3))

    def describe(self) -> str:
        """One line for ``Scan.notes``."""
        height, width = self.raw_shape
        parts = []
        if self.crops:
            row, col = self.centre_px
            parts.append(f"cropped {self.size}x{self.size} of the {height}x{width} frames at rows "
                         f"{self.row0}..{self.row0 + self.size - 1}, columns {self.col0}.."
                         f"{self.col0 + self.size - 1} around the beam centre (row {row:.2f}, "
                         f"col {col:.2f}; {self.centre_source})")
        if self.bin_factor > 1:
            parts.append(f"binned {self.bin_factor}x{self.bin_factor} (counts summed) to "
                         f"{self.n}x{self.n}")
        if self.bad is not None:
            parts.append(f"{int(self.bad.sum())} of {self.n * self.n} pixels masked as bad "
                         "(set to 0)")
        return "detector: " + "; ".join(parts)


def raw_chunks(source) -> Iterator[np.ndarray]:
    """The stored values of an (M, H, W) ndarray or a :class:`ptycho.data.lazy.StoredArray`,
    chunk by chunk (at most about :data:`ptycho.data.lazy.CHUNK_BYTES` at a time)."""
    if isinstance(source, _lazy.StoredArray):
        plain = _lazy.LazyPatterns(source, intensity=False)
        length = _lazy.chunk_length(source.pattern_shape)
        try:
            for lo in range(0, plain.shape[0], length):
                yield plain.read_raw(lo, lo + length)
        finally:
            plain.close()
    else:
        for _, chunk in _lazy.iter_chunks(source):
            yield chunk


def mean_counts(source, intensity: bool) -> np.ndarray:
    """Mean frame in counts (amplitudes are squared), float64 (H, W), computed chunk by chunk."""
    total, count = None, 0
    for chunk in raw_chunks(source):
        with np.errstate(over="ignore", invalid="ignore"):
            counts = (chunk.sum(axis=0, dtype=np.float64) if intensity
                      else np.square(chunk, dtype=np.float64).sum(axis=0))
        total = counts if total is None else total + counts
        count += len(chunk)
    return total / max(count, 1)


def beam_centre(mean: np.ndarray, bad: np.ndarray | None, where: str) -> tuple[float, float]:
    """Centre of mass ``(row, col)`` of a mean frame (H, W) in counts, bad pixels excluded."""
    from scipy import ndimage

    weights = mean if bad is None else np.where(bad, 0.0, mean)
    if not np.all(np.isfinite(weights)):
        bad_count = int(np.count_nonzero(~np.isfinite(weights)))
        raise InputError("non-finite values", where, "finite numbers (or the pixels masked as bad)",
                         f"{bad_count} pixels with NaN/Inf")
    weights = np.clip(weights, 0.0, None)
    if not weights.sum() > 0:
        raise InputError("all-zero patterns", where, "at least one non-zero pattern")
    row, col = ndimage.center_of_mass(weights)
    return float(row), float(col)


def _round(value: float) -> int:
    """Nearest integer, halves rounded up (not to even)."""
    return int(np.floor(value + 0.5))


def resolve_geometry(options, source, intensity: bool, masks: list[tuple[np.ndarray, str]],
                     where: str) -> FrameGeometry | None:
    """The :class:`FrameGeometry` of a pattern stack, or None when the frames are used as they
    are (square, no crop, no binning, no mask).

    Parameters
    ----------
    options : :class:`ptycho.data.reading.ReadOptions` (``crop_px``, ``bin_factor``, ``centre_px``)
    source : ndarray (M, H, W) or :class:`ptycho.data.lazy.StoredArray`
        The raw frames (read chunk by chunk for the centre of mass).
    intensity : bool
        The stored values are counts (else amplitudes).
    masks : list of (mask, where)
        Bad-pixel masks (bool, True = bad), each (H, W) or (N, N); ``where`` names it in errors.
    where : str
        The frames, for messages (``"scan.cxi:entry_1/data_1/data"``).

    Raises
    ------
    ptycho.errors.InputError
        Non-square frames without ``--crop``, a window larger than the frames or not a
        multiple of ``--bin``, a window outside the frames, a mask of another shape.
    """
    shape = source.pattern_shape if isinstance(source, _lazy.StoredArray) else source.shape[1:3]
    height, width = (int(s) for s in shape)
    k = options.bin_factor
    if options.crop_px is None:
        if height != width:
            raise InputError("non-square patterns", where,
                             "square N x N frames, or --crop C to cut a C x C window",
                             f"frames of {height}x{width}")
        size = height
    else:
        size = options.crop_px
        if size > min(height, width):
            raise InputError("invalid value", "--crop", f"a window of at most {min(height, width)}"
                             f" px (the frames are {height}x{width})", str(size))
    if size % k:
        raise InputError("invalid value", "--bin", f"a factor that divides the window side {size}"
                         " (--crop, or the frame size)", str(k))
    n = size // k

    raw_bad = np.zeros((height, width), bool)
    final_bad = np.zeros((n, n), bool)
    for mask, mask_where in masks:
        if mask.shape == (height, width):
            raw_bad |= mask
        elif mask.shape == (n, n):
            final_bad |= mask
        else:
            raise InputError("wrong shape", mask_where, f"a mask of {height}x{width} (the detector "
                             f"frames) or {n}x{n} (the patterns read)",
                             f"{mask.shape[0]}x{mask.shape[1]}" if mask.ndim == 2
                             else str(mask.shape))

    crops = size != height or size != width
    if not crops and k == 1 and not masks:
        return None
    centre, source_text, row0, col0 = None, "", 0, 0
    if crops or options.centre_px is not None:
        if options.centre_px is not None:
            centre, source_text, option = options.centre_px, "--detector-centre", "--detector-centre"
        else:
            centre = beam_centre(mean_counts(source, intensity), raw_bad, where)
            source_text, option = "centre of mass of the mean frame", "--crop"
        offset = k * (n // 2) + (k - 1) // 2
        row0, col0 = _round(centre[0]) - offset, _round(centre[1]) - offset
        if row0 < 0 or col0 < 0 or row0 + size > height or col0 + size > width:
            raise InputError(
                "crop window outside the frames", option,
                f"a {size}x{size} window inside the {height}x{width} frames around the beam centre "
                f"(row {centre[0]:.1f}, col {centre[1]:.1f}; {source_text}): a smaller --crop or "
                "another --detector-centre",
                f"rows {row0}..{row0 + size - 1}, columns {col0}..{col0 + size - 1}")
    geometry = FrameGeometry((height, width), row0, col0, size, k, None, centre, source_text)
    bad = geometry.bin_mask(raw_bad) | final_bad
    geometry = FrameGeometry((height, width), row0, col0, size, k, bad if masks else None,
                             centre, source_text)
    log.info("%s: %s", where, geometry.describe())
    return geometry

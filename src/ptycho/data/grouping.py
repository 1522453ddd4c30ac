"""Group neighbouring scan positions (KD-tree) and serve grouped, normalised samples.

A *group* is C = gridsize**2 scan positions: an anchor and C-1 of its K nearest neighbours.
Training anchors a group at every position unless ``n_groups`` limits it; inference anchors at
every position, so every position is reconstructed at least once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ptycho import physics
from ptycho.data.scan import Scan
from ptycho.errors import InputError


def group_positions(xcoords: np.ndarray, ycoords: np.ndarray, gridsize: int, *,
                    neighbor_count: int = 4, n_groups: int | None = None, seed: int = 0,
                    sequential: bool = False, enable_oversampling: bool = False) -> np.ndarray:
    """Choose anchors and group members.

    Parameters
    ----------
    xcoords, ycoords : ndarray, shape (M,), float, object pixels
    gridsize : int
        g; each group has C = g**2 members.
    neighbor_count : int
        K: members other than the anchor are drawn from its K nearest neighbours (K >= C - 1).
    n_groups : int, optional
        Number of groups. None: one group anchored at every position (covers all positions).
        Fewer than M: a seeded random (or, with ``sequential``, the first) subset of anchors.
        More than M: needs ``enable_oversampling`` and gridsize > 1; anchors repeat with fresh
        random neighbour draws.
    seed : int
        Seed of the anchor and member draws (deterministic for a seed).

    Returns
    -------
    ndarray, shape (B, C), int64
        Scan indices of each group's members; member 0 is the anchor.
    """
    n_positions = len(xcoords)
    channels = gridsize * gridsize
    if n_positions < channels:
        raise InputError("scan too small for gridsize", "--gridsize",
                         f"at least gridsize**2 = {channels} scan positions", f"{n_positions}")
    if channels > 1 and neighbor_count < channels - 1:
        raise InputError("too few neighbours", "--neighbor_count",
                         f"K >= gridsize**2 - 1 = {channels - 1}", str(neighbor_count))
    rng = np.random.default_rng(seed)
    if n_groups is None or n_groups == n_positions:
        anchors = np.arange(n_positions)
    elif n_groups < n_positions:
        anchors = np.arange(n_groups) if sequential else np.sort(
            rng.choice(n_positions, size=n_groups, replace=False))
    else:
        if channels == 1 or not enable_oversampling:
            raise InputError("more groups than positions", "--n_groups",
                             f"at most {n_positions} (or gridsize > 1 with --enable_oversampling)",
                             str(n_groups))
        extra = rng.choice(n_positions, size=n_groups - n_positions, replace=True)
        anchors = np.concatenate([np.arange(n_positions), extra])
    if channels == 1:
        return anchors.reshape(-1, 1).astype(np.int64)

    from scipy.spatial import cKDTree  # imported here: 0.2 s that gridsize 1 does not need

    points = np.column_stack([xcoords, ycoords])
    k = min(neighbor_count + 1, n_positions)
    _, neighbours = cKDTree(points).query(points[anchors], k=k)
    neighbours = np.asarray(neighbours).reshape(len(anchors), k)
    groups = np.empty((len(anchors), channels), np.int64)
    for row, (anchor, candidates) in enumerate(zip(anchors, neighbours)):
        others = candidates[candidates != anchor][: k - 1]
        groups[row, 0] = anchor
        groups[row, 1:] = rng.choice(others, size=channels - 1, replace=False)
    return groups


@dataclass
class GroupedData:
    """Grouped view of a scan: samples are built on demand, so large scans are never copied.

    Attributes
    ----------
    scan : Scan
    nn_indices : ndarray, shape (B, C), int64
    N : int
    norm_factor : float
        ``physics.diffraction_norm_factor`` of the whole scan: ``X = norm_factor * amplitude``
        (over the valid pixels only when the scan has a mask).
    fill : ndarray, shape (N, N), float32, optional
        Raw-amplitude value of the scan's bad pixels in the network input
        (``physics.mask_statistics``); None without bad pixels.

    With a valid-pixel mask (``scan.bad_pixels`` with a bad pixel, or
    ``scan.saturation_counts``; :attr:`has_mask`) the samples carry it (:meth:`valid`) and the
    network input fills the masked pixels (:meth:`X`, ``physics.masked_input``).
    """

    scan: Scan
    nn_indices: np.ndarray
    N: int
    norm_factor: float
    fill: np.ndarray | None = None

    @classmethod
    def from_scan(cls, scan: Scan, gridsize: int, *, neighbor_count: int = 4,
                  n_groups: int | None = None, seed: int = 0, sequential: bool = False,
                  enable_oversampling: bool = False) -> GroupedData:
        """Group ``scan`` (see :func:`group_positions`) and fix the dataset normalisation.

        With a mask, one pass over the patterns measures the valid counts (normalisation) and
        the bad-pixel fill (``physics.mask_statistics``).
        """
        nn = group_positions(scan.xcoords, scan.ycoords, gridsize, neighbor_count=neighbor_count,
                             n_groups=n_groups, seed=seed, sequential=sequential,
                             enable_oversampling=enable_oversampling)
        if not physics.has_pixel_mask(scan.bad_pixels, scan.saturation_counts):
            factor = physics.diffraction_norm_factor(scan.diffraction)
            return cls(scan=scan, nn_indices=nn, N=scan.N, norm_factor=factor)
        try:
            stats = physics.mask_statistics(scan.diffraction, scan.bad_pixels,
                                            scan.saturation_counts)
            factor = physics.norm_factor_from_power(stats.power, scan.N)
        except ValueError:  # every pixel bad or saturated (or only zero counts left)
            where = (f"{scan.source}:bad_pixels" if scan.saturation_counts is None
                     else "--saturation")
            raise InputError("no valid pixels", where,
                             "detector pixels that are neither masked nor saturated and hold "
                             "counts (check the mask and the saturation level)") from None
        return cls(scan=scan, nn_indices=nn, N=scan.N, norm_factor=factor, fill=stats.fill)

    def __len__(self) -> int:
        return int(self.nn_indices.shape[0])

    @property
    def scans(self) -> list[Scan]:
        """``[scan]`` (the interface of :class:`GroupedScans`)."""
        return [self.scan]

    @property
    def gridsize(self) -> int:
        return int(round(np.sqrt(self.nn_indices.shape[1])))

    @property
    def channels(self) -> int:
        return int(self.nn_indices.shape[1])

    def _rows(self, index) -> np.ndarray:
        return self.nn_indices[np.arange(len(self))[index] if isinstance(index, slice) else index]

    @property
    def has_mask(self) -> bool:
        """Whether the scan has a valid-pixel mask (``physics.has_pixel_mask``)."""
        return physics.has_pixel_mask(self.scan.bad_pixels, self.scan.saturation_counts)

    def _patterns(self, index) -> np.ndarray:
        """Raw amplitudes of the selected samples, shape (b, C, N, N), float32."""
        rows = np.atleast_2d(self._rows(index))
        patterns = np.asarray(self.scan.diffraction[rows.reshape(-1)], np.float32)
        return patterns.reshape(rows.shape + patterns.shape[1:])

    def diffraction(self, index=slice(None)) -> np.ndarray:
        """Raw amplitudes of the selected samples. Shape (b, N, N, C), float32."""
        return np.moveaxis(self._patterns(index), 1, -1)

    def X(self, index=slice(None)) -> np.ndarray:
        """Normalised amplitudes ``norm_factor * diffraction``. Shape (b, N, N, C), float32.

        With a mask, masked pixels hold the fill of ``physics.masked_input`` (bad pixels: the
        local level of the mean pattern; saturated pixels: the saturation level), normalised
        alike.
        """
        return self.X_and_valid(index)[0]

    def valid(self, index=slice(None)) -> np.ndarray | None:
        """Valid pixels of the selected samples (``physics.valid_pixels``), or None without a mask.

        Shape (b, N, N, C), bool (the layout of :meth:`X`).
        """
        return self.X_and_valid(index)[1]

    def X_and_valid(self, index=slice(None)) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`X` and :meth:`valid` of the selected samples from one read of the patterns."""
        patterns = self._patterns(index)
        scan = self.scan
        valid = physics.valid_pixels(patterns, scan.bad_pixels, scan.saturation_counts)
        if valid is not None:
            patterns = physics.masked_input(patterns, scan.bad_pixels, scan.saturation_counts,
                                            self.fill)
            valid = np.moveaxis(valid, 1, -1)
        x = (np.moveaxis(patterns, 1, -1) * np.float32(self.norm_factor)).astype(np.float32)
        return x, valid

    def coords(self, index=slice(None), *, start: bool = False) -> dict[str, np.ndarray]:
        """Legacy coordinate arrays of the selected samples ([x, y] on axis 2).

        Returns ``{'nn': (b,1,2,C), 'offsets': (b,1,2,1), 'relative': (b,1,2,C)}``, float64,
        with ``offsets`` the group mean and ``relative = -(nn - offsets)`` (legacy sign).
        """
        rows = np.atleast_2d(self._rows(index))
        x = self.scan.xcoords_start if start else self.scan.xcoords
        y = self.scan.ycoords_start if start else self.scan.ycoords
        nn = np.stack([x[rows], y[rows]], axis=1)[:, None, :, :]
        offsets = nn.mean(axis=-1, keepdims=True)
        return {"nn": nn, "offsets": offsets, "relative": -(nn - offsets)}

    def ground_truth_patches(self, index=slice(None), *, at_centre: bool = False
                             ) -> np.ndarray | None:
        """True-geometry object patches from ``objectGuess``, or None without it.

        Returns (b, N, N, C) complex64 patches at each member's own position, or with
        ``at_centre`` (b, N, N, 1) patches at each group's mean position.
        """
        if self.scan.object_guess is None:
            return None
        rows = np.atleast_2d(self._rows(index))
        if at_centre:
            centre = self.coords(index)["offsets"][:, 0, :, 0]
            patches = physics.extract_patches(self.scan.object_guess, centre[:, 0], centre[:, 1],
                                              self.N)
            return patches[..., None].astype(np.complex64)
        flat = rows.reshape(-1)
        patches = physics.extract_patches(self.scan.object_guess, self.scan.xcoords[flat],
                                          self.scan.ycoords[flat], self.N)
        patches = patches.reshape(rows.shape + patches.shape[1:])
        return np.moveaxis(patches, 1, -1).astype(np.complex64)

    def as_dict(self) -> dict:
        """The legacy grouped dict (keys of ``RawData.generate_grouped_data``), fully materialised."""
        coords = self.coords()
        coords_start = self.coords(start=True)
        return {
            "diffraction": self.diffraction(),
            "X_full": self.X(),
            "Y": self.ground_truth_patches(),
            "coords_nn": coords["nn"],
            "coords_offsets": coords["offsets"],
            "coords_relative": coords["relative"],
            "coords_start_nn": coords_start["nn"],
            "coords_start_offsets": coords_start["offsets"],
            "coords_start_relative": coords_start["relative"],
            "coords_global": coords["offsets"],
            "nn_indices": self.nn_indices,
            "objectGuess": self.scan.object_guess,
            "norm_factor": self.norm_factor,
        }


class GroupedScans:
    """Several scans, each grouped on its own, served as one sample set (a training library).

    The samples of ``parts[0]`` come first, then those of ``parts[1]``, ...; groups never mix
    scans and each part keeps its own ``norm_factor``. The sample methods are those of
    :class:`GroupedData` (same shapes and dtypes) over the concatenated samples, plus
    :meth:`scan_index`, the scan of each sample.

    Parameters
    ----------
    parts : list of GroupedData
        Two or more, with equal ``N`` and ``channels``.
    """

    def __init__(self, parts: list[GroupedData]):
        if len({(part.N, part.channels) for part in parts}) > 1:
            raise ValueError("the grouped scans of a library need equal N and gridsize")
        self.parts = list(parts)
        self.N = parts[0].N
        self._starts = np.cumsum([0] + [len(part) for part in parts])

    def __len__(self) -> int:
        return int(self._starts[-1])

    @property
    def scans(self) -> list[Scan]:
        """The scan of each part."""
        return [part.scan for part in self.parts]

    @property
    def channels(self) -> int:
        return self.parts[0].channels

    @property
    def gridsize(self) -> int:
        return self.parts[0].gridsize

    def _rows(self, index) -> np.ndarray:
        rows = np.arange(len(self))[index]
        return np.atleast_1d(rows)

    def scan_index(self, index=slice(None)) -> np.ndarray:
        """The part (scan) of each selected sample. Shape (b,), int64."""
        return (np.searchsorted(self._starts, self._rows(index), side="right") - 1).astype(np.int64)

    def _gather(self, index, read):
        """``read(part, local_rows)`` of every part, assembled in the order of ``index``."""
        rows = self._rows(index)
        scan = self.scan_index(index)
        out = None
        for k in np.unique(scan):
            chosen = scan == k
            values = read(self.parts[k], rows[chosen] - self._starts[k])
            if values is None:
                return None
            if out is None:
                out = np.empty((len(rows),) + values.shape[1:], values.dtype)
            out[chosen] = values
        return out

    def diffraction(self, index=slice(None)) -> np.ndarray:
        """Raw amplitudes (b, N, N, C) float32 (see :meth:`GroupedData.diffraction`)."""
        return self._gather(index, lambda part, rows: part.diffraction(rows))

    @property
    def has_mask(self) -> bool:
        """Whether any scan has a valid-pixel mask."""
        return any(part.has_mask for part in self.parts)

    def X(self, index=slice(None)) -> np.ndarray:
        """Amplitudes normalised by each sample's own scan factor, (b, N, N, C) float32."""
        return self.X_and_valid(index)[0]

    def valid(self, index=slice(None)) -> np.ndarray | None:
        """Valid pixels (b, N, N, C) bool (see :meth:`GroupedData.valid`); None unless some scan
        has a mask, and all True for the samples of scans without one."""
        return self.X_and_valid(index)[1]

    def X_and_valid(self, index=slice(None)) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`X` and :meth:`valid` of the selected samples (see
        :meth:`GroupedData.X_and_valid`)."""
        rows, scan = self._rows(index), self.scan_index(index)
        x = valid = None
        for k in np.unique(scan):
            chosen = scan == k
            part_x, part_valid = self.parts[k].X_and_valid(rows[chosen] - self._starts[k])
            if x is None:
                x = np.empty((len(rows),) + part_x.shape[1:], np.float32)
                valid = np.ones(x.shape, bool) if self.has_mask else None
            x[chosen] = part_x
            if part_valid is not None:
                valid[chosen] = part_valid
        return x, valid

    def coords(self, index=slice(None), *, start: bool = False) -> dict[str, np.ndarray]:
        """Legacy coordinate arrays (see :meth:`GroupedData.coords`), each in its scan's pixels."""
        return {key: self._gather(index, lambda part, rows, key=key:
                                  part.coords(rows, start=start)[key])
                for key in ("nn", "offsets", "relative")}

    def ground_truth_patches(self, index=slice(None), *, at_centre: bool = False
                             ) -> np.ndarray | None:
        """True-geometry patches (see :meth:`GroupedData.ground_truth_patches`); None unless
        every selected sample's scan has an ``objectGuess``."""
        return self._gather(index, lambda part, rows:
                            part.ground_truth_patches(rows, at_centre=at_centre))

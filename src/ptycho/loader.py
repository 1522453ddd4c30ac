"""Legacy ``ptycho.loader`` facade: turn a grouped dict into a container of model inputs.

``load(cb, probeGuess, which=None, create_split=False)`` is what ptychodus calls with the dict
of :meth:`ptycho.raw_data.RawData.generate_grouped_data`. Everything stays NumPy (no backend
import): ``X`` (b, N, N, C) normalised amplitudes, ``local_offsets`` (b, 1, 2, C) the legacy
``coords_relative``, ``global_offsets`` (b, 1, 2, 1) the group centres in object pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ptycho.errors import InputError

__all__ = ["PtychoDataContainer", "load", "split_data"]


@dataclass
class PtychoDataContainer:
    """Model inputs of one grouped dataset (NumPy arrays, legacy names).

    Attributes
    ----------
    X : ndarray (b, N, N, C), float32
        Normalised diffraction amplitudes (multiply by the intensity scale before ``predict``).
    local_offsets : ndarray (b, 1, 2, C), float64
        ``-(member - group mean)`` in pixels (the legacy ``coords_relative``).
    global_offsets : ndarray (b, 1, 2, 1), float64
        Group mean positions ``[x, y]`` in object pixels.
    nn_indices : ndarray (b, C), int64
    probe : ndarray (N, N), complex64
    Y : ndarray (b, N, N, C), complex64, or None
        Ground-truth patches when the scan had an ``objectGuess``.
    norm_factor : float
        ``X = norm_factor * diffraction``.
    """

    X: np.ndarray
    local_offsets: np.ndarray
    global_offsets: np.ndarray
    nn_indices: np.ndarray
    probe: np.ndarray
    Y: np.ndarray | None = None
    norm_factor: float = 1.0

    @property
    def coords_nominal(self) -> np.ndarray:
        """Legacy alias of :attr:`local_offsets`."""
        return self.local_offsets

    @property
    def coords(self) -> np.ndarray:
        """Legacy alias of :attr:`local_offsets`."""
        return self.local_offsets

    @property
    def probeGuess(self) -> np.ndarray:
        return self.probe

    def __len__(self) -> int:
        return int(self.X.shape[0])


def _subset(dset: dict, index: slice) -> dict:
    count = len(dset["X_full"])
    return {key: (value[index] if isinstance(value, np.ndarray) and value.ndim and
                  len(value) == count and key != "objectGuess" else value)
            for key, value in dset.items()}


def split_data(dset: dict, train_frac: float, which: str) -> dict:
    """The first ``train_frac`` of the samples (``which='train'``) or the rest (``'test'``)."""
    count = len(dset["X_full"])
    cut = round(float(train_frac) * count)
    if which == "train":
        return _subset(dset, slice(0, cut))
    if which == "test":
        return _subset(dset, slice(cut, count))
    raise InputError("invalid value", "loader.load which", "'train', 'test' or None", repr(which))


def load(cb: Callable[[], object], probeGuess, which: str | None = None,
         create_split: bool = True) -> PtychoDataContainer:
    """Build a :class:`PtychoDataContainer` from the grouped dict returned by ``cb()``.

    Parameters
    ----------
    cb : callable
        Returns the grouped dict, or ``(dict, train_frac)`` when ``create_split`` is true.
    probeGuess : array_like, (N, N), (N, N, 1) or (modes, N, N); mode 0 is used
    which : {'train', 'test', None}
        With ``create_split``, the part of the split to keep; None keeps everything.
    create_split : bool
        Whether ``cb`` returns ``(dict, train_frac)``.
    """
    from ptycho.raw_data import _probe_mode0

    result = cb()
    if create_split:
        dset, train_frac = result
        if which is not None:
            dset = split_data(dset, train_frac, which)
    else:
        dset = result
    if not isinstance(dset, dict) or "X_full" not in dset:
        raise InputError("wrong argument", "loader.load cb()",
                         "the dict of RawData.generate_grouped_data", type(dset).__name__)
    return PtychoDataContainer(
        X=np.asarray(dset["X_full"], np.float32),
        local_offsets=np.asarray(dset["coords_relative"], np.float64),
        global_offsets=np.asarray(dset["coords_offsets"], np.float64),
        nn_indices=np.asarray(dset["nn_indices"]),
        probe=_probe_mode0(probeGuess),
        Y=dset.get("Y"),
        norm_factor=float(dset.get("norm_factor", 1.0)),
    )

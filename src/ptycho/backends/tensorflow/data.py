"""Batches over :class:`ptycho.data.grouping.GroupedData` as ``tf.data`` pipelines.

Samples are built on demand from a Python generator (large scans are never materialised).
Each pass over a shuffled dataset draws a fresh permutation from one seeded NumPy generator, so
the batch order depends only on the seed (not on when ``tf.data`` prefetches).
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from ptycho.data.grouping import GroupedData, GroupedScans
from ptycho.data.splitting import split_indices


class GroupedBatches:
    """Batches ``(x, offsets)`` or ``(x, offsets, truth)`` of selected samples, followed by
    ``valid`` when the data have a detector mask (``grouped.has_mask``) and by ``scan`` for
    several scans (``grouped`` a :class:`GroupedScans`).

    ``x`` (b, N, N, C) float32 normalised amplitudes X; ``offsets`` (b, 1, 2, C) float32 legacy
    relative offsets of the nominal (``start``) positions; ``truth`` (b, N, N, C_t) complex64
    ground-truth patches (C_t = 1 with ``truth_at_centre``); ``valid`` (b, N, N, C) bool, the
    pixels the data terms of the loss use; ``scan`` (b,) int64 the scan of each sample.

    Parameters
    ----------
    grouped : GroupedData or GroupedScans
    indices : ndarray, int
        Sample indices (rows of ``grouped``) served by this dataset.
    batch_size : int
    shuffle : bool
        Reshuffle the samples on every pass.
    seed : int
    with_truth, truth_at_centre : bool
        Serve ground-truth patches (``GroupedData.ground_truth_patches``).
    """

    def __init__(self, grouped: GroupedData, indices: np.ndarray, batch_size: int,
                 shuffle: bool, seed: int, with_truth: bool = False,
                 truth_at_centre: bool = False):
        self.grouped = grouped
        self.indices = np.asarray(indices, np.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.with_truth = with_truth
        self.truth_at_centre = truth_at_centre
        self._rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def batch(self, rows: np.ndarray) -> tuple:
        """The batch of samples ``rows`` (indices into ``grouped``)."""
        x, valid = self.grouped.X_and_valid(rows)
        batch = (x.astype(np.float32),
                 self.grouped.coords(rows, start=True)["relative"].astype(np.float32))
        if self.with_truth:
            truth = self.grouped.ground_truth_patches(rows, at_centre=self.truth_at_centre)
            batch += (truth.astype(np.complex64),)
        if valid is not None:
            batch += (valid,)
        if isinstance(self.grouped, GroupedScans):
            batch += (self.grouped.scan_index(rows),)
        return batch

    def _generate(self):
        order = self._rng.permutation(self.indices) if self.shuffle else self.indices
        for lo in range(0, len(order), self.batch_size):
            yield self.batch(order[lo:lo + self.batch_size])

    def dataset(self) -> tf.data.Dataset:
        """A ``tf.data.Dataset`` of batches with known cardinality (``len(self)``)."""
        n = self.grouped.N
        channels = self.grouped.channels
        signature = [tf.TensorSpec((None, n, n, channels), tf.float32),
                     tf.TensorSpec((None, 1, 2, channels), tf.float32)]
        if self.with_truth:
            truth_channels = 1 if self.truth_at_centre else channels
            signature.append(tf.TensorSpec((None, n, n, truth_channels), tf.complex64))
        if self.grouped.has_mask:
            signature.append(tf.TensorSpec((None, n, n, channels), tf.bool))
        if isinstance(self.grouped, GroupedScans):
            signature.append(tf.TensorSpec((None,), tf.int64))
        ds = tf.data.Dataset.from_generator(self._generate, output_signature=tuple(signature))
        ds = ds.apply(tf.data.experimental.assert_cardinality(len(self)))
        return ds.prefetch(2)


def make_datasets(train: GroupedData, validation: GroupedData | None, batch_size: int,
                  validation_fraction: float, seed: int, with_truth: bool = False,
                  truth_at_centre: bool = False
                  ) -> tuple[GroupedBatches, GroupedBatches | None]:
    """Training and validation batches (the torch ``GroupedDataModule`` split).

    Without a separate ``validation`` set, ``validation_fraction`` of ``train`` is held out by
    :func:`ptycho.data.splitting.split_indices`; the validation set is None when empty.
    """
    if validation is None:
        train_idx, val_idx = split_indices(len(train), validation_fraction, seed)
        train_set = GroupedBatches(train, train_idx, batch_size, True, seed, with_truth,
                                   truth_at_centre)
        val_set = (GroupedBatches(train, val_idx, batch_size, False, seed, with_truth,
                                  truth_at_centre) if len(val_idx) else None)
    else:
        train_set = GroupedBatches(train, np.arange(len(train)), batch_size, True, seed,
                                   with_truth, truth_at_centre)
        val_set = GroupedBatches(validation, np.arange(len(validation)), batch_size, False, seed,
                                 with_truth, truth_at_centre)
    return train_set, val_set

"""Torch data pipeline: a resumed run continues the shuffle sequence of the interrupted one."""

from __future__ import annotations

import numpy as np

from ptycho.backends.pytorch.data import EpochOffsetSampler, GroupedDataModule
from ptycho.data.grouping import GroupedData


def _orders(sampler, epochs) -> list[list[int]]:
    orders = []
    for epoch in epochs:
        sampler.set_epoch(epoch)
        orders.append(list(sampler))
    return orders


def test_epoch_offset_continues_the_permutation_sequence():
    dataset = list(range(40))
    plain = EpochOffsetSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=3)
    resumed = EpochOffsetSampler(dataset, num_replicas=1, rank=0, shuffle=True, seed=3,
                                 epoch_offset=2)
    uninterrupted = _orders(plain, range(5))
    assert _orders(resumed, range(3)) == uninterrupted[2:]
    assert len({tuple(order) for order in uninterrupted}) == 5  # a fresh permutation per epoch


def test_resumed_datamodule_loader_draws_the_later_epochs(small_scan):
    grouped = GroupedData.from_scan(small_scan, 1, n_groups=32)

    def first_batches(epoch_offset: int, epochs: int) -> list[np.ndarray]:
        module = GroupedDataModule(grouped, batch_size=8, validation_fraction=0.0, seed=5)
        module.epoch_offset = epoch_offset
        loader = module.train_dataloader()  # no trainer attached: one process
        batches = []
        for epoch in range(epochs):
            loader.sampler.set_epoch(epoch)  # as Lightning does at every epoch start
            batches.append(next(iter(loader))["x"].numpy())
        return batches

    uninterrupted, resumed = first_batches(0, 3), first_batches(1, 2)
    for a, b in zip(uninterrupted[1:], resumed):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(uninterrupted[0], uninterrupted[1])

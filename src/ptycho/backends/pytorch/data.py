"""Torch datasets over :class:`ptycho.data.grouping.GroupedData` (samples built on demand)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ptycho.backends.pytorch.model import offsets_to_torch
from ptycho.data.grouping import GroupedData, GroupedScans
from ptycho.data.splitting import split_indices


class GroupedDataset(Dataset):
    """Item i: dict with ``x`` (C, N, N) float32 normalised amplitudes X, ``rel`` (C, 2)
    float32 relative offsets, (when ground truth is requested) ``truth`` (C_t, N, N)
    complex64 patches, (from :class:`GroupedScans`, several scans) ``scan`` () int64,
    the sample's scan, and (only when the data have a detector mask, ``has_mask``) ``valid``
    (C, N, N) bool, the pixels the data terms of the loss use.

    Items are fetched in batches through :meth:`__getitems__` to avoid per-sample overhead.
    """

    def __init__(self, grouped: GroupedData, indices: np.ndarray, with_truth: bool = False,
                 truth_at_centre: bool = False):
        self.grouped = grouped
        self.indices = np.asarray(indices, np.int64)
        self.with_truth = with_truth
        self.truth_at_centre = truth_at_centre

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, positions: list[int]) -> dict:
        rows = self.indices[np.asarray(positions)]
        x, valid = self.grouped.X_and_valid(rows)
        coords = self.grouped.coords(rows, start=True)
        batch = {"x": torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1))),
                 "rel": torch.from_numpy(offsets_to_torch(coords["relative"]))}
        if valid is not None:
            batch["valid"] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(valid, -1, 1)))
        if self.with_truth:
            truth = self.grouped.ground_truth_patches(rows, at_centre=self.truth_at_centre)
            batch["truth"] = torch.from_numpy(np.ascontiguousarray(np.moveaxis(truth, -1, 1)))
        if isinstance(self.grouped, GroupedScans):
            batch["scan"] = torch.from_numpy(self.grouped.scan_index(rows))
        return batch

    def __getitem__(self, position: int) -> dict:
        batch = self.__getitems__([position])
        return {key: value[0] for key, value in batch.items()}


def _identity_collate(batch):
    return batch


class EpochOffsetSampler(DistributedSampler):
    """A :class:`DistributedSampler` whose epochs count from ``epoch_offset``.

    Lightning numbers the epochs of a resumed run from 0; with the offset set to the epochs
    already completed, epoch k of the resumed run draws the permutation of epoch
    ``epoch_offset + k``, as the uninterrupted run would have, instead of repeating the first
    epochs' shuffles.
    """

    def __init__(self, *args, epoch_offset: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.epoch_offset = epoch_offset
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch + self.epoch_offset)


class GroupedDataModule(L.LightningDataModule):
    """Train/validation loaders over one GroupedData (or a separate validation set)."""

    def __init__(self, train: GroupedData, batch_size: int, validation_fraction: float, seed: int,
                 validation: GroupedData | None = None, with_truth: bool = False,
                 truth_at_centre: bool = False, num_workers: int = 0):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.epoch_offset = 0  # epochs completed before a resumed run (see EpochOffsetSampler)
        if validation is None:
            train_idx, val_idx = split_indices(len(train), validation_fraction, seed)
            self.train_set = GroupedDataset(train, train_idx, with_truth, truth_at_centre)
            self.val_set = (GroupedDataset(train, val_idx, with_truth, truth_at_centre)
                            if len(val_idx) else None)
        else:
            self.train_set = GroupedDataset(train, np.arange(len(train)), with_truth, truth_at_centre)
            self.val_set = GroupedDataset(validation, np.arange(len(validation)), with_truth,
                                          truth_at_centre)

    def _loader(self, dataset: GroupedDataset, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        sampler = None
        if shuffle:
            # One seeded permutation per epoch (Lightning calls set_epoch), sharded over the
            # ranks under DDP: K ranks x batch b see the same global batches as one process
            # with batch K*b, so the result does not depend on the number of devices.
            trainer = self.trainer
            world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
            sampler = EpochOffsetSampler(dataset, num_replicas=world, rank=rank, shuffle=True,
                                         seed=self.seed, epoch_offset=self.epoch_offset)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                          collate_fn=_identity_collate, num_workers=self.num_workers,
                          generator=generator, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.val_set, shuffle=False) if self.val_set is not None else []

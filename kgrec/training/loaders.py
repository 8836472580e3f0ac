"""Batches for Lightning: training edges a whole batch at a time, and the graph on a device once."""

from __future__ import annotations

import torch
from torch.utils.data import BatchSampler, Dataset, RandomSampler
from torch_geometric.data import HeteroData

from kgrec.errors import ConfigError
from kgrec.graph import data_on
from kgrec.sampler.hetero_csc import available_bytes, format_bytes

__all__ = ["EdgeSet", "TensorBatchSampler", "DeviceGraph", "whole_batch"]


class EdgeSet(Dataset):
    """TRAIN (user, item) index pairs that hand out a whole batch with one indexing op.

    ``DataLoader(TensorDataset(...), batch_size=B)`` fetches and collates a batch one pair at a
    time: on ml-1m (805k edges, batches of 16,384) that loop took 5.6 s of every epoch on the
    CPU, against 0.2 s when the batch is one index tensor (``__getitems__``, which PyTorch's
    fetcher calls with the batch sampler's indices).
    """

    def __init__(self, users: torch.Tensor, items: torch.Tensor) -> None:
        self.users, self.items = users, items

    def __len__(self) -> int:
        return self.users.numel()

    def __getitem__(self, index):
        return self.users[index], self.items[index]

    def __getitems__(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.users[index], self.items[index]


class TensorBatchSampler(BatchSampler):
    """A :class:`~torch.utils.data.BatchSampler` whose batches are index tensors cut from one
    order per epoch, instead of lists built one index at a time.

    Over a plain :class:`~torch.utils.data.RandomSampler` it draws the very permutation that
    sampler would have drawn (same generator, or the same seed drawn from torch's global RNG),
    so batches equal ``DataLoader(..., shuffle=True)``'s; over any other sampler (Lightning's
    ``DistributedSampler`` under DDP, which re-creates this class with it) it takes that
    sampler's order. The constructor is :class:`~torch.utils.data.BatchSampler`'s, which is
    what Lightning calls when it injects a distributed sampler.
    """

    def __iter__(self):
        sampler = self.sampler
        if (isinstance(sampler, RandomSampler) and not sampler.replacement
                and sampler.num_samples == len(sampler.data_source)):
            generator = sampler.generator
            if generator is None:  # what RandomSampler.__iter__ does without a generator
                generator = torch.Generator()
                generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
            order = torch.randperm(len(sampler.data_source), generator=generator)
        else:
            order = torch.as_tensor(list(sampler), dtype=torch.long)
        stop = order.numel() - order.numel() % self.batch_size if self.drop_last else order.numel()
        for start in range(0, stop, self.batch_size):
            yield order[start:start + self.batch_size]


def whole_batch(batch):
    """The collate function of datasets that hand out whole batches (``__getitems__``)."""
    return batch


class DeviceGraph:
    """A graph's tensors on one device at a time, copied there once and shared.

    The sampled loader and the module's full-graph passes (full-graph training, evaluation)
    read the same copy, so a GPU holds the graph and its text features once, not twice; the
    caller's graph stays where it is (:func:`kgrec.graph.data_on`).
    """

    def __init__(self, data: HeteroData) -> None:
        self.data = data
        self._copy: tuple[torch.device, HeteroData] | None = None

    def on(self, device: torch.device | str) -> HeteroData:
        device = torch.device(device)
        if self._copy is None or self._copy[0] != device:
            self._copy = None  # an older copy is not kept beside the new one
            check_fits(self.data, device)
            self._copy = (device, data_on(self.data, device))
        return self._copy[1]


def check_fits(data: HeteroData, device: torch.device) -> None:
    """Refuse, by name and size, to copy a graph onto a device without the memory for it.

    Without this a graph too large for the GPU fails as a bare CUDA out-of-memory error in
    the middle of the copy. Only tensors not already on ``device`` count (they are the ones
    copied); a device whose free memory cannot be known is not checked.
    """
    need = sum(v.numel() * v.element_size() for store in data.stores for v in store.values()
               if isinstance(v, torch.Tensor) and v.device != device)
    free = available_bytes(device) if need else None
    if free is not None and need > free:
        raise ConfigError(
            f"the training graph and its features need {format_bytes(need)} ({need} bytes) on device "
            f"'{device}', which has {format_bytes(free)} free. kgrec evaluates (and trains with "
            "loader.sampling: full) by passes over the whole graph on the trainer's device, so the graph "
            "must fit there: use a device with more memory, train on the CPU (--trainer.accelerator cpu), "
            "or shrink the graph (inputs.use_kg: false, fewer text dimensions)."
        )

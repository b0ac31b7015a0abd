"""A training loader whose order depends only on (seed, epoch) and that resumes mid-epoch.

Lightning saves the ``state_dict`` of a loader that has one and restores it on resume, so a run
stopped at a mid-epoch checkpoint continues with exactly the batches the uninterrupted run would
have seen. The sampler subclasses ``DistributedSampler`` so Lightning does not replace it under DDP:
it shards the data over the ranks itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler


class EpochSampler(DistributedSampler):
    """Indices in an order fixed by ``(seed, epoch)``, sharded over the DDP ranks when a process group is up.

    Lightning calls ``set_epoch`` at every epoch start. ``skip`` drops the first indices of the next
    pass only (used on resume).

    Example:
        >>> sampler = EpochSampler(range(6), shuffle=False)
        >>> sampler.skip = 2
        >>> list(sampler), list(sampler)
        ([2, 3, 4, 5], [0, 1, 2, 3, 4, 5])
    """

    def __init__(self, dataset: Dataset, shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        super().__init__(
            dataset,
            num_replicas=dist.get_world_size() if distributed else 1,
            rank=dist.get_rank() if distributed else 0,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self.skip = 0

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        skip, self.skip = self.skip, 0
        return iter(indices[skip:])


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over an :class:`EpochSampler` that counts the batches it served this epoch.

    ``state_dict`` is ``{"epoch", "batches"}``; after ``load_state_dict`` the next pass skips the
    batches already served, so training resumes at the exact batch.
    """

    def __init__(self, dataset: Dataset, sampler: EpochSampler, **kwargs: Any) -> None:
        if not isinstance(sampler, EpochSampler):
            raise TypeError(f"ResumableDataLoader needs an EpochSampler, got {type(sampler).__name__}")
        super().__init__(dataset, sampler=sampler, **kwargs)
        self._served = 0
        self._resume = 0

    def __iter__(self) -> Iterator[Any]:
        start, self._resume = self._resume, 0
        self.sampler.skip = start * (self.batch_size or 1)
        self._served = start
        for batch in super().__iter__():
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches": self._served}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.sampler.set_epoch(state_dict["epoch"])
        finished = state_dict["batches"] >= len(self)
        self._resume = 0 if finished else state_dict["batches"]

"""Shared helpers for the in-memory datamodules: fraction checks, splits, label noise, loaders."""

from __future__ import annotations

import lightning
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lightning_mixup.checks import check_bool, check_int, check_number, check_positive_int
from lightning_mixup.data.resumable import EpochSampler, ResumableDataLoader


def check_fractions(val_fraction: float, test_fraction: float) -> None:
    """Check that both fractions lie in ``[0, 1)`` and leave a non-empty train share."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
            raise ValueError(f"{name} must be a float in [0, 1), got {value!r}")
    if val_fraction + test_fraction >= 1:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction!r} + {test_fraction!r}")


def split_indices(
    labels: Tensor, val_fraction: float, test_fraction: float, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Split ``range(len(labels))`` into sorted, disjoint (train, val, test) index tensors.

    The split is stratified: samples are shuffled with a generator seeded from
    ``seed``, then interleaved so that every class is spread evenly along the
    order; test and val take the first ``round(n * fraction)`` positions.

    Example:
        >>> train, val, test = split_indices(torch.arange(10) % 2, 0.2, 0.2, seed=0)
        >>> len(train), len(val), len(test)
        (6, 2, 2)
    """
    n = labels.numel()
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n, generator=generator)
    shuffled = labels[perm].long()
    counts = torch.bincount(shuffled)
    order = torch.argsort(shuffled, stable=True)
    sorted_labels = shuffled[order]
    rank = torch.arange(n) - (torch.cumsum(counts, 0) - counts)[sorted_labels]
    key = torch.empty(n, dtype=torch.float64)
    key[order] = (rank.double() + 0.5) / counts[sorted_labels].double()
    interleaved = perm[torch.argsort(key, stable=True)]

    n_test = round(n * test_fraction)
    n_val = round(n * val_fraction)
    if n - n_test - n_val <= 0:
        raise ValueError(f"fractions val={val_fraction!r}, test={test_fraction!r} leave no training samples out of {n}")
    test = interleaved[:n_test]
    val = interleaved[n_test : n_test + n_val]
    train = interleaved[n_test + n_val :]
    return train.sort().values, val.sort().values, test.sort().values


def symmetric_label_noise(labels: Tensor, num_classes: int, rate: float, seed: int = 0) -> Tensor:
    """A copy of ``labels [N]`` in which exactly ``round(rate · N)`` samples, chosen at random, carry a label drawn
    uniformly from the *other* ``C − 1`` classes (symmetric label noise: a fraction ``rate`` of the labels is wrong,
    spread evenly over the wrong classes). Seeded by ``seed`` alone.

    Example:
        >>> y = torch.arange(10) % 5
        >>> noisy = symmetric_label_noise(y, 5, 0.4, seed=0)
        >>> int((noisy != y).sum()), bool(((noisy >= 0) & (noisy < 5)).all())
        (4, True)
    """
    check_number("label_noise", rate, 0.0, 1.0)
    g = torch.Generator().manual_seed(seed)
    noisy = labels.clone()
    chosen = torch.randperm(labels.shape[0], generator=g)[: round(rate * labels.shape[0])]
    shift = torch.randint(1, num_classes, (chosen.shape[0],), generator=g)  # never 0: always another class
    noisy[chosen] = (labels[chosen] + shift) % num_classes
    return noisy


class InMemoryDataModule(lightning.LightningDataModule):
    """Base class serving ``(x, y)`` tensor splits built once in :meth:`setup`.

    Subclasses implement :meth:`build_splits` returning the train/val/test
    ``TensorDataset``s. Batches collate to a list ``[x, y]``.
    """

    def __init__(
        self,
        batch_size: int,
        shuffle_seed: int,
        num_workers: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        check_positive_int("batch_size", batch_size)
        check_int("shuffle_seed", shuffle_seed)
        check_int("num_workers", num_workers, minimum=0)
        check_bool("drop_last", drop_last)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.drop_last = drop_last
        self.shuffle_seed = shuffle_seed
        self.train_set: TensorDataset | None = None
        self.val_set: TensorDataset | None = None
        self.test_set: TensorDataset | None = None

    def build_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """Return the preprocessed (train, val, test) datasets."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Build all splits once; later calls are no-ops."""
        if self.train_set is None:
            self.train_set, self.val_set, self.test_set = self.build_splits()

    def _loader(self, dataset: TensorDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            name = type(self).__name__
            raise RuntimeError(f"{name}.setup() must be called before requesting loaders")
        if train:
            sampler = EpochSampler(dataset, shuffle=True, seed=self.shuffle_seed, drop_last=self.drop_last)
            return ResumableDataLoader(
                dataset,
                sampler=sampler,
                batch_size=self.batch_size,
                drop_last=self.drop_last,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
            )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        """Shuffled training loader: order fixed by ``(shuffle_seed, epoch)``, resumable mid-epoch, sharded
        under DDP."""
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        """Validation loader in fixed order."""
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        """Test loader in fixed order."""
        return self._loader(self.test_set, train=False)

    def predict_dataloader(self) -> DataLoader:
        """Prediction loader over the test split, in fixed order."""
        return self._loader(self.test_set, train=False)

"""Handwritten digits (8x8, 10 classes) shipped inside the package.

The images come from the UCI "Optical Recognition of Handwritten Digits" data
set as redistributed by scikit-learn; see ``DIGITS_LICENSE.txt`` next to this
module. Loading needs only torch.
"""

from __future__ import annotations

from importlib import resources

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

from lightning_mixup.checks import check_bool, check_int, check_number, check_positive_int
from lightning_mixup.data.in_memory import InMemoryDataModule, check_fractions, split_indices, symmetric_label_noise

_DIGITS_FILE = "digits.pt"
_MAX_PIXEL = 16.0


def load_digits() -> tuple[Tensor, Tensor]:
    """Load the bundled digits as ``(images uint8 [1797, 8, 8] in 0..16, labels uint8 [1797])``.

    Example:
        >>> images, labels = load_digits()
        >>> images.shape, int(labels.max())
        (torch.Size([1797, 8, 8]), 9)
    """
    with resources.files(__package__).joinpath(_DIGITS_FILE).open("rb") as f:
        data = torch.load(f, weights_only=True)
    return data["images"], data["labels"]


class DigitsDataModule(InMemoryDataModule):
    """Train/val/test splits of the bundled handwritten digits.

    Samples are ``(image float32 [1, H, W], label int64)``, so batches collate
    to a list ``[x, y]``. Pixels are scaled to ``[0, 1]``, bilinearly resized
    to ``image_size`` and, if ``normalize``, standardized with the train
    split's mean/std (stored as ``mean`` / ``std`` after :meth:`setup`).
    The stratified split depends only on ``split_seed``; the train shuffling
    order only on ``shuffle_seed``. ``label_noise``: the fraction of training
    labels replaced by another class (symmetric noise, seeded by ``label_noise_seed``;
    validation and test stay clean), as in the mixup paper's label-noise study.
    ``imbalance_ratio``: None keeps every training image; a number ρ ≥ 1 makes the *training* split long-tailed
    with the exponential profile of the long-tailed CIFAR benchmarks (LDAM, Remix): class ``c`` keeps
    ``n_c = ⌊n_max·ρ^(−c/(C−1))⌋`` images (at least 1), ``n_max`` being the smallest class of the balanced split,
    chosen at random (seeded by ``imbalance_seed``); validation and test stay exactly as they are (balanced, and
    normalized with the full training split's statistics), so that their accuracy is the balanced one.
    :attr:`class_counts` gives the training split's per-class counts.

    Example:
        >>> dm = DigitsDataModule(batch_size=32, image_size=16)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> x.shape, y.dtype
        (torch.Size([32, 1, 16, 16]), torch.int64)
        >>> DigitsDataModule(imbalance_ratio=10).class_counts
        [122, 94, 73, 56, 43, 33, 26, 20, 15, 12]
    """

    num_classes: int = 10

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        image_size: int = 8,
        split_seed: int = 0,
        num_workers: int = 0,
        normalize: bool = True,
        drop_last: bool = False,
        shuffle_seed: int = 0,
        label_noise: float = 0.0,
        label_noise_seed: int = 0,
        imbalance_ratio: float | None = None,
        imbalance_seed: int = 0,
    ) -> None:
        super().__init__(batch_size, shuffle_seed, num_workers=num_workers, drop_last=drop_last)
        check_fractions(val_fraction, test_fraction)
        check_positive_int("image_size", image_size)
        check_int("split_seed", split_seed)
        check_bool("normalize", normalize)
        check_number("label_noise", label_noise, 0.0, 1.0)
        check_int("label_noise_seed", label_noise_seed)
        if imbalance_ratio is not None:
            check_number("imbalance_ratio", imbalance_ratio, 1.0, what="None or a finite number >= 1")
        check_int("imbalance_seed", imbalance_seed)
        self.save_hyperparameters()
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.image_size = image_size
        self.split_seed = split_seed
        self.normalize = normalize
        self.label_noise = float(label_noise)
        self.label_noise_seed = label_noise_seed
        self.imbalance_ratio = None if imbalance_ratio is None else float(imbalance_ratio)
        self.imbalance_seed = imbalance_seed
        self.input_shape: tuple[int, int, int] = (1, image_size, image_size)
        self.mean: float | None = None
        self.std: float | None = None

    def build_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """Load, scale, resize and normalize the images, then split them."""
        images, labels = load_digits()
        x = images.unsqueeze(1).float() / _MAX_PIXEL
        if self.image_size != x.shape[-1]:
            size = (self.image_size, self.image_size)
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        y = labels.long()
        train, val, test = split_indices(y, self.val_fraction, self.test_fraction, self.split_seed)
        if self.normalize:
            train_x = x[train]
            self.mean = train_x.mean().item()
            self.std = train_x.std().item()
            x = (x - self.mean) / self.std
        if self.imbalance_ratio is not None:  # after the statistics: validation and test stay exactly the same
            train = long_tail(y, train, self.num_classes, self.imbalance_ratio, self.imbalance_seed)
        train_y = symmetric_label_noise(y[train], self.num_classes, self.label_noise, self.label_noise_seed)
        return (
            TensorDataset(x[train], train_y),
            TensorDataset(x[val], y[val]),
            TensorDataset(x[test], y[test]),
        )

    @property
    def class_counts(self) -> list[int]:
        """The number of training images of each class (after ``imbalance_ratio`` and ``label_noise``): what a
        class-rebalancing method such as :class:`~lightning_mixup.callbacks.remix.Remix` reads. Builds the splits
        if :meth:`setup` has not run yet."""
        if self.train_set is None:
            self.setup("fit")
        labels = self.train_set.tensors[1]
        return torch.bincount(labels, minlength=self.num_classes).tolist()


def long_tail(labels: Tensor, indices: Tensor, num_classes: int, ratio: float, seed: int = 0) -> Tensor:
    """The sorted subset of ``indices`` that keeps ``n_c = max(1, ⌊n_max·ratio^(−c/(C−1))⌋)`` samples of class
    ``c`` (``labels[indices]``), ``n_max`` being the smallest class among ``indices``: the exponential profile of
    the long-tailed CIFAR benchmarks (Cao et al. LDAM, arXiv 1906.07413; Remix, arXiv 2007.03943), class 0 the head,
    class ``C − 1`` the tail, ``n_0 / n_{C−1} ≈ ratio``. Which samples stay is drawn with a generator seeded by
    ``seed`` alone.

    Example:
        >>> keep = long_tail(torch.arange(40) % 4, torch.arange(40), 4, 10.0)
        >>> torch.bincount(torch.arange(40)[keep] % 4).tolist()
        [10, 4, 2, 1]
    """
    check_number("imbalance_ratio", ratio, 1.0)
    own = labels[indices]
    counts = torch.bincount(own, minlength=num_classes)
    n_max = int(counts.min())
    if n_max == 0:
        raise ValueError(f"every class needs a training sample to make a long tail, got counts {counts.tolist()}")
    exponent = torch.arange(num_classes, dtype=torch.float64) / (num_classes - 1)
    keep = (n_max * float(ratio) ** -exponent).floor().long().clamp(min=1)
    # a random rank of each sample within its class: keep the first n_c of class c
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(own.numel(), generator=generator)
    by_class = order[torch.argsort(own[order], stable=True)]
    start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(own)
    rank[by_class] = torch.arange(own.numel()) - start[own[by_class]]
    return indices[rank < keep[own]].sort().values

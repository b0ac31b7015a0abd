"""Synthetic 2-D classification data sets (moons, spirals) generated with torch."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from lightning_mixup.checks import check_int, check_positive_int
from lightning_mixup.data.in_memory import InMemoryDataModule, check_fractions, split_indices

TOY2D_NAMES: tuple[str, ...] = ("moons", "spirals")
"""The 2-D toy data sets of :class:`Toy2DDataModule`."""
_SPIRAL_TURNS = 1.5


def _check_toy2d_args(name: str, n_samples: int, noise: float, n_classes: int) -> None:
    if name not in TOY2D_NAMES:
        raise ValueError(f"name must be one of {list(TOY2D_NAMES)}, got {name!r}")
    check_positive_int("n_samples", n_samples)
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"noise must be a non-negative float, got {noise!r}")
    check_int("n_classes", n_classes, minimum=2)
    if name == "moons" and n_classes != 2:
        raise ValueError(f"'moons' has exactly 2 classes, got n_classes={n_classes!r}")


def make_toy2d(
    name: str,
    n_samples: int,
    noise: float,
    generator: torch.Generator | None = None,
    n_classes: int = 2,
) -> tuple[Tensor, Tensor]:
    """Generate a raw (unstandardized) 2-D toy data set.

    * ``"moons"``: two interleaving half circles (2 classes).
    * ``"spirals"``: ``n_classes`` interleaved spiral arms of 1.5 turns each.

    Classes are balanced (sizes differ by at most one) and samples come in a
    random order. Isotropic Gaussian noise with std ``noise`` is added.

    Returns:
        ``x`` float32 ``[n_samples, 2]`` and ``y`` int64 ``[n_samples]``.

    Example:
        >>> x, y = make_toy2d("spirals", 300, 0.05, torch.Generator().manual_seed(0), n_classes=3)
        >>> x.shape, torch.bincount(y).tolist()
        (torch.Size([300, 2]), [100, 100, 100])
    """
    _check_toy2d_args(name, n_samples, noise, n_classes)
    y = torch.randperm(n_samples, generator=generator) % n_classes
    t = torch.rand(n_samples, generator=generator)
    if name == "moons":
        angle = math.pi * t
        upper = torch.stack((torch.cos(angle), torch.sin(angle)), dim=1)
        lower = torch.stack((1.0 - torch.cos(angle), 0.5 - torch.sin(angle)), dim=1)
        x = torch.where((y == 0).unsqueeze(1), upper, lower)
    else:
        angle = 2 * math.pi * (_SPIRAL_TURNS * t + y.float() / n_classes)
        x = t.unsqueeze(1) * torch.stack((torch.cos(angle), torch.sin(angle)), dim=1)
    x = x + noise * torch.randn(n_samples, 2, generator=generator)
    return x.float(), y


class Toy2DDataModule(InMemoryDataModule):
    """Train/val/test splits of a :func:`make_toy2d` data set.

    Features are standardized per dimension with the train split's statistics
    (stored as ``mean`` / ``std`` tensors of shape ``[2]`` after :meth:`setup`).
    Samples are ``(x float32 [2], y int64)``; batches collate to a list ``[x, y]``.

    Example:
        >>> dm = Toy2DDataModule("spirals", n_samples=500, n_classes=3)
        >>> dm.setup()
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> x.shape, dm.num_classes
        (torch.Size([64, 2]), 3)
    """

    input_shape: tuple[int] = (2,)

    def __init__(
        self,
        name: str = "moons",
        n_samples: int = 1000,
        noise: float = 0.1,
        batch_size: int = 64,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 0,
        shuffle_seed: int = 0,
        n_classes: int = 2,
    ) -> None:
        super().__init__(batch_size, shuffle_seed)
        _check_toy2d_args(name, n_samples, noise, n_classes)
        check_fractions(val_fraction, test_fraction)
        check_int("seed", seed)
        self.save_hyperparameters()
        self.name = name
        self.n_samples = n_samples
        self.noise = noise
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.seed = seed
        self.num_classes = n_classes
        self.mean: Tensor | None = None
        self.std: Tensor | None = None

    def build_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """Generate the data from ``seed``, split it and standardize it."""
        generator = torch.Generator().manual_seed(self.seed)
        x, y = make_toy2d(self.name, self.n_samples, self.noise, generator, self.num_classes)
        train, val, test = split_indices(y, self.val_fraction, self.test_fraction, self.seed)
        self.mean = x[train].mean(dim=0)
        self.std = x[train].std(dim=0).clamp_min(1e-8)
        x = (x - self.mean) / self.std
        return (
            TensorDataset(x[train], y[train]),
            TensorDataset(x[val], y[val]),
            TensorDataset(x[test], y[test]),
        )

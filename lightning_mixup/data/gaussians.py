"""2-D mixtures of Gaussians for GAN experiments, and the mode-coverage metrics used to judge them.

The two mixtures are the usual toy targets of GAN papers (VEEGAN, arXiv 1705.07761; PacGAN,
arXiv 1712.04086), on which the mixup paper (arXiv 1710.09412, §3.7) shows its GAN experiment:

* ``"ring8"``: 8 modes evenly spaced on a circle of radius 2, std 0.02.
* ``"grid25"``: 25 modes on the grid ``{-4, -2, 0, 2, 4}²``, std 0.05.

``scale`` resizes them (the ring's radius; the grid's spacing, default 2 for both) and ``std`` sets the spread:
the mixup paper's released code (hongyi-zhang/mixup ``gan/example_gan.py``) uses a ring of radius 1
(``scale=1``) and the grid ``{-1, -0.5, 0, 0.5, 1}²`` (``scale=0.5``), both with std 0.01
(``data=gaussians8_official`` / ``gaussians25_official``).

A sample is *high quality* when it lies within ``n_std`` (3) standard deviations of its nearest mode;
a mode is *covered* when at least ``min_count`` high-quality samples have it as nearest mode (PacGAN's
convention: 2,500 samples, at least 20 per mode, i.e. a fifth of the 100 a perfect generator puts on
each of 25 modes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import lightning
import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lightning_mixup.checks import check_int, check_positive_int
from lightning_mixup.data.resumable import EpochSampler, ResumableDataLoader

MIXTURES: tuple[str, ...] = ("ring8", "grid25")
"""The Gaussian mixtures of the GAN experiments: 8 modes on a ring, 25 on a grid."""
DEFAULT_STD: dict[str, float] = {"ring8": 0.02, "grid25": 0.05}
DEFAULT_SCALE = 2.0
"""The ring's radius and the grid's spacing unless ``scale`` says otherwise."""


def _check_name(name: object) -> str:
    if name not in MIXTURES:
        raise ValueError(f"name must be one of {list(MIXTURES)}, got {name!r}")
    return name


def _check_std(std: object) -> float:
    if isinstance(std, bool) or not isinstance(std, (int, float)) or not (std > 0 and math.isfinite(std)):
        raise ValueError(f"std must be a finite number > 0, got {std!r}")
    return float(std)


def _check_scale(scale: object) -> float:
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"scale must be a finite number > 0, got {scale!r}")
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    return float(scale)


def mixture_modes(name: str, scale: float | None = None) -> Tensor:
    """The modes (means) of a mixture, float32 ``[K, 2]``; ``scale`` is the ring's radius or the grid's spacing
    (None: 2).

    Example:
        >>> mixture_modes("grid25").shape, mixture_modes("ring8")[0].tolist()
        (torch.Size([25, 2]), [2.0, 0.0])
        >>> mixture_modes("grid25", scale=0.5)[0].tolist(), mixture_modes("ring8", scale=1.0)[2].tolist()
        ([-1.0, -1.0], [0.0, 1.0])
    """
    scale = DEFAULT_SCALE if scale is None else _check_scale(scale)
    if _check_name(name) == "ring8":
        angle = torch.arange(8, dtype=torch.float64) * (2 * math.pi / 8)
        modes = scale * torch.stack((angle.cos(), angle.sin()), dim=1)
        return modes.round(decimals=12).float()  # exact zeros at the axes
    axis = torch.arange(-2, 3, dtype=torch.float64) * scale
    return torch.cartesian_prod(axis, axis).float()


def sample_mixture(
    name: str,
    n: int,
    std: float | None = None,
    generator: torch.Generator | None = None,
    scale: float | None = None,
) -> Tensor:
    """``n`` samples float32 ``[n, 2]`` from an equal-weight mixture (``std``, ``scale`` None: their defaults).

    Example:
        >>> sample_mixture("ring8", 5, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 2])
    """
    modes = mixture_modes(name, scale)
    std = DEFAULT_STD[name] if std is None else _check_std(std)
    check_positive_int("n", n)
    which = torch.randint(len(modes), (n,), generator=generator)
    return modes[which] + std * torch.randn(n, 2, generator=generator)


@dataclass(frozen=True)
class ModeCoverage:
    """How well samples cover a mixture: modes covered, fraction of high-quality samples, per-mode counts."""

    modes: int
    high_quality: float
    counts: Tensor


def mode_coverage(samples: Tensor, modes: Tensor, std: float, n_std: float = 3.0, min_count: int = 20) -> ModeCoverage:
    """Mode coverage of ``samples [N, D]`` for a mixture with ``modes [K, D]`` and isotropic ``std``.

    A sample is high quality when its distance to the nearest mode is at most ``n_std · std``; a mode is
    covered when at least ``min_count`` high-quality samples have it as nearest mode.

    Example:
        >>> modes = mixture_modes("ring8")
        >>> cover = mode_coverage(modes.repeat(20, 1), modes, std=0.02)
        >>> cover.modes, cover.high_quality
        (8, 1.0)
    """
    if not isinstance(samples, Tensor) or samples.ndim != 2 or samples.shape[1] != modes.shape[1]:
        shape = list(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
        raise ValueError(f"samples must have shape [N, {modes.shape[1]}] like the modes, got {shape}")
    _check_std(std)
    check_int("min_count", min_count, minimum=1)
    if isinstance(n_std, bool) or not isinstance(n_std, (int, float)) or not n_std > 0:
        raise ValueError(f"n_std must be a number > 0, got {n_std!r}")
    samples = samples.detach().float()
    modes = modes.to(samples)
    distance, nearest = torch.cdist(samples, modes).min(dim=1)
    good = distance <= n_std * std
    counts = torch.bincount(nearest[good], minlength=modes.shape[0])
    high_quality = float(good.float().mean()) if samples.shape[0] else 0.0
    return ModeCoverage(int((counts >= min_count).sum()), high_quality, counts)


class GaussianMixtureDataModule(lightning.LightningDataModule):
    """A fixed sample of ``batch_size · batches_per_epoch`` points of a 2-D mixture, drawn from ``seed``.

    The sample is large enough to stand for the mixture (64,000 points by default); the training loader
    reshuffles it each epoch from ``(shuffle_seed, epoch)``, resumes mid-epoch and shards it under DDP
    (each process then serves ``batches_per_epoch / world_size`` batches an epoch). Batches are lists
    ``[x]`` with ``x`` float32 ``[B, 2]``. ``scale`` is the ring's radius or the grid's spacing (None: 2),
    ``std`` the modes' spread (None: 0.02 for the ring, 0.05 for the grid). ``modes`` and ``mode_std`` tell
    :class:`GANMonitor` what to measure coverage against. There is no validation or test split: a GAN is judged
    by its samples.

    Example:
        >>> dm = GaussianMixtureDataModule("grid25", batch_size=4, batches_per_epoch=2)
        >>> dm.setup("fit")
        >>> [x] = next(iter(dm.train_dataloader()))
        >>> x.shape, dm.modes.shape, dm.mode_std
        (torch.Size([4, 2]), torch.Size([25, 2]), 0.05)
    """

    def __init__(
        self,
        name: str = "grid25",
        std: float | None = None,
        batch_size: int = 128,
        batches_per_epoch: int = 500,
        seed: int = 0,
        shuffle_seed: int = 0,
        num_workers: int = 0,
        scale: float | None = None,
    ) -> None:
        super().__init__()
        _check_name(name)
        if std is not None:
            _check_std(std)
        if scale is not None:
            _check_scale(scale)
        check_positive_int("batch_size", batch_size)
        check_positive_int("batches_per_epoch", batches_per_epoch)
        check_int("seed", seed)
        check_int("shuffle_seed", shuffle_seed)
        check_int("num_workers", num_workers, minimum=0)
        self.save_hyperparameters()
        self.name = name
        self.mode_std = DEFAULT_STD[name] if std is None else float(std)
        self.scale = DEFAULT_SCALE if scale is None else float(scale)
        self.modes = mixture_modes(name, self.scale)
        self.batch_size = batch_size
        self.batches_per_epoch = batches_per_epoch
        self.seed = seed
        self.shuffle_seed = shuffle_seed
        self.num_workers = num_workers
        self.train_set: TensorDataset | None = None

    def setup(self, stage: str | None = None) -> None:
        """Draw the sample once; later calls are no-ops."""
        if self.train_set is None:
            generator = torch.Generator().manual_seed(self.seed)
            n = self.batch_size * self.batches_per_epoch
            self.train_set = TensorDataset(sample_mixture(self.name, n, self.mode_std, generator, self.scale))

    def train_dataloader(self) -> DataLoader:
        """Shuffled training loader: order fixed by ``(shuffle_seed, epoch)``, resumable mid-epoch, sharded
        under DDP."""
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must be called before requesting loaders")
        sampler = EpochSampler(self.train_set, shuffle=True, seed=self.shuffle_seed)
        return ResumableDataLoader(
            self.train_set,
            sampler=sampler,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

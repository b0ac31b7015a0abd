"""GANMonitor: mode-coverage metrics of a GAN's samples each epoch, and the samples saved with the run."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from lightning_mixup.checks import check_positive_int
from lightning_mixup.data.gaussians import mode_coverage

GRID_IMAGES = 64  # an 8 x 8 grid of generated images


def image_grid(images: Tensor) -> Tensor:
    """The largest square of ``images [N, C, H, W]`` tiled row by row into one image ``[C, r·H, r·W]``.

    Example:
        >>> image_grid(torch.zeros(10, 1, 8, 8)).shape
        torch.Size([1, 24, 24])
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images must have shape [N, C, H, W] with N >= 1, got {list(images.shape)}")
    side = math.isqrt(images.shape[0])
    n, c, h, w = side * side, *images.shape[1:]
    return images[:n].reshape(side, side, c, h, w).permute(2, 0, 3, 1, 4).reshape(c, side * h, side * w)


class GANMonitor(Callback):
    """Draw ``n_samples`` samples from the generator with fixed noise at each epoch's end; log mode coverage
    on 2-D mixtures and save the samples.

    Needs a module with ``sample(n, generator=...)`` (as :class:`~lightning_mixup.models.gan.GANModule`).
    When the datamodule has ``modes [K, 2]`` and ``mode_std`` (as
    :class:`~lightning_mixup.data.gaussians.GaussianMixtureDataModule`), logs ``gan/modes`` (modes
    covered: at least ``min_count`` samples within ``n_std`` std of the mode) and ``gan/high_quality``
    (fraction of samples within ``n_std`` std of some mode), see
    :func:`~lightning_mixup.data.gaussians.mode_coverage`.

    Files in ``dirpath`` (None: ``<trainer.default_root_dir>/samples``), written by global rank 0 at the
    end of fit (``<tag>`` = ``final``) and every ``save_every_n_epochs`` epochs (``epoch0009``, ...):
    ``samples_<tag>.pt`` holds the samples, the modes if known, and for images an 8 × 8 grid
    ``[C, 8·H, 8·W]`` of the first 64; with matplotlib installed, ``samples_<tag>.png`` shows the samples
    over the modes (or the grid). matplotlib is optional: without it, 2-D samples are also written as
    ``samples_<tag>.csv``, one info line says so, and nothing fails.

    At the end of fit it prints one result line (also kept as ``summary``), like the classifier's test line:
    ``GAN result: modes covered 25/25  high-quality 0.912  (2500 samples, 20000 iterations)``.

    Args:
        n_samples: samples drawn at each epoch's end (PacGAN's protocol: 2,500).
        n_std / min_count: the thresholds of :func:`~lightning_mixup.data.gaussians.mode_coverage`.
        dirpath: folder of the files; save_every_n_epochs: also save every N epochs (None: only at the end).
        seed: seed of the fixed noise, so that every epoch's samples come from the same ``z``.

    Example:
        >>> monitor = GANMonitor(n_samples=2500, min_count=20)
    """

    def __init__(
        self,
        n_samples: int = 2500,
        n_std: float = 3.0,
        min_count: int = 20,
        dirpath: str | Path | None = None,
        save_every_n_epochs: int | None = None,
        seed: int = 0,
    ) -> None:
        check_positive_int("n_samples", n_samples)
        check_positive_int("min_count", min_count)
        if save_every_n_epochs is not None:
            check_positive_int("save_every_n_epochs", save_every_n_epochs)
        if isinstance(n_std, bool) or not isinstance(n_std, (int, float)) or not n_std > 0:
            raise ValueError(f"n_std must be a number > 0, got {n_std!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {seed!r}")
        self.n_samples = n_samples
        self.n_std = float(n_std)
        self.min_count = min_count
        self.dirpath = None if dirpath is None else Path(dirpath)
        self.save_every_n_epochs = save_every_n_epochs
        self.seed = seed
        self._said_no_matplotlib = False
        self.summary: str | None = None

    def samples(self, pl_module: pl.LightningModule) -> Tensor:
        """``n_samples`` samples from the fixed noise of ``seed`` (the same every epoch), on the CPU."""
        sample = getattr(pl_module, "sample", None)
        if not callable(sample):
            raise TypeError(
                f"{type(self).__name__} needs a module with a `sample(n, generator=...)` method, "
                f"got {type(pl_module).__name__}"
            )
        return sample(self.n_samples, generator=torch.Generator().manual_seed(self.seed)).detach().float().cpu()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        samples = self.samples(pl_module)
        modes, std = getattr(trainer.datamodule, "modes", None), getattr(trainer.datamodule, "mode_std", None)
        if modes is not None and std is not None:
            coverage = mode_coverage(samples, modes, std, self.n_std, self.min_count)
            pl_module.log("gan/modes", float(coverage.modes), sync_dist=True)
            pl_module.log("gan/high_quality", coverage.high_quality, sync_dist=True)
        every = self.save_every_n_epochs
        if every is not None and (trainer.current_epoch + 1) % every == 0:
            self.save(trainer, samples, f"epoch{trainer.current_epoch:04d}", modes)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        samples = self.samples(pl_module)
        modes, std = getattr(trainer.datamodule, "modes", None), getattr(trainer.datamodule, "mode_std", None)
        self.save(trainer, samples, "final", modes)
        self.summary = self.result_line(samples, modes, std, getattr(pl_module, "g_steps", None))
        rank_zero_info(self.summary)

    def result_line(self, samples: Tensor, modes: Tensor | None, std: float | None, iterations: int | None) -> str:
        """The one-line result of a GAN run (printed at the end of fit, kept as ``summary``): modes covered and the
        high-quality fraction of the final samples when the modes are known, else where the samples are.

        Example:
            >>> from lightning_mixup.data.gaussians import mixture_modes
            >>> modes = mixture_modes("ring8")
            >>> GANMonitor(min_count=20).result_line(modes.repeat(20, 1), modes, 0.02, 5000)
            'GAN result: modes covered 8/8  high-quality 1.000  (160 samples, 5000 iterations)'
        """
        done = f"{len(samples)} samples" + ("" if iterations is None else f", {iterations} iterations")
        if modes is None or std is None:
            return f"GAN result: no known modes to measure ({done}; samples saved as samples_final.*)"
        coverage = mode_coverage(samples, modes, std, self.n_std, self.min_count)
        return (
            f"GAN result: modes covered {coverage.modes}/{len(modes)}  high-quality {coverage.high_quality:.3f}  "
            f"({done})"
        )

    def save(self, trainer: pl.Trainer, samples: Tensor, tag: str, modes: Tensor | None) -> None:
        """Write ``samples_<tag>.pt`` and a ``.png`` (matplotlib) or, for 2-D samples without it, a ``.csv``."""
        if not trainer.is_global_zero:
            return
        root = self.dirpath or Path(trainer.default_root_dir) / "samples"
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"samples_{tag}"
        grid = image_grid(samples[:GRID_IMAGES].clamp(0, 1)) if samples.ndim == 4 else None
        torch.save({"samples": samples, "modes": modes, "grid": grid}, path.with_suffix(".pt"))
        try:
            from matplotlib.figure import Figure
        except ImportError:
            if not self._said_no_matplotlib:
                rank_zero_info(
                    f"{type(self).__name__}: matplotlib is not installed; samples saved as .pt "
                    f"(2-D samples also as .csv) in {root}"
                )
                self._said_no_matplotlib = True
            if samples.ndim == 2:
                header = ",".join(f"x{i}" for i in range(samples.shape[1]))
                rows = (",".join(map(repr, row)) for row in samples.tolist())
                path.with_suffix(".csv").write_text("\n".join((header, *rows)) + "\n")
            return
        figure = Figure(figsize=(5, 5))
        axes = figure.add_subplot()
        if grid is not None:
            axes.imshow(grid.mean(dim=0).numpy(), cmap="gray", vmin=0, vmax=1)
            axes.axis("off")
        else:
            axes.scatter(samples[:, 0].numpy(), samples[:, 1].numpy(), s=2, alpha=0.5, label="generated")
            if modes is not None:
                axes.scatter(modes[:, 0].numpy(), modes[:, 1].numpy(), s=30, c="red", marker="x", label="modes")
            axes.set_aspect("equal")
            figure.legend(loc="lower center", ncol=2)
        axes.set_title(tag)
        figure.savefig(path.with_suffix(".png"), dpi=100)

"""MixedBatchLogger: look at the mixed training images of a run, as TensorBoard images or PNG files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from lightning_mixup.callbacks.base import picklable_state
from lightning_mixup.callbacks.batches import Key, check_key, read_batch
from lightning_mixup.checks import check_channel_stats
from lightning_mixup.checks import check_int, check_positive_int

TAG = "train/mixed_batch"
FOLDER = "mixed_batches"
PLOT_EXTRA = 'pip install "lightning-mixup[plot]"'
PNG_WIDTH = 1024  # the PNG files are scaled up to at least this width (at most PNG_MAX_SCALE times)
PNG_MAX_SCALE = 8

Stats = float | Sequence[float] | Tensor


def make_grid(images: Tensor, nrow: int = 8, padding: int = 1, pad_value: float = 1.0) -> Tensor:
    """Tile ``images [N, C, H, W]`` row by row, ``nrow`` to a row, into one image ``[C, H', W']`` with
    ``padding`` pixels of ``pad_value`` around and between them (a last row that is not full is padded).

    Example:
        >>> grid = make_grid(torch.zeros(5, 1, 2, 2), nrow=4, padding=1)
        >>> grid.shape
        torch.Size([1, 7, 13])
        >>> grid[0, 1:3, 1:3].tolist(), grid[0, 4:6, 4:6].tolist()  # image 0, then the blank after image 4
        ([[0.0, 0.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 1.0]])
    """
    if images.ndim != 4 or images.shape[0] < 1:
        raise ValueError(f"images must have shape [N, C, H, W] with N >= 1, got {list(images.shape)}")
    check_positive_int("nrow", nrow)
    check_int("padding", padding, minimum=0)
    n, channels, height, width = images.shape
    cols = min(nrow, n)
    rows = math.ceil(n / cols)
    blanks = images.new_full((rows * cols - n, channels, height, width), pad_value)
    tiles = F.pad(torch.cat((images, blanks)), (0, padding, 0, padding), value=pad_value)  # right and bottom
    cell_h, cell_w = height + padding, width + padding
    grid = tiles.view(rows, cols, channels, cell_h, cell_w).permute(2, 0, 3, 1, 4)
    return F.pad(grid.reshape(channels, rows * cell_h, cols * cell_w), (padding, 0, padding, 0), value=pad_value)


def _check_range(value: object) -> tuple[float, float]:
    ok = (
        isinstance(value, Sequence)
        and len(value) == 2
        and all(not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) for v in value)
        and value[0] < value[1]
    )
    if not ok:
        raise ValueError(f"value_range must be (low, high), finite numbers with low < high, got {value!r}")
    return float(value[0]), float(value[1])


class MixedBatchLogger(Callback):
    """Log a grid of the mixed training images every ``every_n_steps`` optimizer steps, to check that mixing
    looks right in your own runs.

    The grid is read in ``on_train_batch_end``: by then every mixing callback has written its mix into the
    batch (they do so in ``on_train_batch_start``), so the order of the callbacks does not matter. It shows
    the first ``max_images`` images of ``batch[input_key]`` exactly as the training step received them, after
    undoing the normalisation (``x·std + mean``) and mapping ``value_range`` to black..white. Hidden-state
    mixers (Manifold Mixup, PatchUp) change the input only on the batches where they draw the input itself.

    Where it goes: each ``TensorBoardLogger`` of the trainer gets an image ``train/mixed_batch`` at the
    step; without one, PNG files ``mixed_batches/step_000100.png`` are written under the trainer's
    ``log_dir`` (the CSV logger's folder, else ``default_root_dir``). ``dirpath`` writes the PNG files there,
    in addition to TensorBoard. PNG files need matplotlib (``pip install "lightning-mixup[plot]"``): without
    it, ``setup`` fails before training starts. Only global rank 0 writes; validation, test, predict and the
    sanity check are never logged. The steps logged are those where ``trainer.global_step`` (optimizer
    steps so far) is a multiple of ``every_n_steps``, starting with the first batch; under gradient
    accumulation, the first batch of such a step.

    Args:
        every_n_steps: log every N optimizer steps.
        max_images: the first ``max_images`` images of the batch go into the grid.
        nrow: images per row of the grid.
        input_key: position (list or tuple batch) or key (dict batch) of the images ``[B, C, H, W]``, ``C``
            1 or 3: the mixers' ``input_key``.
        mean / std: the normalisation to undo, one number or one per channel (a sequence or a tensor; None: none).
        value_range: the ``(low, high)`` pixel values drawn black and white after un-normalising (values
            outside are clipped); None: each grid's own minimum and maximum.
        padding: pixels of white between and around the images.
        dirpath: folder of the PNG files (None: ``<log_dir>/mixed_batches`` when there is no TensorBoard).
        png_scale: each grid pixel becomes ``png_scale × png_scale`` pixels of the PNG file (nearest neighbour, so
            boxes and masks stay sharp); None: the smallest factor up to 8 that makes the PNG at least
            ``PNG_WIDTH`` (1024) pixels wide. TensorBoard gets the grid unscaled.

    Example:
        >>> from lightning import Trainer
        >>> from lightning_mixup import CutMix
        >>> logger = MixedBatchLogger(every_n_steps=100, max_images=16, mean=0.5, std=0.25, value_range=(0, 1))
        >>> trainer = Trainer(callbacks=[CutMix(), logger], logger=False, enable_checkpointing=False)
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        max_images: int = 16,
        nrow: int = 8,
        input_key: Key = 0,
        mean: Stats | None = None,
        std: Stats | None = None,
        value_range: tuple[float, float] | None = None,
        padding: int = 1,
        dirpath: str | Path | None = None,
        png_scale: int | None = None,
    ) -> None:
        check_positive_int("every_n_steps", every_n_steps)
        if png_scale is not None:
            check_positive_int("png_scale", png_scale)
        self.png_scale = png_scale
        check_positive_int("max_images", max_images)
        check_positive_int("nrow", nrow)
        check_int("padding", padding, minimum=0)
        if value_range is not None:
            value_range = _check_range(value_range)
        self.every_n_steps = every_n_steps
        self.max_images = max_images
        self.nrow = nrow
        self.input_key = check_key("input_key", input_key)
        self.mean = check_channel_stats("mean", mean, positive=False)
        self.std = check_channel_stats("std", std, positive=True)
        self.value_range = value_range
        self.padding = padding
        self.dirpath = None if dirpath is None else Path(dirpath)
        self._tensorboards: list[TensorBoardLogger] = []
        self._png_dir: Path | None = None
        self._step: int | None = None
        self._last_logged: int | None = None

    # ---- the picture ---------------------------------------------------------------------------

    def grid(self, images: Tensor) -> Tensor:
        """The grid ``[C, H', W']`` in [0, 1] of the first ``max_images`` of ``images [B, C, H, W]``, as logged."""
        self._check_images(images)
        x = images[: self.max_images].detach().float().cpu()
        if self.std is not None:
            x = x * torch.tensor(self.std).view(1, -1, 1, 1)
        if self.mean is not None:
            x = x + torch.tensor(self.mean).view(1, -1, 1, 1)
        low, high = self.value_range if self.value_range is not None else (float(x.min()), float(x.max()))
        x = ((x - low) / max(high - low, 1e-12)).clamp(0.0, 1.0)
        return make_grid(x, self.nrow, self.padding)

    def __getstate__(self) -> dict[str, object]:
        return picklable_state(self, ("_tensorboards",))

    def png_pixels(self, grid: Tensor) -> Tensor:
        """The RGB pixels ``[k·H', k·W', 3]`` of the PNG file for a grid ``[C, H', W']``, ``k`` from ``png_scale``."""
        scale = self.png_scale or max(1, min(PNG_MAX_SCALE, -(-PNG_WIDTH // grid.shape[-1])))
        grid = grid.repeat_interleave(scale, dim=-2).repeat_interleave(scale, dim=-1)
        return grid.expand(3, -1, -1).permute(1, 2, 0)  # RGB, also for grayscale

    # ---- Lightning hooks -----------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._tensorboards = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        self._png_dir = self.dirpath
        if self._png_dir is None and not self._tensorboards:
            self._png_dir = Path(trainer.log_dir or trainer.default_root_dir) / FOLDER
        if self._png_dir is not None:
            try:
                import matplotlib.image  # noqa: F401
            except ImportError as err:
                raise ImportError(
                    f"{type(self).__name__} writes PNG files with matplotlib, which is not installed: {PLOT_EXTRA} "
                    "(or log to TensorBoard: Trainer(logger=TensorBoardLogger(...)))"
                ) from err

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        step = trainer.global_step
        self._step = None
        if step % self.every_n_steps == 0 and step != self._last_logged:
            self._read(batch)  # a batch that is not images fails before the step, not after
            self._step = step

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, self._step = self._step, None
        if step is None:
            return
        self._last_logged = step
        images = self._read(batch)
        if not trainer.is_global_zero:
            return
        grid = self.grid(images)
        for logger in self._tensorboards:
            logger.experiment.add_image(TAG, grid, global_step=step, dataformats="CHW")
        if self._png_dir is not None:
            from matplotlib.image import imsave

            self._png_dir.mkdir(parents=True, exist_ok=True)
            pixels = self.png_pixels(grid).numpy()
            imsave(self._png_dir / f"step_{step:06d}.png", pixels, vmin=0.0, vmax=1.0)

    def _read(self, batch: Any) -> Tensor:
        """``batch[input_key]``, checked on every rank (so that a bad batch fails everywhere, not only on rank 0)."""
        (images,) = read_batch(batch, [self.input_key], type(self).__name__, writable=False)
        self._check_images(images)
        return images

    def _check_images(self, images: Tensor) -> None:
        name = type(self).__name__
        if images.ndim != 4 or images.shape[1] not in (1, 3) or images.shape[0] < 1:
            raise ValueError(
                f"{name}: batch[{self.input_key!r}] must be images [B, C, H, W] with C = 1 or 3, "
                f"got shape {list(images.shape)}"
            )
        for stat, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, images.shape[1]):
                raise ValueError(f"{name}: {stat} has {len(values)} values for images with {images.shape[1]} channels")

"""One line of validation metrics per epoch, for long runs watched from a console or a log file."""

from __future__ import annotations

import time

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info

from lightning_mixup.callbacks.base import picklable_state
from lightning_mixup.checks import check_bool


class EpochSummary(Callback):
    """Log ``epoch 3/10  val/acc 0.9722  val/ece 0.0312  val/loss 0.1025  (4.1 s)`` after each validation.

    The line goes through Lightning's logger (``rank_zero_info``, rank 0 only): to the console and, under
    ``python -m lightning_mixup.train``, to the run's ``train.log``. The sanity check is not reported.

    Args:
        prefix: the metrics reported are those of ``trainer.callback_metrics`` whose name starts with it.
        timing: append the seconds since the previous line (or the start of fit).

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[EpochSummary()], logger=False, enable_checkpointing=False)
    """

    def __init__(self, prefix: str = "val/", timing: bool = True) -> None:
        if not isinstance(prefix, str):
            raise TypeError(f"prefix must be a str, got {prefix!r}")
        self.prefix = prefix
        self.timing = check_bool("timing", timing)
        self._last = 0.0

    def __getstate__(self) -> dict[str, object]:
        return picklable_state(self)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last = time.perf_counter()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != "fit":
            return
        rank_zero_info(self.line(trainer))

    def line(self, trainer: pl.Trainer) -> str:
        """The summary line for the metrics ``trainer`` holds now."""
        total = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        parts = [f"epoch {trainer.current_epoch + 1}{total}"]
        for name in sorted(trainer.callback_metrics):
            value = trainer.callback_metrics[name]
            if name.startswith(self.prefix) and value.numel() == 1:
                parts.append(f"{name} {float(value):.4f}")
        if self.timing:
            now = time.perf_counter()
            parts.append(f"({now - self._last:.1f} s)")
            self._last = now
        return "  ".join(parts)

"""The RandomChoice callback: one mixer per batch, picked at random."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from lightning_mixup.callbacks.base import MixingCallback
from lightning_mixup.functional import MixedBatch


class RandomChoice(MixingCallback):
    """Mix each training batch with one mixer drawn from ``mixers`` with probabilities ``weights``.

    timm's "mixup or CutMix" switch, generalised. The wrapper's ``p``, epoch window, keys, number of
    classes and generator govern; the chosen mixer contributes its method and hyper-parameters, and its
    own ``p`` and epoch window are honoured as well. Pass the mixers to ``RandomChoice`` only, not
    to the ``Trainer`` too.

    Args:
        mixers: the mixing callbacks to choose from (at least one).
        weights: non-negative weights, one per mixer, normalised to sum to 1 (None: uniform).
        **kwargs: ``p``, ``start_epoch``, ``stop_epoch``, keys, ``num_classes``, ``seed`` as for
            :class:`MixingCallback`.

    Example:
        >>> from lightning_mixup import CutMix, MixUp
        >>> choice = RandomChoice([MixUp(alpha=0.8), CutMix(alpha=1.0)], weights=[0.5, 0.5])
    """

    def __init__(self, mixers: Sequence[MixingCallback], weights: Sequence[float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        mixers = list(mixers)
        if not mixers:
            raise ValueError("RandomChoice needs at least one mixer, got an empty list")
        for mixer in mixers:
            if not isinstance(mixer, MixingCallback):
                raise TypeError(f"RandomChoice takes mixing callbacks, got {mixer!r}")
        if weights is None:
            weights = [1.0] * len(mixers)
        weights = [float(w) for w in weights]
        if len(weights) != len(mixers):
            raise ValueError(f"got {len(weights)} weights {weights} for {len(mixers)} mixers")
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights}")
        self.mixers = mixers
        self.weights = [w / sum(weights) for w in weights]
        self._epoch = 0

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        for mixer in self.mixers:  # hidden-state mixers register their hooks here
            mixer.setup(trainer, pl_module, stage)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        for mixer in self.mixers:
            mixer.on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for mixer in self.mixers:
            mixer.on_validation_start(trainer, pl_module)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        for mixer in self.mixers:
            mixer.teardown(trainer, pl_module, stage)

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        for mixer in self.mixers:
            mixer.on_exception(trainer, pl_module, exception)

    def _hparams(self) -> dict[str, Any]:
        return {"mixers": [type(m).__name__ for m in self.mixers], "weights": self.weights, "p": self.p}

    def maybe_mix(
        self, x: Tensor, target: Tensor, num_classes: int, epoch: int, generator: torch.Generator
    ) -> MixedBatch | None:
        self._epoch = epoch
        return super().maybe_mix(x, target, num_classes, epoch, generator)

    def mix(self, x: Tensor, target: Tensor, num_classes: int, generator: torch.Generator) -> MixedBatch | None:
        weights = torch.tensor(self.weights, device=generator.device)
        choice = int(torch.multinomial(weights, 1, generator=generator))
        return self.mixers[choice].maybe_mix(x, target, num_classes, self._epoch, generator)

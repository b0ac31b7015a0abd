"""The CutMix callback."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_mixup.callbacks.base import Mixer
from lightning_mixup.functional import MixedBatch, cutmix_batch


class CutMix(Mixer):
    """CutMix (Yun et al., ICCV 2019, arXiv 1905.04899): paste a box of side ``√(1−λ)·H × √(1−λ)·W``
    from the partner, λ ~ Beta(α, α), targets weighted by the exact area kept. Needs ``[B, C, H, W]``.

    Paper settings: α = 1, applied with ``p = 0.5`` on CIFAR and ``p = 1`` on ImageNet.
    All arguments are those of :class:`Mixer`.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[CutMix(alpha=1.0, p=0.5)], logger=False, enable_checkpointing=False)
    """

    def mix(self, x: Tensor, target: Tensor, num_classes: int, generator: torch.Generator) -> MixedBatch:
        return cutmix_batch(x, target, num_classes, self.alpha, **self.batch_options(x, generator))

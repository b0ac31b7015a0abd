"""The MixUp callback."""

from __future__ import annotations

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.functional import MixedBatch, mixup_batch


class MixUp(Mixer):
    """mixup (Zhang et al., ICLR 2018, arXiv 1710.09412): train on ``λx_i + (1−λ)x_j`` with targets
    ``λy_i + (1−λ)y_j``, λ ~ Beta(α, α). Works on inputs of any shape ``[B, ...]``.

    Paper settings: α = 1 on CIFAR, α = 0.2 on ImageNet. All arguments are those of :class:`Mixer`;
    the functional op is :func:`~lightning_mixup.functional.mixup_batch`.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[MixUp(alpha=0.2)], logger=False, enable_checkpointing=False)
    """

    def mix(self, step: MixStep) -> MixedBatch:
        return mixup_batch(step.x, step.target, step.targets, self.alpha, **self.batch_options(step))

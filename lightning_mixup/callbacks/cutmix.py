"""The CutMix callback."""

from __future__ import annotations

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.functional import MixedBatch, cutmix_batch


class CutMix(Mixer):
    """CutMix (Yun et al., ICCV 2019, arXiv 1905.04899): paste a box of side ``√(1−λ)·H × √(1−λ)·W``
    from the partner, λ ~ Beta(α, α), targets weighted by the exact area kept. Needs ``[B, C, H, W]``.

    Paper settings: α = 1, applied with ``p = 0.5`` on CIFAR and ``p = 1`` on ImageNet.
    All arguments are those of :class:`Mixer`; the functional op is
    :func:`~lightning_mixup.functional.cutmix_batch`.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[CutMix(alpha=1.0, p=0.5)], logger=False, enable_checkpointing=False)
    """

    def mix(self, step: MixStep) -> MixedBatch:
        return cutmix_batch(step.x, step.target, step.targets, self.alpha, **self.batch_options(step))

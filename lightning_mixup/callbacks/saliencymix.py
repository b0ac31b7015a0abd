"""The SaliencyMix callback."""

from __future__ import annotations

from typing import Any

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.saliencymix import SALIENCY_SIZE, check_saliency_size, saliencymix_batch


class SaliencyMix(Mixer):
    """SaliencyMix (Uddin et al., ICLR 2021, arXiv 2006.01791): a CutMix box of side ``√(1−λ)·H × √(1−λ)·W``,
    λ ~ Beta(α, α), centred on the most salient pixel of the partner image (its spectral-residual saliency, Hou &
    Zhang 2007, computed in torch), pasted at the same place; targets weighted by the exact area kept. Needs
    ``[B, C, H, W]``.

    Args:
        alpha: concentration of λ ~ Beta(α, α) (the official ``--beta``, 1.0).
        saliency_size: side of the square grayscale image the saliency is computed on (OpenCV's 64); None: the
            image's own size.
        **kwargs: ``p``, ``per_sample``, ``partner``, ... as for :class:`Mixer`. ``per_sample=False`` is the official
            form: one λ and one box for the batch, from the saliency of the first sample's partner;
            ``per_sample=True``: one λ and one box per sample, from its own partner's saliency.

    Official CIFAR settings: ``beta=1.0`` (our ``alpha``), ``salmix_prob=0.5`` (our ``p``); ImageNet: ``p=1.0``.
    The functional op is :func:`~lightning_mixup.functional.saliencymix.saliencymix_batch`.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[SaliencyMix(alpha=1.0, p=0.5)], logger=False, enable_checkpointing=False)
    """

    def __init__(self, alpha: float = 1.0, saliency_size: int | None = SALIENCY_SIZE, **kwargs: Any) -> None:
        super().__init__(alpha, **kwargs)
        self.saliency_size = check_saliency_size(saliency_size)

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "saliency_size": self.saliency_size}

    def mix(self, step: MixStep) -> MixedBatch:
        return saliencymix_batch(
            step.x,
            step.target,
            step.targets,
            self.alpha,
            saliency_size=self.saliency_size,
            **self.batch_options(step),
        )

"""The SmoothMix callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.smoothmix import SIGMA_RANGE, check_smoothmix_params, smoothmix_batch


class SmoothMix(Mixer):
    """SmoothMix (Lee et al., "SmoothMix: a Simple Yet Effective Data Augmentation to Train Robust Classifiers",
    CVPR Workshops 2020): the partner is blended in through a soft mask that falls off like a Gaussian around a
    random centre, so the mix has no sharp edge; the targets are weighted by the mask's mean (λ = the share of the
    image that is its own). Needs ``[B, C, H, W]``.

    Args:
        shape: ``"circle"`` (the reference code's Gaussian bump) or ``"square"`` (the same profile of the L∞
            distance: square level sets).
        sigma_range: ``(low, high)``: the bump's σ is ``s·H`` (rows) and ``s·W`` (columns) with ``s ~ U[low, high)``;
            reference code: ``(0.25, 0.5)``.
        alpha: checked but unused (λ is the mask's mean, not a Beta draw); kept for the signature of :class:`Mixer`.
        **kwargs: ``p``, ``per_sample``, ``partner``, ... as for :class:`Mixer`.

    Reference code (OpenMixup's): circle, σ ~ U[0.25, 0.5)·H, one mask per batch, every batch mixed.
    The functional op is :func:`~lightning_mixup.functional.smoothmix.smoothmix_batch`.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[SmoothMix(shape="circle")], logger=False, enable_checkpointing=False)
    """

    def __init__(
        self,
        alpha: float = 1.0,
        shape: str = "circle",
        sigma_range: Sequence[float] = SIGMA_RANGE,
        **kwargs: Any,
    ) -> None:
        super().__init__(alpha, **kwargs)
        self.sigma_range = check_smoothmix_params(shape, sigma_range)
        self.shape = shape

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "shape": self.shape, "sigma_range": self.sigma_range}

    def mix(self, step: MixStep) -> MixedBatch:
        return smoothmix_batch(
            step.x,
            step.target,
            step.targets,
            self.alpha,
            shape=self.shape,
            sigma_range=self.sigma_range,
            **self.batch_options(step),
        )

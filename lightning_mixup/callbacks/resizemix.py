"""The ResizeMix callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.resizemix import check_resizemix_params, resizemix_batch


class ResizeMix(Mixer):
    """ResizeMix (Qin et al., arXiv 2012.11101): the whole partner image, resized by a scale τ, is pasted at a random
    place; the targets are weighted by the exact area left to the image, λ = 1 − box area / (H·W). Needs
    ``[B, C, H, W]``.

    Args:
        scope: the range of τ, the side of the pasted partner as a share of the image's (paper: ``(0.1, 0.8)``).
        sampling: how τ is drawn: ``"uniform"``, τ ~ U(scope) (the paper, OpenMixup's default); ``"beta"``,
            τ ~ Beta(α, α) drawn again from U(scope) where it falls outside (OpenMixup's ``use_alpha=True``);
            ``"lam"``, mmpretrain's reading, where ``scope`` bounds the kept area λ₀ = low + (high − low)·Beta(α, α)
            and τ = √(1 − λ₀). ``alpha`` is used by the last two only.
        interpolation: ``"nearest"`` (OpenMixup), ``"bilinear"`` (mmpretrain) or ``"bicubic"``, as
            ``F.interpolate(align_corners=False)``.
        placement: ``"clip"``: a uniform centre, the box clipped to the image and the whole partner squeezed into
            what is left (both reimplementations); ``"inside"``: the whole box inside the image.
        **kwargs: ``alpha``, ``p``, ``per_sample``, ``partner``, ... as for :class:`Mixer`.

    Settings of the paper and of OpenMixup's CIFAR benchmarks: τ ~ U(0.1, 0.8) (OpenMixup draws it with
    ``use_alpha=True, alpha=1``, the same law), nearest interpolation, applied to every batch (``p = 1``).
    The functional op is :func:`~lightning_mixup.functional.resizemix.resizemix_batch`.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[ResizeMix(scope=(0.1, 0.8))], logger=False, enable_checkpointing=False)
    """

    def __init__(
        self,
        alpha: float = 1.0,
        scope: Sequence[float] = (0.1, 0.8),
        sampling: str = "uniform",
        interpolation: str = "nearest",
        placement: str = "clip",
        **kwargs: Any,
    ) -> None:
        super().__init__(alpha, **kwargs)
        self.scope = check_resizemix_params(scope, sampling, interpolation, placement)
        self.sampling = sampling
        self.interpolation = interpolation
        self.placement = placement

    def _hparams(self) -> dict[str, Any]:
        return {
            **super()._hparams(),
            "scope": self.scope,
            "sampling": self.sampling,
            "interpolation": self.interpolation,
            "placement": self.placement,
        }

    def mix(self, step: MixStep) -> MixedBatch:
        return resizemix_batch(
            step.x,
            step.target,
            step.targets,
            self.alpha,
            scope=self.scope,
            sampling=self.sampling,
            interpolation=self.interpolation,
            placement=self.placement,
            **self.batch_options(step),
        )

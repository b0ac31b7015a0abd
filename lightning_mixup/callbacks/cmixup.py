"""The C-Mixup callback."""

from __future__ import annotations

from typing import Any

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.checks import check_choice
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.cmixup import KERNELS, check_bandwidth, cmixup_batch


class CMixup(Mixer):
    """C-Mixup (Yao et al., NeurIPS 2022, arXiv 2210.05775): mixup for regression in which each sample ``i`` mixes
    with a partner ``j`` drawn with probability ``∝ exp(−‖y_i − y_j‖² / (2σ²))`` (close labels, hence a plausible
    mixed label), then ``λx_i + (1−λ)x_j`` with targets ``λy_i + (1−λ)y_j``, λ ~ Beta(α, α). Works on inputs of any
    shape ``[B, ...]`` (tabular ``[B, D]``, images) with float regression targets ``[B]`` or ``[B, ...]``
    (``task="regression"``, the only task it takes); the functional op is
    :func:`~lightning_mixup.functional.cmixup.cmixup_batch`.

    Official defaults (huaxiuyao/C-Mixup): ``mix_alpha = 2`` (1.5 on Exchange-Rate), a Gaussian kernel, one λ per
    batch; the bandwidth σ (``kde_bandwidth``, default 1) is tuned per data set in the units of its labels: 1.75
    Airfoil, 1.2 NO2, 0.05 Exchange-Rate, 0.5 Electricity, 0.2 RCF-MNIST, 4 Crime, 1 SkillCraft, 10 DTI. Partners are
    drawn within the batch here, from the whole training set in the official code (see
    :mod:`lightning_mixup.functional.cmixup`); scale σ with the targets (standardised targets need a σ in standard
    deviations).

    Args:
        alpha: concentration of λ ~ Beta(α, α).
        bandwidth: the kernel's σ, in the units of the targets (``math.inf``: uniform partners, i.e. mixup with
            partners drawn with replacement).
        kernel: ``"gaussian"`` (the official default) or ``"tophat"`` (uniform among the labels closer than σ).
        task: ``"regression"``, the only one.
        **kwargs: the other arguments of :class:`~lightning_mixup.callbacks.base.Mixer` (``per_sample``, ``p``,
            ``targets="pair"``, ...); ``partner`` must stay ``"perm"``: the kernel draws the partners.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[CMixup(alpha=2.0, bandwidth=0.5)], logger=False, enable_checkpointing=False)
    """

    TASKS = ("regression",)

    def __init__(
        self,
        alpha: float = 2.0,
        bandwidth: float = 1.0,
        kernel: str = "gaussian",
        task: str = "regression",
        **kwargs: Any,
    ) -> None:
        super().__init__(alpha=alpha, task=task, **kwargs)
        if self.partner != "perm":
            raise ValueError(
                f"CMixup draws partners from the label kernel: partner must be 'perm', got {self.partner!r}"
            )
        self.bandwidth = check_bandwidth(bandwidth)
        self.kernel = check_choice("kernel", kernel, KERNELS)

    def _hparams(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "bandwidth": self.bandwidth,
            "kernel": self.kernel,
            "per_sample": self.per_sample,
            "p": self.p,
        }

    def mix(self, step: MixStep) -> MixedBatch:
        return cmixup_batch(
            step.x,
            step.target,
            step.targets,
            self.alpha,
            self.bandwidth,
            kernel=self.kernel,
            per_sample=self.per_sample,
            generator=step.generator,
            out=self.buffer_for(step.x),
        )

"""The AlignMix callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from lightning_mixup.callbacks.base import MixStep
from lightning_mixup.callbacks.hidden import HiddenMix, HiddenStateMixer
from lightning_mixup.checks import check_choice
from lightning_mixup.functional import MixedBatch, PairTarget, TargetBatch, mixup_batch
from lightning_mixup.functional.alignmix import (
    DIRECTIONS,
    EPS,
    ITERATIONS,
    TOL,
    alignmix,
    check_feature_map,
    check_sinkhorn_params,
    sample_directions,
)


class AlignMix(HiddenStateMixer):
    """AlignMixup (Venkataramanan et al., CVPR 2022, arXiv 2103.15375): a hidden feature map ``A`` ``[B, C, H, W]``
    is interpolated with its partner's ``A'`` after aligning their ``H·W`` positions by optimal transport.

    The entropic plan ``P`` between the positions' feature vectors (Sinkhorn, squared Euclidean cost, uniform
    marginals, regularisation ``eps``) gives the assignment ``R = H·W·P``; the mix is ``λ·A + (1−λ)·A'Rᵀ`` (the
    partner aligned to the sample) or ``λ·A·R + (1−λ)·A'`` (the sample aligned to the partner), one of the two
    drawn uniformly each batch (``direction="random"``, official; each sample with ``per_sample``). Targets
    ``λ·y + (1−λ)·y[j]``, λ ~ Beta(α, α). When the input is drawn (``include_input``) it is mixed with plain mixup.
    The plan carries no gradient. Official CIFAR settings (PreActResNet-18): the input or the last feature map
    (``layer4``, 4×4), each with probability 1/2; α = 2, ε = 0.1, 100 Sinkhorn iterations, stopping threshold 0.1.
    The plan costs ``B·(H·W)²`` memory: hook a late, small feature map. The functional op is
    :func:`~lightning_mixup.functional.alignmix.alignmix_batch` (:func:`~lightning_mixup.functional.alignmix.alignmix`
    with a given partner and λ, as the hook applies it).

    Args:
        layers: module names from ``pl_module.named_modules()`` whose outputs are channels-first feature maps
            ``[B, C, H, W]`` (official: the network's last feature map).
        include_input: also draw the input itself, mixed with mixup (official: yes).
        alpha: λ ~ Beta(α, α) (official: 2).
        eps: the entropic regularisation ε of Sinkhorn, in the units of the squared distances (official: 0.1).
        iterations: the most Sinkhorn iterations (official: 100).
        tol: a pair's Sinkhorn stops once an iteration changes its row potential by less than ``tol`` (L1;
            official threshold 0.1, on the batch's mean change); 0 runs every iteration.
        direction: ``"random"`` (official), ``"to_sample"`` (always the partner aligned to the sample) or
            ``"to_partner"`` (always the sample aligned to the partner).
        **kwargs: ``p``, ``per_sample`` (one λ and direction per sample), ``partner``, ... as for :class:`Mixer`.

    Example:
        >>> from lightning import Trainer
        >>> cb = AlignMix(layers=["net.layer4"], include_input=True, alpha=2.0, eps=0.1, iterations=100)
        >>> trainer = Trainer(callbacks=[cb], logger=False, enable_checkpointing=False)
    """

    TASKS = ("multiclass", "multilabel", "regression")  # the alignment moves features between positions

    def __init__(
        self,
        layers: Sequence[str],
        include_input: bool = True,
        alpha: float = 2.0,
        eps: float = EPS,
        iterations: int = ITERATIONS,
        tol: float = TOL,
        direction: str = "random",
        **kwargs: Any,
    ) -> None:
        self.eps, self.iterations, self.tol = check_sinkhorn_params(eps, iterations, tol)
        self.direction = check_choice("direction", direction, DIRECTIONS)
        super().__init__(layers, include_input, alpha=alpha, **kwargs)

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "eps": self.eps, "iterations": self.iterations, "tol": self.tol,
                "direction": self.direction}  # fmt: skip

    def check_layer_output(self, name: str, h: Tensor) -> None:
        """Every named layer must give a channels-first feature map ``[B, C, H, W]``."""
        try:
            check_feature_map(h)
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from None

    def mix_input(self, step: MixStep) -> MixedBatch:
        return mixup_batch(step.x, step.target, step.targets, self.alpha, **self.batch_options(step))

    def plan(
        self, step: MixStep, targets: TargetBatch, index: Tensor, lam: Tensor
    ) -> tuple[HiddenMix, Tensor | PairTarget]:
        size = index.shape[0] if self.per_sample else None
        to_partner = sample_directions(self.direction, size, generator=step.generator)
        step.stats["mix/to_partner"] = to_partner.float().mean()

        def mix_fn(h: Tensor) -> Tensor:
            return alignmix(
                h, index.to(h.device), lam, to_partner.to(h.device),
                eps=self.eps, iterations=self.iterations, tol=self.tol,
            )  # fmt: skip

        return mix_fn, targets.mix(index, lam)

"""The ManifoldMixup callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from lightning_mixup.callbacks.base import MixStep
from lightning_mixup.callbacks.hidden import HiddenMix, HiddenStateMixer
from lightning_mixup.functional import MixedBatch, PairTarget, TargetBatch, mixup, mixup_batch


class ManifoldMixup(HiddenStateMixer):
    """Manifold Mixup (Verma et al., ICML 2019, arXiv 1806.05236): mixup of the hidden representation
    at a layer drawn uniformly each batch among ``layers`` (and the input when ``include_input``).

    ``h_k ← λ·h_k + (1−λ)·h_k[j]`` and targets ``λ·y + (1−λ)·y[j]``, λ ~ Beta(α, α). Works on any
    batch-first hidden state (conv maps, token sequences, vectors) through a forward hook: the network
    is not modified. Paper settings (CIFAR, PreActResNet-18): α = 2, layers {input, after block 1,
    after block 2}. The functional op is mixup of the hidden state: :func:`~lightning_mixup.functional.mixup_batch`
    (:func:`~lightning_mixup.functional.mixup` with a given partner and λ, as the hook applies it).

    Args:
        layers: module names from ``pl_module.named_modules()``, e.g. ``["net.layer1", "net.layer2"]``.
        include_input: also draw the input itself (paper: yes).
        alpha: λ ~ Beta(α, α).
        **kwargs: ``p``, ``per_sample``, ``partner``, ... as for :class:`Mixer`.

    Example:
        >>> from lightning import Trainer
        >>> cb = ManifoldMixup(layers=["net.layer1", "net.layer2"], include_input=True, alpha=2.0)
        >>> trainer = Trainer(callbacks=[cb], logger=False, enable_checkpointing=False)
    """

    def __init__(self, layers: Sequence[str], include_input: bool = True, alpha: float = 2.0, **kwargs: Any) -> None:
        super().__init__(layers, include_input, alpha=alpha, **kwargs)

    def mix_input(self, step: MixStep) -> MixedBatch:
        return mixup_batch(step.x, step.target, step.targets, self.alpha, **self.batch_options(step))

    def plan(
        self, step: MixStep, targets: TargetBatch, index: Tensor, lam: Tensor
    ) -> tuple[HiddenMix, Tensor | PairTarget]:
        return (lambda h: mixup(h, index.to(h.device), lam)), targets.mix(index, lam)

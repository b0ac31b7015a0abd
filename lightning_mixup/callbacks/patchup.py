"""The PatchUp callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_mixup.callbacks.base import MixStep
from lightning_mixup.callbacks.hidden import HiddenMix, HiddenStateMixer
from lightning_mixup.checks import check_bool, check_choice
from lightning_mixup.functional import MixedBatch, cutmix_batch
from lightning_mixup.functional.patchup import check_patchup_params, patchup_hidden

PAPER_DEFAULTS = {"soft": {"gamma": 0.75, "p": 1.0}, "hard": {"gamma": 0.5, "p": 0.7}}


class PatchUp(HiddenStateMixer):
    """PatchUp (Faramarzi et al., AAAI 2022, arXiv 2006.07794): DropBlock-style blocks of a hidden feature
    map ``[B, C, H, W]`` are swapped (``mode="hard"``) or interpolated (``mode="soft"``) with the partner's.

    With the block mask M (1 = the sample's own feature, 0 = a block to change), soft:
    ``M·h + (1−M)·(λh + (1−λ)h[j])``; hard: ``M·h + (1−M)·h[j]``. Targets ``p_u·y + (1−p_u)·y_b`` where
    ``p_u`` is the mean of M (the fraction left unchanged) and ``y_b = λy + (1−λ)y[j]`` (soft) or ``y[j]``
    (hard). Seeds are drawn at DropBlock's
    rate ``γ·W²/(b²(W−b+1)²)`` and grown into ``b × b`` blocks, per channel. When the input is drawn
    (``include_input``), it is mixed with CutMix, as in the official code. The functional op is
    :func:`~lightning_mixup.functional.patchup_batch` (:func:`~lightning_mixup.functional.patchup.patchup_hidden`
    with a given partner and λ, as the hook applies it).

    The mask depends on the feature map's size, which is known only during the forward, so the
    targets written into the batch at batch start are filled in place by the hook. Read the targets
    after calling the model (the usual order); until then they are NaN, so a loss computed from an
    early copy fails loudly instead of training on wrong targets.

    Args:
        layers: module names from ``pl_module.named_modules()`` whose outputs are ``[B, C, H, W]``.
        mode: ``"soft"`` or ``"hard"``.
        block_size: side b of the blocks; must not exceed the feature map (paper: 7).
        gamma: fraction of features to change, in (0, 1]; None: the paper's 0.75 (soft) or 0.5 (hard).
        p: probability of mixing a batch; None: the paper's 1.0 (soft) or 0.7 (hard).
        shared_mask: one mask for the whole batch, as the official code does (default: one per sample).
        include_input: also draw the input itself, mixed with CutMix (official code: yes).
        alpha: λ ~ Beta(α, α) (paper: 2).
        **kwargs: ``per_sample`` (one λ per sample), ``partner``, ... as for :class:`Mixer`.

    Example:
        >>> from lightning import Trainer
        >>> cb = PatchUp(layers=["net.layer1", "net.layer2"], mode="hard", block_size=7, gamma=0.5, p=0.7)
        >>> trainer = Trainer(callbacks=[cb], logger=False, enable_checkpointing=False)
    """

    def __init__(
        self,
        layers: Sequence[str],
        mode: str = "soft",
        block_size: int = 7,
        gamma: float | None = None,
        p: float | None = None,
        shared_mask: bool = False,
        include_input: bool = True,
        alpha: float = 2.0,
        **kwargs: Any,
    ) -> None:
        check_choice("mode", mode, tuple(PAPER_DEFAULTS))
        gamma = PAPER_DEFAULTS[mode]["gamma"] if gamma is None else gamma
        p = PAPER_DEFAULTS[mode]["p"] if p is None else p
        check_patchup_params(block_size, gamma, mode)
        check_bool("shared_mask", shared_mask)
        super().__init__(layers, include_input, alpha=alpha, p=p, **kwargs)
        self.mode = mode
        self.block_size = block_size
        self.gamma = float(gamma)
        self.shared_mask = shared_mask

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "mode": self.mode, "block_size": self.block_size, "gamma": self.gamma}

    def mix_input(self, step: MixStep) -> MixedBatch:
        return cutmix_batch(step.x, step.target, step.num_classes, self.alpha, **self.batch_options(step))

    def plan(self, step: MixStep, probs: Tensor, index: Tensor, lam: Tensor) -> tuple[HiddenMix, Tensor]:
        pending = torch.full_like(probs, float("nan"))

        def mix_fn(h: Tensor) -> Tensor:
            mixed, unchanged = patchup_hidden(
                h, probs, index.to(h.device), lam, self.mode, self.block_size, self.gamma,
                shared_mask=self.shared_mask, generator=step.generator,
            )  # fmt: skip
            pending.copy_(mixed.target)
            step.stats["mix/unchanged"] = unchanged.float().mean()
            return mixed.input

        return mix_fn, pending

"""The PatchUp callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_mixup.callbacks.base import MixStep
from lightning_mixup.callbacks.hidden import HiddenMix, HiddenStateMixer
from lightning_mixup.checks import check_bool, check_choice, check_number
from lightning_mixup.functional import MixedBatch, cutmix_batch
from lightning_mixup.functional.patchup import (
    LOSS_PARAMS,
    block_masks,
    check_feature_map,
    check_loss_params,
    check_patchup_params,
    patchup,
    patchup_loss_targets,
    patchup_own_share,
    unchanged_fraction,
)

from lightning_mixup.functional.targets import PairTarget, TargetBatch, fill_

PAPER_DEFAULTS = {"soft": {"gamma": 0.75, "p": 1.0}, "hard": {"gamma": 0.5, "p": 0.7}}


class PatchUp(HiddenStateMixer):
    """PatchUp (Faramarzi et al., AAAI 2022, arXiv 2006.07794): DropBlock-style blocks of a hidden feature
    map ``[B, C, H, W]`` are swapped (``mode="hard"``) or interpolated (``mode="soft"``) with the partner's.

    With the block mask M (1 = the sample's own feature, 0 = a block to change), soft:
    ``M·h + (1−M)·(λh + (1−λ)h[j])``; hard: ``M·h + (1−M)·h[j]``. Targets ``p_u·y + (1−p_u)·y_b`` where
    ``p_u`` is the mean of M (the fraction left unchanged) and ``y_b = λy + (1−λ)y[j]`` (soft) or ``y[j]``
    (hard). Seeds are drawn at DropBlock's rate ``γ·W²/(b²(W−b+1)²)`` and grown into ``b × b`` blocks, per
    channel. When the input is drawn (``include_input``), it is mixed with CutMix of its own ``input_alpha``
    (official: CutMix with β = 1 whatever ``--alpha``). Mixed batches are trained on the official loss
    ``a·p_u·ℓ(ŷ, y) + (1−p_u)·ℓ(ŷ, y_b) + b·ℓ(ŷ, ỹ)`` (``loss_params = (a, b)``), written exactly as
    ``weight·ℓ(ŷ, targets)`` for any loss affine in its target (cross-entropy, softmax-BCE): the targets go into
    the batch and the gradient of the training loss is scaled by ``weight`` (2 with the official ``(1, 1)``: a
    mixed batch weighs twice a clean one; logged as ``mix/loss_weight``; the logged loss is unscaled). See
    :func:`~lightning_mixup.functional.patchup.patchup_loss_targets`. The functional op is
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
        shared_mask: one mask for the whole batch, as the official code does (default: one per sample; the
            paper presets set True).
        include_input: also draw the input itself, mixed with CutMix (official code: yes).
        alpha: λ ~ Beta(α, α) of the soft interpolation (paper: 2).
        input_alpha: λ ~ Beta(β, β) of the input's CutMix (official: 1, fixed).
        loss_params: ``(a, b)`` of the official loss (``--loss_params``, default ``[1, 1]``); ``a ≠ 1`` needs
            ``shared_mask=True`` and ``per_sample=False`` (one ``p_u`` per batch, as the official code), so that
            the weight is one number per batch. ``(1, 0)`` trains on ``ỹ`` with weight 1.
        **kwargs: ``per_sample`` (one λ per sample), ``partner``, ... as for :class:`Mixer`.

    Example:
        >>> from lightning import Trainer
        >>> cb = PatchUp(layers=["net.stem", "net.layer1"], mode="hard", block_size=7, shared_mask=True)
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
        input_alpha: float = 1.0,
        loss_params: Sequence[float] = LOSS_PARAMS,
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
        self.input_alpha = check_number("input_alpha", input_alpha, 0.0, open_low=True)
        self.loss_params = check_loss_params(loss_params)
        if self.loss_params[0] != 1.0 and (not shared_mask or self.per_sample):
            raise ValueError(
                f"loss_params={list(loss_params)}: a first weight other than 1 makes the loss weight depend on each "
                "sample's p_u; use shared_mask=True and per_sample=False (one p_u per batch, as the official code)"
            )

    TASKS = ("multiclass", "multilabel", "regression")  # its blocks live at a hidden layer's resolution

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "mode": self.mode, "block_size": self.block_size, "gamma": self.gamma,
                "input_alpha": self.input_alpha, "loss_params": list(self.loss_params)}  # fmt: skip

    def check_layer_output(self, name: str, h: Tensor) -> None:
        """Every named layer must give a ``[B, C, H, W]`` map with room for a ``block_size`` block."""
        try:
            check_feature_map(h, self.block_size)
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err}") from None

    def mix_input(self, step: MixStep) -> MixedBatch:
        targets = step.targets.read(step.target, step.x)
        mixed = cutmix_batch(step.x, targets, step.targets, self.input_alpha, **self.batch_options(step))
        return mixed._replace(target=self._weigh(step, targets, mixed.index, mixed.lam, mixed.lam))

    def _weigh(
        self, step: MixStep, targets: TargetBatch, index: Tensor, share: Tensor, unchanged: Tensor
    ) -> Tensor | PairTarget:
        """The official loss's targets, from ``share`` (the share of each sample's own label in ``ỹ``) and ``p_u``;
        its weight goes to the step (the training loss's gradient is scaled)."""
        share = share.float().expand(index.shape[0])
        share, weight = patchup_loss_targets(torch.ones_like(share), share, unchanged.float(), self.loss_params)
        step.loss_weight = weight.mean()  # one number: a = 1 (a constant weight) or one p_u per batch
        step.stats["mix/loss_weight"] = step.loss_weight
        return targets.mix(index, share)

    def plan(
        self, step: MixStep, targets: TargetBatch, index: Tensor, lam: Tensor
    ) -> tuple[HiddenMix, Tensor | PairTarget]:
        pending = targets.mix(index, torch.full((index.shape[0],), float("nan"), device=index.device))

        def mix_fn(h: Tensor) -> Tensor:
            # patchup_hidden's draws and mix, without what the step does not use (its targets and λ of each sample)
            batch, channels, height, width = h.shape
            own = block_masks(
                1 if self.shared_mask else batch, channels, height, width, self.block_size, self.gamma,
                dtype=torch.bool, generator=step.generator,
            )  # fmt: skip
            mixed = patchup(h, index.to(h.device), lam, own, self.mode)
            unchanged = unchanged_fraction(own).to(index.device)
            unchanged = unchanged[0] if self.shared_mask else unchanged
            share = patchup_own_share(lam, unchanged, self.mode)
            fill_(pending, self._weigh(step, targets, index, share, unchanged))
            step.stats["mix/unchanged"] = unchanged.mean()
            return mixed

        return mix_fn, pending

"""The PatchUp callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from lightning_mixup.callbacks.hidden import HiddenMix, HiddenStateMixer, check_batch_dim
from lightning_mixup.functional import MixedBatch, cutmix_batch
from lightning_mixup.functional.patchup import (
    block_masks,
    check_patchup_params,
    patchup,
    patchup_targets,
    unchanged_fraction,
)

PAPER_DEFAULTS = {"soft": {"gamma": 0.75, "p": 1.0}, "hard": {"gamma": 0.5, "p": 0.7}}


class PatchUp(HiddenStateMixer):
    """PatchUp (Faramarzi et al., AAAI 2022, arXiv 2006.07794): DropBlock-style blocks of a hidden feature
    map ``[B, C, H, W]`` are swapped (``mode="hard"``) or interpolated (``mode="soft"``) with the partner's.

    With the block mask M (1 = changed), soft: ``(1−M)·h + M·(λh + (1−λ)h[j])``; hard:
    ``(1−M)·h + M·h[j]``. Targets ``p_u·y + (1−p_u)·y_b`` where ``p_u`` is the fraction of the mask left
    unchanged and ``y_b = λy + (1−λ)y[j]`` (soft) or ``y[j]`` (hard). Seeds are drawn at DropBlock's
    rate ``γ·W²/(b²(W−b+1)²)`` and grown into ``b × b`` blocks, per channel. When the input is drawn
    (``include_input``), it is mixed with CutMix, as in the official code.

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
        if mode not in PAPER_DEFAULTS:
            raise ValueError(f"mode must be one of {tuple(PAPER_DEFAULTS)}, got {mode!r}")
        gamma = PAPER_DEFAULTS[mode]["gamma"] if gamma is None else gamma
        p = PAPER_DEFAULTS[mode]["p"] if p is None else p
        check_patchup_params(block_size, gamma, mode)
        if not isinstance(shared_mask, bool):
            raise TypeError(f"shared_mask must be a bool, got {shared_mask!r}")
        super().__init__(layers, include_input, alpha=alpha, p=p, **kwargs)
        self.mode = mode
        self.block_size = block_size
        self.gamma = float(gamma)
        self.shared_mask = shared_mask
        self._unchanged: Tensor | None = None

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "mode": self.mode, "block_size": self.block_size, "gamma": self.gamma}

    def mix_input(self, x: Tensor, target: Tensor, num_classes: int, generator: torch.Generator) -> MixedBatch:
        return cutmix_batch(x, target, num_classes, self.alpha, **self.batch_options(x, generator))

    def plan(self, probs: Tensor, index: Tensor, lam: Tensor, generator: torch.Generator) -> tuple[HiddenMix, Tensor]:
        batch = probs.shape[0]
        pending = torch.full_like(probs, float("nan"))
        name = type(self).__name__

        def mix_fn(h: Tensor) -> Tensor:
            check_batch_dim(name, h, batch)
            if h.ndim != 4:
                raise ValueError(f"{name} needs a [B, C, H, W] feature map, got shape {list(h.shape)}")
            _, channels, height, width = h.shape
            if self.block_size > min(height, width):
                raise ValueError(
                    f"{name}: block_size={self.block_size} is larger than the {height}x{width} feature map; "
                    "choose a smaller block_size or an earlier layer"
                )
            n = 1 if self.shared_mask else batch
            holes = block_masks(n, channels, height, width, self.block_size, self.gamma, generator=generator)
            holes = holes.to(h.device)
            unchanged = unchanged_fraction(holes)
            unchanged = unchanged[0] if self.shared_mask else unchanged
            pending.copy_(patchup_targets(probs, index, lam, unchanged.to(probs.device), self.mode))
            self._unchanged = unchanged.float().mean()
            return patchup(h, index.to(h.device), lam, holes, self.mode)

        return mix_fn, pending

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if self._unchanged is not None:
            pl_module.log("mix/unchanged", self._unchanged, on_step=False, on_epoch=True)
            self._unchanged = None

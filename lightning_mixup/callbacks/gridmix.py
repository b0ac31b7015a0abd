"""The GridMix callback."""

from __future__ import annotations

from typing import Any

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.functional import MixedBatch
from lightning_mixup.functional.gridmix import check_gridmix_params, gridmix_batch


class GridMix(Mixer):
    """GridMix (Baek, Bang, Shim, "GridMix: Strong regularization through local context mapping", Pattern
    Recognition 2021): the partner fills a grid of cells, each cell whole from one image; λ ~ Beta(α, α) sets the
    share and the targets are weighted by the exact share of own pixels. Needs ``[B, C, H, W]``.

    There is no official code. ``mode="cells"`` (default) is the paper's description: ``g × g`` cells over the whole
    image, each the sample's own with probability λ. ``mode="holes"`` is what OpenMixup calls ``gridmix`` (from
    IlyaDobrynin/GridMixup, a GridMask-CutMix hybrid): a random crop tiled with patches, each with a partner hole
    of side ``√(1−λ)·patch`` at its corner. The paper's local-context loss (a per-cell classification
    head) needs an auxiliary-loss protocol this package does not have: it is left out, the targets are the global
    mix only.

    Args:
        alpha: concentration of λ ~ Beta(α, α) (OpenMixup: 1).
        mode: ``"cells"`` (paper) or ``"holes"`` (OpenMixup's ``gridmix``).
        n_holes: ``"holes"``: patches across the crop, an int or an inclusive ``(low, high)`` range (OpenMixup CIFAR:
            ``(2, 6)``; the function's own default is 20, for large images). Must fit: at most half the narrowest
            crop width.
        hole_aspect_ratio: ``"holes"``: patch height / width, a number or a range (1).
        cut_area_ratio: ``"holes"``: the crop's share of the image, in (0, 1], a number or a range (``(0.5, 1)``).
        cut_aspect_ratio: ``"holes"``: the crop's height / width, a number or a range (``(0.5, 2)``).
        grid_size: ``"cells"``: cells per side, an int or a range (ours: ``(2, 6)``).
        cell_rule: ``"cells"``: ``"bernoulli"`` (each cell own with probability λ) or ``"count"`` (exactly
            ``round(λ·g²)`` own cells).
        **kwargs: ``p``, ``per_sample``, ``partner``, ... as for :class:`Mixer`.

    The functional op is :func:`~lightning_mixup.functional.gridmix.gridmix_batch`.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[GridMix(alpha=1.0, n_holes=(2, 6))], logger=False, enable_checkpointing=False)
    """

    def __init__(
        self,
        alpha: float = 1.0,
        mode: str = "cells",
        n_holes: int | tuple[int, int] = (2, 6),
        hole_aspect_ratio: float | tuple[float, float] = 1.0,
        cut_area_ratio: float | tuple[float, float] = (0.5, 1.0),
        cut_aspect_ratio: float | tuple[float, float] = (0.5, 2.0),
        grid_size: int | tuple[int, int] = (2, 6),
        cell_rule: str = "bernoulli",
        **kwargs: Any,
    ) -> None:
        super().__init__(alpha, **kwargs)
        self.grid = check_gridmix_params(
            mode, n_holes, hole_aspect_ratio, cut_area_ratio, cut_aspect_ratio, grid_size, cell_rule
        )

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), **self.grid}

    def mix(self, step: MixStep) -> MixedBatch:
        return gridmix_batch(step.x, step.target, step.targets, self.alpha, **self.grid, **self.batch_options(step))

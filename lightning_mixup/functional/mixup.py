"""mixup: convex combinations of pairs of samples and of their labels.

Zhang, Cisse, Dauphin, Lopez-Paz. "mixup: Beyond Empirical Risk Minimization", ICLR 2018, arXiv 1710.09412.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_mixup.functional.batch import MixedBatch, blend_partners, pair_up
from lightning_mixup.functional.sampling import expand_lam, sample_lam
from lightning_mixup.functional.targets import Targets


def mixup(x: Tensor, index: Tensor, lam: Tensor | float, out: Tensor | None = None) -> Tensor:
    """``λ·x + (1 − λ)·x[index]``; ``lam`` is a scalar or ``[B]``. λ = 1 returns ``x`` exactly.

    The result goes to ``out`` when given (a reusable buffer: no allocation, two passes over memory),
    else to a new tensor; both give identical values.

    Example:
        >>> x = torch.tensor([[0.0], [1.0]])
        >>> mixup(x, torch.tensor([1, 0]), 0.25)
        tensor([[0.7500],
                [0.2500]])
    """
    return blend_partners(x, index, expand_lam(lam, x), out)


def mixup_batch(
    x: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 1.0,
    *,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Sample a partner index and λ ~ Beta(α, α) (one per batch or one per sample) and mix inputs and targets.

    Works on inputs of any shape ``[B, ...]``. Draws happen on the generator's device. ``out``: see :func:`mixup`.
    ``num_classes``: the number of classes, or a :class:`~lightning_mixup.functional.Targets` (multi-label,
    regression, segmentation masks, the pair form).

    Example:
        >>> x, y = torch.randn(8, 3, 4, 4), torch.arange(8) % 2
        >>> out = mixup_batch(x, y, 2, alpha=0.4, generator=torch.Generator().manual_seed(0))
        >>> out.input.shape, out.target.shape, out.lam.shape
        (torch.Size([8, 3, 4, 4]), torch.Size([8, 2]), torch.Size([]))
    """
    targets, index = pair_up(x, target, num_classes, alpha, partner, generator, method="mixup")
    lam = sample_lam(alpha, x.shape[0] if per_sample else None, generator=generator, device=x.device).to(x.device)
    return MixedBatch(mixup(x, index, lam, out), targets.mix(index, lam), lam, index=index)

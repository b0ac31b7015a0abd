"""RegMixup: mixup as a regulariser next to the clean cross-entropy, not instead of it.

Pinto, Yang, Lim, Torr, Dokania. "Using Mixup as a Regularizer Can Surprisingly Improve Accuracy and
Out-of-Distribution Robustness", NeurIPS 2022, arXiv 2206.14502. Official code: FrancescoPinto/RegMixup.

The loss is ``CE(clean) + η·CE(mixup)`` with a large α (λ ~ Beta(α, α) close to ½). The official code forms it by
appending the mixup copies to the batch, ``torch.cat([x, mixed_x])``, and running one forward on the ``2B`` rows;
the clean rows' two targets are the same label, so the mixup criterion ``λ·CE(·, a) + (1 − λ)·CE(·, b)`` averaged
over the ``2B`` rows is ``½·(CE_clean + CE_mix)``. :func:`regmixup_batch` returns that doubled batch, so that any
loss averaged over the rows gives the same total.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_mixup.functional.batch import MixedBatch, check_out
from lightning_mixup.functional.mixup import mixup_batch
from lightning_mixup.functional.sampling import check_alpha
from lightning_mixup.functional.targets import PairTarget, Targets, as_targets
from lightning_mixup.functional.validation import check_input


def concat_targets(first: Tensor | PairTarget, second: Tensor | PairTarget) -> Tensor | PairTarget:
    """The rows of ``first`` then those of ``second``: two target tensors, or two :class:`PairTarget` field by field.

    Example:
        >>> pair = PairTarget(torch.tensor([0]), torch.tensor([1]), torch.tensor([0.5]))
        >>> concat_targets(pair, pair).weight
        tensor([0.5000, 0.5000])
    """
    if isinstance(first, PairTarget):
        return PairTarget(*(torch.cat([a, b]) for a, b in zip(first, second)))
    return torch.cat([first, second])


def regmixup_batch(
    x: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 20.0,
    *,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """The clean batch followed by its mixup: ``2B`` rows, ``input = cat([x, λ·x + (1 − λ)·x[index]])``.

    The second half is exactly :func:`~lightning_mixup.functional.mixup_batch` with the same arguments (the same
    draws from ``generator``: partner index, then λ ~ Beta(α, α), one per batch or one per sample). Targets are
    doubled alike: the clean half's own targets, unmixed but in the form of the mixed half's (probability rows
    ``[B, C]``; a :class:`PairTarget` ``(y, y, 1)``; for class-index segmentation masks one-hot per-pixel
    probabilities, since a blend makes the mixed half's soft), then the mixed half's. A loss averaged over the
    ``2B`` rows is therefore ``½·(ℓ_clean + ℓ_mix)``, the official code's loss.

    The returned :class:`MixedBatch` describes the mixed half: ``lam`` (``[]`` or ``[B]``) and ``index`` (``[B]``,
    into ``x``) are those of ``input[B:]`` (``input[B + i] = lam·x[i] + (1 − lam)·x[index[i]]``); the clean half
    ``input[:B]`` is ``x`` itself (λ = 1). ``mask`` is None (mixup blends everywhere with weight λ).

    Args:
        x: the input ``[B, ...]``, any shape.
        target: class indices ``[B]`` or probabilities ``[B, C]``, or what ``num_classes`` describes.
        num_classes: the number of classes, or a :class:`~lightning_mixup.functional.Targets` (multi-label,
            regression, segmentation, the pair form).
        alpha: λ ~ Beta(α, α); official: 20 on CIFAR-10, 10 on CIFAR-100.
        per_sample: one λ per sample instead of one per batch (official: one per batch).
        partner: ``"perm"`` (official) or ``"flip"``.
        generator: the generator to draw from.
        out: a buffer ``[2B, ...]`` of ``x``'s dtype and device to write the doubled input into (no allocation).

    Example:
        >>> x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 1])
        >>> out = regmixup_batch(x, y, 3, alpha=20.0, generator=torch.Generator().manual_seed(0))
        >>> out.input.shape, out.target.shape, out.index.shape
        (torch.Size([8, 3, 8, 8]), torch.Size([8, 3]), torch.Size([4]))
        >>> torch.equal(out.input[:4], x), torch.equal(out.target[:4], torch.eye(3)[y])
        (True, True)
    """
    check_alpha(alpha)
    check_input(x, method="RegMixup")
    batch = x.shape[0]
    second = None
    if out is not None:
        if not isinstance(out, Tensor) or out.ndim != x.ndim or out.shape[0] != 2 * batch:
            shape = list(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                f"out must hold the doubled batch [{2 * batch}, ...] of the input {list(x.shape)}, got {shape}"
            )
        second = check_out(out[batch:], x)
    targets = as_targets(num_classes).read(target, x)  # read once: mixup_batch takes them as they are
    options = {"per_sample": per_sample, "partner": partner, "generator": generator, "out": second}
    mixed = mixup_batch(x, targets, num_classes, alpha, **options)
    clean = targets.mix(torch.arange(batch, device=x.device), torch.ones_like(mixed.lam))
    if out is None:
        doubled = torch.cat([x, mixed.input])
    else:
        doubled = out
        doubled[:batch].copy_(x)
    return MixedBatch(doubled, concat_targets(clean, mixed.target), mixed.lam, index=mixed.index)

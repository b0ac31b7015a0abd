"""Targets: class indices or probabilities in, float probabilities ``[B, C]`` out.

A mixed batch's targets are probability rows, so ``F.cross_entropy(logits, probs)`` is the whole loss.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_mixup.checks import check_int

from lightning_mixup.functional.sampling import expand_lam

SUM_TOLERANCE = 1e-3


def check_num_classes(num_classes: object) -> int:
    """Return ``num_classes`` if it is an int ≥ 2, else raise with the bad value."""
    return check_int("num_classes", num_classes, 2)


def to_probs(target: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Class indices ``[B]`` or probabilities ``[B, C]`` → validated probabilities ``[B, C]`` of ``dtype``.

    Raises on a label outside ``[0, num_classes)``, a width other than ``num_classes``, negative or NaN
    probabilities or rows that do not sum to 1 (tolerance 1e-3, or the machine epsilon of ``target``'s dtype
    if larger: 2⁻⁷ for bfloat16).

    Example:
        >>> to_probs(torch.tensor([0, 2]), 3)
        tensor([[1., 0., 0.],
                [0., 0., 1.]])
    """
    check_num_classes(num_classes)
    if not isinstance(target, Tensor):
        raise TypeError(f"targets must be a tensor, got {type(target).__name__}")
    if not target.is_floating_point():
        if target.ndim != 1 or target.dtype == torch.bool:
            raise ValueError(
                f"integer targets must be class indices of shape [B], "
                f"got dtype {target.dtype} shape {list(target.shape)}"
            )
        bad = (target < 0) | (target >= num_classes)
        if bool(bad.any()):
            raise ValueError(
                f"label out of range [0, {num_classes}): got {target[bad][:5].tolist()}; "
                "check num_classes on the mixer or the module"
            )
        return torch.nn.functional.one_hot(target.long(), num_classes).to(dtype)
    if target.ndim != 2:
        raise ValueError(
            f"float targets must be probabilities of shape [B, C], got shape {list(target.shape)}; "
            "integer class indices of shape [B] are accepted too"
        )
    if target.shape[1] != num_classes:
        raise ValueError(f"probability targets have {target.shape[1]} columns but num_classes={num_classes}")
    probs = target.to(dtype)
    sums = target.sum(dim=1, dtype=torch.float32)
    # bfloat16 rounds each entry by up to eps/2 relative, so a valid row may sum to 1 ± eps/2
    tolerance = max(SUM_TOLERANCE, torch.finfo(target.dtype).eps)
    # written as "not (ok)" so that NaN entries count as bad rather than slipping through
    bad = ~((sums - 1).abs() <= tolerance) | ~(target >= 0).all(dim=1)
    if bool(bad.any()):
        row = int(bad.nonzero()[0])
        raise ValueError(
            f"probability targets must be non-negative and sum to 1 per row; row {row} sums to "
            f"{float(sums[row]):.6g} (min {float(target[row].min()):.6g})"
        )
    return probs


def mix_targets(probs: Tensor, index: Tensor, lam: Tensor | float) -> Tensor:
    """``λ·y + (1 − λ)·y[index]`` for probabilities ``[B, C]``; ``lam`` is a scalar or ``[B]``.

    Example:
        >>> y = torch.eye(2)
        >>> mix_targets(y, torch.tensor([1, 0]), 0.75)
        tensor([[0.7500, 0.2500],
                [0.2500, 0.7500]])
    """
    return torch.lerp(probs[index], probs, expand_lam(lam, probs))

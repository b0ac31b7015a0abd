"""What every batch mixer starts from and returns: checked inputs and targets, a partner index."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from lightning_mixup.functional.sampling import check_alpha, partner_index, partners
from lightning_mixup.functional.targets import PairTarget, TargetBatch, Targets, as_targets
from lightning_mixup.functional.validation import check_input


class MixedBatch(NamedTuple):
    """What a batch mixer returns: the mixed input, the mixed targets (probabilities ``[B, C]`` by default, or
    what :class:`~lightning_mixup.functional.targets.Targets` asks for: a tensor or a
    :class:`~lightning_mixup.functional.targets.PairTarget`), λ (``[]`` or ``[B]``) — the fraction of each sample
    that comes from the sample itself rather than from its partner — and, where the method has one, the mask it
    used.

    ``mask`` has one polarity in every method: 1 = the sample's own, 0 = the partner's (values in between
    are blends), broadcastable to the mixed tensor (``[1 or B, 1 or C, H, W]``); ``input = mask·first +
    (1 − mask)·second`` where ``(first, second)`` is ``sources``, or the input and its partners
    ``x[index]`` when ``sources`` is None. A binary mask is ``bool`` (segmentation labels stay hard
    under it). ``sources`` is given only where the method rearranges both
    images before masking (PuzzleMix's transport). mixup has no mask (its weight is λ everywhere). ``index`` is
    the partner of each sample (``x[index]``).

    Example:
        >>> import torch
        >>> from lightning_mixup.functional import mixup_batch
        >>> out = mixup_batch(torch.randn(4, 3), torch.arange(4) % 2, 2, generator=torch.Generator().manual_seed(0))
        >>> out.input.shape, out.target.shape, out.lam.shape
        (torch.Size([4, 3]), torch.Size([4, 2]), torch.Size([]))
    """

    input: Tensor
    target: Tensor | PairTarget
    lam: Tensor
    mask: Tensor | None = None
    sources: tuple[Tensor, Tensor] | None = None
    index: Tensor | None = None


def pair_up(
    x: Tensor,
    target: Tensor | TargetBatch,
    num_classes: int | Targets,
    alpha: float,
    partner: str,
    generator: torch.Generator | None,
    *,
    ndim: int | None = None,
    method: str = "mixing",
) -> tuple[TargetBatch, Tensor]:
    """Check ``alpha``, the input and the targets, then draw the partner index.

    ``num_classes``: the number of classes (the targets are class indices or probabilities, mixed into
    probabilities), or a :class:`~lightning_mixup.functional.targets.Targets` for any other task or form.
    Returns ``(targets, index)``: the checked targets, whose ``mix`` gives the mixed ones, and the partner
    index on ``x``'s device.

    Example:
        >>> targets, index = pair_up(torch.randn(4, 3), torch.arange(4) % 2, 2, 1.0, "flip", None)
        >>> index
        tensor([3, 2, 1, 0])
    """
    check_alpha(alpha)
    check_input(x, ndim=ndim, method=method)
    return pair_targets(x, target, num_classes, partner, generator)


def pair_targets(
    x: Tensor, target: Tensor, num_classes: int | Targets, partner: str, generator: torch.Generator | None
) -> tuple[TargetBatch, Tensor]:
    """The checked targets and the partner index on ``x``'s device; ``x`` is only read for its batch size, device
    and image size (hidden-state mixers accept any input, token ids included)."""
    targets = as_targets(num_classes).read(target, x)
    index = partner_index(x.shape[0], partner, generator=generator, device=x.device).to(x.device)
    return targets, index


def check_out(out: Tensor, x: Tensor) -> Tensor:
    """Return ``out`` if it can hold a mix of ``x``: same shape, dtype and device, no shared memory, no grad."""
    if out.shape != x.shape or out.dtype != x.dtype or out.device != x.device:
        raise ValueError(
            f"out must match the input: got {list(out.shape)} {out.dtype} {out.device}, "
            f"input {list(x.shape)} {x.dtype} {x.device}"
        )
    if x.requires_grad:
        raise ValueError("out= cannot be used with an input that requires grad: write out of place instead")
    if not torch.compiler.is_compiling() and out.untyped_storage().data_ptr() == x.untyped_storage().data_ptr():
        raise ValueError("out must not share memory with the input")
    return out


def gather_partners(x: Tensor, index: Tensor, out: Tensor | None = None) -> Tensor:
    """``x[index]``, written into ``out`` when given (see :func:`check_out`; not differentiable), else into a new
    tensor."""
    if out is None:
        return partners(x, index)
    return torch.index_select(x, 0, index, out=check_out(out, x))


def blend_partners(x: Tensor, index: Tensor, weight: Tensor, out: Tensor | None = None) -> Tensor:
    """``weight·x + (1 − weight)·x[index]``, the values of ``torch.lerp(x[index], x, weight)``; ``weight``
    broadcasts against ``x`` (λ ``[B, 1, …]``, a mask ``[1 or B, 1, H, W]``).

    Eager with ``out`` (see :func:`check_out`): two passes and no allocation (gather into ``out``, then ``lerp_``
    in place). Under ``torch.compile`` one expression, which the compiler fuses into a single pass that reads
    ``x`` and ``x[index]`` and writes once (on a CPU, 1.4× a copy at 64×3×112² against 1.9× eager).

    Example:
        >>> blend_partners(torch.tensor([[0.0], [1.0]]), torch.tensor([1, 0]), torch.tensor(0.25))
        tensor([[0.7500],
                [0.2500]])
    """
    if out is None or torch.compiler.is_compiling():
        mixed = torch.lerp(partners(x, index), x, weight)
        return mixed if out is None else check_out(out, x).copy_(mixed)
    return gather_partners(x, index, out).lerp_(x, weight)

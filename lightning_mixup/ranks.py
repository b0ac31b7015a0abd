"""Per-rank state under DDP: every rank's part is gathered into the checkpoint, which rank 0 writes,
and each rank of a resumed run takes its own part back."""

from __future__ import annotations

from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor
from lightning.pytorch.utilities import rank_zero_warn

T = TypeVar("T")


def gather_ranks(own: T, world_size: int) -> list[T]:
    """Every rank's ``own`` (any picklable object), in rank order; ``[own]`` without a process group.

    Call it on every rank at once (Lightning builds a checkpoint on every rank).

    Example:
        >>> gather_ranks({"seed": 1}, world_size=1)
        [{'seed': 1}]
    """
    if world_size > 1 and dist.is_available() and dist.is_initialized():
        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, own)
        return parts
    return [own]


def own_part(parts: list[T], rank: int, world_size: int, owner: str, what: str) -> T | None:
    """This rank's part of a gathered state; None, with a warning, when the checkpoint came from a run
    with another number of ranks (the caller then keeps its fresh seed)."""
    if len(parts) != world_size:
        rank_zero_warn(
            f"{owner}: the checkpoint holds the {what} of {len(parts)} rank(s), this run has {world_size}; "
            "reseeding, so the draws will differ from the uninterrupted run"
        )
        return None
    return parts[rank]


def gather_rows(tensors: list[Tensor], world_size: int, owner: str) -> list[Tensor]:
    """Each tensor's rows from every rank, concatenated in rank order (``[world_size·B, ...]``): the global batch.

    Every rank must hold the same number of rows ``B`` (a ``ValueError`` names each rank's otherwise: make the
    last batch even, e.g. ``DistributedSampler``'s padding or ``drop_last=True``). Memory formats are kept.
    """
    x = tensors[0]
    rows = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.empty_like(rows) for _ in range(world_size)]
    dist.all_gather(sizes, rows)
    counts = [int(size) for size in sizes]
    if len(set(counts)) > 1:
        raise ValueError(
            f"{owner}: partner_scope='global' needs the same batch size on every rank, got {counts} (by rank); "
            "use a sampler that pads the last batch (DistributedSampler does) or drop_last=True"
        )
    gathered = []
    for t in tensors:
        channels_last = t.ndim == 4 and t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(world_size)]
        dist.all_gather(parts, t)
        whole = torch.cat(parts)
        gathered.append(whole.contiguous(memory_format=torch.channels_last) if channels_last else whole)
    return gathered


def gather_rows_keeping_own(h: Tensor, rank: int, world_size: int, owner: str) -> Tensor:
    """Like :func:`gather_rows` for one tensor inside the forward: the other ranks' rows arrive without gradient,
    this rank's part is ``h`` itself, so the gradient of a mix flows into this rank's own rows."""
    (whole,) = gather_rows([h.detach()], world_size, owner)
    rows = h.shape[0]
    return torch.cat([whole[: rank * rows], h.to(whole.dtype), whole[(rank + 1) * rows :]])

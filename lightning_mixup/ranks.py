"""Per-rank state under DDP: every rank's part is gathered into the checkpoint, which rank 0 writes,
and each rank of a resumed run takes its own part back."""

from __future__ import annotations

from typing import Any, TypeVar

import torch.distributed as dist
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

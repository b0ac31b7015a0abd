"""PuzzleMix's transport: move each image's salient blocks into the region its mask keeps.

Kim, Choo & Song, ICML 2020 (arXiv 2009.06962), Section 3.2 and Algorithm 1: a greedy, batched
approximation of the optimal transport ``min_Π ⟨Π, ε·C − s·zᵀ⟩`` over permutations, where ``C`` is the
squared distance between block positions (divided by ``(m−1)²``), ``s`` the normalised saliency of the
blocks and ``z`` the kept positions. Every block proposes its best destination; each destination keeps its
cheapest proposer; the others pay one unit more for that destination and propose again.
"""

from __future__ import annotations

import torch
from torch import Tensor


def position_cost(m: int, like: Tensor) -> Tensor:
    """``[m², m²]`` squared distance between the positions of an ``m × m`` grid, divided by ``(m−1)²``."""
    r = torch.arange(m, device=like.device, dtype=like.dtype)
    rows, cols = r.repeat_interleave(m), r.repeat(m)
    dist = (rows.view(-1, 1) - rows.view(1, -1)) ** 2 + (cols.view(-1, 1) - cols.view(1, -1)) ** 2
    return dist / max(m - 1, 1) ** 2


def transport_plan(keep: Tensor, saliency: Tensor, eps: float, iterations: int | None = None) -> Tensor:
    """``[B, m²]``: for every destination block, the source block moved there — a permutation per sample.

    Args:
        keep: ``[B, m, m]`` bool, where the mask keeps this image.
        saliency: ``[B, m, m]`` the blocks' normalised saliency.
        eps: ``t_eps``, the weight of the distance cost (larger: blocks move less).
        iterations: rounds of proposals (official: ``m``).

    The official code leaves a destination nobody won empty (zeros) and drops the blocks that lost every
    round; here those blocks fill those destinations in index order, so each transported image is a
    rearrangement of its own blocks.

    Example:
        >>> keep = torch.tensor([[[True, False], [False, False]]])
        >>> saliency = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
        >>> transport_plan(keep, saliency, eps=0.1)  # the salient block 3 moves into the kept corner
        tensor([[3, 1, 2, 0]])
    """
    b, m, _ = keep.shape
    n = m * m
    cost = torch.addcmul(eps * position_cost(m, saliency), saliency.reshape(b, n, 1),
                         keep.reshape(b, 1, n).to(saliency.dtype), value=-1)  # fmt: skip
    sources = torch.arange(n, device=keep.device).expand(b, n)
    flat = sources * n  # row offsets into the flattened cost
    none = torch.full((b, n), n, device=keep.device, dtype=torch.long)
    scratch = torch.empty_like(cost)
    countdown = torch.arange(n, 0, -1, device=cost.device, dtype=cost.dtype)
    choice = first_argmin(cost, scratch, countdown)  # [B, n]: each source's proposal
    rows = cost.view(b * n, n)
    won = torch.ones_like(sources, dtype=torch.bool)
    for i in range(iterations if iterations is not None else m):
        if cost.device.type == "cpu":
            # only the losers' rows changed: re-propose for those (about 20 % of the rows, then fewer); finding them
            # is a host sync, free on the CPU, so other devices recompute every row instead
            lost = (~won).view(-1).nonzero().squeeze(1)
            choice.view(-1)[lost] = rows.index_select(0, lost).argmin(-1)
        elif i:
            choice = first_argmin(cost, scratch, countdown)
        bid = cost.view(b, n * n).gather(1, flat + choice)
        best = torch.full_like(bid, torch.inf).scatter_reduce(1, choice, bid, "amin")
        # each destination keeps its cheapest proposer (the lowest index among equals)
        contender = torch.where(bid == best.gather(1, choice), sources, n)
        winner = none.clone().scatter_reduce(1, choice, contender, "amin")  # [B, n] per destination; n: nobody
        won = winner.gather(1, choice) == sources
        cost.view(b, n * n).scatter_add_(1, flat + choice, (~won).to(cost.dtype))  # losers pay one more
    # complete the matching: the k-th unmatched source (by index) goes to the k-th unmatched destination
    dest_taken = winner < n
    source_used = won
    free_dest = torch.sort(dest_taken.to(torch.uint8) * n + sources, dim=-1).indices  # unmatched first, in order
    free_src = torch.sort(source_used.to(torch.uint8) * n + sources, dim=-1).indices
    fill = torch.empty_like(winner).scatter_(-1, free_dest, free_src)
    return torch.where(dest_taken, winner, fill)


def first_argmin(cost: Tensor, scratch: Tensor, countdown: Tensor) -> Tensor:
    """``cost.argmin(-1)`` (the first index of each row's minimum), from vectorised passes: the row minimum, a float
    mask of the entries equal to it weighted by ``countdown = [n, n−1, …, 1]``, and its maximum. On the CPU this is
    about 1.5× faster than ``argmin`` (its reduction with an index is not vectorised). ``scratch``: like ``cost``."""
    torch.eq(cost, cost.amin(-1, keepdim=True), out=scratch)
    return (len(countdown) - scratch.mul_(countdown).amax(-1)).long()


def move_blocks(x: Tensor, source_of: Tensor) -> Tensor:
    """Rearrange ``x [B, C, H, W]`` block-wise: destination block ``j`` gets source block ``source_of[:, j]``
    on the ``m × m`` grid with ``m² = source_of.shape[1]``.

    Example:
        >>> x = torch.arange(4.0).view(1, 1, 2, 2)
        >>> move_blocks(x, torch.tensor([[3, 2, 1, 0]]))
        tensor([[[[3., 2.],
                  [1., 0.]]]])
    """
    b, c, h, w = x.shape
    m = int(round(source_of.shape[1] ** 0.5))
    bh, bw = h // m, w // m
    blocks = x.reshape(b, c, m, bh, m, bw).permute(0, 2, 4, 1, 3, 5).reshape(b, m * m, c, bh, bw)
    moved = blocks.gather(1, source_of.view(b, m * m, 1, 1, 1).expand_as(blocks))
    return moved.view(b, m, m, c, bh, bw).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)

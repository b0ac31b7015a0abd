"""PuzzleMix's mask energy, written once: built from saliency and images, evaluated on labellings.

Kim, Choo & Song, "Puzzle Mix: Exploiting Saliency and Local Statistics for Optimal Mixup", ICML 2020
(arXiv 2009.06962), eq. (2)–(4), with the normalisations of the official code (snu-mllab/PuzzleMix).

The image is cut into an ``n × n`` grid of blocks. Each block gets a label ``k ∈ {0, …, L−1}``, meaning
the mask value ``k/(L−1)``: the fraction of the block taken from the sample itself (the rest comes from its
partner). The energy of a labelling is

``E = Σ_p U[p, k_p] + Σ_(p,q) w_pq · (v_p − v_q)²``,  ``v = k/(L−1)``,

over the 4-connected block grid. ``U`` holds the saliency each label throws away, the λ prior and the
data-smoothness terms that depend on one block only; ``w`` holds label smoothness plus the symmetric part
of data smoothness, clamped at 0 (graph cuts need non-negative weights; with ``gamma ≤ 1`` and inputs in
[0, 1] no clamping happens).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor


class MaskProblem(NamedTuple):
    """A batch of mask problems: ``unary [B, n, n, L]``, ``weight_v [B, n−1, n]`` (edge ``(i, j)–(i+1, j)``)
    and ``weight_h [B, n, n−1]`` (edge ``(i, j)–(i, j+1)``)."""

    unary: Tensor
    weight_v: Tensor
    weight_h: Tensor

    @property
    def n_labels(self) -> int:
        return self.unary.shape[-1]


def label_values(n_labels: int, like: Tensor) -> Tensor:
    """The mask value of each label, ``[0, 1/(L−1), …, 1]``, on ``like``'s device and dtype."""
    return torch.linspace(0.0, 1.0, n_labels, device=like.device, dtype=like.dtype)


def label_prior(lam: Tensor, n_labels: int, eta: float, grid: int) -> Tensor:
    """``[B, L]``: ``−η log P(k)/n²`` with ``P`` the binomial(L−1, λ) law of the label — the paper's prior
    that pulls the mask mean towards λ (official code: ``+1e-8`` inside the log)."""
    k = torch.arange(n_labels, device=lam.device, dtype=lam.dtype)
    binom = torch.tensor([math.comb(n_labels - 1, int(i)) for i in range(n_labels)], device=lam.device, dtype=lam.dtype)
    lam = lam.reshape(-1, 1)
    prob = binom * lam**k * (1 - lam) ** (n_labels - 1 - k)
    return -eta * torch.log(prob + 1e-8) / grid**2


def pool_saliency(saliency: Tensor, grid: int) -> Tensor:
    """``[B, H, W]`` saliency → ``[B, n, n]`` block means, normalised to sum 1 per sample (all-zero stays 0)."""
    pooled = F.adaptive_avg_pool2d(saliency.unsqueeze(1), grid).squeeze(1)
    return pooled / pooled.flatten(1).sum(1).clamp_min(torch.finfo(pooled.dtype).tiny).view(-1, 1, 1)


def boundary_penalty(upper: Tensor, lower: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Mean absolute difference across each block boundary, between ``upper`` on the first side and ``lower``
    on the second: pooled images ``[B, C, n·k, n·k]`` → ``([B, n−1, n], [B, n, n−1])``."""
    v = (upper[:, :, k - 1 : -1 : k, :] - lower[:, :, k::k, :]).abs().mean(1)
    h = (upper[:, :, :, k - 1 : -1 : k] - lower[:, :, :, k::k]).abs().mean(1)
    return F.avg_pool2d(v, (1, k)), F.avg_pool2d(h, (k, 1))


def mask_problem(
    saliency: Tensor,
    images: Tensor,
    index: Tensor,
    lam: Tensor,
    grid: int,
    *,
    beta: float = 1.2,
    gamma: float = 0.5,
    eta: float = 0.2,
    neigh_size: int = 4,
    n_labels: int = 3,
) -> MaskProblem:
    """Build PuzzleMix's mask energy for each sample and its partner ``index``.

    Args:
        saliency: ``[B, H, W]`` non-negative saliency of each sample.
        images: ``[B, C, H, W]`` the samples in pixel space ([0, 1]): data smoothness compares them.
        index: ``[B]`` partner of each sample.
        lam: ``[B]`` or ``[]`` the λ of the prior.
        grid: blocks per side ``n``; ``H`` and ``W`` must be multiples of it (the caller checks).
        beta, gamma, eta: label smoothness, data smoothness and prior weights (paper's β, γ, η).
        neigh_size: side of the pixel neighbourhood averaged before comparing across a boundary.
        n_labels: ``L``, the number of mask values.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(4, 3, 32, 32, generator=g)
        >>> p = mask_problem(x.mean(1), x, torch.tensor([1, 0, 3, 2]), torch.tensor(0.5), 4)
        >>> p.unary.shape, p.weight_v.shape
        (torch.Size([4, 4, 4, 3]), torch.Size([4, 3, 4]))
    """
    b, h = saliency.shape[0], saliency.shape[-1]
    block = h // grid
    neigh = min(neigh_size, block)
    k = block // neigh
    own_sal = pool_saliency(saliency, grid)
    partner_sal = own_sal[index]
    beta_n = beta / grid / 16  # official normalisation of label smoothness

    pooled = F.avg_pool2d(images, neigh)
    pooled_partner = pooled[index]
    sources = (pooled_partner, pooled)  # source 0: the partner, source 1: the sample itself
    # D[s_p, s_q]: data cost of an edge whose first block comes from source s_p and second from s_q
    pen = [[boundary_penalty(first, second, k) for second in sources] for first in sources]
    dv = beta_n * gamma * torch.stack([torch.stack([pen[a][c][0] for c in (0, 1)]) for a in (0, 1)])
    dh = beta_n * gamma * torch.stack([torch.stack([pen[a][c][1] for c in (0, 1)]) for a in (0, 1)])

    # cost of taking the sample itself (mask 1) and of taking the partner (mask 0) at each block
    own_cost = partner_sal.clone()
    partner_cost = own_sal.clone()
    own_cost[:, :-1, :] += (dv[1, 0] + dv[1, 1]) / 2
    partner_cost[:, :-1, :] += (dv[0, 1] + dv[0, 0]) / 2
    own_cost[:, 1:, :] += (dv[0, 1] + dv[1, 1]) / 2
    partner_cost[:, 1:, :] += (dv[1, 0] + dv[0, 0]) / 2
    own_cost[:, :, :-1] += (dh[1, 0] + dh[1, 1]) / 2
    partner_cost[:, :, :-1] += (dh[0, 1] + dh[0, 0]) / 2
    own_cost[:, :, 1:] += (dh[0, 1] + dh[1, 1]) / 2
    partner_cost[:, :, 1:] += (dh[1, 0] + dh[0, 0]) / 2

    values = label_values(n_labels, own_cost)
    prior = label_prior(lam.to(own_cost.dtype).expand(b), n_labels, eta, grid)
    unary = values * own_cost.unsqueeze(-1) + (1 - values) * partner_cost.unsqueeze(-1) + prior.view(b, 1, 1, -1)
    weight_v = (beta_n + (dv[1, 0] + dv[0, 1] - dv[1, 1] - dv[0, 0]) / 2).clamp_min(0)
    weight_h = (beta_n + (dh[1, 0] + dh[0, 1] - dh[1, 1] - dh[0, 0]) / 2).clamp_min(0)
    return MaskProblem(unary, weight_v, weight_h)


def energy(problem: MaskProblem, labels: Tensor) -> Tensor:
    """``[B]`` energy of the labelling ``labels [B, n, n]`` (long, in ``0…L−1``) under ``problem``."""
    unary = problem.unary.gather(-1, labels.unsqueeze(-1)).squeeze(-1).flatten(1).sum(1)
    v = labels.to(problem.unary.dtype) / (problem.n_labels - 1)
    pair_v = (problem.weight_v * (v[:, 1:, :] - v[:, :-1, :]) ** 2).flatten(1).sum(1)
    pair_h = (problem.weight_h * (v[:, :, 1:] - v[:, :, :-1]) ** 2).flatten(1).sum(1)
    return unary + pair_v + pair_h

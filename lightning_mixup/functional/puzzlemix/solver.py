"""A batched solver for PuzzleMix's mask energy (:mod:`.energy`), in torch, on the batch's device.

The label smoothness ``(v_p − v_q)²`` is convex in the label, so the whole multi-label problem is one
min-cut (Ishikawa, PAMI 2003): label ``k`` is written as ``L−1`` ordered binary layers ``x^t = [k ≥ t]``
and ``(k_p − k_q)² = Σ_{t,s} |x_p^t − x_q^s| + g(k_p) + g(k_q)`` with ``g(k) = k² − (L−1)k``. Its linear
programming relaxation is therefore exact, and we solve that relaxation for the whole batch at once with
the preconditioned primal-dual method of Chambolle & Pock (ICCV 2011), round the layers at 1/2, and polish
with a few exact coordinate sweeps on the two colours of the grid. Small grids (``L^n ≤ 16`` row
labellings) are solved exactly by dynamic programming over rows.

The official code instead runs pyGCO's α-β swap per sample on the CPU; the tests check our energy against
it and against brute force.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_mixup.functional.puzzlemix.energy import MaskProblem, label_values

EXACT_STATES = 16  # row DP when L**n is at most this (grid 2, and grid 4 with two labels): faster than iterating


def default_iterations(grid: int) -> int:
    """Primal-dual iterations used for an ``n × n`` grid (enough for the mean energy to be within a few
    tenths of a percent of the exact minimum on PuzzleMix's problems)."""
    return grid + 8


def solve_masks(problem: MaskProblem, iterations: int | None = None, sweeps: int = 2) -> Tensor:
    """Labels ``[B, n, n]`` (long, ``0…L−1``) of low energy for every problem of the batch.

    Args:
        problem: the batch of energies (:func:`~.energy.mask_problem`).
        iterations: primal-dual iterations; default :func:`default_iterations` of the grid.
        sweeps: exact coordinate sweeps after rounding (each visits every block once).

    Example:
        >>> from lightning_mixup.functional.puzzlemix.energy import mask_problem, energy
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(8, 3, 32, 32, generator=g)
        >>> p = mask_problem(x.mean(1), x, torch.randperm(8, generator=g), torch.tensor(0.5), 8)
        >>> labels = solve_masks(p)
        >>> labels.shape, int(labels.max()) <= 2
        (torch.Size([8, 8, 8]), True)
    """
    n, n_labels = problem.unary.shape[-2:]
    if n_labels**n <= EXACT_STATES:
        return exact_rows(problem)
    unary = problem.unary.permute(0, 3, 1, 2).contiguous()  # [B, L, n, n]: grid innermost, every op contiguous
    x = primal_dual(unary, problem.weight_v, problem.weight_h, iterations or default_iterations(n))
    labels = (x >= 0.5).sum(1)
    return coordinate_sweeps(unary, problem.weight_v, problem.weight_h, labels, sweeps)


def _layer_costs(unary: Tensor, weight_v: Tensor, weight_h: Tensor) -> Tensor:
    """``[B, L−1, n, n]`` linear cost of each binary layer once ``g`` is moved into the unary terms."""
    n_labels = unary.shape[1]
    k = torch.arange(n_labels, device=unary.device, dtype=unary.dtype)
    g = (k * k - (n_labels - 1) * k) / (n_labels - 1) ** 2
    degree_weight = torch.zeros_like(unary[:, 0])
    degree_weight[:, :-1] += weight_v
    degree_weight[:, 1:] += weight_v
    degree_weight[:, :, :-1] += weight_h
    degree_weight[:, :, 1:] += weight_h
    theta = unary + degree_weight.unsqueeze(1) * g.view(1, -1, 1, 1)
    return theta[:, 1:] - theta[:, :-1]


def _project_ordered(x: Tensor) -> Tensor:
    """Project each block's layers onto ``1 ≥ x^1 ≥ … ≥ x^{L−1} ≥ 0`` (exact for one or two layers,
    pool-adjacent-violators pairwise otherwise)."""
    for t in range(1, x.shape[1]):
        high, low = x[:, t - 1], x[:, t]
        mean = (high + low) * 0.5
        violated = low > high
        x[:, t - 1] = torch.where(violated, mean, high)
        x[:, t] = torch.where(violated, mean, low)
    return x.clamp_(0, 1)


def primal_dual(unary: Tensor, weight_v: Tensor, weight_h: Tensor, iterations: int) -> Tensor:
    """Layers ``x [B, L−1, n, n]`` in [0, 1] approximately minimising the LP relaxation (Chambolle–Pock with
    diagonal preconditioning; every problem rescaled to a mean edge weight of 1 so one step size fits all)."""
    b, n_labels, n, _ = unary.shape
    layers = n_labels - 1
    scale = torch.cat([weight_v.flatten(1), weight_h.flatten(1)], 1).mean(1).clamp_min(1e-12) / layers**2
    # contiguous: a channels-last-like layout here sends every broadcast below down a 30x slower path
    cost = (_layer_costs(unary, weight_v, weight_h) / scale.view(b, 1, 1, 1)).contiguous()
    w_v = (weight_v / layers**2 / scale.view(b, 1, 1)).view(b, 1, 1, n - 1, n).expand(b, layers, layers, n - 1, n)
    w_h = (weight_h / layers**2 / scale.view(b, 1, 1)).view(b, 1, 1, n, n - 1).expand(b, layers, layers, n, n - 1)
    w_v, w_h = w_v.contiguous(), w_h.contiguous()
    neg_v, neg_h = -w_v, -w_h
    degree = torch.full((n, n), 4.0, device=unary.device, dtype=unary.dtype)
    degree[0] -= 1
    degree[-1] -= 1
    degree[:, 0] -= 1
    degree[:, -1] -= 1
    tau = 1.0 / (degree * layers)

    x = _project_ordered((cost < 0).to(cost.dtype))
    x_bar = x.clone()
    y_v = torch.zeros_like(w_v)
    y_h = torch.zeros_like(w_h)
    step = torch.empty_like(x)
    for _ in range(iterations):
        # dual ascent on every (edge, layer t of the first block, layer s of the second) pair
        y_v.add_(x_bar[:, :, None, :-1, :] - x_bar[:, None, :, 1:, :], alpha=0.5)
        torch.clamp(y_v, neg_v, w_v, out=y_v)
        y_h.add_(x_bar[:, :, None, :, :-1] - x_bar[:, None, :, :, 1:], alpha=0.5)
        torch.clamp(y_h, neg_h, w_h, out=y_h)
        # primal descent: x ← proj(x − τ(c + Kᵀy))
        step.copy_(cost)
        step[:, :, :-1, :] += y_v.sum(2)
        step[:, :, 1:, :] -= y_v.sum(1)
        step[:, :, :, :-1] += y_h.sum(2)
        step[:, :, :, 1:] -= y_h.sum(1)
        x_new = _project_ordered(torch.addcmul(x, step, tau, value=-1))
        torch.sub(x_new * 2, x, out=x_bar)
        x = x_new
    return x


def coordinate_sweeps(unary: Tensor, weight_v: Tensor, weight_h: Tensor, labels: Tensor, sweeps: int) -> Tensor:
    """Improve ``labels [B, n, n]``: set every block of one grid colour to its best label given its
    neighbours (they all have the other colour, so the updates are independent and exact), then the other."""
    n_labels, n = unary.shape[1], unary.shape[-1]
    values = label_values(n_labels, unary).view(1, -1, 1, 1)
    rows = torch.arange(n, device=unary.device)
    colour = (rows.view(-1, 1) + rows.view(1, -1)) % 2 == 1
    w_v, w_h = weight_v.unsqueeze(1), weight_h.unsqueeze(1)
    for _ in range(sweeps):
        for c in (False, True):
            v = (labels.to(unary.dtype) / (n_labels - 1)).unsqueeze(1)
            cost = unary.clone(memory_format=torch.contiguous_format)
            cost[:, :, 1:, :] += w_v * (values - v[:, :, :-1, :]) ** 2
            cost[:, :, :-1, :] += w_v * (values - v[:, :, 1:, :]) ** 2
            cost[:, :, :, 1:] += w_h * (values - v[:, :, :, :-1]) ** 2
            cost[:, :, :, :-1] += w_h * (values - v[:, :, :, 1:]) ** 2
            labels = torch.where(colour == c, cost.argmin(1), labels)
    return labels


def exact_rows(problem: MaskProblem) -> Tensor:
    """The exact minimiser by dynamic programming over rows: each row's ``L^n`` labellings are the states."""
    unary, weight_v, weight_h = problem
    b, n, _, n_labels = unary.shape
    device, dtype = unary.device, unary.dtype
    states = torch.cartesian_prod(*[torch.arange(n_labels, device=device)] * n).view(-1, n)  # [S, n]
    v = states.to(dtype) / (n_labels - 1)
    onehot = torch.nn.functional.one_hot(states, n_labels).to(dtype).flatten(1)  # [S, n·L]
    row_cost = unary.reshape(b, n, n * n_labels) @ onehot.T  # [B, rows, S]
    row_cost = row_cost + weight_h @ ((v[:, 1:] - v[:, :-1]) ** 2).T
    jump = (v.unsqueeze(1) - v.unsqueeze(0)) ** 2  # [S, S, n]
    transition = (weight_v @ jump.flatten(0, 1).T).view(b, n - 1, len(states), len(states))
    best = row_cost[:, 0]
    choices = []
    for r in range(1, n):
        total = best.unsqueeze(1) + transition[:, r - 1]  # [B, S, S_prev] (the transition is symmetric)
        best, arg = total.min(-1)
        best = best + row_cost[:, r]
        choices.append(arg)
    state = best.argmin(1)
    picked = [state]
    for arg in reversed(choices):
        state = arg.gather(1, state.unsqueeze(1)).squeeze(1)
        picked.append(state)
    return states[torch.stack(picked[::-1], 1)]

"""AlignMixup: interpolate a feature map with its partner's after aligning their positions by optimal transport.

Venkataramanan, Kijak, Amsaleg, Avrithis. "AlignMixup: Improving Representations By Interpolating Aligned
Features", CVPR 2022, arXiv 2103.15375 (official code: shashankvkt/AlignMixup_CVPR22).

A feature map ``A`` ``[C, H, W]`` is a set of ``n = H·W`` feature vectors (its columns). Between the sample's
``A`` and its partner's ``A'``, an entropic optimal transport plan ``P`` ``[n, n]`` (Sinkhorn, uniform marginals
``1/n``, cost the squared Euclidean distance between feature vectors) gives the assignment matrix ``R = n·P``
(rows and columns summing to 1). Either the partner is aligned to the sample, ``Ã' = A'Rᵀ``, and the mix is
``λ·A + (1 − λ)·Ã'`` (the sample's geometry), or the sample is aligned to the partner, ``Ã = A·R``, and the mix is
``λ·Ã + (1 − λ)·A'`` (the partner's geometry); the official code draws one of the two uniformly each batch. The
targets are ``λ·y + (1 − λ)·y[j]`` either way, and the plan carries no gradient (it is computed on detached
features).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_mixup.checks import check_choice, check_int, check_number
from lightning_mixup.functional.batch import MixedBatch, pair_up
from lightning_mixup.functional.sampling import expand_lam, partners, sample_lam
from lightning_mixup.functional.targets import Targets

DIRECTIONS = ("random", "to_sample", "to_partner")
"""``"to_sample"``: the partner is aligned to the sample (``λ·A + (1−λ)·A'Rᵀ``); ``"to_partner"``: the sample is
aligned to the partner (``λ·AR + (1−λ)·A'``); ``"random"``: one of the two, uniformly (official)."""

EPS, ITERATIONS, TOL = 0.1, 100, 0.1
"""The official ``SinkhornDistance(eps=0.1, max_iter=100)`` and its stopping threshold ``thresh = 1e-1``."""


def check_sinkhorn_params(eps: object, iterations: object, tol: object) -> tuple[float, int, float]:
    """``(eps, iterations, tol)`` checked: ``eps`` a finite number > 0, ``iterations`` an int >= 1, ``tol`` a finite
    number >= 0; else the error quoting the bad value.

    Example:
        >>> check_sinkhorn_params(0.0, 100, 0.1)
        Traceback (most recent call last):
        ...
        ValueError: eps must be a finite number > 0, got 0.0
    """
    eps = check_number("eps", eps, 0.0, open_low=True)
    iterations = check_int("iterations", iterations, 1)
    tol = check_number("tol", tol, 0.0)
    return eps, iterations, tol


def check_alignmix_params(eps: object, iterations: object, tol: object, direction: object) -> None:
    """Raise with the bad value unless the Sinkhorn options are valid and ``direction`` is one of :data:`DIRECTIONS`."""
    check_sinkhorn_params(eps, iterations, tol)
    check_choice("direction", direction, DIRECTIONS)


def check_feature_map(h: Tensor) -> None:
    """Raise ``ValueError`` unless ``h`` is a channels-first feature map ``[B, C, *positions]`` (e.g. ``[B, C, H, W]``).

    Example:
        >>> check_feature_map(torch.zeros(2, 8))
        Traceback (most recent call last):
        ...
        ValueError: AlignMix needs a feature map [B, C, H, W] (channels first, then positions), got shape [2, 8]
    """
    if h.ndim < 3 or math.prod(h.shape[2:]) < 1:
        raise ValueError(
            f"AlignMix needs a feature map [B, C, H, W] (channels first, then positions), got shape {list(h.shape)}"
        )


def squared_distances(x: Tensor, y: Tensor) -> Tensor:
    """``‖x_i − y_j‖²`` of the rows of ``x`` ``[B, n, D]`` and ``y`` ``[B, m, D]``: ``[B, n, m]``, as
    ``‖x‖² + ‖y‖² − 2·x·yᵀ`` (one batched matrix product) clamped at 0.

    Example:
        >>> squared_distances(torch.tensor([[[0.0, 0.0], [1.0, 1.0]]]), torch.tensor([[[1.0, 0.0]]]))
        tensor([[[1.],
                 [1.]]])
    """
    x_sq = x.square().sum(-1, keepdim=True)
    y_sq = y.square().sum(-1).unsqueeze(-2)
    return torch.baddbmm(x_sq + y_sq, x, y.transpose(-2, -1), alpha=-2.0).clamp_min_(0.0)


@torch.no_grad()
def sinkhorn(x: Tensor, y: Tensor, eps: float = EPS, iterations: int = ITERATIONS, tol: float = TOL) -> Tensor:
    """The entropic optimal transport plan between uniform measures on the rows of ``x`` ``[B, n, D]`` and ``y``
    ``[B, m, D]``, for the squared Euclidean cost: ``[B, n, m]``, each plan's rows summing to ``1/n`` and its
    columns to ``1/m`` (exactly after the last update, which is the columns'; the rows to the convergence reached).

    The official ``SinkhornDistance`` (adapted from gpeyre/SinkhornAutoDiff), batched: log-domain updates of the
    dual potentials ``u ← ε·(log μ − LSE_j((u_i + v_j − C_ij)/ε)) + u`` and likewise ``v``, which cannot
    overflow whatever ``C/ε``; ``P = exp((u_i + v_j − C_ij)/ε)``. At most ``iterations`` rounds; a pair stops once
    its round changed ``u`` by less than ``tol`` in L1 norm (the official ``thresh``; the official code stops the
    whole batch once the batch's mean change is below it). ``tol=0`` runs every round. Computed without gradient,
    in float32 (float64 for float64 inputs), a pair's plan independent of the rest of the batch.

    Example:
        >>> x = torch.tensor([[[0.0], [1.0], [5.0]]])
        >>> plan = sinkhorn(x, x.flip(1))  # the same points in the reverse order
        >>> (plan * 3).round(decimals=3)
        tensor([[[0., 0., 1.],
                 [0., 1., 0.],
                 [1., 0., 0.]]])
    """
    eps, iterations, tol = check_sinkhorn_params(eps, iterations, tol)
    if x.ndim != 3 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"sinkhorn needs points [B, n, D] and [B, m, D], got {list(x.shape)} and {list(y.shape)}")
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    logits = squared_distances(x.detach().to(dtype), y.detach().to(dtype)).div_(-eps)  # −C/ε
    batch, n, m = logits.shape
    log_mu, log_nu = -math.log(n), -math.log(m)
    a = logits.new_zeros(batch, n, 1)  # u/ε
    b = logits.new_zeros(batch, 1, m)  # v/ε
    active = torch.ones(batch, 1, 1, dtype=torch.bool, device=logits.device)
    for _ in range(iterations):
        a_new = log_mu - torch.logsumexp(logits + b, dim=2, keepdim=True)
        b_new = log_nu - torch.logsumexp(logits + a_new, dim=1, keepdim=True)
        if tol == 0.0:
            a, b = a_new, b_new
            continue
        change = eps * (a_new - a).abs().sum(dim=1, keepdim=True)  # the L1 change of u = ε·a
        a, b = torch.where(active, a_new, a), torch.where(active, b_new, b)
        active = active & (change >= tol)
        if not bool(active.any()):
            break
    return torch.exp(logits + a + b)


def positions(h: Tensor) -> Tensor:
    """The feature vectors of a map ``[B, C, *positions]`` as rows: ``[B, n, C]``."""
    return h.flatten(2).transpose(1, 2)


def transport(h: Tensor, assignment: Tensor) -> Tensor:
    """``out[:, :, i] = Σ_j assignment[:, i, j]·h[:, :, j]``: the feature vectors of ``h`` ``[B, C, *positions]``
    moved (averaged) to new positions by ``assignment`` ``[B, n, n]``; keeps ``h``'s dtype and (channels-last)
    memory format.

    Example:
        >>> h = torch.arange(3.0).view(1, 1, 3)
        >>> transport(h, torch.eye(3)[[2, 0, 1]].unsqueeze(0))
        tensor([[[2., 0., 1.]]])
    """
    r = assignment.to(h.dtype)
    if h.ndim == 4 and not h.is_contiguous() and h.is_contiguous(memory_format=torch.channels_last):
        batch, channels, height, width = h.shape
        rows = h.permute(0, 2, 3, 1).reshape(batch, height * width, channels)  # a view
        moved = torch.bmm(r, rows).to(h.dtype).view(batch, height, width, channels)
        return moved.permute(0, 3, 1, 2)  # channels-last strides, like h
    return torch.bmm(h.flatten(2), r.transpose(1, 2)).to(h.dtype).view(h.shape)


def alignment_plan(
    h: Tensor, index: Tensor, eps: float = EPS, iterations: int = ITERATIONS, tol: float = TOL
) -> Tensor:
    """The Sinkhorn plan :func:`sinkhorn` between the positions of each sample of ``h`` ``[B, C, *positions]`` (rows)
    and those of its partner ``h[index]`` (columns): ``[B, n, n]``.

    Example:
        >>> h = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(0))
        >>> alignment_plan(h, torch.tensor([1, 0])).shape  # one 9×9 plan between positions per pair
        torch.Size([2, 9, 9])
    """
    check_feature_map(h)
    return sinkhorn(positions(h), positions(h[index]), eps, iterations, tol)


def aligned_sources(
    h: Tensor,
    index: Tensor,
    to_partner: Tensor | bool = False,
    *,
    eps: float = EPS,
    iterations: int = ITERATIONS,
    tol: float = TOL,
    plan: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The two sources ``(first, second)`` that AlignMix interpolates, ``λ·first + (1 − λ)·second``, for a feature
    map ``h`` ``[B, C, *positions]`` and partners ``index``: ``(A, A'Rᵀ)`` (the partner aligned to the sample) or,
    where ``to_partner`` (a bool, or bool ``[B]``), ``(A·R, A')`` (the sample aligned to the partner), with
    ``A' = h[index]`` and ``R = n·plan``. ``plan`` ``[B or 1, n, n]``: the transport plan (marginals ``1/n``);
    None computes it with :func:`alignment_plan` (``eps``, ``iterations``, ``tol``). Differentiable in ``h``, not
    through the plan (detached, as the official code).

    Example:
        >>> h = torch.randn(2, 3, 2, 2)
        >>> first, second = aligned_sources(h, torch.tensor([1, 0]), plan=torch.eye(4).unsqueeze(0) / 4)
        >>> torch.equal(first, h), bool(torch.allclose(second, h.flip(0)))  # the identity plan: no alignment
        (True, True)
    """
    check_feature_map(h)
    batch, n = h.shape[0], math.prod(h.shape[2:])
    if plan is None:
        plan = alignment_plan(h, index, eps, iterations, tol)
    elif plan.ndim != 3 or plan.shape[0] not in (1, batch) or tuple(plan.shape[1:]) != (n, n):
        raise ValueError(f"plan must have shape [{batch} or 1, {n}, {n}], got {list(plan.shape)}")
    assignment = (plan.detach() * n).expand(batch, n, n)
    partner = partners(h, index)
    to_partner = torch.as_tensor(to_partner, dtype=torch.bool, device=h.device)
    if to_partner.ndim == 0:
        if bool(to_partner):
            return transport(h, assignment.transpose(1, 2)), partner
        return h, transport(partner, assignment)
    if to_partner.shape != (batch,):
        raise ValueError(f"to_partner must be a bool or have shape [{batch}], got shape {list(to_partner.shape)}")
    where = to_partner.view(-1, *([1] * (h.ndim - 1)))
    first = torch.where(where, transport(h, assignment.transpose(1, 2)), h)
    second = torch.where(where, partner, transport(partner, assignment))
    return first, second


def alignmix(
    h: Tensor,
    index: Tensor,
    lam: Tensor | float,
    to_partner: Tensor | bool = False,
    *,
    eps: float = EPS,
    iterations: int = ITERATIONS,
    tol: float = TOL,
    plan: Tensor | None = None,
) -> Tensor:
    """AlignMix of a feature map ``h`` ``[B, C, *positions]`` with partners ``index`` and λ (a scalar or ``[B]``):
    ``λ·A + (1 − λ)·A'Rᵀ``, or ``λ·A·R + (1 − λ)·A'`` where ``to_partner`` (see :func:`aligned_sources`). With the
    identity plan (``R = I``) it is mixup; λ = 1 returns ``h`` exactly where the partner is aligned to the sample.

    Example:
        >>> h = torch.randn(4, 8, 3, 3)
        >>> index = torch.tensor([1, 0, 3, 2])
        >>> alignmix(h, index, 0.7).shape
        torch.Size([4, 8, 3, 3])
        >>> torch.equal(alignmix(h, index, 1.0), h)
        True
    """
    first, second = aligned_sources(h, index, to_partner, eps=eps, iterations=iterations, tol=tol, plan=plan)
    return torch.lerp(second, first, expand_lam(lam, first))


def sample_directions(
    direction: str = "random",
    size: int | None = None,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Whether the sample is aligned to its partner (True) or the partner to the sample (False): bool ``[]`` (one for
    the batch) or ``[size]``. ``"random"`` draws each uniformly (official: one per batch), on the generator's device.

    Example:
        >>> sample_directions("to_partner", 3)
        tensor([True, True, True])
    """
    check_choice("direction", direction, DIRECTIONS)
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    shape = () if size is None else (int(size),)
    if direction == "random":
        return torch.rand(shape, generator=generator, device=dev) < 0.5
    return torch.full(shape, direction == "to_partner", dtype=torch.bool, device=dev)


def alignmix_batch(
    h: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 2.0,
    eps: float = EPS,
    iterations: int = ITERATIONS,
    tol: float = TOL,
    direction: str = "random",
    *,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Draw a partner index, λ ~ Beta(α, α) and the direction (one per batch, or one each with ``per_sample``), then
    :func:`alignmix` of a feature map ``h`` ``[B, C, H, W]`` (the callback applies it to a hidden layer's output
    during the forward). ``num_classes``: the number of classes, or a
    :class:`~lightning_mixup.functional.Targets` (multi-label, regression, the pair form); targets are
    ``λ·y + (1 − λ)·y[j]``. ``sources`` is ``(first, second)`` of :func:`aligned_sources`, no mask (the weight is
    λ everywhere).

    Example:
        >>> h, y = torch.randn(8, 16, 4, 4), torch.arange(8) % 4
        >>> out = alignmix_batch(h, y, 4, generator=torch.Generator().manual_seed(0))
        >>> out.input.shape, out.lam.shape, bool(torch.allclose(out.target.sum(1), torch.ones(8)))
        (torch.Size([8, 16, 4, 4]), torch.Size([]), True)
    """
    check_alignmix_params(eps, iterations, tol, direction)
    targets, index = pair_up(h, target, num_classes, alpha, partner, generator, method="AlignMix")
    check_feature_map(h)
    if targets.spec.dense:
        raise ValueError("AlignMix mixes per-sample targets only: its alignment moves features between positions")
    batch = h.shape[0]
    lam = sample_lam(alpha, batch if per_sample else None, generator=generator, device=h.device).to(h.device)
    to_partner = sample_directions(direction, batch if per_sample else None, generator=generator, device=h.device)
    first, second = aligned_sources(h, index, to_partner.to(h.device), eps=eps, iterations=iterations, tol=tol)
    mixed = torch.lerp(second, first, expand_lam(lam, first))
    return MixedBatch(mixed, targets.mix(index, lam), lam, sources=(first, second), index=index)

"""PuzzleMix: a saliency-preserving mask, optimised per pair, plus transport of the salient blocks.

Kim, Choo & Song. "Puzzle Mix: Exploiting Saliency and Local Statistics for Optimal Mixup", ICML 2020,
arXiv 2009.06962; defaults are the official code's CIFAR settings (snu-mllab/PuzzleMix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.checks import check_bool, check_int, check_number
from lightning_mixup.functional.batch import MixedBatch, pair_up
from lightning_mixup.functional.puzzlemix.energy import mask_problem, pool_saliency
from lightning_mixup.functional.puzzlemix.solver import solve_masks
from lightning_mixup.functional.puzzlemix.transport import move_blocks, transport_plan
from lightning_mixup.functional.sampling import partners, sample_lam
from lightning_mixup.functional.targets import Move, TargetBatch, Targets

GRIDS = (2, 4, 8, 16)


@dataclass(frozen=True)
class PuzzleMixParams:
    """Every option of PuzzleMix's mask and transport; defaults are the official CIFAR settings.

    Args:
        beta: label smoothness β (official ``--beta 1.2``); divided by ``16·n`` for an ``n × n`` grid.
        gamma: data smoothness γ (``--gamma 0.5``).
        eta: weight of the λ prior η (``--eta 0.2``).
        neigh_size: side of the pixel neighbourhood compared across block boundaries (``--neigh_size 4``).
        n_labels: ``L``, mask values ``{0, 1/(L−1), …, 1}`` (``--n_labels 3``).
        grids: blocks per side, one drawn uniformly per batch (official: ``2**randint(1, 5)``).
        transport: move salient blocks into the kept region (``--transport True``).
        t_eps: distance weight of the transport (``--t_eps 0.8``).
        t_size: side of the transported blocks in pixels, capped at the mask's block size; ``-1``: the
            mask's block size (``--t_size 4``).
        iterations: primal-dual iterations of the mask solver (None: :func:`~.solver.default_iterations`).
    """

    beta: float = 1.2
    gamma: float = 0.5
    eta: float = 0.2
    neigh_size: int = 4
    n_labels: int = 3
    grids: tuple[int, ...] = GRIDS
    transport: bool = True
    t_eps: float = 0.8
    t_size: int = 4
    iterations: int | None = None

    def __post_init__(self) -> None:
        for name in ("beta", "gamma", "eta", "t_eps"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), 0.0))
        check_int("neigh_size", self.neigh_size, 1)
        check_int("n_labels", self.n_labels, 2)
        if isinstance(self.grids, int) or not isinstance(self.grids, Sequence) or len(self.grids) == 0:
            raise ValueError(f"grids must be a non-empty sequence of ints >= 2, got {self.grids!r}")
        for g in self.grids:
            check_int("grids", g, 2)
        object.__setattr__(self, "grids", tuple(self.grids))
        check_bool("transport", self.transport)
        if self.t_size != -1:
            check_int("t_size (or -1)", self.t_size, 1)
        if self.iterations is not None:
            check_int("iterations", self.iterations, 1)

    def sizes(self, side: int, grid: int) -> tuple[int, int, int]:
        """``(block, neighbourhood, transport block)`` sizes in pixels for an image side and grid."""
        block = side // grid
        t_size = block if self.t_size == -1 else min(self.t_size, block)
        return block, min(self.neigh_size, block), t_size

    def fits(self, side: int, grid: int) -> bool:
        """Whether an ``grid × grid`` block grid fits images of side ``side``: ``grid`` divides ``side`` and the
        block size is a multiple of the neighbourhood (and, with transport, of the transport block)."""
        if grid > side or side % grid:
            return False
        block, neigh, t_size = self.sizes(side, grid)
        return block % neigh == 0 and not (self.transport and block % t_size)

    def grids_that_fit(self, side: int) -> tuple[int, ...]:
        """Every grid (2 to ``side`` blocks per side) that :meth:`fits` images of side ``side``.

        Example:
            >>> PuzzleMixParams().grids_that_fit(8), PuzzleMixParams().grids_that_fit(32)
            ((2, 4, 8), (2, 4, 8, 16, 32))
        """
        return tuple(grid for grid in range(2, side + 1) if self.fits(side, grid))

    def check_side(self, side: int) -> None:
        """Raise ``ValueError`` naming the grids that fit unless every grid of ``grids`` fits images of side ``side``.

        Example:
            >>> PuzzleMixParams().check_side(8)
            Traceback (most recent call last):
            ...
            ValueError: PuzzleMix: grids=(2, 4, 8, 16) do not fit 8×8 images: grid 16 does not divide 8; the grids that fit are (2, 4, 8): pass grids=(2, 4, 8)
        """  # noqa: E501
        bad = [grid for grid in self.grids if not self.fits(side, grid)]
        if not bad:
            return
        why = []
        for grid in bad:
            if grid > side or side % grid:
                why.append(f"grid {grid} does not divide {side}")
                continue
            block, neigh, t_size = self.sizes(side, grid)
            rule = f"neigh_size {neigh}" + (f" and t_size {t_size}" if self.transport else "")
            why.append(f"grid {grid} gives blocks of {block} pixels, not a multiple of {rule}")
        fit = self.grids_that_fit(side)
        fix = f"the grids that fit are {fit}: pass grids={fit}" if fit else "no grid fits: change neigh_size or t_size"
        raise ValueError(f"PuzzleMix: grids={self.grids} do not fit {side}×{side} images: {'; '.join(why)}; {fix}")

    def check_image(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a batch of square images that every grid fits (:meth:`check_side`)."""
        if x.ndim != 4:
            raise ValueError(f"PuzzleMix needs a batch of images [B, C, H, W], got shape {list(x.shape)}")
        side = x.shape[-1]
        if x.shape[-2] != side:
            raise ValueError(f"PuzzleMix needs square images, got H×W = {x.shape[-2]}×{side}")
        self.check_side(side)


def _as_channels(value: float | Sequence[float] | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(1, -1, 1, 1)


def puzzlemix(
    x: Tensor,
    index: Tensor,
    saliency: Tensor,
    lam: Tensor,
    grid: int,
    params: PuzzleMixParams = PuzzleMixParams(),
    **options: Any,
) -> tuple[Tensor, Tensor, Tensor]:
    """Mix each image of ``x [B, C, S, S]`` with ``x[index]`` under an optimised mask on an ``grid × grid``
    block grid; returns ``(mixed, lam_per_sample, mask [B, 1, S, S])`` where ``lam_per_sample`` is the
    mask's mean (the fraction of each sample that is its own). The arguments (``mean``, ``std``, ``noise``,
    ``perturb`` as keywords) are those of :func:`puzzlemix_sources`.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(4, 3, 32, 32, generator=g)
        >>> mixed, lam, mask = puzzlemix(x, torch.tensor([1, 0, 3, 2]), x.mean(1), torch.tensor(0.5), 4)
        >>> mixed.shape, bool(((mask == 0) | (mask == 0.5) | (mask == 1)).all())
        (torch.Size([4, 3, 32, 32]), True)
    """
    own, partner, block_mask, _ = puzzlemix_sources(x, index, saliency, lam, grid, params, **options)
    mask = F.interpolate(block_mask, size=x.shape[-1], mode="nearest")
    return torch.lerp(partner, own, mask), block_mask.flatten(1).mean(1), mask


def puzzlemix_sources(
    x: Tensor,
    index: Tensor,
    saliency: Tensor,
    lam: Tensor,
    grid: int,
    params: PuzzleMixParams = PuzzleMixParams(),
    *,
    mean: float | Sequence[float] | Tensor = 0.0,
    std: float | Sequence[float] | Tensor = 1.0,
    noise: Tensor | None = None,
    perturb: tuple[bool, bool] = (False, False),
) -> tuple[Tensor, Tensor, Tensor, Move | None]:
    """The two images PuzzleMix blends, the optimised block mask and the transport: ``(own, partner, block_mask
    [B, 1, n, n], move)``, ``own``/``partner`` the sample and ``x[index]`` (noised where asked, then transported
    when ``params.transport``); the mix is ``lerp(partner, own, block_mask upsampled)``. ``move(a, b)`` applies
    the same transport to any other pair of ``[B, C', S, S]`` tensors (segmentation masks); None without one.

    Args:
        saliency: ``[B, S, S]`` non-negative saliency of each image (see
            :func:`~lightning_mixup.functional.saliency.input_saliency`).
        lam: ``[]`` or ``[B]`` the λ of the prior.
        mean, std: the input normalisation, to compare pixels (and add noise) in [0, 1] space.
        noise: ``[B, C, S, S]`` adversarial noise in pixel units (see :func:`adversarial_noise`), added to the
            sample itself where ``perturb[0]`` and to the partner (as ``noise[index]``) where ``perturb[1]``.
    """
    side = x.shape[-1]
    mean_t, std_t = _as_channels(mean, x), _as_channels(std, x)
    pixels = x * std_t + mean_t
    saliency = saliency.detach().to(x.dtype)
    block_mask = optimal_mask(saliency, pixels, index, lam, grid, params)
    own, partner = x, partners(x, index)
    if noise is not None and perturb[0]:
        own = ((pixels + noise).clamp(0, 1) - mean_t) / std_t
    if noise is not None and perturb[1]:
        partner = ((pixels[index] + noise[index]).clamp(0, 1) - mean_t) / std_t
    move = None
    if params.transport:
        plan_own, plan_partner = transport_plans(block_mask, saliency, index, params.sizes(side, grid)[2], params.t_eps)

        def move(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
            return move_blocks(a, plan_own), move_blocks(b, plan_partner)

        own, partner = move(own, partner)
    return own, partner, block_mask, move


def adversarial_start(
    x: Tensor, mean: Tensor, std: Tensor, eps: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """PuzzleMix's random start inside the ε-ball (official ``--adv_eps``, in [0, 1] pixel units): returns
    ``(noise, x_noisy)``, the noise in pixel units (kept inside [0, 1] pixels) and the noised normalised input
    whose loss gradient drives :func:`adversarial_noise`.

    Example:
        >>> x = torch.zeros(2, 3, 4, 4)
        >>> noise, noisy = adversarial_start(x, torch.tensor(0.5), torch.tensor(0.25), 0.1, torch.Generator())
        >>> bool(noise.abs().max() <= 0.1), bool(torch.allclose(noisy, noise / 0.25))
        (True, True)
    """
    pixels = x * std + mean
    device = generator.device if generator is not None else x.device
    start = torch.rand(x.shape, generator=generator, device=device).to(x.device) * 2 - 1
    noisy = (pixels + eps * start).clamp(0, 1)
    return noisy - pixels, (noisy - mean) / std


def adversarial_noise(noise: Tensor, grad: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
    """One signed-gradient (FGSM) step of ``eps + 2/255`` from the random start ``noise``, clipped to ``[−ε, ε]``,
    then scaled by a coefficient ~ U(0, 1), as in the official code.

    Example:
        >>> noise = adversarial_noise(torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2), 0.04, torch.Generator())
        >>> bool((noise >= 0).all() and (noise <= 0.04).all())
        True
    """
    device = generator.device if generator is not None else noise.device
    coef = torch.rand((), generator=generator, device=device).to(noise.device)
    return (noise + (eps + 2 / 255) * grad.sign()).clamp(-eps, eps) * coef


def optimal_mask(
    saliency: Tensor, pixels: Tensor, index: Tensor, lam: Tensor, grid: int, params: PuzzleMixParams
) -> Tensor:
    """``[B, 1, n, n]`` the mask value of each block (share of the sample itself) minimising PuzzleMix's energy
    for ``saliency [B, S, S]`` and images ``pixels [B, C, S, S]`` in [0, 1] (see :func:`~.energy.mask_problem`)."""
    problem = mask_problem(
        saliency, pixels, index, lam, grid,
        beta=params.beta, gamma=params.gamma, eta=params.eta, neigh_size=params.neigh_size, n_labels=params.n_labels,
    )  # fmt: skip
    labels = solve_masks(problem, params.iterations)
    return (labels.to(pixels.dtype) / (params.n_labels - 1)).unsqueeze(1)


def transport_plans(
    block_mask: Tensor, saliency: Tensor, index: Tensor, t_size: int, t_eps: float
) -> tuple[Tensor, Tensor]:
    """Where the salient ``t_size``-pixel blocks of each sample go (into the region ``block_mask`` keeps of it) and
    those of its partner (saliency ``saliency[index]``, into the rest): two :func:`~.transport.transport_plan`
    permutations ``[B, m²]`` for :func:`~.transport.move_blocks`."""
    m = saliency.shape[-1] // t_size
    t_mask = F.interpolate(block_mask, size=m, mode="nearest")[:, 0]
    t_saliency = pool_saliency(saliency, m)
    return transport_plan(t_mask > 0, t_saliency, t_eps), transport_plan(t_mask < 1, t_saliency[index], t_eps)


def puzzlemix_batch(
    x: Tensor,
    target: Tensor | TargetBatch,
    num_classes: int | Targets,
    saliency: Tensor,
    alpha: float = 1.0,
    params: PuzzleMixParams = PuzzleMixParams(),
    *,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    mean: float | Sequence[float] | Tensor = 0.0,
    std: float | Sequence[float] | Tensor = 1.0,
    noise: Tensor | None = None,
    perturb: tuple[bool, bool] = (False, False),
) -> MixedBatch:
    """Draw a partner index, λ ~ Beta(α, α) and a grid from ``params.grids``, then mix with :func:`puzzlemix`.
    The targets are mixed with each sample's mask mean, which is also the returned ``lam`` ``[B]``; the
    returned ``mask`` (bool when ``params.n_labels`` is 2) blends the returned ``sources`` (transported when
    ``params.transport``); segmentation masks are transported and masked with them. ``num_classes``: the number of
    classes, or a :class:`~lightning_mixup.functional.Targets` (multi-label, regression, segmentation masks, pairs).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(8, 3, 32, 32, generator=g), torch.arange(8) % 4
        >>> out = puzzlemix_batch(x, y, 4, saliency=x.mean(1), generator=g)
        >>> torch.allclose(out.target.sum(1), torch.ones(8)), out.lam.shape
        (True, torch.Size([8]))
    """
    params.check_image(x)
    if saliency.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"saliency must have shape {[x.shape[0], *x.shape[2:]]}, got {list(saliency.shape)}")
    targets, index = pair_up(x, target, num_classes, alpha, partner, generator, ndim=4, method="PuzzleMix")
    lam = sample_lam(alpha, x.shape[0] if per_sample else None, generator=generator, device=x.device).to(x.device)
    pick = torch.randint(len(params.grids), (), generator=generator, device=generator.device if generator else None)
    grid = params.grids[int(pick)]
    own, other, block_mask, move = puzzlemix_sources(
        x, index, saliency, lam, grid, params, mean=mean, std=std, noise=noise, perturb=perturb
    )
    mask = F.interpolate(block_mask, size=x.shape[-1], mode="nearest")
    lam_mask = block_mask.flatten(1).mean(1)
    mixed = torch.lerp(other, own, mask)
    mask = mask.bool() if params.n_labels == 2 else mask  # binary: bool, segmentation labels stay hard
    target = targets.mix(index, lam_mask, mask, move)
    return MixedBatch(mixed, target, lam_mask, mask, (own, other), index)

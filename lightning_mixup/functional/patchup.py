"""PatchUp: swap or interpolate DropBlock-style blocks of hidden feature maps between samples.

Faramarzi, Amini, Badrinaaraayanan, Verma, Chandar. "PatchUp: A Feature-Space Block-Level
Regularization Technique for Convolutional Neural Networks", AAAI 2022, arXiv 2006.07794.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.functional.sampling import expand_lam
from lightning_mixup.functional.targets import mix_targets

MODES = ("soft", "hard")


def check_patchup_params(block_size: object, gamma: object, mode: object) -> None:
    """Raise with the bad value unless ``block_size`` is an int >= 1, ``0 < gamma <= 1`` and ``mode`` is known."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma must be in (0, 1], got {gamma!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")


def adjusted_gamma(gamma: float, block_size: int, height: int, width: int) -> float:
    """DropBlock's seed rate ``γ·HW / (b²(H−b+1)(W−b+1))`` — ``γ·W²/(b²(W−b+1)²)`` for square maps — so that
    about a fraction γ of the features falls in some block."""
    if block_size > min(height, width):
        raise ValueError(f"block_size={block_size} is larger than the {height}x{width} feature map")
    return gamma * height * width / (block_size**2 * (height - block_size + 1) * (width - block_size + 1))


def block_masks(
    n: int,
    channels: int,
    height: int,
    width: int,
    block_size: int,
    gamma: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` binary masks ``[n, C, H, W]`` (1 = the feature is changed): Bernoulli(adjusted γ) seeds grown
    into ``block_size × block_size`` squares, clipped at the borders, independently per channel.

    Example:
        >>> m = block_masks(2, 4, 16, 16, 5, 0.5, generator=torch.Generator().manual_seed(0))
        >>> m.shape, sorted(m.unique().tolist())
        (torch.Size([2, 4, 16, 16]), [0.0, 1.0])
    """
    rate = adjusted_gamma(gamma, block_size, height, width)
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    seeds = (torch.rand(n, channels, height, width, generator=generator, device=dev) < rate).float()
    return grow_blocks(seeds, block_size)


def grow_blocks(seeds: Tensor, block_size: int) -> Tensor:
    """Grow each seed (1) of ``[n, C, H, W]`` into a ``block_size``² square covering rows and columns
    ``[i − b//2, i − b//2 + b − 1]`` around it, clipped at the borders: DropBlock's max-pool, computed as
    two running sums (several times faster than ``max_pool2d`` on the CPU, and the same result).

    Example:
        >>> seeds = torch.zeros(1, 1, 5, 5); seeds[0, 0, 2, 2] = 1
        >>> grow_blocks(seeds, 3)[0, 0]
        tensor([[0., 0., 0., 0., 0.],
                [0., 1., 1., 1., 0.],
                [0., 1., 1., 1., 0.],
                [0., 1., 1., 1., 0.],
                [0., 0., 0., 0., 0.]])
    """
    before, after = block_size // 2, block_size - 1 - block_size // 2
    sums = F.pad(seeds, (0, 0, before + 1, after)).cumsum(dim=2)
    rows = sums[:, :, block_size:, :] - sums[:, :, :-block_size, :]
    sums = F.pad(rows, (before + 1, after, 0, 0)).cumsum(dim=3)
    return ((sums[..., block_size:] - sums[..., :-block_size]) > 0.5).to(seeds.dtype)


def patchup(h: Tensor, index: Tensor, lam: Tensor | float, holes: Tensor, mode: str = "soft") -> Tensor:
    """Mix the blocks of ``h`` ``[B, C, H, W]`` marked by ``holes`` (``[1 or B, C, H, W]``, 1 = changed), out of place.

    ``"hard"``: ``(1−M)·h + M·h[index]``; ``"soft"``: ``(1−M)·h + M·(λ·h + (1−λ)·h[index])``.

    Example:
        >>> h = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 2, 2)
        >>> holes = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
        >>> patchup(h, torch.tensor([1, 0]), 0.5, holes, "hard")[0, 0]
        tensor([[1., 0.],
                [0., 0.]])
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    partner = h[index]
    if mode == "soft":
        partner = torch.lerp(partner, h, expand_lam(lam, h))
    channels_last = h.ndim == 4 and not h.is_contiguous() and h.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.where(holes.to(h.device).contiguous(memory_format=layout) > 0, partner, h)


def unchanged_fraction(holes: Tensor) -> Tensor:
    """``p_u`` of each mask ``[n, C, H, W]``: the fraction of features left unchanged, shape ``[n]``."""
    return 1.0 - holes.flatten(1).mean(dim=1, dtype=torch.float64).float()


def patchup_targets(probs: Tensor, index: Tensor, lam: Tensor | float, unchanged: Tensor, mode: str = "soft") -> Tensor:
    """``p_u·y + (1−p_u)·y_b`` with ``y_b = λ·y + (1−λ)·y[index]`` (soft) or ``y[index]`` (hard); ``unchanged`` is
    ``p_u``, a scalar or ``[B]``."""
    mixed = mix_targets(probs, index, lam) if mode == "soft" else probs[index]
    return torch.lerp(mixed, probs, expand_lam(unchanged.to(probs.device), probs))

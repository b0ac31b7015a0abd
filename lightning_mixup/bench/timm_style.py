"""timm's batch-mode mixup and CutMix (``timm.data.Mixup(mode="batch")``), written here from its algorithm for the
benchmark to compare with: timm itself needs torchvision, which has no CPU build on the development machine.

What timm does per batch, and so what these do: one λ ~ Beta(α, α) drawn on the host; partners by flipping the
batch (sample ``i`` with ``B − 1 − i``); mixup blends in place (``x·λ + flip(x)·(1 − λ)``, the flipped copy
allocated); CutMix draws the box centre on the host, clips it, copies the flipped batch's box into ``x`` and
corrects λ to the kept area; the targets are two one-hot matrices (``full`` + ``scatter_``) blended by λ.
No input checks, no ``p``, no generator state: the least a batch mixer can do.
"""

from __future__ import annotations

import math
import random

import torch
from torch import Tensor


def _mixed_one_hot(y: Tensor, num_classes: int, lam: float) -> Tensor:
    first = torch.zeros(y.shape[0], num_classes, device=y.device).scatter_(1, y.view(-1, 1), 1.0)
    second = torch.zeros(y.shape[0], num_classes, device=y.device).scatter_(1, y.flip(0).view(-1, 1), 1.0)
    return first * lam + second * (1.0 - lam)


def timm_style_mixup(x: Tensor, y: Tensor, num_classes: int, rng: random.Random, alpha: float = 1.0) -> Tensor:
    """Mix ``x`` in place with its flip by one λ ~ Beta(α, α); return the mixed one-hot targets.

    Example:
        >>> x = torch.ones(4, 3, 8, 8)
        >>> timm_style_mixup(x, torch.arange(4), 4, random.Random(0)).sum(1)
        tensor([1., 1., 1., 1.])
    """
    lam = rng.betavariate(alpha, alpha)
    flipped = x.flip(0).mul_(1.0 - lam)
    x.mul_(lam).add_(flipped)
    return _mixed_one_hot(y, num_classes, lam)


def timm_style_cutmix(x: Tensor, y: Tensor, num_classes: int, rng: random.Random, alpha: float = 1.0) -> Tensor:
    """Paste the flipped batch's box (side ``√(1 − λ)`` of the image's, centre uniform, clipped) into ``x`` in
    place; return the one-hot targets mixed by the kept area.

    Example:
        >>> x = torch.ones(4, 3, 8, 8)
        >>> timm_style_cutmix(x, torch.arange(4), 4, random.Random(0)).sum(1)
        tensor([1., 1., 1., 1.])
    """
    height, width = x.shape[-2:]
    ratio = math.sqrt(1.0 - rng.betavariate(alpha, alpha))
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy, cx = rng.randrange(height), rng.randrange(width)
    top, bottom = min(max(cy - cut_h // 2, 0), height), min(max(cy + cut_h // 2, 0), height)
    left, right = min(max(cx - cut_w // 2, 0), width), min(max(cx + cut_w // 2, 0), width)
    x[:, :, top:bottom, left:right] = x.flip(0)[:, :, top:bottom, left:right]
    lam = 1.0 - (bottom - top) * (right - left) / (height * width)
    return _mixed_one_hot(y, num_classes, lam)

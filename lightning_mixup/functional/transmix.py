"""TransMix: CutMix (or mixup) inputs whose label weights come from a vision transformer's attention.

Chen, Sun, He, Torr, Yuille, Bai. "TransMix: Attend to Mix for Vision Transformers", CVPR 2022, arXiv 2111.09833;
official code Beckschen/TransMix (``transmix.py``, a wrapper of timm's ``Mixup``).

Two steps, because the weights are known only after the forward of the mixed batch:

1. :func:`transmix_batch` mixes the input: CutMix with probability ``switch_prob`` (else mixup), one λ and box for
   the batch (or one per sample), targets weighted by the area as CutMix's;
2. :func:`transmix_targets` takes the attention that the network paid to the mixed images and re-weights the
   targets of a CutMix batch: λ = ``area_weight``·(area kept) + (1 − ``area_weight``)·(share of the class token's
   attention that falls on the sample's own patches). A mixup batch keeps its λ, as in the official code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.checks import check_int, check_number, check_probability
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.cutmix import cutmix_batch
from lightning_mixup.functional.mixup import mixup_batch
from lightning_mixup.functional.sampling import check_alpha
from lightning_mixup.functional.targets import TargetBatch, Targets, as_targets
from lightning_mixup.functional.validation import check_input

AREA_WEIGHT = 0.5
"""The official ``transmix_label``: ``lam = (lam0 + lam1) / 2``, the area and the attention share averaged."""


def check_transmix_params(mixup_alpha: object, switch_prob: object, area_weight: object) -> tuple[float, float, float]:
    """``mixup_alpha`` ≥ 0 (0: CutMix only), ``switch_prob`` and ``area_weight`` in [0, 1], as floats."""
    mixup_alpha = check_number("mixup_alpha", mixup_alpha, 0.0)
    return mixup_alpha, check_probability("switch_prob", switch_prob), check_probability("area_weight", area_weight)


def class_attention(attention: Tensor, num_prefix_tokens: int = 1) -> Tensor:
    """The class token's attention to the patch tokens, averaged over heads: ``[B, heads, N, N]`` (or an already
    head-averaged ``[B, N, N]``, e.g. ``nn.MultiheadAttention``'s weights) → ``[B, N − num_prefix_tokens]``, in
    float32. The class token is token 0 and the patches follow the ``num_prefix_tokens`` prefix tokens (official:
    ``torch.mean(attn[:, :, 0, 1:], dim=1)``).

    Example:
        >>> attn = torch.softmax(torch.randn(2, 3, 5, 5), dim=-1)
        >>> class_attention(attn).shape
        torch.Size([2, 4])
    """
    check_int("num_prefix_tokens", num_prefix_tokens, 1)
    if not isinstance(attention, Tensor) or attention.ndim not in (3, 4) or attention.shape[-1] != attention.shape[-2]:
        got = f"shape {list(attention.shape)}" if isinstance(attention, Tensor) else type(attention).__name__
        raise ValueError(f"attention must be [B, heads, N, N] or [B, N, N] softmax weights, got {got}")
    if attention.shape[-1] <= num_prefix_tokens:
        raise ValueError(
            f"attention over {attention.shape[-1]} tokens has no patch token after {num_prefix_tokens} prefix token(s)"
        )
    row = attention.detach()[..., 0, num_prefix_tokens:].float()
    return row.mean(dim=1) if attention.ndim == 4 else row


def patch_grid(num_patches: int, height: int, width: int) -> tuple[int, int]:
    """The patch grid ``(h, w)`` of ``num_patches`` tokens over an ``height × width`` image: ``h·w = num_patches``
    with ``h/w = height/width`` (a square image: ``√num_patches`` a side, as the official code assumes).

    Example:
        >>> patch_grid(16, 8, 8), patch_grid(8, 16, 32)
        ((4, 4), (2, 4))
    """
    rows = round(math.sqrt(num_patches * height / width))
    if rows < 1 or num_patches % rows or (num_patches // rows) * height != rows * width:
        raise ValueError(
            f"{num_patches} patch tokens do not tile a {height}x{width} image in a grid of its aspect ratio; pass "
            "grid=(rows, cols), or check num_prefix_tokens"
        )
    return rows, num_patches // rows


def patch_mask(mask: Tensor, grid: tuple[int, int]) -> Tensor:
    """The image's own-pixel mask ``[1 or B, 1, H, W]`` (True = the sample's own) downsampled to the patch grid by
    nearest neighbour, as the official ``nn.Upsample(size=...)`` (its default mode): patch ``(i, j)`` takes the
    pixel ``(⌊i·H/h⌋, ⌊j·W/w⌋)``, its top-left pixel when the patches tile the image. Returns bool
    ``[1 or B, h·w]`` in the patch tokens' row-major order.

    Example:
        >>> mask = torch.ones(1, 1, 4, 4, dtype=torch.bool); mask[..., :2, :2] = False
        >>> patch_mask(mask, (2, 2))
        tensor([[False,  True,  True,  True]])
    """
    if mask.ndim != 4 or mask.shape[1] != 1:
        raise ValueError(f"mask must be [1 or B, 1, H, W], got shape {list(mask.shape)}")
    small = F.interpolate(mask.float(), size=tuple(grid), mode="nearest")
    return small.flatten(1) > 0.5


def attention_lam(cls_attention: Tensor, own_patches: Tensor) -> Tensor:
    """The share of each sample's class attention ``[B, P]`` that falls on its own patches (bool ``[1 or B, P]``):
    ``Σ own·a / Σ a``, float32 ``[B]`` (official ``w1 / (w1 + w2)``). A row without attention mass counts as 0.5.

    Example:
        >>> attention_lam(torch.tensor([[0.1, 0.3, 0.2, 0.4]]), torch.tensor([[True, True, False, False]]))
        tensor([0.4000])
    """
    if cls_attention.ndim != 2 or own_patches.shape[-1] != cls_attention.shape[-1]:
        raise ValueError(
            f"class attention {list(cls_attention.shape)} and own patches {list(own_patches.shape)} must be [B, P] "
            "over the same patches"
        )
    cls_attention = cls_attention.float()
    own = (cls_attention * own_patches.to(cls_attention.device)).sum(dim=1)
    total = cls_attention.sum(dim=1)
    return torch.where(total > 0, own / total.clamp_min(torch.finfo(torch.float32).tiny), 0.5)


def transmix_lam(
    attention: Tensor,
    mask: Tensor,
    lam: Tensor | float,
    *,
    area_weight: float = AREA_WEIGHT,
    num_prefix_tokens: int = 1,
    grid: tuple[int, int] | None = None,
) -> tuple[Tensor, Tensor]:
    """TransMix's λ of a CutMix batch, the share of each sample's own label: ``area_weight·lam + (1 − area_weight)·
    λ_attn``, where λ_attn is the share of the class token's attention (head-averaged, from ``attention``
    ``[B, heads, N, N]``) on the patches that ``mask`` (``[1 or B, 1, H, W]``, True = own) keeps, the mask taken to
    the patch ``grid`` (None: inferred from the image's aspect ratio) by nearest neighbour. Returns
    ``(lam, lam_attn)``, float32 ``[B]`` each.

    The official code averages the two (``area_weight=0.5``); the paper's equation is the attention alone
    (``area_weight=0``).

    Example:
        >>> mask = torch.ones(1, 1, 4, 4, dtype=torch.bool); mask[..., :2, :2] = False
        >>> attn = torch.full((1, 1, 5, 5), 0.2)  # uniform: the attention share is the area of the kept patches
        >>> transmix_lam(attn, mask, torch.tensor(0.75))
        (tensor([0.7500]), tensor([0.7500]))
    """
    check_probability("area_weight", area_weight)
    cls_attention = class_attention(attention, num_prefix_tokens)
    if grid is None:
        grid = patch_grid(cls_attention.shape[1], mask.shape[-2], mask.shape[-1])
    if grid[0] * grid[1] != cls_attention.shape[1]:
        raise ValueError(f"grid={tuple(grid)} does not have the {cls_attention.shape[1]} patches of the attention")
    if mask.shape[0] not in (1, cls_attention.shape[0]):
        raise ValueError(f"mask {list(mask.shape)} and attention {list(attention.shape)} disagree on the batch size")
    lam_attn = attention_lam(cls_attention, patch_mask(mask.to(cls_attention.device), grid))
    lam = torch.as_tensor(lam, dtype=torch.float32, device=lam_attn.device).expand_as(lam_attn)
    return torch.lerp(lam_attn, lam, area_weight), lam_attn


def transmix_batch(
    x: Tensor,
    target: Tensor | TargetBatch,
    num_classes: int | Targets,
    alpha: float = 1.0,
    *,
    mixup_alpha: float = 0.8,
    switch_prob: float = 0.8,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Step 1 of TransMix: with probability ``switch_prob`` CutMix of ``alpha`` (λ ~ Beta(α, α), the box clipped
    and λ corrected to the kept area), else mixup of ``mixup_alpha`` (timm's ``Mixup`` switch; ``mixup_alpha=0``:
    CutMix always). One draw of the switch per batch (the official ``mode='batch'``); λ and the box per batch, or
    per sample with ``per_sample``. The targets are weighted by λ (the area for CutMix); re-weight a CutMix batch
    with :func:`transmix_targets` once the network has attended to ``input``. The ``mask`` is the CutMix one
    (bool ``[1 or B, 1, H, W]``, True = own), None for mixup. Needs ``[B, C, H, W]``.

    Example:
        >>> x, y = torch.randn(8, 3, 8, 8), torch.arange(8) % 4
        >>> mixed = transmix_batch(x, y, 4, switch_prob=1.0, generator=torch.Generator().manual_seed(0))
        >>> mixed.mask.shape, mixed.target.shape
        (torch.Size([1, 1, 8, 8]), torch.Size([8, 4]))
    """
    check_input(x, ndim=4, method="TransMix")
    check_alpha(alpha)
    mixup_alpha, switch_prob, _ = check_transmix_params(mixup_alpha, switch_prob, AREA_WEIGHT)
    options = {"per_sample": per_sample, "partner": partner, "generator": generator, "out": out}
    use_cutmix = mixup_alpha == 0.0 or switch_prob == 1.0
    if not use_cutmix and switch_prob > 0.0:
        device = generator.device if generator is not None else x.device
        use_cutmix = float(torch.rand((), generator=generator, device=device)) < switch_prob
    if use_cutmix:
        return cutmix_batch(x, target, num_classes, alpha, **options)
    return mixup_batch(x, target, num_classes, mixup_alpha, **options)


def transmix_targets(
    mixed: MixedBatch,
    target: Tensor | TargetBatch,
    num_classes: int | Targets,
    attention: Tensor,
    *,
    area_weight: float = AREA_WEIGHT,
    num_prefix_tokens: int = 1,
    grid: tuple[int, int] | None = None,
) -> MixedBatch:
    """Step 2 of TransMix: ``mixed`` (from :func:`transmix_batch`) with λ and the targets re-weighted by
    ``attention``, the softmax attention ``[B, heads, N, N]`` of the last block during the forward of
    ``mixed.input`` (see :func:`transmix_lam`). ``target`` and ``num_classes`` are those given to
    :func:`transmix_batch`. A mixup batch (no ``mask``) is returned unchanged, as in the official code. Per-sample
    targets only (multiclass, multi-label, regression): a segmentation mask's pixels keep their own labels.

    Example:
        >>> x, y = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
        >>> mixed = transmix_batch(x, y, 4, switch_prob=1.0, generator=torch.Generator().manual_seed(1))
        >>> attention = torch.softmax(torch.randn(4, 2, 17, 17), dim=-1)  # what a ViT with 2x2 patches gave
        >>> reweighted = transmix_targets(mixed, y, 4, attention)
        >>> bool(torch.allclose(reweighted.target.sum(dim=1), torch.ones(4)))
        True
    """
    if mixed.mask is None:
        return mixed
    targets = as_targets(num_classes)
    if targets.dense:
        raise ValueError("TransMix re-weights per-sample targets; segmentation masks keep each pixel's own label")
    lam, _ = transmix_lam(
        attention, mixed.mask, mixed.lam, area_weight=area_weight, num_prefix_tokens=num_prefix_tokens, grid=grid
    )
    checked = targets.read(target, mixed.input)
    return mixed._replace(target=checked.mix(mixed.index, lam.to(mixed.lam.device)), lam=lam.to(mixed.lam.device))

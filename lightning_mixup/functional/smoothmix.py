"""SmoothMix: blend the partner in through a soft mask that falls off smoothly around a random centre.

Lee, Zaheer, Astrid, Lee. "SmoothMix: a Simple Yet Effective Data Augmentation to Train Robust Classifiers",
CVPR Workshops 2020 (no arXiv version). A CutMix without the "strong edge": the partner's weight ``G`` is a
Gaussian bump ``exp(−d²/2)`` of the distance ``d`` (in units of σ) from a random centre, so that the partner fades
in; the mixed image is ``(1 − G)·x + G·x[j]`` and the targets are weighted by the mask's mean, λ = mean(1 − G),
the share of the image that is its own.

Reference code (OpenMixup's ``smoothmix``; public copies of the same kernel agree): the centre is a uniformly drawn
pixel corner, ``(u − ½, v − ½)`` with ``u ~ U{0..H−1}``, ``v ~ U{0..W−1}``; σ ~ U[0.25, 0.5)·H; the circle
mask ``G = exp(−(Δy² + Δx²) / 2σ²)``, unclipped and unnormalised; one mask for the whole batch. The paper's second
shape, the square, takes the same Gaussian profile of the L∞ distance, ``G = exp(−max(|Δy|, |Δx|)² / 2σ²)``, whose
level sets are squares (the reference code has the circle only).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_mixup.checks import check_choice, check_number
from lightning_mixup.functional.batch import MixedBatch, blend_partners, pair_up
from lightning_mixup.functional.targets import Targets
from lightning_mixup.functional.validation import check_input

SHAPES = ("circle", "square")
SIGMA_RANGE = (0.25, 0.5)


def check_smoothmix_params(shape: object, sigma_range: object) -> tuple[float, float]:
    """Raise with the bad value unless ``shape`` is one of :data:`SHAPES` and ``sigma_range`` is a pair
    ``(low, high)`` of finite numbers with ``0 <= low <= high``; return the pair as floats."""
    check_choice("shape", shape, SHAPES)
    what = "a pair (low, high) of finite numbers with 0 <= low <= high"
    if isinstance(sigma_range, (str, bytes)) or not isinstance(sigma_range, (Sequence, Tensor)):
        raise TypeError(f"sigma_range must be {what}, got {sigma_range!r}")
    values = sigma_range.tolist() if isinstance(sigma_range, Tensor) else list(sigma_range)
    if len(values) != 2:
        raise ValueError(f"sigma_range must be {what}, got {sigma_range!r}")
    try:
        low, high = (check_number("sigma_range", v, 0.0, what=what) for v in values)
    except (TypeError, ValueError) as err:
        raise type(err)(f"sigma_range must be {what}, got {sigma_range!r}") from None
    if high < low:
        raise ValueError(f"sigma_range must be {what}, got {sigma_range!r}")
    return low, high


def smooth_masks(
    n: int,
    height: int,
    width: int,
    shape: str = "circle",
    sigma_range: tuple[float, float] = SIGMA_RANGE,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` SmoothMix masks ``[n, 1, H, W]`` (float32, in [0, 1], 1 = the sample's own): ``1 − G``.

    Per mask: a centre ``(u − ½, v − ½)``, ``u ~ U{0..H−1}``, ``v ~ U{0..W−1}``, and a spread ``s ~ U[low, high)``
    of ``sigma_range``; σ is ``s·H`` along the rows and ``s·W`` along the columns (a circle on a square image, as
    the reference code, whose σ is ``s·H``; an ellipse of the same relative size on another image). ``G`` is
    ``exp(−(a² + b²)/2)`` for ``"circle"`` and ``exp(−max(a, b)²/2)`` for ``"square"`` with ``a = |Δy|/σ_y``,
    ``b = |Δx|/σ_x``. ``s = 0`` gives an empty bump (``G = 0``, the image itself): the centre is a pixel corner,
    never a pixel centre, so no distance is 0. Drawn in one batch on the generator's device (else ``device``).

    Example:
        >>> masks = smooth_masks(4, 8, 8, generator=torch.Generator().manual_seed(0))
        >>> masks.shape, bool(((masks >= 0) & (masks <= 1)).all())
        (torch.Size([4, 1, 8, 8]), True)
    """
    low, high = check_smoothmix_params(shape, sigma_range)
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    cy = torch.randint(0, height, (n, 1), generator=generator, device=dev)
    cx = torch.randint(0, width, (n, 1), generator=generator, device=dev)
    spread = low + (high - low) * torch.rand(n, 1, generator=generator, device=dev)
    rows = torch.arange(height, device=dev, dtype=torch.float32)
    cols = torch.arange(width, device=dev, dtype=torch.float32)
    a = (rows - (cy - 0.5)) / (spread * height)  # |Δy| >= ½: a is ±inf, never NaN, when the spread is 0
    b = (cols - (cx - 0.5)) / (spread * width)
    gy, gx = torch.exp(-0.5 * a * a), torch.exp(-0.5 * b * b)  # [n, H], [n, W]: both shapes are separable
    if shape == "circle":
        bump = gy[:, :, None] * gx[:, None, :]
    else:
        bump = torch.minimum(gy[:, :, None], gx[:, None, :])
    return (1.0 - bump).unsqueeze(1)


def smoothmix(x: Tensor, index: Tensor, mask: Tensor, out: Tensor | None = None) -> Tensor:
    """``mask·x + (1 − mask)·x[index]`` with a mask ``[1 or B, 1, H, W]`` in [0, 1] (1 = own); exact where the mask
    is 0 or 1. The result goes to ``out`` when given (a reusable buffer, see
    :func:`~lightning_mixup.functional.mixup`), else to a new tensor.

    Example:
        >>> x = torch.zeros(2, 1, 2, 2); x[1] = 1
        >>> smoothmix(x, torch.tensor([1, 0]), torch.tensor([[[[1.0, 0.5], [0.25, 0.0]]]]))[0, 0]
        tensor([[0.0000, 0.5000],
                [0.7500, 1.0000]])
    """
    check_input(x, ndim=4, method="SmoothMix")
    mask = mask.to(device=x.device, dtype=x.dtype)
    return blend_partners(x, index, mask, out)


def smoothmix_batch(
    x: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 1.0,
    *,
    shape: str = "circle",
    sigma_range: tuple[float, float] = SIGMA_RANGE,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Sample a partner index and one SmoothMix mask for the batch (the reference code) or one per sample; blend
    inputs ``[B, C, H, W]`` through it and mix the targets with λ = the mask's mean. The returned ``mask``
    (``[1 or B, 1, H, W]``, float) is 1 − G, the weight of the sample's own pixels; the partner fills the bump.
    ``shape``, ``sigma_range``: see :func:`smooth_masks`. ``out``: see :func:`smoothmix`. ``num_classes``: the number
    of classes, or a :class:`~lightning_mixup.functional.Targets` (multi-label, regression, segmentation masks — which
    become per-pixel probabilities under the soft mask — or the pair form).

    ``alpha`` is checked (> 0) but draws nothing: SmoothMix's λ is the mask's mean, not a Beta draw (OpenMixup draws
    λ ~ Beta(α, α) and overwrites it); it stays for the signature every mixer shares.

    Example:
        >>> x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
        >>> out = smoothmix_batch(x, y, 4, per_sample=True, generator=torch.Generator().manual_seed(0))
        >>> out.lam.shape, out.mask.shape
        (torch.Size([8]), torch.Size([8, 1, 32, 32]))
    """
    sigma_range = check_smoothmix_params(shape, sigma_range)
    targets, index = pair_up(x, target, num_classes, alpha, partner, generator, ndim=4, method="SmoothMix")
    batch, _, height, width = x.shape
    mask = smooth_masks(batch if per_sample else 1, height, width, shape, sigma_range, generator=generator)
    mask = mask.to(x.device)
    lam = mask.mean(dim=(1, 2, 3), dtype=torch.float64).float()
    lam = lam if per_sample else lam.reshape(())
    return MixedBatch(smoothmix(x, index, mask, out), targets.mix(index, lam, mask), lam, mask, index=index)

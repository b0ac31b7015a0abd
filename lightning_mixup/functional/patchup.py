"""PatchUp: swap or interpolate DropBlock-style blocks of hidden feature maps between samples.

Faramarzi, Amini, Badrinaaraayanan, Verma, Chandar. "PatchUp: A Feature-Space Block-Level
Regularization Technique for Convolutional Neural Networks", AAAI 2022, arXiv 2006.07794.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.checks import check_choice, check_int, check_number

from lightning_mixup.functional.batch import MixedBatch, pair_up
from lightning_mixup.functional.sampling import expand_lam, partners, sample_lam
from lightning_mixup.functional.targets import TargetBatch, Targets, mix_targets

MODES = ("soft", "hard")


def check_patchup_params(block_size: object, gamma: object, mode: object) -> None:
    """Raise with the bad value unless ``block_size`` is an int >= 1, ``0 < gamma <= 1`` and ``mode`` is known."""
    check_int("block_size", block_size, 1)
    check_number("gamma", gamma, 0.0, 1.0, open_low=True, what="in (0, 1]")
    check_choice("mode", mode, MODES)


def check_feature_map(h: Tensor, block_size: int) -> None:
    """Raise ``ValueError`` unless ``h`` is a ``[B, C, H, W]`` feature map with room for a ``block_size`` block.

    Example:
        >>> check_feature_map(torch.zeros(2, 3, 4, 4), 5)
        Traceback (most recent call last):
        ...
        ValueError: PatchUp: block_size=5 is larger than the 4x4 feature map; choose a smaller block_size or an earlier layer
    """  # noqa: E501
    if h.ndim != 4:
        raise ValueError(f"PatchUp needs a [B, C, H, W] feature map, got shape {list(h.shape)}")
    height, width = h.shape[-2:]
    if block_size > min(height, width):
        raise ValueError(
            f"PatchUp: block_size={block_size} is larger than the {height}x{width} feature map; "
            "choose a smaller block_size or an earlier layer"
        )


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
    dtype: torch.dtype = torch.float32,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` binary masks ``[n, C, H, W]``, 1 = the sample's own feature, 0 = a block to change:
    Bernoulli(adjusted γ) seeds grown into ``block_size × block_size`` squares, clipped at the borders,
    independently per channel. ``dtype=torch.bool`` gives the same masks (True = own) in a quarter of the memory,
    the form :func:`patchup`, :func:`own_weight` and :func:`unchanged_fraction` read fastest.

    Example:
        >>> m = block_masks(2, 4, 16, 16, 5, 0.5, generator=torch.Generator().manual_seed(0))
        >>> m.shape, sorted(m.unique().tolist())
        (torch.Size([2, 4, 16, 16]), [0.0, 1.0])
    """
    rate = adjusted_gamma(gamma, block_size, height, width)
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    seeds = torch.rand(n, channels, height, width, generator=generator, device=dev) < rate
    own = _grow(seeds, block_size).logical_not_()
    return own if dtype == torch.bool else own.to(dtype)


def grow_blocks(seeds: Tensor, block_size: int) -> Tensor:
    """Grow each seed (1) of ``[n, C, H, W]`` into a ``block_size``² square covering rows and columns
    ``[i − b//2, i − b//2 + b − 1]`` around it, clipped at the borders: DropBlock's max-pool, computed as
    a running OR of shifted copies along each axis (a few byte-wide passes: several times faster than ``max_pool2d``
    or running sums on the CPU, and the same result). Returns ``seeds``' dtype.

    Example:
        >>> seeds = torch.zeros(1, 1, 5, 5); seeds[0, 0, 2, 2] = 1
        >>> grow_blocks(seeds, 3)[0, 0]
        tensor([[0., 0., 0., 0., 0.],
                [0., 1., 1., 1., 0.],
                [0., 1., 1., 1., 0.],
                [0., 1., 1., 1., 0.],
                [0., 0., 0., 0., 0.]])
    """
    return _grow(seeds != 0, block_size).to(seeds.dtype)


def _grow(seeds: Tensor, block_size: int) -> Tensor:
    """:func:`grow_blocks` of bool seeds, as bool."""
    return _window_any(_window_any(seeds, block_size, 2), block_size, 3)


def _window_any(x: Tensor, size: int, dim: int) -> Tensor:
    """``out[j] = any(x[j − size//2 : j − size//2 + size])`` along ``dim`` of a bool tensor (zeros beyond the
    borders): windows of doubling span OR-ed together, ``⌈log₂ size⌉`` passes."""
    before = size // 2
    pad = [0, 0] * (x.ndim - 1 - dim) + [before, size - 1 - before]
    x = F.pad(x, pad)
    span = 1
    while span < size:
        shift = min(span, size - span)  # the window grows from span to span + shift
        length = x.shape[dim] - shift
        x = x.narrow(dim, 0, length) | x.narrow(dim, shift, length)
        span += shift
    return x


def own_weight(mask: Tensor, lam: Tensor | float, mode: str = "soft", dtype: torch.dtype | None = None) -> Tensor:
    """The share of each feature that is the sample's own: the block mask (``"hard"``: a changed block is the
    partner's) or ``mask + (1 − mask)·λ`` (``"soft"``: a changed block is ``λ·h + (1−λ)·h[j]``); its mean is the
    λ of the mixed sample. ``mask`` is float (1 = own) or bool (True = own); the result has ``dtype`` (default: the
    float mask's, float32 for a bool one).

    Example:
        >>> own_weight(torch.tensor([[[[1.0, 0.0]]]]), 0.25, "soft")
        tensor([[[[1.0000, 0.2500]]]])
    """
    check_choice("mode", mode, MODES)
    dtype = dtype or (torch.float32 if mask.dtype == torch.bool else mask.dtype)
    if mode == "hard":
        return mask.to(dtype)
    lam = torch.as_tensor(lam, dtype=torch.float32 if mask.dtype == torch.bool else mask.dtype, device=mask.device)
    if mask.dtype == torch.bool:  # one pass: 1 where own, λ elsewhere (what the float formula gives, exactly)
        lam = lam.view(-1, *([1] * (mask.ndim - 1))) if lam.ndim == 1 else lam
        return torch.where(mask, torch.ones((), dtype=dtype, device=mask.device), lam.to(dtype))
    if lam.ndim == 1 and mask.shape[0] == 1:  # one mask for the batch, one λ per sample
        mask = mask.expand(lam.shape[0], *mask.shape[1:])
    return (mask + (1.0 - mask) * expand_lam(lam, mask)).to(dtype)


def patchup(h: Tensor, index: Tensor, lam: Tensor | float, mask: Tensor, mode: str = "soft") -> Tensor:
    """Mix the blocks of ``h`` ``[B, C, H, W]`` that ``mask`` (``[1 or B, C, H, W]``, 1 or True = own) marks 0, out of
    place.

    ``"hard"``: ``M·h + (1−M)·h[index]``; ``"soft"``: ``M·h + (1−M)·(λ·h + (1−λ)·h[index])``.

    Example:
        >>> h = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 2, 2)
        >>> mask = torch.tensor([[[[0.0, 1.0], [1.0, 1.0]]]])
        >>> patchup(h, torch.tensor([1, 0]), 0.5, mask, "hard")[0, 0]
        tensor([[1., 0.],
                [0., 0.]])
    """
    return _blend(h, index, own_weight(mask.to(h.device), lam, mode, h.dtype if mask.dtype == torch.bool else None))


def _blend(h: Tensor, index: Tensor, weight: Tensor) -> Tensor:
    """``weight·h + (1 − weight)·h[index]``, in ``h``'s dtype and memory format; exact at weights 0 and 1."""
    channels_last = h.ndim == 4 and not h.is_contiguous() and h.is_contiguous(memory_format=torch.channels_last)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return torch.lerp(partners(h, index), h, weight.to(h.dtype).contiguous(memory_format=layout))


def unchanged_fraction(mask: Tensor) -> Tensor:
    """``p_u`` of each block mask ``[n, C, H, W]`` (1 or True = own): the fraction of features left unchanged,
    ``[n]``.

    Example:
        >>> mask = torch.ones(2, 1, 4, 4)
        >>> mask[0, :, :2] = 0
        >>> unchanged_fraction(mask)
        tensor([0.5000, 1.0000])
    """
    if mask.dtype == torch.bool:  # the count of own features (bytes summed: ~15x faster than a bool sum on the CPU)
        count = mask.flatten(1).view(torch.uint8).sum(dim=1, dtype=torch.int32)
        return (count.double() / mask[0].numel()).float()  # as the float64 mean of the float mask divides
    return mask.flatten(1).mean(dim=1, dtype=torch.float64).float()


def patchup_own_share(lam: Tensor | float, unchanged: Tensor, mode: str = "soft") -> Tensor:
    """The share of each sample's own label in PatchUp's targets ``p_u·y + (1−p_u)·y_b``: ``p_u + (1−p_u)·λ`` (soft,
    ``y_b = λ·y + (1−λ)·y[j]``) or ``p_u`` (hard, ``y_b = y[j]``); a scalar or ``[B]``.

    Example:
        >>> patchup_own_share(0.5, torch.tensor(0.5), "soft")
        tensor(0.7500)
    """
    if mode == "hard":
        return unchanged
    lam = torch.as_tensor(lam, dtype=unchanged.dtype, device=unchanged.device)
    return unchanged + (1.0 - unchanged) * lam


def patchup_targets(probs: Tensor, index: Tensor, lam: Tensor | float, unchanged: Tensor, mode: str = "soft") -> Tensor:
    """``p_u·y + (1−p_u)·y_b`` with ``y_b = λ·y + (1−λ)·y[index]`` (soft) or ``y[index]`` (hard); ``unchanged`` is
    ``p_u``, a scalar or ``[B]``.

    Example:
        >>> patchup_targets(torch.eye(2), torch.tensor([1, 0]), 0.5, torch.tensor([0.5, 0.5]), mode="hard")
        tensor([[0.5000, 0.5000],
                [0.5000, 0.5000]])
    """
    return mix_targets(probs, index, patchup_own_share(lam, unchanged.to(probs.device), mode))


LOSS_PARAMS = (1.0, 1.0)
"""The official ``--loss_params`` default: ``[1, 1]``."""


def check_loss_params(loss_params: object) -> tuple[float, float]:
    """``loss_params`` as two floats ``(a, b)``, both finite and ``>= 0``, else the error quoting it."""
    if isinstance(loss_params, (str, bytes)) or not hasattr(loss_params, "__len__") or len(loss_params) != 2:
        raise TypeError(f"loss_params must be two numbers (a, b), got {loss_params!r}")
    a, b = (check_number(f"loss_params[{i}]", v, 0.0) for i, v in enumerate(loss_params))
    return a, b


def patchup_loss_targets(
    own: Tensor, mixed: Tensor, unchanged: Tensor | float, loss_params: tuple[float, float] = LOSS_PARAMS
) -> tuple[Tensor, Tensor]:
    """The official PatchUp loss ``a·p_u·ℓ(ŷ, y_a) + (1−p_u)·ℓ(ŷ, y_b) + b·ℓ(ŷ, ỹ)`` (chandar-lab/PatchUp ``main.py``,
    ``loss_params = [a, b]``, ``ỹ = p_u·y_a + (1−p_u)·y_b``) as ``weight·ℓ(ŷ, targets)``: exact for every loss
    affine in its target (cross-entropy, softmax-BCE, BCE), the weights summing to ``weight``.

    ``own`` is ``y_a`` ``[B, C]``, ``mixed`` is ``ỹ``, ``unchanged`` is ``p_u`` (a scalar or ``[B]``); or, the
    formula being affine, ``own`` = 1 ``[B]`` and ``mixed`` = the share of ``y_a`` in ``ỹ``, which gives the share
    of ``y_a`` in the returned targets (the callback's form, for every task). Returns
    ``(targets [B, C] summing to 1, weight)``, ``weight = (a−1)·p_u + 1 + b``: 2 with the official ``[1, 1]``, so a
    mixed batch weighs twice a clean one. With ``a = 1`` the targets are ``ỹ`` itself.

    Example:
        >>> own, mixed = torch.eye(2), torch.tensor([[0.75, 0.25], [0.25, 0.75]])
        >>> targets, weight = patchup_loss_targets(own, mixed, 0.5)
        >>> torch.equal(targets, mixed), float(weight)
        (True, 2.0)
    """
    a, b = loss_params
    p = torch.as_tensor(unchanged, dtype=own.dtype, device=own.device)
    if a == 1.0:
        return mixed, torch.full_like(p, 1.0 + b)
    p_rows = expand_lam(p, own)
    weight = (a - 1.0) * p + 1.0 + b
    targets = ((a - 1.0) * p_rows * own + (1.0 + b) * mixed) / expand_lam(weight, own)
    return targets, weight


def patchup_hidden(
    h: Tensor,
    targets: TargetBatch | Tensor,
    index: Tensor,
    lam: Tensor | float,
    mode: str = "soft",
    block_size: int = 7,
    gamma: float = 0.75,
    *,
    shared_mask: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[MixedBatch, Tensor]:
    """PatchUp of a feature map ``h [B, C, H, W]`` with a given partner ``index`` and λ: draws the block masks (one
    for the batch when ``shared_mask``, as the official code, else one per sample), mixes ``h`` and the targets
    (probabilities ``[B, C]``, or checked :class:`~lightning_mixup.functional.targets.TargetBatch` of any per-sample
    task). Returns ``(MixedBatch(mixed h, targets, λ of each sample, own-weight mask, index), p_u)``, ``p_u`` the
    unchanged fraction of each mask (``[]`` shared, ``[B]`` per sample).

    Example:
        >>> h, probs = torch.randn(4, 2, 8, 8), torch.eye(4)
        >>> g = torch.Generator().manual_seed(0)
        >>> out, p_u = patchup_hidden(h, probs, torch.tensor([1, 0, 3, 2]), 0.5, "soft", 3, 0.5, generator=g)
        >>> bool(torch.allclose(out.mask.mean(dim=(1, 2, 3)), out.lam))
        True
        >>> bool(torch.allclose(out.target.sum(1), torch.ones(4)))
        True
    """
    check_patchup_params(block_size, gamma, mode)
    check_feature_map(h, block_size)
    if isinstance(targets, Tensor):
        targets = Targets(targets.shape[-1]).read(targets, h)
    if targets.spec.dense:
        raise ValueError("PatchUp mixes per-sample targets only: its blocks live at a hidden layer's resolution")
    batch, channels, height, width = h.shape
    own = block_masks(
        1 if shared_mask else batch, channels, height, width, block_size, gamma, dtype=torch.bool, generator=generator
    )
    own = own.to(h.device)
    unchanged = unchanged_fraction(own)
    unchanged = unchanged[0] if shared_mask else unchanged
    share = patchup_own_share(lam, unchanged.to(targets.value.device), mode)
    weight = own_weight(own, lam, mode)
    lam_own = weight.flatten(1).mean(1, dtype=torch.float64).float().expand(batch)
    mixed = _blend(h, index, weight)
    return MixedBatch(mixed, targets.mix(index, share), lam_own, weight, index=index), unchanged


def patchup_batch(
    h: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 2.0,
    mode: str = "soft",
    block_size: int = 7,
    gamma: float = 0.75,
    *,
    shared_mask: bool = False,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Draw a partner index and λ ~ Beta(α, α), then :func:`patchup_hidden`: PatchUp of a feature map
    ``[B, C, H, W]`` (the callback applies it to a hidden layer's output during the forward). ``num_classes``: the
    number of classes, or a :class:`~lightning_mixup.functional.Targets` (multi-label, regression, the pair form).

    Example:
        >>> h, y = torch.randn(8, 4, 8, 8), torch.arange(8) % 4
        >>> out = patchup_batch(h, y, 4, mode="hard", block_size=3, generator=torch.Generator().manual_seed(0))
        >>> out.input.shape, out.lam.shape, bool(torch.allclose(out.target.sum(1), torch.ones(8)))
        (torch.Size([8, 4, 8, 8]), torch.Size([8]), True)
    """
    targets, index = pair_up(h, target, num_classes, alpha, partner, generator, ndim=4, method="PatchUp")
    lam = sample_lam(alpha, h.shape[0] if per_sample else None, generator=generator, device=h.device).to(h.device)
    mixed, _ = patchup_hidden(
        h, targets, index, lam, mode, block_size, gamma, shared_mask=shared_mask, generator=generator
    )
    return mixed

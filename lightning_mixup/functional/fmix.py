"""FMix: binary masks cut from low-frequency Fourier noise.

Harris, Marcu, Painter, Niranjan, Prügel-Bennett, Hare. "FMix: Enhancing Mixed Sample Data
Augmentation", arXiv 2002.12047. Noise with a ``1 / f^decay_power`` spectrum is thresholded so that
its top-⌈λN⌉ or top-⌊λN⌋ pixels (a fair coin picks which, per mask) come from the image itself.
"""

from __future__ import annotations


import torch
from torch import Tensor

from lightning_mixup.checks import check_number

from lightning_mixup.functional.batch import MixedBatch, blend_partners, pair_up
from lightning_mixup.functional.sampling import sample_beta, sample_lam
from lightning_mixup.functional.targets import Targets
from lightning_mixup.functional.validation import check_input


def fourier_noise(
    n: int,
    height: int,
    width: int,
    decay_power: float = 3.0,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` real images ``[n, H, W]`` of Gaussian noise whose spectrum decays as
    ``1 / max(f, 1/max(H, W))^decay_power``.

    Built in one batched ``torch.fft.irfft2``; drawn on the generator's device (else ``device``).

    Example:
        >>> fourier_noise(4, 32, 32, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([4, 32, 32])
    """
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    fy = torch.fft.fftfreq(height, device=dev).view(-1, 1)
    fx = torch.fft.rfftfreq(width, device=dev).view(1, -1)
    freqs = torch.sqrt(fy * fy + fx * fx)
    scale = freqs.clamp_min(1.0 / max(height, width)).pow(-decay_power)
    coeffs = torch.randn(n, height, width // 2 + 1, 2, generator=generator, device=dev)
    spectrum = torch.view_as_complex(coeffs.mul_(scale[..., None]))
    return torch.fft.irfft2(spectrum, s=(height, width))


def _order_keys(values: Tensor) -> Tensor:
    """int32 keys that sort like the float32 ``values`` (an integer sort is ~1.5x faster on CPU)."""
    bits = values.to(torch.float32).view(torch.int32)
    return bits ^ ((bits >> 31) & 0x7FFFFFFF)


def _top_masks(values: Tensor, num: Tensor) -> Tensor:
    """Bool masks ``[n, N]`` of the ``num`` largest of each row of ``values`` ``[n, N]``: a stable descending sort
    cut at ``num`` (ties at the cut taken in raster order), without the sort.

    Selection, not a sort: a row whose ``num`` is over half is its complement's bottom, so every row asks for
    at most ``K = N // 2`` values; padding row ``i`` with ``K − k_i`` values of +inf (and −inf after) makes its
    ``k_i``-th largest the smallest of the padded row's unsorted top ``K``. Fixed shapes, no host sync."""
    n, pixels = values.shape
    half = pixels // 2
    flip = (2 * num > pixels).view(n, 1)
    num = num.to(torch.int32).view(n, 1)  # int32 throughout: an int64 bound would promote [n, N] counts to int64
    k = torch.where(flip, pixels - num, num)
    signed = values * (1.0 - 2.0 * flip.to(values.dtype))
    pad = torch.arange(half, device=values.device).view(1, half) < (half - k)
    padded = torch.cat([signed, torch.where(pad, torch.inf, -torch.inf).to(values.dtype)], dim=1)
    if half:
        threshold = padded.topk(half, dim=1, sorted=False).values.amin(dim=1, keepdim=True)
    else:
        threshold = values.new_full((n, 1), torch.inf)
    above = signed > threshold
    tied = signed == threshold
    seen = tied.cumsum(dim=1, dtype=torch.int32)  # a complemented row leaves out its first ties
    need = k - above.sum(dim=1, keepdim=True, dtype=torch.int32)
    low = torch.where(flip, seen[:, -1:] - need, 0)
    high = torch.where(flip, seen[:, -1:], need)
    masks = above | (tied & (seen > low) & (seen <= high))
    return masks ^ flip


def binarise_masks(
    noise: Tensor, lam: Tensor, max_soft: float = 0.0, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Threshold each noise image ``[n, H, W]`` at its top-``num`` pixels, ``num`` = ⌈λN⌉ or ⌊λN⌋ by a coin.

    With ``max_soft > 0`` the ``2·⌊N·min(max_soft, λ, 1−λ)⌋`` pixels around the threshold ramp linearly
    from 1 to 0 instead. Returns float masks ``[n, H, W]`` (1 = pixel from the image itself) and λ equal
    to each mask's mean. ``lam`` has shape ``[n]``.

    Example:
        >>> noise = fourier_noise(2, 8, 8, 3.0, generator=torch.Generator().manual_seed(0))
        >>> masks, lam = binarise_masks(noise, torch.tensor([0.25, 0.75]))
        >>> masks.mean(dim=(1, 2)), lam
        (tensor([0.2500, 0.7500]), tensor([0.2500, 0.7500]))
    """
    n, height, width = noise.shape
    pixels = height * width
    dev = noise.device
    lam = lam.to(dev, torch.float64).reshape(n)
    coin = torch.rand(n, generator=generator, device=generator.device if generator is not None else dev).to(dev)
    num = torch.where(coin > 0.5, torch.ceil(lam * pixels), torch.floor(lam * pixels)).long()
    if max_soft == 0:
        masks = _top_masks(noise.reshape(n, pixels).to(torch.float32), num).view(n, height, width)
        return masks.to(torch.float32), (num.double() / pixels).float()
    rank = torch.arange(pixels, device=dev).view(1, pixels)
    order = _order_keys(noise.reshape(n, pixels)).argsort(dim=1, descending=True)
    eff_soft = torch.minimum(torch.full_like(lam, max_soft), torch.minimum(lam, 1.0 - lam))
    soft = torch.floor(pixels * eff_soft).long()
    soft = torch.minimum(soft, torch.minimum(num, pixels - num))  # the ramp stays inside the image
    low = (num - soft).view(n, 1)
    width_soft = (2 * soft).view(n, 1)
    ramp = 1.0 - (rank - low).double() / (width_soft - 1).clamp_min(1).double()
    sorted_values = torch.where(rank < low, 1.0, torch.where(rank >= low + width_soft, 0.0, ramp)).to(torch.float32)
    masks = torch.empty_like(sorted_values).scatter_(1, order, sorted_values).view(n, height, width)
    return masks, masks.mean(dim=(1, 2), dtype=torch.float64).float()


def sample_masks(
    lam: Tensor,
    height: int,
    width: int,
    decay_power: float = 3.0,
    max_soft: float = 0.0,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """FMix masks for λ of shape ``[]`` (one mask ``[1, 1, H, W]``) or ``[B]`` (masks ``[B, 1, H, W]``).

    Returns ``(mask, lam)`` with λ corrected to the mask's mean, same shape as the ``lam`` given.

    Example:
        >>> mask, lam = sample_masks(torch.tensor(0.3), 8, 8, generator=torch.Generator().manual_seed(0))
        >>> mask.shape, bool(lam == mask.mean())
        (torch.Size([1, 1, 8, 8]), True)
    """
    n = 1 if lam.ndim == 0 else lam.shape[0]
    noise = fourier_noise(n, height, width, decay_power, generator=generator, device=lam.device)
    masks, lam_exact = binarise_masks(noise, lam, max_soft, generator=generator)
    return masks.unsqueeze(1), lam_exact.reshape(lam.shape)


def fmix(x: Tensor, index: Tensor, mask: Tensor, out: Tensor | None = None) -> Tensor:
    """``mask·x + (1 − mask)·x[index]`` with a mask ``[1 or B, 1, H, W]`` in [0, 1]; exact where the mask is 0 or 1.

    The result goes to ``out`` when given (a reusable buffer, see :func:`~lightning_mixup.functional.mixup`),
    else to a new tensor.

    Example:
        >>> x = torch.arange(2.0).view(2, 1, 1, 1).expand(2, 1, 2, 2)
        >>> mask = torch.tensor([[True, False], [False, True]]).expand(2, 1, 2, 2)
        >>> fmix(x, torch.tensor([1, 0]), mask)[0, 0]  # image 0 (zeros) where the mask holds, image 1 elsewhere
        tensor([[0., 1.],
                [1., 0.]])
    """
    check_input(x, ndim=4, method="FMix")
    mask = mask.to(device=x.device, dtype=x.dtype)
    return blend_partners(x, index, mask, out)


def check_fmix_params(decay_power: float, max_soft: float) -> None:
    """Raise with the bad value unless ``decay_power > 0`` and ``0 <= max_soft <= 0.5``."""
    check_number("decay_power", decay_power, 0.0, open_low=True)
    check_number("max_soft", max_soft, 0.0, 0.5, what="in [0, 0.5]")


def fmix_batch(
    x: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 1.0,
    *,
    decay_power: float = 3.0,
    max_soft: float = 0.0,
    reformulate: bool = False,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Sample a partner index, λ ~ Beta(α, α) and one FMix mask for the batch or one per sample; mix inputs
    ``[B, C, H, W]`` and targets with λ = the mask's mean (the returned ``mask``, ``[1 or B, 1, H, W]``, 1 = the
    sample's own; bool when ``max_soft`` is 0). ``out``: see :func:`fmix`. ``num_classes``: the number of classes,
    or a :class:`~lightning_mixup.functional.Targets` (multi-label, regression, segmentation masks, the pair form).

    ``reformulate``: the paper's reformulation (§4, official ``fmix_loss(..., reformulate=True)``): λ ~ Beta(α+1, α)
    and the mix is an augmentation of the first image, so the targets are its own label alone (the returned
    ``lam`` is still the mask's mean, the share of the image that is its own).

    Example:
        >>> x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
        >>> out = fmix_batch(x, y, 4, decay_power=3.0, generator=torch.Generator().manual_seed(0))
        >>> out.input.shape, out.lam.shape
        (torch.Size([8, 3, 32, 32]), torch.Size([]))
    """
    check_fmix_params(decay_power, max_soft)
    targets, index = pair_up(x, target, num_classes, alpha, partner, generator, ndim=4, method="FMix")
    batch, _, height, width = x.shape
    size = batch if per_sample else None
    if reformulate:
        lam = sample_beta(alpha + 1.0, alpha, size, generator=generator, device=x.device)
    else:
        lam = sample_lam(alpha, size, generator=generator, device=x.device)
    mask, lam = sample_masks(lam, height, width, decay_power, max_soft, generator=generator)
    lam, mixed = lam.to(x.device), fmix(x, index, mask, out)
    mask = mask.to(x.device) if max_soft else mask.to(x.device, torch.bool)  # binary: bool, labels stay hard
    return MixedBatch(mixed, targets.own() if reformulate else targets.mix(index, lam, mask), lam, mask, index=index)

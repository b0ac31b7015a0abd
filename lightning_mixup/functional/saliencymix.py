"""SaliencyMix: a CutMix box centred on the most salient pixel of the partner image.

Uddin, Monira, Shin, Chung, Bae. "SaliencyMix: A Saliency Guided Data Augmentation Strategy for Better
Regularization", ICLR 2021, arXiv 2006.01791 (official code: afm-shahab-uddin/SaliencyMix).

As in the official ``saliency_bbox``: λ ~ Beta(β, β); a box of ``⌊√(1−λ)·H⌋ × ⌊√(1−λ)·W⌋`` is centred on the
argmax of the source (partner) image's saliency map quantised to ``uint8`` (``(map·255).astype("uint8")``, the
first maximum in raster order); its rows are ``[r − ⌊h/2⌋, r + ⌊h/2⌋)`` and its columns ``[c − ⌊w/2⌋, c + ⌊w/2⌋)``,
clipped to the image (so an odd side loses one pixel, as there); the same region of the partner is pasted into the
image and λ is corrected to ``1 − area / (H·W)``. In the official code the saliency is computed on one image only,
``x[index[0]]``, and its box is used for the whole batch (``per_sample=False``); ``per_sample=True`` draws one λ per
sample and centres each sample's box on its own partner's saliency.

The saliency map here is the spectral residual of Hou & Zhang (CVPR 2007) with the steps of OpenCV's
``StaticSaliencySpectralResidual`` (see :func:`spectral_residual_saliency`), batched in ``torch.fft``. Note: the
official scripts call ``cv2.saliency.StaticSaliencyFineGrained_create()`` (Montabone & Soto 2010) instead.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.checks import check_int
from lightning_mixup.functional.batch import MixedBatch, pair_up
from lightning_mixup.functional.cutmix import box_mask, cutmix
from lightning_mixup.functional.sampling import sample_lam
from lightning_mixup.functional.targets import Targets
from lightning_mixup.functional.validation import check_input

LUMA = (0.299, 0.587, 0.114)
"""Weights of R, G, B in the grayscale image of a 3-channel input (OpenCV's ``COLOR_RGB2GRAY``)."""

SALIENCY_SIZE = 64
"""OpenCV's ``StaticSaliencySpectralResidual`` works on the grayscale image resized to 64×64."""

GAUSSIAN_SIZE, GAUSSIAN_SIGMA = 5, 8.0
"""OpenCV's ``GaussianBlur(magnitude, Size(5, 5), 8)`` of the reconstructed magnitude."""


def check_saliency_size(saliency_size: int | None) -> int | None:
    """Return ``saliency_size`` if it is None or an int >= 1 (TypeError / ValueError quoting it otherwise)."""
    return None if saliency_size is None else check_int("saliency_size", saliency_size, 1)


def grayscale(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` → ``[B, H, W]``: the luma ``0.299 R + 0.587 G + 0.114 B`` of 3 channels (taken as RGB),
    the channel itself for one, the channels' mean otherwise."""
    if x.shape[1] == 3:
        weights = torch.tensor(LUMA, dtype=x.dtype, device=x.device)
        return torch.einsum("bchw,c->bhw", x, weights)
    return x.mean(dim=1)


def _reflect101(n: int, pad: int, device: torch.device) -> Tensor:
    """Indices of ``n`` samples padded by ``pad`` on each side with OpenCV's ``BORDER_REFLECT_101`` (``gfedcb|abcdefgh
    |gfedcba``), for any ``n`` (folded as often as needed; ``n = 1`` repeats the one sample)."""
    idx = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)


def separable_filter(images: Tensor, kernel: Tensor) -> Tensor:
    """Correlate ``[n, H, W]`` with the odd 1-D ``kernel`` along rows then columns, ``BORDER_REFLECT_101`` borders
    (OpenCV's ``BORDER_DEFAULT``), output the same size. A loop over the kernel's taps only."""
    taps = kernel.numel()
    pad = taps // 2
    height, width = images.shape[-2:]
    padded = images.index_select(-2, _reflect101(height, pad, images.device))
    padded = padded.index_select(-1, _reflect101(width, pad, images.device))
    kernel = kernel.to(images.dtype)
    rows = sum(kernel[t] * padded[..., t : t + height, :] for t in range(taps))
    return sum(kernel[t] * rows[..., :, t : t + width] for t in range(taps))


def gaussian_kernel(size: int, sigma: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """OpenCV's ``getGaussianKernel(size, sigma)`` for ``sigma > 0``: ``exp(−(i − (size−1)/2)² / 2σ²)``, normalised."""
    offsets = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


def _resize(images: Tensor, height: int, width: int) -> Tensor:
    """Bilinear resize of ``[n, h, w]`` with half-pixel centres and no antialiasing (OpenCV's ``INTER_LINEAR``)."""
    if images.shape[-2:] == (height, width):
        return images
    return F.interpolate(images[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]


def spectral_residual_saliency(x: Tensor, size: int | None = SALIENCY_SIZE) -> Tensor:
    """Spectral-residual saliency maps (Hou & Zhang, CVPR 2007) of images ``[B, C, H, W]``: ``[B, H, W]`` float32 in
    [0, 1], all images at once. No gradient flows through it.

    The steps of OpenCV's ``StaticSaliencySpectralResidual::computeSaliencyImpl`` (as in 4.2, the version the
    official code pins, and since 2018): grayscale (:func:`grayscale`); bilinear resize to ``size × size`` (OpenCV:
    64; None: keep ``H × W``); unscaled 2-D DFT; ``log(amplitude + 1)`` minus its 3×3 box blur (reflect-101
    borders), the phase kept; inverse DFT; magnitude; 5×5 Gaussian blur of σ = 8; squared; divided by its maximum;
    bilinear resize back to ``H × W``. Computed in float64 (float32 on MPS), with exact ``atan2``/``hypot`` where
    OpenCV's ``cartToPolar`` approximates the angle (its maps differ from these by ~1e-4). Because of the ``+ 1``
    the map depends on the scale of the input, as OpenCV's does: the official code passes normalised images.

    Example:
        >>> x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        >>> sal = spectral_residual_saliency(x)
        >>> sal.shape, sal.dtype, bool(sal.min() >= 0), bool(sal.max() <= 1)
        (torch.Size([2, 32, 32]), torch.float32, True, True)
    """
    check_input(x, ndim=4, method="SaliencyMix")
    check_saliency_size(size)
    _, _, height, width = x.shape
    work = torch.float32 if x.device.type == "mps" else torch.float64
    with torch.no_grad():
        gray = grayscale(x.detach().to(work))
        if size is not None:
            gray = _resize(gray, size, size)
        spectrum = torch.fft.fft2(gray)
        log_amplitude = (spectrum.abs() + 1.0).log()  # OpenCV: log(magnitude + 1)
        residual = log_amplitude - separable_filter(log_amplitude, torch.full((3,), 1.0 / 3.0))
        magnitude = torch.fft.ifft2(torch.polar(residual.exp(), spectrum.angle())).abs()
        saliency = separable_filter(magnitude, gaussian_kernel(GAUSSIAN_SIZE, GAUSSIAN_SIGMA)) ** 2
        saliency = saliency / saliency.amax(dim=(-2, -1), keepdim=True).clamp_min(torch.finfo(work).tiny)
        return _resize(saliency.float(), height, width)


def saliency_peaks(saliency: Tensor) -> tuple[Tensor, Tensor]:
    """Row and column ``[n]`` of each map's peak as the official code finds it: the first maximum, in raster order,
    of ``(map·255).astype("uint8")`` (maps ``[n, H, W]`` in [0, 1])."""
    n, _, width = saliency.shape
    levels = torch.floor(saliency.double().clamp(0.0, 1.0) * 255.0).reshape(n, -1)
    flat = levels.argmax(dim=1)  # the first maximal index
    return torch.div(flat, width, rounding_mode="floor"), flat.remainder(width)


def saliency_boxes(saliency: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
    """Boxes centred on each saliency map's peak (:func:`saliency_peaks`) with the official sides and clipping.

    ``saliency``: ``[n, H, W]``; ``lam``: ``[]`` (then ``n`` must be 1) or ``[n]``. Returns int64 boxes
    ``(y1, y2, x1, x2)``, ``[4]`` or ``[n, 4]`` (on the maps' device), and λ corrected to ``1 − area / (H·W)``
    (float32, the shape of ``lam``).

    Example:
        >>> sal = torch.zeros(1, 8, 8); sal[0, 6, 2] = 1.0
        >>> boxes, lam = saliency_boxes(sal, torch.tensor(0.75))
        >>> boxes.tolist(), float(lam)
        ([4, 8, 0, 4], 0.75)
    """
    n, height, width = saliency.shape
    if lam.numel() != n:
        raise ValueError(f"lam must hold one value per saliency map ({n}), got shape {list(lam.shape)}")
    rows, cols = saliency_peaks(saliency)
    ratio = torch.sqrt((1.0 - lam.to(saliency.device, torch.float64).reshape(n)).clamp(0.0, 1.0))
    half_h = torch.floor(ratio * height).long() // 2
    half_w = torch.floor(ratio * width).long() // 2
    y1, y2 = (rows - half_h).clamp(0, height), (rows + half_h).clamp(0, height)
    x1, x2 = (cols - half_w).clamp(0, width), (cols + half_w).clamp(0, width)
    area = ((y2 - y1) * (x2 - x1)).double()
    lam_exact = (1.0 - area / (height * width)).float().reshape(lam.shape)
    boxes = torch.stack([y1, y2, x1, x2], dim=-1)
    return boxes.reshape(*lam.shape, 4), lam_exact


def saliencymix_batch(
    x: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 1.0,
    *,
    saliency_size: int | None = SALIENCY_SIZE,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Sample a partner index and λ ~ Beta(α, α) (α: the official ``beta``); paste the partner's box centred on the
    peak of the spectral-residual saliency (:func:`spectral_residual_saliency` at ``saliency_size``) of the source:
    per batch (official), one box from the saliency of ``x[index[0]]`` for every sample; per sample, one λ and one box
    per sample from its own partner's saliency. Inputs ``[B, C, H, W]``; targets mixed with λ corrected to the pasted
    area. ``out``: see :func:`~lightning_mixup.functional.cutmix`. ``num_classes``: the number of classes, or a
    :class:`~lightning_mixup.functional.Targets` (multi-label, regression, segmentation masks, the pair form).
    The returned ``mask`` is True outside the box (the sample's own pixels), ``[1 or B, 1, H, W]``.

    Example:
        >>> x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
        >>> out = saliencymix_batch(x, y, 4, per_sample=True, generator=torch.Generator().manual_seed(0))
        >>> out.lam.shape, out.mask.shape
        (torch.Size([8]), torch.Size([8, 1, 32, 32]))
    """
    check_saliency_size(saliency_size)
    targets, index = pair_up(x, target, num_classes, alpha, partner, generator, ndim=4, method="SaliencyMix")
    batch, _, height, width = x.shape
    lam = sample_lam(alpha, batch if per_sample else None, generator=generator, device=x.device)
    source = x[index] if per_sample else x[index[:1]]  # official: the saliency of x[rand_index[0]] only
    boxes, lam = saliency_boxes(spectral_residual_saliency(source, saliency_size), lam)
    lam, boxes = lam.to(x.device), boxes.to(x.device)
    own = ~box_mask(boxes, height, width)
    return MixedBatch(cutmix(x, index, boxes, out), targets.mix(index, lam, own), lam, own, index=index)

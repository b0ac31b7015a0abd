"""CIFAR's standard augmentation as batched tensor ops: random crop with zero padding, horizontal flip, normalisation.

The recipe of the CIFAR experiments of mixup (Zhang et al. 2018, arXiv 1710.09412) and of the papers that
followed it: pad each 32x32 image with 4 zero pixels, crop a random 32x32 window, flip it horizontally with
probability 1/2, then standardise each channel with the dataset's mean and std. Pure torch, vectorized over
the batch (no loop over samples), run on the batch's device. Deterministic ops take their randomness as
arguments (``offsets``, ``flip``); samplers take a ``torch.Generator`` and draw on the generator's device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def _check_images(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected a batch of images [B, C, H, W], got {shape}")


def _check_padding(padding: object) -> None:
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")


def _draw_device(generator: torch.Generator | None) -> torch.device:
    """Where a sampler draws: on its generator's device, on the CPU without one."""
    return torch.device("cpu") if generator is None else generator.device


def sample_crop_offsets(n: int, padding: int, generator: torch.Generator | None = None) -> Tensor:
    """Top-left corners ``[n, 2]`` (row, column), each uniform in ``0..2*padding``, of crops in a padded image.

    Example:
        >>> offsets = sample_crop_offsets(5, 4, torch.Generator().manual_seed(0))
        >>> offsets.shape, bool(((0 <= offsets) & (offsets <= 8)).all())
        (torch.Size([5, 2]), True)
    """
    _check_padding(padding)
    device = _draw_device(generator)
    return torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=device)


def sample_flips(n: int, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Which of ``n`` images to flip: a bool tensor ``[n]``, each True with probability ``p``.

    Example:
        >>> sample_flips(4, 1.0).tolist()
        [True, True, True, True]
    """
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
    device = _draw_device(generator)
    return torch.rand(n, generator=generator, device=device) < p


def crop(x: Tensor, offsets: Tensor, padding: int) -> Tensor:
    """Zero-pad ``x`` by ``padding`` pixels on each side, then cut image ``i``'s ``H x W`` window at ``offsets[i]``.

    An offset of ``(padding, padding)`` returns the image unchanged; pixels shifted in from outside the image
    are exact zeros. One pad and one gather for the whole batch.

    Example:
        >>> x = torch.ones(1, 1, 3, 3)
        >>> crop(x, torch.tensor([[0, 2]]), padding=1)[0, 0]
        tensor([[0., 0., 0.],
                [1., 1., 0.],
                [1., 1., 0.]])
    """
    _check_images(x)
    _check_padding(padding)
    b, _, h, w = x.shape
    if offsets.shape != (b, 2):
        raise ValueError(f"offsets must have shape [{b}, 2] for a batch of {b}, got {tuple(offsets.shape)}")
    if offsets.numel() and (int(offsets.min()) < 0 or int(offsets.max()) > 2 * padding):
        raise ValueError(f"offsets must lie in [0, {2 * padding}] for padding={padding}, got {offsets.tolist()}")
    offsets = offsets.to(x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = offsets[:, 0, None] + torch.arange(h, device=x.device)  # [B, H]
    cols = offsets[:, 1, None] + torch.arange(w, device=x.device)  # [B, W]
    batch = torch.arange(b, device=x.device)[:, None, None]
    # advanced indices around a slice: the result is [B, H, W, C]
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def hflip(x: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the images where ``flip`` (bool ``[B]``) is True.

    Example:
        >>> hflip(torch.tensor([[[[1, 2]]], [[[3, 4]]]]), torch.tensor([True, False])).flatten().tolist()
        [2, 1, 3, 4]
    """
    _check_images(x)
    if flip.shape != (x.shape[0],) or flip.dtype != torch.bool:
        raise ValueError(f"flip must be a bool tensor of shape [{x.shape[0]}], got {flip.dtype} {tuple(flip.shape)}")
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def random_crop(x: Tensor, padding: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """:func:`crop` at offsets drawn by :func:`sample_crop_offsets` (CIFAR: ``padding=4``).

    Example:
        >>> random_crop(torch.rand(8, 3, 32, 32), 4, torch.Generator().manual_seed(0)).shape
        torch.Size([8, 3, 32, 32])
    """
    _check_images(x)
    return crop(x, sample_crop_offsets(x.shape[0], padding, generator), padding)


def random_hflip(x: Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """:func:`hflip` of the images chosen by :func:`sample_flips`.

    Example:
        >>> x = torch.rand(4, 3, 8, 8)
        >>> torch.equal(random_hflip(x, p=1.0), x.flip(-1))
        True
    """
    _check_images(x)
    return hflip(x, sample_flips(x.shape[0], p, generator))


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel of a batch ``[B, C, H, W]``.

    Example:
        >>> normalize(torch.ones(1, 2, 1, 1), mean=(0.5, 1.0), std=(0.5, 2.0)).flatten().tolist()
        [1.0, 0.0]
    """
    _check_images(x)
    if len(mean) != x.shape[1] or len(std) != x.shape[1]:
        raise ValueError(f"mean and std need one value per channel ({x.shape[1]}), got {tuple(mean)!r}, {tuple(std)!r}")
    if any(not s > 0 for s in std):
        raise ValueError(f"std must be > 0, got {tuple(std)!r}")
    shape = (1, -1, 1, 1)
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(shape)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(shape)
    return (x - m) / s

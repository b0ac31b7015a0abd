"""CutMix: paste a box of the partner image; λ is the area that stays from the image itself.

Yun, Han, Oh, Chun, Choe, Yoo. "CutMix: Regularization Strategy to Train Strong Classifiers with
Localizable Features", ICCV 2019, arXiv 1905.04899.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_mixup.functional.batch import MixedBatch, blend_partners, check_out, pair_up
from lightning_mixup.functional.sampling import sample_lam
from lightning_mixup.functional.targets import TargetBatch, Targets
from lightning_mixup.functional.validation import check_input


def sample_boxes(
    lam: Tensor, height: int, width: int, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Boxes ``[c − ⌊cut/2⌋, c + ⌊cut/2⌋)`` with ``cut = ⌊√(1−λ)·side⌋`` around a uniform centre ``c``, clipped to the
    image: the official ``rand_bbox`` (clovaai/CutMix-PyTorch; SaliencyMix and SnapMix use the same), so an odd
    ``cut`` loses a pixel.

    Returns ``(boxes, lam)``: int64 boxes ``(y1, y2, x1, x2)`` of shape ``[4]`` (scalar ``lam``) or
    ``[B, 4]``, on the generator's device, and λ corrected to ``1 − area / (H·W)``, the exact fraction
    of the image outside the box.

    Example:
        >>> boxes, lam = sample_boxes(torch.tensor(0.75), 32, 32, generator=torch.Generator().manual_seed(0))
        >>> boxes.shape, float(lam) >= 0.75
        (torch.Size([4]), True)
    """
    device = generator.device if generator is not None else lam.device
    lam = lam.to(device=device, dtype=torch.float64)
    ratio = torch.sqrt((1.0 - lam).clamp(0.0, 1.0))
    cut_h = torch.floor(ratio * height).long()
    cut_w = torch.floor(ratio * width).long()
    cy = torch.randint(0, height, lam.shape, generator=generator, device=device)
    cx = torch.randint(0, width, lam.shape, generator=generator, device=device)
    y1 = (cy - cut_h // 2).clamp(0, height)
    y2 = (cy + cut_h // 2).clamp(0, height)
    x1 = (cx - cut_w // 2).clamp(0, width)
    x2 = (cx + cut_w // 2).clamp(0, width)
    area = (y2 - y1) * (x2 - x1)
    lam_exact = (1.0 - area.double() / (height * width)).float()
    return torch.stack([y1, y2, x1, x2], dim=-1), lam_exact


def box_mask(boxes: Tensor, height: int, width: int) -> Tensor:
    """Boolean mask that is True inside each box: ``[1, 1, H, W]`` for boxes ``[4]``, ``[B, 1, H, W]`` for
    ``[B, 4]``.

    Example:
        >>> box_mask(torch.tensor([[2, 6, 2, 6]]), 8, 8).float().mean()  # a 4×4 box of an 8×8 image
        tensor(0.2500)
    """
    rows, cols = _box_spans(boxes, height, width)
    return (rows[:, :, None] & cols[:, None, :]).unsqueeze(1)


def _box_spans(boxes: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Rows ``[n, H]`` and columns ``[n, W]`` inside each box: a box is their outer product."""
    boxes = boxes.reshape(-1, 4, 1)
    rows = torch.arange(height, device=boxes.device)
    cols = torch.arange(width, device=boxes.device)
    return (rows >= boxes[:, 0]) & (rows < boxes[:, 1]), (cols >= boxes[:, 2]) & (cols < boxes[:, 3])


def cutmix(x: Tensor, index: Tensor, boxes: Tensor, out: Tensor | None = None) -> Tensor:
    """Paste ``x[index]`` into ``x`` inside ``boxes`` (``[4]`` for the batch or ``[B, 4]`` per sample).

    The result goes to ``out`` when given (a reusable buffer, see :func:`~lightning_mixup.functional.mixup`),
    else to a new tensor.

    Example:
        >>> x = torch.zeros(2, 1, 4, 4); x[1] = 1
        >>> cutmix(x, torch.tensor([1, 0]), torch.tensor([0, 2, 0, 2]))[0, 0]
        tensor([[1., 1., 0., 0.],
                [1., 1., 0., 0.],
                [0., 0., 0., 0.],
                [0., 0., 0., 0.]])
    """
    check_input(x, ndim=4, method="CutMix")
    if boxes.ndim == 1 and boxes.device.type == "cpu" and not torch.compiler.is_compiling():
        # reading a box held on the CPU waits for no device; on an accelerator or compiled: the masked form below
        y1, y2, x1, x2 = boxes.tolist()
        out = x.clone() if out is None else check_out(out, x).copy_(x)
        out[:, :, y1:y2, x1:x2] = torch.index_select(x[:, :, y1:y2, x1:x2], 0, index)
        return out
    rows, cols = _box_spans(boxes.to(x.device), x.shape[2], x.shape[3])
    keep = 1 - rows.to(x.dtype)[:, None, :, None] * cols.to(x.dtype)[:, None, None, :]  # 0 inside the box
    return blend_partners(x, index, keep, out)  # exact: the weights are 0 or 1


def cutmix_batch(
    x: Tensor,
    target: Tensor | TargetBatch,
    num_classes: int | Targets,
    alpha: float = 1.0,
    *,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Sample a partner index, λ ~ Beta(α, α) and a box (one for the batch or one per sample); mix
    inputs ``[B, C, H, W]`` and targets with λ corrected to the pasted area. ``out``: see :func:`cutmix`.
    ``num_classes``: the number of classes, or a :class:`~lightning_mixup.functional.Targets` (multi-label,
    regression, segmentation masks, the pair form).
    The returned ``mask`` is True outside the box (the sample's own pixels), ``[1 or B, 1, H, W]``.

    Example:
        >>> x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
        >>> out = cutmix_batch(x, y, 4, per_sample=True, generator=torch.Generator().manual_seed(0))
        >>> out.lam.shape
        torch.Size([8])
    """
    targets, index = pair_up(x, target, num_classes, alpha, partner, generator, ndim=4, method="CutMix")
    batch, _, height, width = x.shape
    lam = sample_lam(alpha, batch if per_sample else None, generator=generator, device=x.device)
    boxes, lam = sample_boxes(lam, height, width, generator=generator)
    lam = lam.to(x.device)
    own = ~box_mask(boxes.to(x.device), height, width)
    return MixedBatch(cutmix(x, index, boxes, out), targets.mix(index, lam, own), lam, own, index=index)

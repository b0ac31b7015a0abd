"""SnapMix: a box of the partner, resized into a box of another size in the image; each label is weighted by the
share of its image's class activation map (CAM) that the mixed image holds.

Huang, Wang, Tao. "SnapMix: Semantically Proportional Mixing for Augmenting Fine-grained Data", AAAI 2021,
arXiv 2012.04846 (official code: Shaoli-Huang/SnapMix, ``utils/mixmethod.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.functional.batch import MixedBatch, check_out, pair_up
from lightning_mixup.functional.cutmix import box_mask, sample_boxes
from lightning_mixup.functional.sampling import partners, sample_lam
from lightning_mixup.functional.targets import Targets, as_targets

_EPS = 1e-8  # the official denominator guard


def class_activation_maps(
    features: Tensor, weight: Tensor, bias: Tensor | None, labels: Tensor, size: tuple[int, int]
) -> Tensor:
    """The CAM of each sample's own class, as the official ``get_spm``: ``Σ_k w[y, k]·relu(f_k) + b[y]`` on the
    feature map ``[B, K, h, w]``, upsampled to ``size`` (bilinear, ``align_corners=False``), then shifted to a
    minimum of 0 and divided by its sum (a constant map, up to rounding, becomes all zeros: SnapMix falls back
    to the box areas for it). Returns float ``[B, H, W]`` maps that sum to 1.

    Example:
        >>> cams = class_activation_maps(torch.rand(2, 4, 3, 3), torch.randn(5, 4), None, torch.tensor([0, 3]), (8, 8))
        >>> cams.shape, torch.allclose(cams.sum((1, 2)), torch.ones(2))
        (torch.Size([2, 8, 8]), True)
    """
    if features.ndim != 4:
        raise ValueError(f"SnapMix needs a feature map [B, K, h, w], got shape {list(features.shape)}")
    if weight.ndim != 2 or weight.shape[1] != features.shape[1]:
        raise ValueError(
            f"SnapMix: the classifier weight {list(weight.shape)} does not match the feature map's "
            f"{features.shape[1]} channels {list(features.shape)}"
        )
    features = F.relu(features.float())
    labels = labels.to(features.device).long()
    cams = torch.einsum("bk,bkhw->bhw", weight.float()[labels], features)
    if bias is not None:
        cams = cams + bias.float()[labels].view(-1, 1, 1)
    cams = F.interpolate(cams.unsqueeze(1), size=size, mode="bilinear", align_corners=False).squeeze(1)
    scale = cams.abs().amax(dim=(1, 2), keepdim=True)
    cams = cams - cams.amin(dim=(1, 2), keepdim=True)
    flat = cams.amax(dim=(1, 2), keepdim=True) <= 1e-6 * scale  # constant up to rounding (bias, interpolation)
    total = cams.sum(dim=(1, 2), keepdim=True)
    keep = (total > 0) & ~flat
    return torch.where(keep, cams / total.clamp_min(torch.finfo(cams.dtype).tiny), torch.zeros_like(cams))


def _source_coords(boxes: Tensor, boxes_from: Tensor, size: int, lo: int, hi: int) -> Tensor:
    """For every pixel ``i`` of a side of ``size``, the coordinate in the source box it reads when the source span
    ``[a1, a2)`` is stretched onto the target span ``[b1, b2)`` as ``F.interpolate(..., align_corners=True)`` does:
    ``a1 + (i − b1)·(a2 − a1 − 1)/(b2 − b1 − 1)`` (``a1`` for a span of one pixel), clamped into the source span.
    ``lo``/``hi`` are the columns of the box's start and end. Returns float64 ``[n, size]``."""
    b1, b2 = boxes[:, lo, None].double(), boxes[:, hi, None].double()
    a1, a2 = boxes_from[:, lo, None].double(), boxes_from[:, hi, None].double()
    step = torch.where(b2 - b1 > 1, (a2 - a1 - 1) / (b2 - b1 - 1).clamp_min(1), torch.zeros_like(b1))
    i = torch.arange(size, device=boxes.device, dtype=torch.float64)
    return torch.minimum(torch.maximum(a1 + (i - b1) * step, a1), (a2 - 1).clamp_min(a1))


def _lerp_along(x: Tensor, coords: Tensor, dim: int) -> Tensor:
    """Linear interpolation of ``x`` ``[B, C, H, W]`` along ``dim`` (2 or 3) at ``coords`` ``[1 or B, size]``."""
    size = x.shape[dim]
    low = coords.floor()
    frac = (coords - low).to(x.dtype)
    low = low.long().clamp(0, size - 1)
    high = (low + 1).clamp(max=size - 1)
    shape = [coords.shape[0], 1, 1, 1]
    shape[dim] = size
    expand = list(x.shape)
    first = x.gather(dim, low.view(shape).expand(expand))
    second = x.gather(dim, high.view(shape).expand(expand))
    return torch.lerp(first, second, frac.view(shape))


def paste_resized(x: Tensor, index: Tensor, boxes: Tensor, boxes_from: Tensor) -> Tensor:
    """The partners ``x[index]`` resampled so that each partner's box ``boxes_from`` fills the sample's box
    ``boxes`` (bilinear, ``align_corners=True``, as the official ``F.interpolate``); boxes ``(y1, y2, x1, x2)``,
    ``[4]`` for the batch or ``[B, 4]``. Only the pixels inside ``boxes`` are meaningful. Vectorised: every
    sample has its own scale.

    Example:
        >>> x = torch.arange(16.0).view(1, 1, 4, 4).repeat(2, 1, 1, 1)
        >>> paste_resized(x, torch.tensor([1, 0]), torch.tensor([0, 4, 0, 4]), torch.tensor([0, 2, 0, 2]))[0, 0, 0]
        tensor([0.0000, 0.3333, 0.6667, 1.0000])
    """
    boxes, boxes_from = boxes.to(x.device).reshape(-1, 4), boxes_from.to(x.device).reshape(-1, 4)
    height, width = x.shape[2], x.shape[3]
    rows = _source_coords(boxes, boxes_from, height, 0, 1)
    cols = _source_coords(boxes, boxes_from, width, 2, 3)
    partner_images = partners(x, index)
    return _lerp_along(_lerp_along(partner_images, rows, 2), cols, 3)


def _box_area(boxes: Tensor) -> Tensor:
    return (boxes[..., 1] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 2])


def snapmix_batch(
    x: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 5.0,
    *,
    cams: Tensor | None = None,
    saliency: Tensor | None = None,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """SnapMix on images ``[B, C, H, W]`` with the CAMs ``cams`` ``[B, H, W]`` of each sample's own label
    (non-negative, each summing to 1: :func:`class_activation_maps`; any non-negative maps work, the masses are
    divided by each map's sum). ``saliency``: the same maps under the name the other saliency ops (and the
    gallery) use; give one of the two.

    Draws a partner index, λ, λ′ ~ Beta(α, α) and two CutMix boxes (:func:`~lightning_mixup.functional.cutmix.
    sample_boxes`): the sample's box of λ and the partner's box of λ′ (one pair for the batch, or one per sample
    with ``per_sample``). The partner's box is resized (bilinear) into the sample's box. The label weights are
    ``λ_a = 1 − (the sample's CAM mass inside its box)`` and ``λ_b = (the partner's CAM mass inside its box)``, so
    ``λ_a + λ_b`` is not 1 in general. As in the official code: a pair with identical labels gets
    ``λ_a + λ_b`` on both terms (its row then sums to ``2·(λ_a + λ_b)``); a CAM without mass (constant map) falls
    back to the box areas; an empty box leaves the sample unmixed (``λ_a = 1``, ``λ_b = 0``).

    Targets: multiclass only, mixed form only: float rows ``λ_a·onehot(y) + λ_b·onehot(y[index])`` (or the same
    combination of probability rows) that do **not** sum to 1, so that the cross-entropy of the soft targets is the
    official loss ``λ_a·CE(y) + λ_b·CE(y[index])``. The pair form is refused (a
    :class:`~lightning_mixup.functional.PairTarget`'s weights sum to 1).

    Returns ``lam`` = λ_a ``[B]`` (before the identical-label rule), the ``mask`` (bool, True outside the sample's
    box, ``[1 or B, 1, H, W]``), ``sources = (x, resized partners)`` (``input = where(mask, x, resized)``) and
    ``index``. ``out``: a buffer for the mixed input (see :func:`~lightning_mixup.functional.cutmix`).

    Example:
        >>> x, y = torch.randn(4, 3, 16, 16), torch.arange(4)
        >>> cams = torch.full((4, 16, 16), 1 / 256)
        >>> out = snapmix_batch(x, y, 4, cams=cams, generator=torch.Generator().manual_seed(0))
        >>> out.target.shape, out.lam.shape
        (torch.Size([4, 4]), torch.Size([4]))
    """
    spec = as_targets(num_classes)
    if spec.task != "multiclass" or spec.form != "mixed":
        raise ValueError(
            f"SnapMix mixes multiclass targets into the mixed form only (its weights do not sum to 1), got "
            f"task={spec.task!r}, targets={spec.form!r}"
        )
    targets, index = pair_up(x, target, spec, alpha, partner, generator, ndim=4, method="SnapMix")
    batch, _, height, width = x.shape
    if (cams is None) == (saliency is None):
        raise ValueError("SnapMix needs the CAMs [B, H, W]: give exactly one of cams=... or saliency=...")
    cams = cams if cams is not None else saliency
    if not isinstance(cams, Tensor) or cams.shape != (batch, height, width):
        got = list(cams.shape) if isinstance(cams, Tensor) else type(cams).__name__
        raise ValueError(f"SnapMix needs cams of shape [B, H, W] = {[batch, height, width]}, got {got}")
    size = batch if per_sample else None
    lam_draw = sample_lam(alpha, size, generator=generator, device=x.device)
    lam_from = sample_lam(alpha, size, generator=generator, device=x.device)
    boxes, area_lam = sample_boxes(lam_draw, height, width, generator=generator)
    boxes_from, _ = sample_boxes(lam_from, height, width, generator=generator)
    boxes, boxes_from = boxes.to(x.device), boxes_from.to(x.device)
    area_lam = area_lam.to(x.device).expand(batch)
    valid = ((_box_area(boxes) > 0) & (_box_area(boxes_from) > 0)).expand(batch)  # official: area > 0 and area1 > 0

    inside = box_mask(boxes, height, width)  # [1 or B, 1, H, W]
    own = ~(inside & valid.view(-1, 1, 1, 1))
    resized = paste_resized(x, index, boxes, boxes_from)
    mixed = torch.where(own, x, resized)
    if out is not None:
        mixed = check_out(out, x).copy_(mixed)

    cams = cams.to(device=x.device, dtype=torch.float32)
    total = cams.sum(dim=(1, 2))
    lam_a = 1 - (cams * inside[:, 0]).sum(dim=(1, 2)) / (total + _EPS)
    partner_cams = cams[index]
    lam_b = (partner_cams * box_mask(boxes_from, height, width)[:, 0]).sum(dim=(1, 2)) / (total[index] + _EPS)
    lam_a = torch.where(torch.isfinite(total) & (total > 0), lam_a, area_lam)  # official: NaN CAM -> box area
    lam_b = torch.where(torch.isfinite(total[index]) & (total[index] > 0), lam_b, 1 - area_lam)
    lam_a = torch.where(valid, lam_a, torch.ones_like(lam_a))
    lam_b = torch.where(valid, lam_b, torch.zeros_like(lam_b))

    value = targets.value
    same = (value == value[index]).all(dim=1)  # identical labels: both weights become λ_a + λ_b (official)
    weight_a = torch.where(same, lam_a + lam_b, lam_a)
    weight_b = torch.where(same, lam_a + lam_b, lam_b)
    mixed_target = weight_a[:, None] * value + weight_b[:, None] * value[index]
    return MixedBatch(mixed, mixed_target, lam_a, own, sources=(x, resized), index=index)

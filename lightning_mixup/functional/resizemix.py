"""ResizeMix: paste the whole partner image, shrunk by a scale τ, at a random place; λ is the area left to the image.

Qin, Fang, Zhang, Liu, Wang, Wang. "ResizeMix: Mixing Data with Preserved Object Information and True Labels",
arXiv 2012.11101 (2020). No official code; the reference implementations are OpenMixup's ``resizemix``
(``Westlake-AI/openmixup``: τ ~ U(0.1, 0.8), ``use_alpha``, nearest interpolation) and mmpretrain's ``ResizeMix``
(bilinear; its ``lam_min``/``lam_max`` bound the kept area, not τ).

A box of side ``⌊τ·H⌋ × ⌊τ·W⌋`` is placed at a uniform centre and clipped to the image, as both reimplementations do
(``placement="clip"``; ``"inside"`` keeps the whole box in the image instead), and the whole partner is resized to the
box as it stands after clipping. λ = 1 − box area / (H·W), the exact share of each image that is its own.

How the partners are resized without a loop: with one box for the batch, the batch is resized once to the box's size
(what the reimplementations do: ``F.interpolate``; for ``nearest`` two index selections with the row and column
indices below, 3x faster on CPU and the same pixels). With one box per sample every partner has its own size, so the
pasted pixels of the whole batch are computed at once from per-sample source coordinates, in one full-size pass like
CutMix's (an ``F.interpolate`` per distinct size would loop over up to B sizes):

- ``nearest``: a gather. The source index of each output pixel is computed in float32 as ``F.interpolate`` computes
  it, so the result is bit-identical to it for float32, float16 and bfloat16 inputs (for float64, F.interpolate on
  CPU rounds a few exact ratios such as 11·26/22 the other way and picks the neighbouring pixel; both forms here keep
  the float32 choice). A gather takes any dtype, so class-index segmentation masks follow the image exactly.
- ``bilinear``, ``bicubic``: one ``F.grid_sample`` whose per-sample grid puts each box pixel at the source point
  ``F.interpolate(..., align_corners=False)`` samples (``padding_mode="border"`` reproduces its clamping at the
  edges). Equal up to the rounding of the grid: ~1e-12 in float64, ~1e-4 in float32 at 224 px.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.checks import check_choice
from lightning_mixup.functional.batch import MixedBatch, check_out, pair_up
from lightning_mixup.functional.cutmix import box_mask
from lightning_mixup.functional.sampling import sample_beta
from lightning_mixup.functional.targets import Targets
from lightning_mixup.functional.validation import check_input

INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
PLACEMENTS = ("clip", "inside")
SAMPLINGS = ("uniform", "beta", "lam")


def _wide(device: torch.device) -> torch.dtype:
    """float64 for the draws and coordinates, float32 where the device has no float64 (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def check_scope(scope: object) -> tuple[float, float]:
    """``scope`` as ``(low, high)`` floats: a sequence of two numbers with ``0 <= low <= high <= 1``; ``TypeError``
    for anything else than two numbers, ``ValueError`` for a pair out of range."""
    message = f"scope must be a pair (low, high) of numbers with 0 <= low <= high <= 1, got {scope!r}"
    if isinstance(scope, Tensor):
        scope = scope.tolist()
    if not isinstance(scope, Sequence) or isinstance(scope, str):
        raise TypeError(message)
    if len(scope) != 2:
        raise ValueError(message)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scope):
        raise TypeError(message)
    low, high = float(scope[0]), float(scope[1])
    if not 0.0 <= low <= high <= 1.0:  # NaN fails too
        raise ValueError(message)
    return low, high


def check_resizemix_params(
    scope: object, sampling: object, interpolation: object, placement: object
) -> tuple[float, float]:
    """Raise with the bad value unless every ResizeMix option is valid; returns ``scope`` as floats."""
    check_choice("sampling", sampling, SAMPLINGS)
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    check_choice("placement", placement, PLACEMENTS)
    return check_scope(scope)


def sample_scales(
    size: int | None,
    scope: tuple[float, float] = (0.1, 0.8),
    alpha: float = 1.0,
    sampling: str = "uniform",
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """The scale τ of the pasted partner (side ratio), float64 (float32 on MPS) ``[]`` (``size=None``) or ``[size]``.

    ``"uniform"``: τ ~ U(scope) (the paper; OpenMixup's default). ``"beta"``: τ ~ Beta(α, α), drawn again from
    U(scope) where it falls outside (OpenMixup's ``use_alpha=True``; with α = 1 the same law as ``"uniform"``).
    ``"lam"``: mmpretrain's reading, where ``scope`` bounds the kept area: λ₀ = low + (high − low)·Beta(α, α),
    τ = √(1 − λ₀). Drawn on the generator's device (else ``device``).

    Example:
        >>> tau = sample_scales(1000, (0.1, 0.8), generator=torch.Generator().manual_seed(0))
        >>> bool(((tau >= 0.1) & (tau <= 0.8)).all())
        True
    """
    low, high = check_scope(scope)
    check_choice("sampling", sampling, SAMPLINGS)
    dev = generator.device if generator is not None else torch.device(device or "cpu")
    shape = () if size is None else (int(size),)
    wide = _wide(dev)
    if sampling == "lam":
        beta = sample_beta(alpha, alpha, size, generator=generator, device=dev).to(wide)
        return torch.sqrt(1.0 - (low + (high - low) * beta))
    uniform = low + (high - low) * torch.rand(shape, dtype=wide, generator=generator, device=dev)
    if sampling == "uniform":
        return uniform
    beta = sample_beta(alpha, alpha, size, generator=generator, device=dev).to(wide)
    return torch.where((beta < low) | (beta > high), uniform, beta)


def sample_paste_boxes(
    scale: Tensor, height: int, width: int, placement: str = "clip", *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Boxes of side ``⌊τ·H⌋ × ⌊τ·W⌋`` for scales τ (``[]`` or ``[B]``, clamped to [0, 1]).

    ``"clip"``: a uniform centre, the box clipped to the image (OpenMixup, mmpretrain); ``"inside"``: a uniform
    top-left corner among those that keep the whole box in the image. Returns int64 boxes ``(y1, y2, x1, x2)``
    (``[4]`` or ``[B, 4]``, on the generator's device) and λ = 1 − area / (H·W), float32, the scale's shape.

    Example:
        >>> boxes, lam = sample_paste_boxes(torch.tensor(0.5), 32, 32, "inside", generator=torch.Generator())
        >>> int(boxes[1] - boxes[0]), float(lam)
        (16, 0.75)
    """
    check_choice("placement", placement, PLACEMENTS)
    device = generator.device if generator is not None else scale.device
    scale = scale.to(device=device, dtype=_wide(device)).clamp(0.0, 1.0)  # no check: it would wait for the device
    cut_h = torch.floor(scale * height).long()
    cut_w = torch.floor(scale * width).long()
    if placement == "clip":
        cy = torch.randint(0, height, scale.shape, generator=generator, device=device)
        cx = torch.randint(0, width, scale.shape, generator=generator, device=device)
        y1, x1 = cy - cut_h // 2, cx - cut_w // 2
        y1, y2 = y1.clamp(0, height), (y1 + cut_h).clamp(0, height)
        x1, x2 = x1.clamp(0, width), (x1 + cut_w).clamp(0, width)
    else:
        u = torch.rand((2, *scale.shape), dtype=scale.dtype, generator=generator, device=device)
        y1 = torch.minimum(torch.floor(u[0] * (height - cut_h + 1)).long(), height - cut_h)
        x1 = torch.minimum(torch.floor(u[1] * (width - cut_w + 1)).long(), width - cut_w)
        y2, x2 = y1 + cut_h, x1 + cut_w
    area = (y2 - y1) * (x2 - x1)
    lam = (1.0 - area.to(scale.dtype) / (height * width)).float()
    return torch.stack([y1, y2, x1, x2], dim=-1), lam


def _nearest_source(dst: Tensor, length: Tensor, size: int) -> Tensor:
    """Source row (or column) of output rows ``dst`` ``[n, L]`` (counted from the box's start) for a resize of ``size``
    rows to ``length`` rows (``[n]``): ``⌊dst·(size / length)⌋`` in float32, as ``F.interpolate(mode="nearest")``
    computes it for float32, float16 and bfloat16 inputs; clamped to the image (rows outside the box)."""
    length = length.clamp_min(1).float()
    scale = torch.full_like(length, float(size)) / length  # a correctly rounded division, no copy to the device
    return torch.floor(dst.float() * scale[:, None]).long().clamp(0, size - 1)


def _grid_coordinate(start: Tensor, length: Tensor, size: int) -> Tensor:
    """``F.grid_sample`` coordinate ``[n, size]`` (align_corners=False) of each output row: the point
    ``(i − start + ½)·(size / length) − ½`` where ``F.interpolate(align_corners=False)`` samples."""
    dtype = _wide(start.device)
    dst = torch.arange(size, device=start.device, dtype=dtype) - start[:, None].to(dtype)
    return 2.0 * (dst + 0.5) / length.clamp_min(1)[:, None].to(dtype) - 1.0  # = (2·src + 1) / size − 1


def _resized_partners(partners: Tensor, boxes: Tensor, interpolation: str, out: Tensor | None = None) -> Tensor:
    """``[B, C, H, W]``: inside each box ``boxes[b]`` the whole ``partners[b]`` resized to the box (any value
    outside). ``nearest`` writes into ``out`` when given (contiguous, not ``partners``' memory)."""
    batch, channels, height, width = partners.shape
    y1, y2, x1, x2 = boxes.to(partners.device).unbind(dim=1)
    if interpolation == "nearest":
        rows = _nearest_source(torch.arange(height, device=y1.device) - y1[:, None], y2 - y1, height)
        cols = _nearest_source(torch.arange(width, device=x1.device) - x1[:, None], x2 - x1, width)
        flat = (rows[:, :, None] * width + cols[:, None, :]).view(batch, 1, height * width)
        flat = flat.expand(batch, channels, -1)
        source = partners.reshape(batch, channels, height * width)
        if out is None:
            return source.gather(2, flat).view(batch, channels, height, width)
        torch.gather(source, 2, flat, out=out.view(batch, channels, height * width))
        return out
    low = partners.dtype in (torch.float16, torch.bfloat16)  # a low-precision grid would misplace the samples
    work = partners.float() if low else partners
    grid = torch.empty(batch, height, width, 2, dtype=work.dtype, device=work.device)
    grid[..., 0] = _grid_coordinate(x1, x2 - x1, width).to(work.dtype)[:, None, :]
    grid[..., 1] = _grid_coordinate(y1, y2 - y1, height).to(work.dtype)[:, :, None]
    resized = F.grid_sample(work, grid, mode=interpolation, padding_mode="border", align_corners=False)
    return resized.to(partners.dtype) if low else resized


def _resized_patch(source: Tensor, box: list[int], interpolation: str) -> Tensor:
    """The whole of ``source`` ``[B, C, H, W]`` resized to one box's size ``[B, C, h, w]``: ``nearest`` by two index
    selections with :func:`_nearest_source`'s indices (the per-sample path's, and ``F.interpolate``'s), the others by
    ``F.interpolate(align_corners=False)``."""
    y1, y2, x1, x2 = box
    if interpolation != "nearest":
        return F.interpolate(source, size=(y2 - y1, x2 - x1), mode=interpolation, align_corners=False)
    height, width = source.shape[2:]
    rows = torch.arange(y2 - y1, device=source.device)
    cols = torch.arange(x2 - x1, device=source.device)
    rows = _nearest_source(rows[None], rows[-1:] + 1, height)[0]  # rows[-1] + 1 = h
    cols = _nearest_source(cols[None], cols[-1:] + 1, width)[0]
    return source.index_select(2, rows).index_select(3, cols)


def _paste(
    base: Tensor,
    source: Tensor,
    index: Tensor | None,
    boxes: Tensor,
    interpolation: str,
    out: Tensor | None,
    own: Tensor | None = None,
    permutation: bool = False,
) -> Tensor:
    """``base`` with ``source[index]`` (``source`` when ``index`` is None) resized into ``boxes``; ``own``: the
    boxes' :func:`~lightning_mixup.functional.box_mask` negated, when the caller has it; ``permutation``: ``index``
    is a permutation (the partners of :func:`~lightning_mixup.functional.partner_index` are)."""
    batch, _, height, width = base.shape
    if boxes.ndim == 1 and base.is_floating_point():
        box = boxes.tolist()
        y1, y2, x1, x2 = box
        result = base.clone() if out is None else check_out(out, base).copy_(base)
        if y2 > y1 and x2 > x1:
            patch = _resized_patch(source, box, interpolation)
            result[:, :, y1:y2, x1:x2] = patch if index is None else patch.index_select(0, index)
        return result
    boxes = boxes.to(base.device).reshape(-1, 4).expand(batch, 4)
    own = ~box_mask(boxes, height, width) if own is None else own.expand(batch, 1, height, width)
    if out is not None:
        check_out(out, base)
    if interpolation != "nearest" and index is not None and permutation:
        # resample each source into the box of the sample that borrows it, then reorder into ``out``: one
        # full-size tensor fewer than resampling ``source[index]`` (``index`` must be a permutation)
        borrower = torch.empty_like(index).index_copy_(0, index, torch.arange(batch, device=index.device))
        resampled = _resized_partners(source, boxes.index_select(0, borrower), interpolation)
        resized = resampled.index_select(0, index) if out is None else torch.index_select(resampled, 0, index, out=out)
        return resized.lerp_(base, own.to(resized.dtype))
    partners = source if index is None else source.index_select(0, index)
    direct = out is not None and out.is_contiguous() and interpolation == "nearest"
    resized = _resized_partners(partners, boxes, interpolation, out if direct else None)
    if not resized.is_floating_point():
        return torch.where(own, base, resized)
    keep = own.to(resized.dtype)  # 1 outside the box: exact, the weights are 0 or 1
    if out is None or direct:
        return resized.lerp_(base, keep)
    return torch.lerp(resized, base, keep, out=out)


def resizemix(
    x: Tensor, index: Tensor, boxes: Tensor, interpolation: str = "nearest", out: Tensor | None = None
) -> Tensor:
    """Paste the whole of ``x[index]``, resized to each box, into ``x`` (boxes ``[4]`` for the batch or ``[B, 4]`` per
    sample, ``(y1, y2, x1, x2)``); ``interpolation`` as ``F.interpolate`` (align_corners=False, no antialias).

    The result goes to ``out`` when given (a reusable buffer, see :func:`~lightning_mixup.functional.mixup`),
    else to a new tensor.

    Example:
        >>> x = torch.zeros(2, 1, 4, 4); x[1] = torch.arange(16.0).view(4, 4)
        >>> resizemix(x, torch.tensor([1, 0]), torch.tensor([0, 2, 2, 4]))[0, 0]
        tensor([[ 0.,  0.,  0.,  2.],
                [ 0.,  0.,  8., 10.],
                [ 0.,  0.,  0.,  0.],
                [ 0.,  0.,  0.,  0.]])
    """
    check_input(x, ndim=4, method="ResizeMix")
    check_choice("interpolation", interpolation, INTERPOLATIONS)
    return _paste(x, x, index.to(x.device), boxes, interpolation, out)


def resizemix_batch(
    x: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 1.0,
    *,
    scope: Sequence[float] = (0.1, 0.8),
    sampling: str = "uniform",
    interpolation: str = "nearest",
    placement: str = "clip",
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Sample a partner index and a scale τ (:func:`sample_scales`; ``alpha`` is used by ``sampling="beta"`` and
    ``"lam"`` only) and a box (:func:`sample_paste_boxes`), one for the batch or one per sample; paste each whole
    partner resized to its box (:func:`resizemix`) and mix the targets with λ = 1 − box area / (H·W).

    The returned ``mask`` is True outside the box (the sample's own pixels), ``[1 or B, 1, H, W]``; ``sources`` is
    ``(x, input)``: inside the box the mix is the resized partner, not ``x[index]``. Segmentation masks are resized
    and pasted with the image: class indices with ``nearest`` (labels stay hard), probabilities with the image's
    interpolation (``bilinear`` for ``bicubic``, which would leave [0, 1]). ``out``: see :func:`resizemix`.
    ``num_classes``: the number of classes, or a :class:`~lightning_mixup.functional.Targets`.

    Example:
        >>> x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
        >>> out = resizemix_batch(x, y, 4, per_sample=True, generator=torch.Generator().manual_seed(0))
        >>> out.lam.shape, bool(((out.lam > 0.3) & (out.lam < 1)).all())
        (torch.Size([8]), True)
    """
    scope = check_resizemix_params(scope, sampling, interpolation, placement)
    targets, index = pair_up(x, target, num_classes, alpha, partner, generator, ndim=4, method="ResizeMix")
    batch, _, height, width = x.shape
    scale = sample_scales(batch if per_sample else None, scope, alpha, sampling, generator=generator, device=x.device)
    boxes, lam = sample_paste_boxes(scale, height, width, placement, generator=generator)
    boxes, lam = boxes.to(x.device), lam.to(x.device)
    own = ~box_mask(boxes, height, width)
    mixed = _paste(x, x, index, boxes, interpolation, out, own, permutation=True)

    def move(first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        mode = "nearest" if not first.is_floating_point() or interpolation == "nearest" else "bilinear"
        return first, _paste(first, second, None, boxes, mode, None, own)

    return MixedBatch(mixed, targets.mix(index, lam, own, move), lam, own, (x, mixed), index)

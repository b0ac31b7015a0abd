"""GridMix: the partner fills a grid of cells, each cell coming whole from one of the two images.

Baek, Bang, Shim. "GridMix: Strong regularization through local context mapping", Pattern Recognition 109
(2021) 107594. There is no official code; two grid rules are offered:

- ``mode="cells"`` (default): the paper's description: the whole image is cut into ``g × g`` cells and each cell
  is the sample's own with probability λ (``cell_rule="bernoulli"``) or exactly ``round(λ·g²)`` random cells are
  (``cell_rule="count"``).
- ``mode="holes"``: what OpenMixup calls ``gridmix`` (Westlake-AI/openmixup,
  ``openmixup/models/augments/gridmix.py``, itself from IlyaDobrynin/GridMixup): a crop of area
  ``cut_area_ratio·H·W`` and aspect ``cut_aspect_ratio`` at a uniform place is tiled with ``n_holes`` patches
  across; each patch (``pw = ⌈crop_w / n_holes⌉`` wide, ``ph = ⌊pw·hole_aspect_ratio⌋`` high) gets a hole of side
  ``√(1−λ)·pw × √(1−λ)·ph`` at its top-left corner, filled from the partner (a GridMask-like pattern: another
  method, GridMixup, that OpenMixup's numbers labelled "GridMix" were measured with).

In both, λ ~ Beta(α, α) sets the share, and the λ returned is the exact share of own pixels (the mask's mean).
The paper's local-context (per-cell classification) loss needs an auxiliary-loss protocol the package does not
have: it is left out; the targets are the global mix only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_mixup.checks import check_choice, check_int, check_number
from lightning_mixup.functional.batch import MixedBatch, blend_partners, pair_up
from lightning_mixup.functional.sampling import partners, sample_lam
from lightning_mixup.functional.targets import Targets
from lightning_mixup.functional.validation import check_input

MODES = ("holes", "cells")
CELL_RULES = ("bernoulli", "count")


def _pair(
    name: str, value: object, *, integer: bool, low: float, high: float | None = None, open_low: bool = False
) -> tuple:
    """``value`` as a ``(low, high)`` pair: a number means ``(value, value)``; each end checked, ``low <= high``."""
    if isinstance(value, Sequence) and not isinstance(value, str):  # a tuple, a list or Hydra's ListConfig
        items = tuple(value)
        if len(items) != 2:
            raise ValueError(f"{name} must be a number or a (low, high) pair, got {value!r}")
    else:
        items = (value, value)
    if integer:
        ends = tuple(check_int(name, v, int(low)) for v in items)
    else:
        what = f"a finite number in ({low:g}, {high:g}]" if high is not None and open_low else None
        ends = tuple(check_number(name, v, low, high, open_low=open_low, what=what) for v in items)
    if ends[0] > ends[1]:
        raise ValueError(f"{name} must be a (low, high) pair with low <= high, got {value!r}")
    return ends


def check_gridmix_params(
    mode: str = "cells",
    n_holes: object = (2, 6),
    hole_aspect_ratio: object = 1.0,
    cut_area_ratio: object = (0.5, 1.0),
    cut_aspect_ratio: object = (0.5, 2.0),
    grid_size: object = (2, 6),
    cell_rule: str = "bernoulli",
) -> dict[str, object]:
    """Check GridMix's options (raise with the bad value) and return them normalised: ranges as ``(low, high)``
    tuples (ints for ``n_holes`` and ``grid_size``, floats for the ratios).

    ``n_holes >= 1``, ``grid_size >= 1`` (ints), ``hole_aspect_ratio > 0``, ``cut_area_ratio`` in (0, 1],
    ``cut_aspect_ratio > 0``; each a number or an inclusive ``(low, high)`` range sampled uniformly per mask.

    Example:
        >>> check_gridmix_params(n_holes=4)["n_holes"]
        (4, 4)
    """
    return {
        "mode": check_choice("mode", mode, MODES),
        "n_holes": _pair("n_holes", n_holes, integer=True, low=1),
        "hole_aspect_ratio": _pair("hole_aspect_ratio", hole_aspect_ratio, integer=False, low=0.0, open_low=True),
        "cut_area_ratio": _pair("cut_area_ratio", cut_area_ratio, integer=False, low=0.0, high=1.0, open_low=True),
        "cut_aspect_ratio": _pair("cut_aspect_ratio", cut_aspect_ratio, integer=False, low=0.0, open_low=True),
        "grid_size": _pair("grid_size", grid_size, integer=True, low=1),
        "cell_rule": check_choice("cell_rule", cell_rule, CELL_RULES),
    }


def narrowest_crop(
    height: int, width: int, cut_area_ratio: tuple[float, float], cut_aspect_ratio: tuple[float, float]
) -> int:
    """The smallest crop width the ranges can give: ``⌊√(⌊H·W·area_low⌋ / aspect_high)⌋`` (the width only grows
    with the area and shrinks with the aspect)."""
    return math.floor(math.sqrt(math.floor(height * width * cut_area_ratio[0]) / cut_aspect_ratio[1]))


def check_grid_fits(height: int, width: int, params: dict[str, object]) -> None:
    """Raise, quoting the sizes, where the grid cannot be laid on ``height × width`` images: in ``"holes"`` mode
    every patch needs 2 pixels across the narrowest crop (the reference asserts ``n_holes <= crop_w // 2``), in
    ``"cells"`` mode every cell needs a pixel per side."""
    if params["mode"] == "holes":
        crop = narrowest_crop(height, width, params["cut_area_ratio"], params["cut_aspect_ratio"])
        if params["n_holes"][1] > crop // 2:
            raise ValueError(
                f"n_holes={params['n_holes']} does not fit {height}x{width} images: with cut_area_ratio="
                f"{params['cut_area_ratio']} and cut_aspect_ratio={params['cut_aspect_ratio']} the narrowest crop is "
                f"{crop} pixels wide and holds at most {crop // 2} holes across (a patch needs 2 pixels)"
            )
    elif params["grid_size"][1] > min(height, width):
        raise ValueError(
            f"grid_size={params['grid_size']} does not fit {height}x{width} images: a grid of "
            f"{params['grid_size'][1]} cells per side needs at least {params['grid_size'][1]} pixels per side"
        )


def _uniform(bounds: tuple[float, float], n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    low, high = bounds
    u = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    return (low + (high - low) * u).clamp(low, high)


def _randint(bounds: tuple[int, int], n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    return torch.randint(bounds[0], bounds[1] + 1, (n,), generator=generator, device=device)


def hole_masks(
    lam: Tensor,
    height: int,
    width: int,
    n_holes: tuple[int, int] = (2, 6),
    hole_aspect_ratio: tuple[float, float] = (1.0, 1.0),
    cut_area_ratio: tuple[float, float] = (0.5, 1.0),
    cut_aspect_ratio: tuple[float, float] = (0.5, 2.0),
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The reference's (OpenMixup's) grid of holes, one mask per λ (``[]`` → ``[1, 1, H, W]``, ``[B]`` →
    ``[B, 1, H, W]``), all built at once. Returns ``(own, lam)``: bool masks, True where the pixel is the sample's
    own (outside the holes), and λ = the share of own pixels, same shape as ``lam``.

    Per mask: ``nx`` ~ U{n_holes}, aspect ``ar``, area ``car``, crop aspect ``cas`` ~ U(range);
    ``crop_w = ⌊√(⌊H·W·car⌋ / cas)⌋``, ``crop_h = ⌊crop_w·cas⌋`` at ``(⌊(H − crop_h)·u⌋, ⌊(W − crop_w)·v⌋)``
    (truncated towards 0); ``pw = ⌈crop_w / nx⌉``, ``ph = max(⌊pw·ar⌋, 1)``; holes
    ``clamp(⌊pw·√(1−λ)⌋, 1, pw − 1) × min(max(⌊ph·√(1−λ)⌋, 1), ph − 1)`` at the top-left of each patch. The
    remainder rule is the reference's: the last column and row of patches are cut by the crop's edge. A crop
    larger than the image (``cas`` far from 1) is clipped to it (the reference's negative slice starts wrap
    around instead). Ranges must fit the image: see :func:`check_grid_fits`.

    Example:
        >>> own, lam = hole_masks(torch.tensor(0.75), 8, 8, (2, 2), cut_area_ratio=(1.0, 1.0),
        ...                       cut_aspect_ratio=(1.0, 1.0))
        >>> own[0, 0].int()
        tensor([[0, 0, 1, 1, 0, 0, 1, 1],
                [0, 0, 1, 1, 0, 0, 1, 1],
                [1, 1, 1, 1, 1, 1, 1, 1],
                [1, 1, 1, 1, 1, 1, 1, 1],
                [0, 0, 1, 1, 0, 0, 1, 1],
                [0, 0, 1, 1, 0, 0, 1, 1],
                [1, 1, 1, 1, 1, 1, 1, 1],
                [1, 1, 1, 1, 1, 1, 1, 1]], dtype=torch.int32)
        >>> float(lam)
        0.75
    """
    device = generator.device if generator is not None else lam.device
    n = 1 if lam.ndim == 0 else lam.shape[0]
    nx = _randint(n_holes, n, generator, device)
    ar = _uniform(hole_aspect_ratio, n, generator, device)
    car = _uniform(cut_area_ratio, n, generator, device)
    cas = _uniform(cut_aspect_ratio, n, generator, device)
    cx = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    cy = torch.rand(n, generator=generator, device=device, dtype=torch.float64)
    crop_w = torch.floor(torch.sqrt(torch.floor((height * width) * car) / cas)).long()
    crop_h = torch.floor(crop_w * cas).long()
    x0 = torch.trunc((width - crop_w) * cx).long()
    y0 = torch.trunc((height - crop_h) * cy).long()
    pw = (crop_w + nx - 1) // nx
    ph = torch.floor(pw * ar).long().clamp_min(1)
    ratio = torch.sqrt((1.0 - lam.to(device=device, dtype=torch.float64).reshape(n)).clamp(0.0, 1.0))
    hw = torch.minimum(torch.floor(pw * ratio).long().clamp_min(1), pw - 1)
    hh = torch.minimum(torch.floor(ph * ratio).long().clamp_min(1), ph - 1)
    cols = torch.arange(width, device=device).view(1, width) - x0.view(n, 1)  # position inside the crop
    rows = torch.arange(height, device=device).view(1, height) - y0.view(n, 1)
    in_col = (cols >= 0) & (cols < crop_w.view(n, 1)) & (cols.remainder(pw.view(n, 1)) < hw.view(n, 1))
    in_row = (rows >= 0) & (rows < crop_h.view(n, 1)) & (rows.remainder(ph.view(n, 1)) < hh.view(n, 1))
    own = ~(in_row[:, :, None] & in_col[:, None, :])
    lam_exact = own.sum(dim=(1, 2), dtype=torch.float64).div(height * width).float()
    return own.unsqueeze(1), lam_exact.reshape(lam.shape)


def cell_masks(
    lam: Tensor,
    height: int,
    width: int,
    grid_size: tuple[int, int] = (2, 6),
    cell_rule: str = "bernoulli",
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """The paper's grid: ``g`` ~ U{grid_size} cells per side, each cell the sample's own with probability λ
    (``"bernoulli"``) or exactly ``round(λ·g²)`` cells chosen at random (``"count"``); one mask per λ (``[]`` →
    ``[1, 1, H, W]``, ``[B]`` → ``[B, 1, H, W]``), all built at once. Returns ``(own, lam)``: bool masks (True =
    own) and λ = the share of own pixels, same shape as ``lam``.

    Remainders: row ``r`` lies in cell row ``⌊r·g / H⌋`` (columns alike), so cells differ by at most a pixel per
    side when ``g`` does not divide the image, and λ is then the pixel share, not exactly the cell share.

    Example:
        >>> own, lam = cell_masks(torch.tensor(0.5), 4, 4, (2, 2), "count", generator=torch.Generator().manual_seed(0))
        >>> own.shape, float(lam)
        (torch.Size([1, 1, 4, 4]), 0.5)
    """
    device = generator.device if generator is not None else lam.device
    n = 1 if lam.ndim == 0 else lam.shape[0]
    g = _randint(grid_size, n, generator, device)
    top = grid_size[1]
    u = torch.rand(n, top, top, generator=generator, device=device, dtype=torch.float64)
    lam64 = lam.to(device=device, dtype=torch.float64).reshape(n, 1, 1)
    cells = torch.arange(top, device=device)
    valid = (cells.view(1, top, 1) < g.view(n, 1, 1)) & (cells.view(1, 1, top) < g.view(n, 1, 1))
    if cell_rule == "bernoulli":
        own_cells = u < lam64
    else:
        count = torch.round(lam64.view(n) * g * g).long()
        keys = torch.where(valid, u, torch.full_like(u, 2.0)).view(n, top * top)
        order = keys.argsort(dim=1)
        rank = torch.empty_like(order).scatter_(1, order, torch.arange(top * top, device=device).expand(n, -1))
        own_cells = (rank < count.view(n, 1)).view(n, top, top)
    row_cell = torch.arange(height, device=device).view(1, height) * g.view(n, 1) // height
    col_cell = torch.arange(width, device=device).view(1, width) * g.view(n, 1) // width
    batch = torch.arange(n, device=device).view(n, 1, 1)
    own = own_cells[batch, row_cell[:, :, None], col_cell[:, None, :]]
    lam_exact = own.sum(dim=(1, 2), dtype=torch.float64).div(height * width).float()
    return own.unsqueeze(1), lam_exact.reshape(lam.shape)


def gridmix(x: Tensor, index: Tensor, own: Tensor, out: Tensor | None = None) -> Tensor:
    """``x`` where ``own`` (bool ``[1 or B, 1, H, W]``) is True, ``x[index]`` elsewhere, exactly.

    The result goes to ``out`` when given (a reusable buffer, see :func:`~lightning_mixup.functional.mixup`),
    else to a new tensor.

    Example:
        >>> x = torch.zeros(2, 1, 2, 2); x[1] = 1
        >>> gridmix(x, torch.tensor([1, 0]), torch.tensor([[True, False], [False, True]]).view(1, 1, 2, 2))[0, 0]
        tensor([[0., 1.],
                [1., 0.]])
    """
    check_input(x, ndim=4, method="GridMix")
    own = own.to(x.device)
    if out is None:
        return torch.where(own, x, partners(x, index))
    return blend_partners(x, index, own.to(x.dtype), out)  # exact: the weights are 0 or 1


def gridmix_batch(
    x: Tensor,
    target: Tensor,
    num_classes: int | Targets,
    alpha: float = 1.0,
    *,
    mode: str = "cells",
    n_holes: int | tuple[int, int] = (2, 6),
    hole_aspect_ratio: float | tuple[float, float] = 1.0,
    cut_area_ratio: float | tuple[float, float] = (0.5, 1.0),
    cut_aspect_ratio: float | tuple[float, float] = (0.5, 2.0),
    grid_size: int | tuple[int, int] = (2, 6),
    cell_rule: str = "bernoulli",
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Sample a partner index, λ ~ Beta(α, α) and one grid mask for the batch or one per sample (``per_sample``:
    every random choice of the grid, λ included, per sample); mix inputs ``[B, C, H, W]`` and targets with λ =
    the share of own pixels. ``num_classes``: the number of classes, or a
    :class:`~lightning_mixup.functional.Targets` (multi-label, regression, segmentation masks, the pair form).
    The returned ``mask`` is bool ``[1 or B, 1, H, W]``, True = the sample's own pixel. ``out``: see
    :func:`gridmix`.

    ``mode="holes"`` (reference, OpenMixup): ``n_holes`` (patches across the crop), ``hole_aspect_ratio``,
    ``cut_area_ratio``, ``cut_aspect_ratio`` (see :func:`hole_masks`); ``mode="cells"`` (the paper's text):
    ``grid_size`` and ``cell_rule`` (see :func:`cell_masks`). Each range is a number or an inclusive
    ``(low, high)`` pair, drawn uniformly per mask. A grid that cannot fit the image raises with the sizes.
    Defaults: OpenMixup's CIFAR settings (α = 1, ``n_holes=(2, 6)``, ``hole_aspect_ratio=1``,
    ``cut_area_ratio=(0.5, 1)``, ``cut_aspect_ratio=(0.5, 2)``). The paper's local (per-cell) classification
    loss is not part of this op: the targets are the global mix.

    Example:
        >>> x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 4
        >>> out = gridmix_batch(x, y, 4, per_sample=True, generator=torch.Generator().manual_seed(0))
        >>> out.lam.shape, out.mask.dtype, bool((out.mask.float().mean(dim=(1, 2, 3)) == out.lam).all())
        (torch.Size([8]), torch.bool, True)
    """
    params = check_gridmix_params(
        mode, n_holes, hole_aspect_ratio, cut_area_ratio, cut_aspect_ratio, grid_size, cell_rule
    )
    targets, index = pair_up(x, target, num_classes, alpha, partner, generator, ndim=4, method="GridMix")
    batch, _, height, width = x.shape
    check_grid_fits(height, width, params)
    lam = sample_lam(alpha, batch if per_sample else None, generator=generator, device=x.device)
    if mode == "holes":
        own, lam = hole_masks(
            lam,
            height,
            width,
            params["n_holes"],
            params["hole_aspect_ratio"],
            params["cut_area_ratio"],
            params["cut_aspect_ratio"],
            generator=generator,
        )
    else:
        own, lam = cell_masks(lam, height, width, params["grid_size"], cell_rule, generator=generator)
    own, lam = own.to(x.device), lam.to(x.device)
    return MixedBatch(gridmix(x, index, own, out), targets.mix(index, lam, own), lam, own, index=index)

"""Tests of GridMix: the reference's grid of holes and the paper's grid of cells against slow per-mask oracles,
λ = the mask's mean, the identity cases, the option checks, segmentation and pair targets, and the callback."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NUM_CLASSES, Recorder, UserModule, make_loader, make_trainer
from lightning_mixup.callbacks.gridmix import GridMix
from lightning_mixup.functional import Targets, pair_loss
from lightning_mixup.functional.gridmix import cell_masks, check_gridmix_params, gridmix, gridmix_batch, hole_masks
from strategies import DTYPES, SEEDS, draw_images, gen

# ------------------------------------------------------------------------------------- oracles


def hole_draws(seed: int, n: int, n_holes, har, car, cas) -> list[tuple]:
    """The random draws of :func:`hole_masks`, in its order, one tuple per mask."""
    g = gen(seed)
    nx = torch.randint(n_holes[0], n_holes[1] + 1, (n,), generator=g)
    ar, area, aspect = (lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64) for lo, hi in (har, car, cas))
    cx = torch.rand(n, generator=g, dtype=torch.float64)
    cy = torch.rand(n, generator=g, dtype=torch.float64)
    return list(zip(nx.tolist(), ar.tolist(), area.tolist(), aspect.tolist(), cx.tolist(), cy.tolist()))


def reference_holes(height: int, width: int, lam: float, nx: int, ar: float, car: float, cas: float, cx, cy):
    """OpenMixup's ``rand_grid`` loop (height/width the right way round), True = own pixel; a crop that sticks out
    of the image is clipped (where the reference's negative slice starts would wrap)."""
    crop_w = int(math.sqrt(int(height * width * car) / cas))
    crop_h = int(crop_w * cas)
    xc1, yc1 = int((width - crop_w) * cx), int((height - crop_h) * cy)
    assert 1 <= nx <= crop_w // 2
    pw = math.ceil(crop_w / nx)
    ph = max(int(pw * ar), 1)
    ny = math.ceil(crop_h / ph)
    ratio = math.sqrt(1 - lam)
    hw, hh = min(max(int(pw * ratio), 1), pw - 1), min(max(int(ph * ratio), 1), ph - 1)
    hole = torch.zeros(height, width, dtype=torch.bool)
    for i in range(nx + 1):
        for j in range(ny + 1):
            x1, y1 = min(pw * i, crop_w), min(ph * j, crop_h)
            x2, y2 = min(x1 + hw, crop_w), min(y1 + hh, crop_h)
            hole[max(yc1 + y1, 0) : max(yc1 + y2, 0), max(xc1 + x1, 0) : max(xc1 + x2, 0)] = True
    return ~hole


def cell_draws(seed: int, n: int, grid_size: tuple[int, int]) -> tuple[list[int], torch.Tensor]:
    """The random draws of :func:`cell_masks`: grid sizes and one uniform per cell."""
    g = gen(seed)
    sizes = torch.randint(grid_size[0], grid_size[1] + 1, (n,), generator=g)
    return sizes.tolist(), torch.rand(n, grid_size[1], grid_size[1], generator=g, dtype=torch.float64)


def cell_of(pixels: int, cells: int) -> list[int]:
    """The cell each row (or column) belongs to: ``⌊r·g / H⌋``."""
    return [r * cells // pixels for r in range(pixels)]


# ------------------------------------------------------------------------------------- hole_masks


@settings(max_examples=60, deadline=None)
@given(
    seed=SEEDS,
    n=st.integers(1, 4),
    size=st.tuples(st.integers(8, 24), st.integers(8, 24)),
    har=st.sampled_from([(1.0, 1.0), (0.5, 2.0), (0.05, 0.2)]),
    cas=st.sampled_from([(1.0, 1.0), (0.5, 2.0), (0.3, 3.0)]),
    car=st.sampled_from([(1.0, 1.0), (0.5, 1.0), (0.7, 0.9)]),
    per_sample=st.booleans(),
)
def test_hole_masks_match_the_reference_loop(seed, n, size, har, cas, car, per_sample) -> None:
    height, width = size
    lam = torch.rand(n if per_sample else (), generator=gen(seed + 1))
    n_holes = (1, 2)
    own, lam_out = hole_masks(lam, height, width, n_holes, har, car, cas, generator=gen(seed))
    n = n if per_sample else 1
    assert own.dtype == torch.bool and own.shape == (n, 1, height, width) and lam_out.shape == lam.shape
    draws = hole_draws(seed, n, n_holes, har, car, cas)
    for i, lam_i in enumerate(lam.reshape(-1).tolist()):
        assert torch.equal(own[i, 0], reference_holes(height, width, lam_i, *draws[i]))
    # λ is the share of own pixels, exactly
    assert torch.equal(lam_out.reshape(-1), own.double().mean(dim=(1, 2, 3)).float())


def test_hole_masks_crop_and_patch_geometry() -> None:
    # full crop 12x12, 3 patches of 4 across, λ = 1 - 1/4 → holes 2x2 at each patch's corner, 9 holes of 4 pixels
    own, lam = hole_masks(torch.tensor(0.75), 12, 12, (3, 3), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0), generator=gen(0))
    hole = ~own[0, 0]
    expected = torch.zeros(12, 12, dtype=torch.bool)
    for r in (0, 4, 8):
        for c in (0, 4, 8):
            expected[r : r + 2, c : c + 2] = True
    assert torch.equal(hole, expected) and float(lam) == 1 - 36 / 144


def test_more_lam_never_more_holes() -> None:
    # the same geometry draws with a larger λ give holes no larger (a hole's side is ⌊patch·√(1−λ)⌋, clamped)
    small = hole_masks(torch.full((64,), 0.2), 32, 32, generator=gen(3))[0]
    large = hole_masks(torch.full((64,), 0.8), 32, 32, generator=gen(3))[0]
    assert bool((large | ~small).all())  # own at small λ → own at large λ
    assert (small.float().mean(dim=(1, 2, 3)) <= large.float().mean(dim=(1, 2, 3))).all()


def test_holes_minimum_one_pixel_and_flat_patches() -> None:
    # λ = 1: the reference still keeps holes of at least 1 pixel; patches 1 pixel high have no hole (λ = 1 exactly)
    own, lam = hole_masks(torch.tensor(1.0), 8, 8, (2, 2), (1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    assert int((~own).sum()) == 4 and float(lam) == 1 - 4 / 64
    own, lam = hole_masks(torch.tensor(0.3), 8, 8, (2, 2), (0.01, 0.01), (1.0, 1.0), (1.0, 1.0))
    assert bool(own.all()) and float(lam) == 1.0


# ------------------------------------------------------------------------------------- cell_masks


@settings(max_examples=60, deadline=None)
@given(
    seed=SEEDS,
    n=st.integers(1, 4),
    size=st.tuples(st.integers(6, 20), st.integers(6, 20)),
    grid_size=st.sampled_from([(1, 1), (2, 2), (2, 6), (3, 5), (4, 6)]),
    rule=st.sampled_from(["bernoulli", "count"]),
    per_sample=st.booleans(),
)
def test_cell_masks_match_the_oracle(seed, n, size, grid_size, rule, per_sample) -> None:
    height, width = size
    lam = torch.rand(n if per_sample else (), generator=gen(seed + 1))
    own, lam_out = cell_masks(lam, height, width, grid_size, rule, generator=gen(seed))
    n = n if per_sample else 1
    assert own.dtype == torch.bool and own.shape == (n, 1, height, width) and lam_out.shape == lam.shape
    sizes, u = cell_draws(seed, n, grid_size)
    for i, lam_i in enumerate(lam.reshape(-1).double().tolist()):
        g = sizes[i]
        rows, cols = cell_of(height, g), cell_of(width, g)
        # every cell comes whole from one image: the mask is constant on it
        cells = torch.zeros(g, g, dtype=torch.bool)
        for a in range(g):
            for b in range(g):
                block = own[i, 0][[r for r in range(height) if rows[r] == a]][
                    :, [c for c in range(width) if cols[c] == b]
                ]
                assert block.numel() > 0 and (bool(block.all()) or not bool(block.any()))
                cells[a, b] = bool(block[0, 0])
        if rule == "bernoulli":
            assert torch.equal(cells, u[i, :g, :g] < lam_i)
        else:
            assert int(cells.sum()) == round(lam_i * g * g)
            # the own cells are those with the smallest uniforms
            if 0 < int(cells.sum()) < g * g:
                assert float(u[i, :g, :g][cells].max()) < float(u[i, :g, :g][~cells].min())
    assert torch.equal(lam_out.reshape(-1), own.double().mean(dim=(1, 2, 3)).float())


def test_cell_lam_is_the_cell_share_when_the_grid_divides() -> None:
    lam = torch.rand(200, generator=gen(0))
    own, lam_out = cell_masks(lam, 12, 12, (2, 4), "count", generator=gen(1))
    cells = torch.randint(2, 5, (200,), generator=gen(1))  # the grid size of each mask (first draw)
    divides = (12 % cells) == 0
    counts = torch.round(lam.double() * cells * cells)
    torch.testing.assert_close(lam_out[divides].double(), (counts / (cells * cells))[divides], rtol=0, atol=1e-7)


def test_bernoulli_cells_follow_lam() -> None:
    own, lam = cell_masks(torch.full((2000,), 0.3), 8, 8, (4, 4), "bernoulli", generator=gen(0))
    assert abs(float(lam.mean()) - 0.3) < 0.01
    assert len(set(lam.tolist())) > 5  # λ varies with the draws: the share of cells is random


def test_cells_extremes() -> None:
    for rule in ("bernoulli", "count"):
        own, lam = cell_masks(torch.tensor([1.0, 0.0]), 8, 8, (2, 4), rule, generator=gen(0))
        assert bool(own[0].all()) and not bool(own[1].any()) and lam.tolist() == [1.0, 0.0]


# ------------------------------------------------------------------------------------- gridmix (the mix)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 5), dtype=st.sampled_from(DTYPES), per_sample=st.booleans())
def test_gridmix_takes_each_pixel_from_one_image(seed: int, batch: int, dtype: torch.dtype, per_sample: bool) -> None:
    x = draw_images(seed, batch, 2, 6, 7, dtype)
    index = torch.randperm(batch, generator=gen(seed))
    own = torch.rand(batch if per_sample else 1, 1, 6, 7, generator=gen(seed + 1)) < 0.5
    mixed = gridmix(x, index, own)
    buffer = torch.empty_like(x)
    assert torch.equal(gridmix(x, index, own, buffer), mixed) and torch.equal(buffer, mixed)
    for i in range(batch):
        assert torch.equal(mixed[i], torch.where(own[i if per_sample else 0], x[i], x[int(index[i])]))
    assert torch.equal(gridmix(x, torch.arange(batch), own), x)


# ------------------------------------------------------------------------------------- gridmix_batch


MODES = [{"mode": "holes", "n_holes": (1, 4)}, {"mode": "cells"}, {"mode": "cells", "cell_rule": "count"}]


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("options", MODES)
def test_gridmix_batch_lam_is_mask_mean(per_sample: bool, options: dict) -> None:
    batch = 12
    x = torch.randn(batch, 3, 32, 32, generator=gen(0))
    out = gridmix_batch(x, torch.arange(batch) % 5, 5, per_sample=per_sample, generator=gen(1), **options)
    n = batch if per_sample else 1
    assert out.mask.dtype == torch.bool and out.mask.shape == (n, 1, 32, 32)
    assert out.lam.shape == ((batch,) if per_sample else ())
    assert torch.equal(out.lam.reshape(-1), out.mask.double().mean(dim=(1, 2, 3)).float())
    expected = torch.where(out.mask, x, x[out.index])
    assert torch.equal(out.input, expected)
    probs = F.one_hot(torch.arange(batch) % 5, 5).float()
    lam = out.lam.expand(batch).view(-1, 1)
    torch.testing.assert_close(out.target, lam * probs + (1 - lam) * probs[out.index])
    # deterministic under the generator; the output buffer gives the same
    again = gridmix_batch(x, torch.arange(batch) % 5, 5, per_sample=per_sample, generator=gen(1), **options)
    assert torch.equal(again.input, out.input) and torch.equal(again.lam, out.lam)
    buffered = gridmix_batch(
        x, torch.arange(batch) % 5, 5, per_sample=per_sample, generator=gen(1), out=torch.empty_like(x), **options
    )
    assert torch.equal(buffered.input, out.input)


def test_per_sample_masks_differ_and_lam_mean() -> None:
    x = torch.zeros(2000, 1, 16, 16)
    out = gridmix_batch(x, torch.zeros(2000, dtype=torch.long), 2, mode="cells", per_sample=True, generator=gen(0))
    assert abs(float(out.lam.mean()) - 0.5) < 0.02  # λ ~ Beta(1, 1), each cell own with probability λ
    assert len({tuple(m.flatten().tolist()) for m in out.mask[:20]}) > 12  # 2x2 grids can repeat
    holes = gridmix_batch(x[:64], torch.zeros(64, dtype=torch.long), 2, n_holes=4, per_sample=True, generator=gen(0))
    assert len(set(holes.lam.tolist())) > 10


@pytest.mark.parametrize("options", MODES)
def test_own_partner_is_exact(options: dict) -> None:
    # a sample mixed with itself is unchanged: a batch of one, and the middle of an odd batch under "flip"
    x1 = torch.randn(1, 3, 16, 16, generator=gen(0))
    assert torch.equal(gridmix_batch(x1, torch.zeros(1, dtype=torch.long), 2, generator=gen(1), **options).input, x1)
    x = torch.randn(5, 3, 16, 16, generator=gen(2))
    out = gridmix_batch(x, torch.arange(5), 5, partner="flip", per_sample=True, generator=gen(3), **options)
    assert torch.equal(out.input[2], x[2]) and float(out.target[2, 2]) == 1.0


def test_flat_patches_are_the_identity() -> None:
    # hole_aspect_ratio so small that patches are 1 pixel high: no hole fits, λ = 1 and the input is unchanged
    x = torch.randn(4, 3, 16, 16, generator=gen(0))
    out = gridmix_batch(x, torch.arange(4), 4, mode="holes", n_holes=4, hole_aspect_ratio=0.01, per_sample=True,
                        generator=gen(1))  # fmt: skip
    assert torch.equal(out.input, x) and bool((out.lam == 1).all())
    assert torch.equal(out.target, torch.eye(4))


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("options", MODES)
def test_segmentation_masks_follow_the_image(per_sample: bool, options: dict) -> None:
    classes, batch = 4, 6
    labels = torch.randint(0, classes, (batch, 16, 16), generator=gen(0))
    x = torch.randn(batch, 2, 16, 16, generator=gen(1))
    x[:, 0] = labels.float()
    spec = Targets(classes, task="segmentation")
    out = gridmix_batch(x, labels, spec, per_sample=per_sample, generator=gen(2), **options)
    assert out.target.dtype == labels.dtype and torch.equal(out.target, out.input[:, 0].long())


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("options", MODES)
def test_pair_form_equals_mixed_form(per_sample: bool, options: dict) -> None:
    x, y = torch.randn(8, 3, 16, 16, generator=gen(0)), torch.arange(8) % 5
    mixed = gridmix_batch(x, y, 5, per_sample=per_sample, generator=gen(1), **options)
    pair = gridmix_batch(x, y, Targets(5, form="pair"), per_sample=per_sample, generator=gen(1), **options)
    assert torch.equal(mixed.input, pair.input)
    logits = torch.randn(8, 5, generator=gen(2))
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    torch.testing.assert_close(pair_loss(ce, logits, pair.target), F.cross_entropy(logits, mixed.target))


# ------------------------------------------------------------------------------------- options


def test_a_grid_that_does_not_fit_fails_with_the_sizes() -> None:
    x, y = torch.randn(2, 3, 8, 8), torch.arange(2)
    # narrowest crop: ⌊√(⌊64·0.5⌋ / 2)⌋ = 4 pixels → 2 holes across at most
    with pytest.raises(ValueError, match=r"n_holes=\(2, 6\) does not fit 8x8 images.*4 pixels wide.*at most 2"):
        gridmix_batch(x, y, 2, mode="holes")
    gridmix_batch(x, y, 2, mode="holes", n_holes=(1, 2))
    with pytest.raises(ValueError, match=r"grid_size=\(2, 9\) does not fit 8x8 images.*9 pixels per side"):
        gridmix_batch(x, y, 2, mode="cells", grid_size=(2, 9))
    with pytest.raises(ValueError, match=r"grid_size=\(5, 5\) does not fit 4x8 images"):
        gridmix_batch(torch.randn(2, 3, 4, 8), y, 2, mode="cells", grid_size=5)


@pytest.mark.parametrize(
    ("options", "error", "quoted"),
    [
        ({"mode": "grid"}, ValueError, "'grid'"),
        ({"cell_rule": "poisson"}, ValueError, "'poisson'"),
        ({"n_holes": 1.5}, TypeError, "1.5"),
        ({"n_holes": True}, TypeError, "True"),
        ({"n_holes": 0}, ValueError, "0"),
        ({"n_holes": (3, 2)}, ValueError, r"\(3, 2\)"),
        ({"n_holes": (1, 2, 3)}, ValueError, r"\(1, 2, 3\)"),
        ({"grid_size": "4"}, TypeError, "'4'"),
        ({"hole_aspect_ratio": 0.0}, ValueError, "0.0"),
        ({"cut_area_ratio": 1.5}, ValueError, "1.5"),
        ({"cut_area_ratio": (0.0, 1.0)}, ValueError, "0.0"),
        ({"cut_aspect_ratio": -1.0}, ValueError, "-1.0"),
        ({"cut_aspect_ratio": float("nan")}, ValueError, "nan"),
    ],
)
def test_bad_options_are_quoted(options: dict, error: type[Exception], quoted: str) -> None:
    with pytest.raises(error, match=quoted):
        gridmix_batch(torch.randn(2, 3, 32, 32), torch.arange(2), 2, **options)
    with pytest.raises(error, match=quoted):
        GridMix(**options)


def test_options_accept_numbers_and_lists() -> None:
    params = check_gridmix_params(n_holes=[2, 4], hole_aspect_ratio=2, cut_area_ratio=1)
    assert params["n_holes"] == (2, 4) and params["hole_aspect_ratio"] == (2.0, 2.0)
    assert params["cut_area_ratio"] == (1.0, 1.0) and params["grid_size"] == (2, 6)


# ------------------------------------------------------------------------------------- callback


def test_callback_trains_and_leaves_validation_alone() -> None:
    loader = make_loader()
    module, after = UserModule(), Recorder()
    mixer = GridMix(mode="holes", n_holes=(1, 2), per_sample=True, seed=0)
    make_trainer([mixer, after], limit_val_batches=2).fit(module, loader, loader)
    assert len(module.seen["train"]) == 4
    raw = list(loader)
    for (x, y), (xb, yb) in zip(raw, after.batches):
        assert yb.shape == (8, NUM_CLASSES) and torch.allclose(yb.sum(dim=1), torch.ones(8))
        assert not torch.equal(xb, x)
    assert len(module.seen["val"]) == 4  # 2 sanity-check batches, then 2 after the epoch
    for i, (xv, yv) in enumerate(module.seen["val"]):
        assert torch.equal(xv, raw[i % 2][0]) and torch.equal(yv, raw[i % 2][1])
    assert "n_holes" in mixer.state_key and "'mode': 'holes'" in mixer.state_key

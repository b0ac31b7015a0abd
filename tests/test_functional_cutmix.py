"""Tests of CutMix's box sampler, ``box_mask`` and the deterministic ``cutmix(x, index, boxes)``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_mixup.functional import box_mask, cutmix, cutmix_batch, sample_boxes
from strategies import DTYPES, SEEDS, boxes_in, draw_images, gen


@st.composite
def cases(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, a partner permutation and per-sample boxes ``[B, 4]``."""
    seed = draw(SEEDS)
    batch = draw(st.integers(1, 6))
    height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    dtype = draw(st.sampled_from(DTYPES))
    x = draw_images(seed, batch, draw(st.integers(1, 3)), height, width, dtype)
    index = torch.randperm(batch, generator=gen(seed + 1))
    boxes = torch.tensor([draw(boxes_in(height, width)) for _ in range(batch)], dtype=torch.long)
    return x, index, boxes


def paste_oracle(x: torch.Tensor, index: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """x[i] with x[index[i]]'s box region pasted, one sample at a time."""
    out = x.clone()
    for i in range(x.shape[0]):
        y1, y2, x1, x2 = boxes[i].tolist()
        out[i, :, y1:y2, x1:x2] = x[int(index[i]), :, y1:y2, x1:x2]
    return out


# ------------------------------------------------------------------------------------- sample_boxes


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, height=st.integers(1, 64), width=st.integers(1, 64), per_sample=st.booleans())
def test_sample_boxes_side_and_clipping(seed: int, height: int, width: int, per_sample: bool) -> None:
    n = 256
    lam_in = torch.rand(n if per_sample else (), generator=gen(seed))
    boxes, lam = sample_boxes(lam_in, height, width, generator=gen(seed + 1))
    assert boxes.dtype == torch.int64 and boxes.shape == ((n, 4) if per_sample else (4,))
    assert lam.dtype == torch.float32 and lam.shape == lam_in.shape
    b = boxes.reshape(-1, 4)
    y1, y2, x1, x2 = b.unbind(dim=1)
    # inside the image
    assert ((0 <= y1) & (y1 <= y2) & (y2 <= height)).all()
    assert ((0 <= x1) & (x1 <= x2) & (x2 <= width)).all()
    # before clipping a box spans c ± ⌊cut/2⌋ with cut = ⌊√(1−λ)·side⌋ (official rand_bbox); clipping only shrinks it
    ratio = torch.sqrt(1 - lam_in.double().reshape(-1))
    cut_h = torch.floor(ratio * height).long() // 2 * 2
    cut_w = torch.floor(ratio * width).long() // 2 * 2
    assert ((y2 - y1) <= cut_h).all() and ((x2 - x1) <= cut_w).all()
    inside_y = (y1 > 0) & (y2 < height)  # certainly not clipped in y
    inside_x = (x1 > 0) & (x2 < width)
    assert torch.equal((y2 - y1)[inside_y], cut_h[inside_y])
    assert torch.equal((x2 - x1)[inside_x], cut_w[inside_x])
    # λ corrected to the share of the image outside the box
    area = ((y2 - y1) * (x2 - x1)).double()
    expected = (1 - area / (height * width)).float()
    assert torch.equal(lam.reshape(-1), expected)
    # the correction only ever raises λ (the box only shrinks), up to float32 rounding
    assert (lam.reshape(-1).double() >= lam_in.reshape(-1).double() - 1e-6).all()


def test_sample_boxes_unclipped_side_exact() -> None:
    # small boxes in a large image are rarely clipped: check the exact side on many of them
    lam_in = 0.9 + 0.1 * torch.rand(2000, generator=gen(0))
    boxes, lam = sample_boxes(lam_in, 64, 48, generator=gen(1))
    y1, y2, x1, x2 = boxes.unbind(dim=1)
    unclipped = (y1 > 0) & (y2 < 64) & (x1 > 0) & (x2 < 48)
    assert int(unclipped.sum()) > 1000
    ratio = torch.sqrt(1 - lam_in.double())
    assert torch.equal((y2 - y1)[unclipped], (torch.floor(ratio * 64).long() // 2 * 2)[unclipped])  # official: an
    assert torch.equal((x2 - x1)[unclipped], (torch.floor(ratio * 48).long() // 2 * 2)[unclipped])  # odd cut loses 1
    area = ((y2 - y1) * (x2 - x1))[unclipped].double()
    torch.testing.assert_close(lam[unclipped].double(), 1 - area / (64 * 48))


def test_sample_boxes_centre_is_uniform() -> None:
    # √(1−λ) = 0.5 makes cuts of ⌊2⌋ × ⌊2.5⌋ = 2 × 2: a box [c − 1, c + 1) whose far edge c + 1 is never clipped,
    # so it gives the centre, which must be uniform over the pixels
    height, width = 4, 5
    lam_in = torch.full((20_000,), 1 - 0.5**2, dtype=torch.float64)
    boxes, lam = sample_boxes(lam_in, height, width, generator=gen(0))
    centre_y, centre_x = boxes[:, 1] - 1, boxes[:, 3] - 1
    counts = torch.bincount(centre_y * width + centre_x, minlength=height * width).double()
    expected = 20_000 / (height * width)
    assert ((counts - expected).abs() < 5 * math.sqrt(expected)).all()


def test_sample_boxes_extremes() -> None:
    boxes, lam = sample_boxes(torch.ones(50), 16, 16, generator=gen(0))
    assert ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2]) == 0).all()
    assert torch.equal(lam, torch.ones(50))
    boxes, lam = sample_boxes(torch.zeros(500), 16, 16, generator=gen(0))
    # a full-size box at a uniform centre is clipped to between a quarter and all of the image
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    assert (area >= 8 * 8).all() and (area <= 256).all() and bool((area == 256).any())
    assert ((lam >= 0) & (lam <= 0.75)).all()


def test_sample_boxes_deterministic() -> None:
    lam = torch.rand(32, generator=gen(0))
    a = sample_boxes(lam, 32, 24, generator=gen(5))
    b = sample_boxes(lam, 32, 24, generator=gen(5))
    c = sample_boxes(lam, 32, 24, generator=gen(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


# ------------------------------------------------------------------------------------- box_mask


@settings(max_examples=30, deadline=None)
@given(data=st.data(), height=st.integers(1, 9), width=st.integers(1, 9), batch=st.integers(1, 5))
def test_box_mask_matches_loop(data: st.DataObject, height: int, width: int, batch: int) -> None:
    boxes = torch.tensor([data.draw(boxes_in(height, width)) for _ in range(batch)], dtype=torch.long)
    mask = box_mask(boxes, height, width)
    assert mask.dtype == torch.bool and mask.shape == (batch, 1, height, width)
    for i in range(batch):
        y1, y2, x1, x2 = boxes[i].tolist()
        expected = torch.zeros(height, width, dtype=torch.bool)
        expected[y1:y2, x1:x2] = True
        assert torch.equal(mask[i, 0], expected)
        assert int(mask[i].sum()) == (y2 - y1) * (x2 - x1)
    single = box_mask(boxes[0], height, width)
    assert single.shape == (1, 1, height, width) and torch.equal(single, mask[:1])


# ------------------------------------------------------------------------------------- cutmix


@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_per_sample_boxes_match_oracle(case: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    x, index, boxes = case
    out = cutmix(x, index, boxes)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, paste_oracle(x, index, boxes))
    # every pixel is exactly x's where the box mask is False and x[index]'s where it is True
    inside = box_mask(boxes, x.shape[2], x.shape[3])
    assert torch.equal(out, torch.where(inside, x[index], x))
    # λ = 1 − box area / (H·W) is the share of pixels that come from x itself
    area = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).double()
    lam = 1 - area / (x.shape[2] * x.shape[3])
    torch.testing.assert_close((~inside).double().mean(dim=(1, 2, 3)), lam)


@settings(max_examples=40, deadline=None)
@given(case=cases(), data=st.data())
def test_batch_box_equals_repeated_per_sample_box(
    case: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: st.DataObject
) -> None:
    x, index, _ = case
    box = torch.tensor(data.draw(boxes_in(x.shape[2], x.shape[3])), dtype=torch.long)
    out = cutmix(x, index, box)  # slicing path
    assert torch.equal(out, cutmix(x, index, box.expand(x.shape[0], 4).clone()))  # mask path
    assert torch.equal(out, paste_oracle(x, index, box.expand(x.shape[0], 4)))


@settings(max_examples=30, deadline=None)
@given(case=cases(), data=st.data())
def test_empty_box_is_bit_identical(case: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: st.DataObject) -> None:
    x, index, _ = case
    height, width = x.shape[2], x.shape[3]
    y = data.draw(st.integers(0, height))
    c = data.draw(st.integers(0, width))
    for box in ([0, 0, 0, 0], [y, y, 0, width], [0, height, c, c]):
        box_t = torch.tensor(box, dtype=torch.long)
        out = cutmix(x, index, box_t)
        assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
        assert torch.equal(cutmix(x, index, box_t.expand(x.shape[0], 4).clone()), x)


@settings(max_examples=30, deadline=None)
@given(case=cases(), data=st.data())
def test_identity_partner_is_exact(case: tuple[torch.Tensor, torch.Tensor, torch.Tensor], data: st.DataObject) -> None:
    x, _, boxes = case
    identity = torch.arange(x.shape[0])
    assert torch.equal(cutmix(x, identity, boxes), x)
    box = torch.tensor(data.draw(boxes_in(x.shape[2], x.shape[3])), dtype=torch.long)
    assert torch.equal(cutmix(x, identity, box), x)


def test_full_box_gives_the_partner() -> None:
    x = draw_images(0, 5, 3, 6, 7, torch.float32)
    index = torch.tensor([4, 0, 1, 2, 3])
    assert torch.equal(cutmix(x, index, torch.tensor([0, 6, 0, 7])), x[index])
    assert torch.equal(cutmix(x, index, torch.tensor([[0, 6, 0, 7]] * 5)), x[index])


def test_cutmix_does_not_modify_input() -> None:
    x = draw_images(0, 4, 3, 8, 8, torch.float32)
    before = x.clone()
    index = torch.tensor([1, 2, 3, 0])
    cutmix(x, index, torch.tensor([1, 5, 2, 7]))
    cutmix(x, index, torch.tensor([[1, 5, 2, 7]] * 4))
    assert torch.equal(x, before)


@pytest.mark.parametrize("per_sample", [False, True])
def test_cutmix_gradient(per_sample: bool) -> None:
    x = torch.randn(4, 3, 8, 8, generator=gen(0), requires_grad=True)
    index = torch.tensor([1, 2, 3, 0])
    boxes = torch.tensor([[1, 5, 2, 7]] * 4) if per_sample else torch.tensor([1, 5, 2, 7])
    out = cutmix(x, index, boxes)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and bool((x.grad != 0).any())
    # each pixel of the output comes from exactly one input pixel, and the pairing is a permutation
    assert torch.equal(x.grad, torch.ones_like(x))


def test_cutmix_boxes_on_other_device_or_dtype() -> None:
    x = draw_images(0, 3, 2, 8, 8, torch.float32)
    index = torch.tensor([2, 0, 1])
    boxes = torch.tensor([[0, 4, 0, 4], [2, 8, 1, 3], [0, 0, 0, 0]], dtype=torch.int32)
    assert torch.equal(cutmix(x, index, boxes), paste_oracle(x, index, boxes))


@pytest.mark.parametrize("shape", [(4, 2), (4, 3, 8), (4, 1, 3, 8, 8)])
def test_cutmix_needs_4d_input(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=str(list(shape)).replace("[", r"\[").replace("]", r"\]")):
        cutmix(torch.randn(*shape), torch.arange(4), torch.tensor([0, 1, 0, 1]))


# ------------------------------------------------------------------------------------- cutmix_batch


@pytest.mark.parametrize("per_sample", [False, True])
def test_cutmix_batch_lam_is_pasted_area(per_sample: bool) -> None:
    # labels = arange(B) make each target row reveal the partner; channel 0 tags each pixel's source sample
    batch, height, width = 12, 10, 14
    x = torch.randn(batch, 2, height, width, generator=gen(0))
    x[:, 0] = torch.arange(batch, dtype=torch.float32).view(-1, 1, 1)
    out = cutmix_batch(
        x, torch.arange(batch), batch, alpha=1.0, per_sample=per_sample, partner="flip", generator=gen(1)
    )
    lam = out.lam.expand(batch)
    from_self = out.input[:, 0] == x[:, 0]
    index = torch.arange(batch - 1, -1, -1)
    assert torch.equal(out.input, torch.where(from_self[:, None], x, x[index]))
    torch.testing.assert_close(from_self.double().mean(dim=(1, 2)).float(), lam, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.target[torch.arange(batch), torch.arange(batch)], lam, atol=1e-6, rtol=0)


def test_cutmix_batch_lam_mean_is_above_the_beta_mean() -> None:
    # clipping only shrinks boxes, so the corrected λ is on average above E[Beta(1, 1)] = 1/2
    x = torch.zeros(4000, 1, 16, 16)
    out = cutmix_batch(x, torch.zeros(4000, dtype=torch.long), 2, alpha=1.0, per_sample=True, generator=gen(0))
    assert 0.5 < float(out.lam.mean()) < 0.75

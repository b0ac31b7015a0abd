"""Tests of ResizeMix: the scale and box samplers, the paste against a per-sample ``F.interpolate`` oracle, the
batch op (λ = kept area, targets of every task) and the callback."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NUM_CLASSES, Recorder, UserModule, make_loader, make_trainer
from lightning_mixup.callbacks.resizemix import ResizeMix
from lightning_mixup.functional import Targets, box_mask, pair_loss
from lightning_mixup.functional.resizemix import (
    INTERPOLATIONS,
    resizemix,
    resizemix_batch,
    sample_paste_boxes,
    sample_scales,
)
from strategies import DTYPES, SEEDS, boxes_in, draw_images, gen

TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4, torch.bfloat16: 3e-2}  # grid_sample vs F.interpolate


@st.composite
def cases(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, a partner permutation and per-sample boxes ``[B, 4]``."""
    seed = draw(SEEDS)
    batch = draw(st.integers(1, 5))
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    x = draw_images(seed, batch, draw(st.integers(1, 3)), height, width, draw(st.sampled_from(DTYPES)))
    index = torch.randperm(batch, generator=gen(seed + 1))
    boxes = torch.tensor([draw(boxes_in(height, width)) for _ in range(batch)], dtype=torch.long)
    return x, index, boxes


def resize_oracle(image: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """``image [C, H, W]`` resized by ``F.interpolate``. ``nearest`` picks the pixels whose linear index
    ``F.interpolate`` gives for a float32 index map: the same pixels as ``F.interpolate(image)`` for float32,
    float16 and bfloat16 images, and defined for float64 (where F.interpolate rounds a few exact ratios otherwise)."""
    if mode != "nearest":
        return F.interpolate(image[None], size=size, mode=mode, align_corners=False)[0]
    height, width = image.shape[1:]
    linear = torch.arange(height * width, dtype=torch.float32).view(1, 1, height, width)
    picked = F.interpolate(linear, size=size, mode="nearest").long().flatten()
    return image.flatten(1)[:, picked].view(image.shape[0], *size)


def paste_oracle(x: torch.Tensor, index: torch.Tensor, boxes: torch.Tensor, mode: str) -> torch.Tensor:
    """The paper's algorithm, one sample at a time: x[i] with the whole x[index[i]] resized into its box."""
    out = x.clone()
    for i in range(x.shape[0]):
        y1, y2, x1, x2 = boxes[i].tolist()
        if y2 > y1 and x2 > x1:
            out[i, :, y1:y2, x1:x2] = resize_oracle(x[int(index[i])], (y2 - y1, x2 - x1), mode)
    return out


def assert_pasted(out: torch.Tensor, expected: torch.Tensor, mode: str) -> None:
    if mode == "nearest":
        assert torch.equal(out, expected)
    else:
        tol = TOLERANCE[out.dtype]
        torch.testing.assert_close(out.double(), expected.double(), atol=tol, rtol=tol)


# ------------------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("per_sample", [False, True])
def test_sample_scales_laws(per_sample: bool) -> None:
    n = 20_000
    uniform = sample_scales(n, (0.1, 0.8), generator=gen(0))
    assert uniform.dtype == torch.float64 and uniform.shape == (n,)
    assert bool(((uniform >= 0.1) & (uniform <= 0.8)).all())
    assert abs(float(uniform.mean()) - 0.45) < 0.01 and abs(float(uniform.std()) - 0.7 / math.sqrt(12)) < 0.01
    # OpenMixup's use_alpha: Beta(1, 1) kept inside the scope, else redrawn uniformly there: the same law
    beta = sample_scales(n, (0.1, 0.8), 1.0, "beta", generator=gen(1))
    assert bool(((beta >= 0.1) & (beta <= 0.8)).all())
    assert abs(float(beta.mean()) - 0.45) < 0.01 and abs(float(beta.std()) - 0.7 / math.sqrt(12)) < 0.01
    peaked = sample_scales(n, (0.1, 0.8), 50.0, "beta", generator=gen(2))  # Beta(50, 50): near 1/2, always in scope
    assert abs(float(peaked.mean()) - 0.5) < 0.01 and float(peaked.std()) < 0.06
    # mmpretrain: the kept area 1 − τ² ~ U(scope)
    kept = 1 - sample_scales(n, (0.1, 0.8), 1.0, "lam", generator=gen(3)) ** 2
    assert bool(((kept >= 0.1 - 1e-12) & (kept <= 0.8 + 1e-12)).all()) and abs(float(kept.mean()) - 0.45) < 0.01
    one = sample_scales(None, (0.3, 0.3), generator=gen(0))
    assert one.shape == () and float(one) == pytest.approx(0.3)
    assert torch.equal(sample_scales(8, generator=gen(5)), sample_scales(8, generator=gen(5)))


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, height=st.integers(1, 40), width=st.integers(1, 40), placement=st.sampled_from(["clip", "inside"]))
def test_sample_paste_boxes(seed: int, height: int, width: int, placement: str) -> None:
    scale = torch.rand(300, generator=gen(seed), dtype=torch.float64)
    boxes, lam = sample_paste_boxes(scale, height, width, placement, generator=gen(seed + 1))
    assert boxes.dtype == torch.int64 and boxes.shape == (300, 4) and lam.dtype == torch.float32
    y1, y2, x1, x2 = boxes.unbind(1)
    assert bool(((0 <= y1) & (y1 <= y2) & (y2 <= height) & (0 <= x1) & (x1 <= x2) & (x2 <= width)).all())
    cut_h, cut_w = torch.floor(scale * height).long(), torch.floor(scale * width).long()
    if placement == "inside":  # the whole ⌊τH⌋ × ⌊τW⌋ box
        assert torch.equal(y2 - y1, cut_h) and torch.equal(x2 - x1, cut_w)
    else:  # clipping only shrinks it; unclipped boxes have the full side
        assert bool(((y2 - y1) <= cut_h).all() and ((x2 - x1) <= cut_w).all())
        whole = (y1 > 0) & (y2 < height)
        assert torch.equal((y2 - y1)[whole], cut_h[whole])
    area = ((y2 - y1) * (x2 - x1)).double()
    assert torch.equal(lam, (1 - area / (height * width)).float())
    single, lam1 = sample_paste_boxes(scale[0], height, width, placement, generator=gen(seed))
    assert single.shape == (4,) and lam1.shape == ()


def test_inside_placement_is_uniform() -> None:
    # a 2×2 box in a 5×4 image has 4×3 top-left corners, each as likely
    boxes, _ = sample_paste_boxes(torch.full((12_000,), 0.5), 5, 4, "inside", generator=gen(0))
    assert torch.equal(boxes[:, 1] - boxes[:, 0], torch.full((12_000,), 2)) and bool(
        (boxes[:, 3] - boxes[:, 2] == 2).all()
    )
    counts = torch.bincount(boxes[:, 0] * 3 + boxes[:, 2], minlength=12).double()
    assert counts.numel() == 12 and bool(((counts - 1000).abs() < 5 * math.sqrt(1000)).all())


# ------------------------------------------------------------------------------------- the paste


@settings(max_examples=40, deadline=None)
@given(case=cases(), mode=st.sampled_from(INTERPOLATIONS))
def test_per_sample_paste_matches_oracle(case: tuple[torch.Tensor, torch.Tensor, torch.Tensor], mode: str) -> None:
    x, index, boxes = case
    out = resizemix(x, index, boxes, mode)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert_pasted(out, paste_oracle(x, index, boxes, mode), mode)
    own = ~box_mask(boxes, x.shape[2], x.shape[3])
    assert torch.equal(out[own.expand_as(x)], x[own.expand_as(x)])  # outside the boxes: the image itself, exactly


@settings(max_examples=40, deadline=None)
@given(case=cases(), mode=st.sampled_from(INTERPOLATIONS), data=st.data())
def test_batch_box_matches_oracle_and_per_sample_path(
    case: tuple[torch.Tensor, torch.Tensor, torch.Tensor], mode: str, data: st.DataObject
) -> None:
    x, index, _ = case
    box = torch.tensor(data.draw(boxes_in(x.shape[2], x.shape[3])), dtype=torch.long)
    repeated = box.expand(x.shape[0], 4).clone()
    out = resizemix(x, index, box, mode)  # F.interpolate (nearest: index selection) of the batch
    assert_pasted(out, paste_oracle(x, index, repeated, mode), mode)
    assert_pasted(resizemix(x, index, repeated, mode), out, mode)  # the gather / grid_sample path
    if mode == "nearest" and x.dtype != torch.float64:  # bit-identical to F.interpolate itself
        y1, y2, x1, x2 = box.tolist()
        if y2 > y1 and x2 > x1:
            assert torch.equal(out[:, :, y1:y2, x1:x2], F.interpolate(x[index], size=(y2 - y1, x2 - x1)))


def test_nearest_equals_f_interpolate_for_every_size() -> None:
    x = torch.randn(2, 2, 37, 29, generator=gen(0))
    for h in range(1, 38, 3):
        for w in range(1, 30, 4):
            boxes = torch.tensor([[37 - h, 37, 0, w], [0, h, 29 - w, 29]])
            out = resizemix(x, torch.tensor([1, 0]), boxes)
            assert torch.equal(out[0, :, 37 - h :, :w], F.interpolate(x[1:], size=(h, w))[0])
            assert torch.equal(out[1, :, :h, 29 - w :], F.interpolate(x[:1], size=(h, w))[0])


@pytest.mark.parametrize("mode", INTERPOLATIONS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_empty_and_full_boxes(mode: str, per_sample: bool) -> None:
    x = draw_images(0, 4, 3, 9, 7, torch.float32)
    index = torch.tensor([3, 0, 1, 2])
    empty, full = torch.tensor([2, 2, 0, 7]), torch.tensor([0, 9, 0, 7])
    if per_sample:
        empty, full = empty.expand(4, 4), full.expand(4, 4)
    out = resizemix(x, index, empty, mode)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    assert_pasted(resizemix(x, index, full, mode), x[index], mode)  # a full-size box: the partner itself
    assert torch.equal(resizemix(x, torch.arange(4), empty.clone(), mode), x)


@pytest.mark.parametrize("mode", INTERPOLATIONS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_out_buffer_and_gradient(mode: str, per_sample: bool) -> None:
    x = torch.randn(6, 3, 12, 10, generator=gen(0))
    options = dict(interpolation=mode, per_sample=per_sample, scope=(0.3, 0.9))
    plain = resizemix_batch(x, torch.arange(6) % 4, 4, generator=gen(1), **options)
    buffer = torch.full_like(x, float("nan"))
    into = resizemix_batch(x, torch.arange(6) % 4, 4, generator=gen(1), out=buffer, **options)
    assert into.input.data_ptr() == buffer.data_ptr() and torch.equal(into.input, plain.input)
    leaf = x.clone().requires_grad_(True)
    mixed = resizemix_batch(leaf, torch.arange(6) % 4, 4, generator=gen(1), **options)
    torch.testing.assert_close(mixed.input, plain.input, atol=1e-6, rtol=0)
    mixed.input.sum().backward()
    assert leaf.grad is not None and bool(torch.isfinite(leaf.grad).all())
    # every output pixel is one pixel or a blend whose weights sum to 1 (bicubic's include negative ones)
    torch.testing.assert_close(leaf.grad.sum(), torch.tensor(float(x.numel())))
    if mode != "bicubic":
        assert bool((leaf.grad[plain.mask.expand_as(x)] >= 1).all())  # own pixels pass through with weight 1


# ------------------------------------------------------------------------------------- resizemix_batch


@pytest.mark.parametrize("placement", ["clip", "inside"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_batch_lam_is_the_kept_area(per_sample: bool, placement: str) -> None:
    # labels = arange(B) make each target row reveal the partner; channel 0 tags each pixel's source sample
    batch, height, width = 12, 16, 20
    x = torch.randn(batch, 2, height, width, generator=gen(0))
    x[:, 0] = torch.arange(batch, dtype=torch.float32).view(-1, 1, 1)
    out = resizemix_batch(
        x, torch.arange(batch), batch, per_sample=per_sample, placement=placement, partner="flip", generator=gen(1)
    )
    lam = out.lam.expand(batch)
    assert out.mask.dtype == torch.bool and out.mask.shape == ((batch if per_sample else 1), 1, height, width)
    from_self = out.input[:, 0] == x[:, 0]
    assert torch.equal(from_self, out.mask[:, 0].expand(batch, height, width))
    partner = torch.arange(batch - 1, -1, -1)
    assert bool((out.input[:, 0][~from_self] == partner.view(-1, 1, 1).expand(batch, height, width)[~from_self]).all())
    torch.testing.assert_close(from_self.double().mean(dim=(1, 2)).float(), lam, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.target[torch.arange(batch), torch.arange(batch)], lam, atol=1e-6, rtol=0)
    first, second = out.sources
    torch.testing.assert_close(out.input, torch.where(out.mask, first, second), atol=0, rtol=0)
    assert torch.equal(out.index, partner)
    assert torch.equal(out.input, paste_oracle(x, partner, _boxes_of(out.mask).expand(batch, 4), "nearest"))


def _boxes_of(mask: torch.Tensor) -> torch.Tensor:
    """The box ``(y1, y2, x1, x2)`` where each ``mask [n, 1, H, W]`` is False (``[0, 0, 0, 0]`` if none)."""
    rows, cols = (~mask[:, 0]).any(2), (~mask[:, 0]).any(1)
    result = []
    for r, c in zip(rows, cols):
        ys, xs = r.nonzero().flatten(), c.nonzero().flatten()
        result.append([int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1] if len(ys) else [0, 0, 0, 0])
    return torch.tensor(result)


@pytest.mark.parametrize(
    ("placement", "expected"),
    [("inside", 1 - (0.8**3 - 0.1**3) / (3 * 0.7)), ("clip", None)],
)
def test_lam_distribution(placement: str, expected: float | None) -> None:
    # τ ~ U(0.1, 0.8): E[λ] = 1 − E[τ²] ≈ 0.757 when the whole box fits (⌊τH⌋ adds ~2E[τ]/H); clipping only raises λ
    x = torch.zeros(4000, 1, 128, 128)
    out = resizemix_batch(
        x, torch.zeros(4000, dtype=torch.long), 2, per_sample=True, placement=placement, generator=gen(0)
    )
    mean = float(out.lam.mean())
    if expected is not None:
        assert abs(mean - expected - 2 * 0.45 / 128) < 0.01
    else:
        assert 0.78 < mean < 0.9
    assert float(out.lam.min()) >= 1 - 0.8**2 - 1e-6 and float(out.lam.max()) <= 1.0


@pytest.mark.parametrize("per_sample", [False, True])
def test_degenerate_scopes(per_sample: bool) -> None:
    x, y = draw_images(0, 5, 3, 8, 8, torch.float32), torch.arange(5) % 4
    none = resizemix_batch(x, y, 4, scope=(0.0, 0.0), per_sample=per_sample, generator=gen(0))
    assert torch.equal(none.input, x) and bool((none.lam == 1).all())
    torch.testing.assert_close(none.target, F.one_hot(y, 4).float())
    whole = resizemix_batch(x, y, 4, scope=(1.0, 1.0), placement="inside", per_sample=per_sample, generator=gen(0))
    assert torch.equal(whole.input, x[whole.index]) and bool((whole.lam == 0).all())


@pytest.mark.parametrize("mode", INTERPOLATIONS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_segmentation_masks_follow_the_image(mode: str, per_sample: bool) -> None:
    batch, classes, height, width = 6, 5, 12, 14
    labels = torch.randint(0, classes, (batch, height, width), generator=gen(0))
    x = torch.randn(batch, 2, height, width, generator=gen(1))
    x[:, 0] = labels.float()  # channel 0 is the label mask
    spec = Targets(classes, task="segmentation")
    out = resizemix_batch(
        x, labels, spec, interpolation=mode, per_sample=per_sample, scope=(0.4, 0.9), generator=gen(2)
    )
    assert out.target.dtype == labels.dtype and out.target.shape == labels.shape
    nearest = resizemix(x, out.index, _boxes_of(out.mask).expand(batch, 4) if per_sample else _boxes_of(out.mask)[0])
    assert torch.equal(out.target, nearest[:, 0].long())  # hard labels, resized by nearest with the image
    if mode == "nearest":
        assert torch.equal(out.target, out.input[:, 0].long())
    # per-pixel probabilities are resized with the image's interpolation (bilinear for bicubic) and stay rows of 1
    probs = F.one_hot(labels, classes).permute(0, 3, 1, 2).float()
    soft = resizemix_batch(
        x, probs, spec, interpolation=mode, per_sample=per_sample, scope=(0.4, 0.9), generator=gen(2)
    )
    assert soft.target.shape == probs.shape and bool((soft.target >= 0).all())
    torch.testing.assert_close(soft.target.sum(1), torch.ones(batch, height, width))
    own = soft.mask.expand_as(probs)
    assert torch.equal(soft.target[own], probs[own])


@pytest.mark.parametrize("per_sample", [False, True])
def test_pair_form_equals_mixed_form(per_sample: bool) -> None:
    x, y = torch.randn(8, 3, 10, 10, generator=gen(0)), torch.arange(8) % 4
    mixed = resizemix_batch(x, y, 4, per_sample=per_sample, generator=gen(1))
    pair = resizemix_batch(x, y, Targets(4, form="pair"), per_sample=per_sample, generator=gen(1))
    assert torch.equal(mixed.input, pair.input)
    logits = torch.randn(8, 4, generator=gen(2))
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    torch.testing.assert_close(pair_loss(ce, logits, pair.target), F.cross_entropy(logits, mixed.target))
    seg = Targets(3, task="segmentation")
    labels = torch.randint(0, 3, (8, 10, 10), generator=gen(3))
    a = resizemix_batch(x, labels, seg, per_sample=per_sample, generator=gen(4))
    b = resizemix_batch(
        x, labels, Targets(3, task="segmentation", form="pair"), per_sample=per_sample, generator=gen(4)
    )
    dense = torch.randn(8, 3, 10, 10, generator=gen(5))
    torch.testing.assert_close(pair_loss(ce, dense, b.target), F.cross_entropy(dense, a.target))


def test_same_generator_same_mix() -> None:
    x, y = torch.randn(8, 3, 16, 16, generator=gen(0)), torch.arange(8) % 4
    for per_sample in (False, True):
        a = resizemix_batch(x, y, 4, per_sample=per_sample, generator=gen(7))
        b = resizemix_batch(x, y, 4, per_sample=per_sample, generator=gen(7))
        assert torch.equal(a.input, b.input) and torch.equal(a.lam, b.lam)


# ------------------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "error", "quoted"),
    [
        ({"scope": (0.9, 0.1)}, ValueError, "(0.9, 0.1)"),
        ({"scope": (0.1, 1.5)}, ValueError, "(0.1, 1.5)"),
        ({"scope": (-0.1, 0.5)}, ValueError, "(-0.1, 0.5)"),
        ({"scope": (0.1,)}, ValueError, "(0.1,)"),
        ({"scope": 0.5}, TypeError, "0.5"),
        ({"scope": "ab"}, TypeError, "'ab'"),
        ({"scope": (0.1, "x")}, TypeError, "'x'"),
        ({"scope": (True, 0.5)}, TypeError, "True"),
        ({"sampling": "normal"}, ValueError, "'normal'"),
        ({"interpolation": "area"}, ValueError, "'area'"),
        ({"placement": "edge"}, ValueError, "'edge'"),
        ({"alpha": 0.0}, ValueError, "0.0"),
    ],
)
def test_bad_options_are_quoted(options: dict, error: type[Exception], quoted: str) -> None:
    x, y = torch.randn(4, 3, 8, 8), torch.arange(4) % 2
    with pytest.raises(error, match=quoted.replace("(", r"\(").replace(")", r"\)")):
        resizemix_batch(x, y, 2, **options)
    with pytest.raises(error, match=quoted.replace("(", r"\(").replace(")", r"\)")):
        ResizeMix(**options)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match=r"\[4, 3, 8\]"):
        resizemix(torch.randn(4, 3, 8), torch.arange(4), torch.tensor([0, 1, 0, 1]))
    with pytest.raises(TypeError, match="floating-point"):
        resizemix_batch(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(4) % 2, 2)


# ------------------------------------------------------------------------------------- the callback


def test_callback_trains_and_leaves_validation_alone() -> None:
    loader = make_loader()
    module, after = UserModule(), Recorder()
    mixer = ResizeMix(scope=[0.2, 0.9], per_sample=True, seed=0)  # a list, as Hydra passes it
    assert mixer.scope == (0.2, 0.9) and "scope" in mixer.state_key
    make_trainer([mixer, after], num_sanity_val_steps=0).fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert len(after.batches) == len(loader)
    for x, y in after.batches:
        assert x.shape == (8, 3, 8, 8) and y.shape == (8, NUM_CLASSES)
        torch.testing.assert_close(y.sum(1), torch.ones(8))
    raw = list(loader)
    assert any(not torch.equal(mixed[0], r[0]) for mixed, r in zip(after.batches, raw))
    assert len(module.seen["val"]) == len(raw)
    for seen, r in zip(module.seen["val"], raw):
        assert torch.equal(seen[0], r[0]) and torch.equal(seen[1], r[1])


def test_hydra_config_builds_the_callback() -> None:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import instantiate

    from lightning_mixup.train import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["mix=resizemix"])
    GlobalHydra.instance().clear()
    mixer = instantiate(cfg.mix)
    assert isinstance(mixer, ResizeMix)
    assert (mixer.scope, mixer.sampling, mixer.interpolation, mixer.placement) == (
        (0.1, 0.8),
        "uniform",
        "nearest",
        "clip",
    )

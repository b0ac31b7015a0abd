"""Tests of SaliencyMix: the spectral-residual saliency against a slow numpy reference, the official box rule
(centred on the source's peak, clipped), and ``saliencymix_batch`` (λ, per-batch and per-sample forms, tasks)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NUM_CLASSES, UserModule, make_loader, make_trainer
from lightning_mixup.callbacks.saliencymix import SaliencyMix
from lightning_mixup.functional import PairTarget, Targets, pair_loss
from lightning_mixup.functional.sampling import sample_lam
from lightning_mixup.functional.saliencymix import (
    saliency_boxes,
    saliency_peaks,
    saliencymix_batch,
    spectral_residual_saliency,
)
from strategies import DTYPES, SEEDS, draw_images, gen, policy_error

# ------------------------------------------------------------------------------------- slow references


def resize_ref(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """OpenCV's INTER_LINEAR, one output pixel at a time: source = (dst + 0.5)·scale − 0.5, edges clamped."""
    h, w = img.shape
    out = np.empty((height, width))
    for i in range(height):
        for j in range(width):
            sy = max((i + 0.5) * h / height - 0.5, 0.0)
            sx = max((j + 0.5) * w / width - 0.5, 0.0)
            y0, x0 = min(int(np.floor(sy)), h - 1), min(int(np.floor(sx)), w - 1)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            top = (1 - fx) * img[y0, x0] + fx * img[y0, x1]
            bottom = (1 - fx) * img[y1, x0] + fx * img[y1, x1]
            out[i, j] = (1 - fy) * top + fy * bottom
    return out


def filter_ref(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D correlation with the outer product of ``kernel``, BORDER_REFLECT_101 (numpy's ``reflect``)."""
    k = len(kernel)
    pad = k // 2
    padded = np.pad(img, pad, mode="reflect")
    out = np.zeros_like(img)
    for a in range(k):
        for b in range(k):
            out += kernel[a] * kernel[b] * padded[a : a + img.shape[0], b : b + img.shape[1]]
    return out


def saliency_ref(image: np.ndarray, size: int | None = 64) -> np.ndarray:
    """OpenCV's StaticSaliencySpectralResidual steps on one image ``[C, H, W]`` (RGB), step by step in numpy."""
    channels, height, width = image.shape
    gray = 0.299 * image[0] + 0.587 * image[1] + 0.114 * image[2] if channels == 3 else image.mean(axis=0)
    if size is not None:
        gray = resize_ref(gray, size, size)
    spectrum = np.fft.fft2(gray)
    log_amplitude = np.log(np.abs(spectrum) + 1.0)
    residual = log_amplitude - filter_ref(log_amplitude, np.full(3, 1.0 / 3.0))
    back = np.fft.ifft2(np.exp(residual) * np.exp(1j * np.angle(spectrum)))
    gauss = np.exp(-((np.arange(5) - 2.0) ** 2) / (2 * 8.0**2))
    saliency = filter_ref(np.abs(back), gauss / gauss.sum()) ** 2
    saliency = saliency / saliency.max()
    return resize_ref(saliency, height, width) if size is not None else saliency


def box_ref(saliency: np.ndarray, lam: float) -> tuple[int, int, int, int]:
    """The official ``saliency_bbox`` on one map ``[H, W]``: (y1, y2, x1, x2)."""
    height, width = saliency.shape
    cut_rat = np.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * cut_rat), int(width * cut_rat)
    level = (saliency * 255).astype("uint8")
    row, col = np.unravel_index(np.argmax(level, axis=None), level.shape)
    return (
        int(np.clip(row - cut_h // 2, 0, height)),
        int(np.clip(row + cut_h // 2, 0, height)),
        int(np.clip(col - cut_w // 2, 0, width)),
        int(np.clip(col + cut_w // 2, 0, width)),
    )


def natural(seed: int, batch: int, channels: int, height: int, width: int) -> torch.Tensor:
    """Smooth random images with a bright patch each (closer to photos than white noise)."""
    g = gen(seed)
    x = F.avg_pool2d(torch.randn(batch, channels, height + 2, width + 2, generator=g, dtype=torch.float64), 3, 1)
    for i in range(batch):
        r, c = int(torch.randint(0, height, (), generator=g)), int(torch.randint(0, width, (), generator=g))
        x[i, :, r : r + 3, c : c + 3] += 2.0
    return x


# ------------------------------------------------------------------------------------- spectral residual


@pytest.mark.parametrize(
    ("channels", "height", "width", "size"),
    [(3, 32, 32, 64), (3, 20, 36, 64), (1, 16, 16, 64), (2, 96, 72, 64), (3, 24, 20, None), (3, 12, 12, 16)],
)
def test_spectral_residual_matches_the_slow_reference(channels: int, height: int, width: int, size: int | None) -> None:
    x = natural(height + width, 3, channels, height, width)
    ours = spectral_residual_saliency(x, size)
    assert ours.shape == (3, height, width) and ours.dtype == torch.float32
    for i in range(3):
        expected = saliency_ref(x[i].numpy(), size)
        np.testing.assert_allclose(ours[i].numpy(), expected, atol=2e-6, rtol=0)


def test_spectral_residual_is_batched_dtype_free_and_gradient_free() -> None:
    x = natural(0, 5, 3, 16, 16)
    sal = spectral_residual_saliency(x)
    for i in range(5):  # each image's map does not depend on the rest of the batch
        torch.testing.assert_close(spectral_residual_saliency(x[i : i + 1])[0], sal[i])
    torch.testing.assert_close(spectral_residual_saliency(x.float()), sal, atol=1e-5, rtol=0)
    assert ((sal >= 0) & (sal <= 1)).all() and torch.isfinite(sal).all()
    leaf = x.float().requires_grad_()
    assert not spectral_residual_saliency(leaf).requires_grad


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (2, 1, 1, 7), (2, 3, 2, 2)])
def test_spectral_residual_tiny_and_constant_images_are_finite(shape: tuple[int, ...]) -> None:
    for x in (torch.randn(shape, generator=gen(0)), torch.zeros(shape), torch.full(shape, 3.0)):
        for size in (64, None):
            sal = spectral_residual_saliency(x, size)
            assert sal.shape == (shape[0], *shape[2:]) and torch.isfinite(sal).all()


def test_spectral_residual_matches_opencv() -> None:
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2, "saliency"):
        pytest.skip("opencv-contrib is not installed")
    detector = cv2.saliency.StaticSaliencySpectralResidual_create()
    x = natural(1, 8, 3, 32, 32).float()
    ours = spectral_residual_saliency(x)
    rows, cols = saliency_peaks(ours)
    for i in range(8):
        bgr = np.ascontiguousarray(x[i].permute(1, 2, 0).numpy()[:, :, ::-1])
        _, theirs = detector.computeSaliency(bgr)
        np.testing.assert_allclose(ours[i].numpy(), theirs, atol=3e-4)  # OpenCV's cartToPolar approximates atan2
        peak = np.unravel_index(np.argmax((theirs * 255).astype("uint8")), theirs.shape)
        assert abs(int(rows[i]) - int(peak[0])) <= 1 and abs(int(cols[i]) - int(peak[1])) <= 1


# ------------------------------------------------------------------------------------- boxes


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, n=st.integers(1, 4), height=st.integers(1, 24), width=st.integers(1, 24))
def test_boxes_follow_the_official_rule_and_contain_the_peak(seed: int, n: int, height: int, width: int) -> None:
    saliency = torch.rand(n, height, width, generator=gen(seed))
    lam_in = torch.rand(n, generator=gen(seed + 1))
    boxes, lam = saliency_boxes(saliency, lam_in)
    assert boxes.shape == (n, 4) and boxes.dtype == torch.int64 and lam.shape == (n,)
    rows, cols = saliency_peaks(saliency)
    for i in range(n):
        y1, y2, x1, x2 = boxes[i].tolist()
        assert (y1, y2, x1, x2) == box_ref(saliency[i].numpy(), float(lam_in[i]))
        assert float(lam[i]) == pytest.approx(1 - (y2 - y1) * (x2 - x1) / (height * width), abs=1e-6)
        if y2 > y1 and x2 > x1:  # a non-empty box holds the source's most salient pixel (quantised as there)
            assert y1 <= int(rows[i]) < y2 and x1 <= int(cols[i]) < x2
        levels = torch.floor(saliency[i].double() * 255)
        assert levels[rows[i], cols[i]] == levels.max()
        assert float(saliency[i].max() - saliency[i, rows[i], cols[i]]) < 1 / 255
    one, lam_one = saliency_boxes(saliency[:1], lam_in[0])  # a scalar λ gives one box [4]
    assert one.shape == (4,) and lam_one.shape == () and torch.equal(one, boxes[0])


def test_boxes_clip_at_the_border_and_ties_go_to_the_first_pixel() -> None:
    sal = torch.zeros(3, 10, 10)
    sal[0, 0, 9] = 1.0  # top-right corner: the box is clipped to a quarter
    sal[1, 5, 5] = 1.0
    sal[2] = 0.5  # all tied: the first pixel in raster order
    boxes, lam = saliency_boxes(sal, torch.zeros(3))
    assert boxes.tolist() == [[0, 5, 4, 10], [0, 10, 0, 10], [0, 5, 0, 5]]
    torch.testing.assert_close(lam, torch.tensor([0.7, 0.0, 0.75]))
    boxes, lam = saliency_boxes(sal, torch.tensor([0.19, 1.0, 0.99]))  # side ⌊0.9·10⌋ = 9 is odd: 8 pixels
    assert boxes.tolist() == [[0, 4, 5, 10], [5, 5, 5, 5], [0, 0, 0, 0]]
    torch.testing.assert_close(lam, torch.tensor([0.8, 1.0, 1.0]))
    with pytest.raises(ValueError, match=r"shape \[2\]"):
        saliency_boxes(sal, torch.zeros(2))


# ------------------------------------------------------------------------------------- saliencymix_batch


def paste_oracle(x: torch.Tensor, index: torch.Tensor, boxes: list[tuple[int, int, int, int]]) -> torch.Tensor:
    out = x.clone()
    for i, (y1, y2, x1, x2) in enumerate(boxes):
        out[i, :, y1:y2, x1:x2] = x[int(index[i]), :, y1:y2, x1:x2]
    return out


@settings(max_examples=25, deadline=None)
@given(
    seed=SEEDS,
    batch=st.integers(2, 6),
    height=st.integers(1, 20),
    width=st.integers(1, 20),
    dtype=st.sampled_from(DTYPES),
    per_sample=st.booleans(),
    partner=st.sampled_from(["perm", "flip"]),
)
def test_batch_matches_the_per_sample_oracle(
    seed: int, batch: int, height: int, width: int, dtype: torch.dtype, per_sample: bool, partner: str
) -> None:
    x = draw_images(seed, batch, 3, height, width, dtype)
    y = torch.arange(batch) % NUM_CLASSES
    out = saliencymix_batch(x, y, NUM_CLASSES, per_sample=per_sample, partner=partner, generator=gen(seed))
    index = out.index
    # each box (read from the mask) is a rectangle that holds the quantised peak of its source's saliency: that of
    # x[index[0]] for the whole batch, or of each sample's own partner
    sources = [int(index[i]) for i in range(batch)] if per_sample else [int(index[0])] * batch
    maps = {j: spectral_residual_saliency(x[j : j + 1])[0].numpy() for j in set(sources)}
    lam = out.lam.expand(batch) if not per_sample else out.lam
    boxes = []
    for i in range(batch):
        box = torch.nonzero(~out.mask[i if per_sample else 0, 0])
        boxes.append((0, 0, 0, 0))
        if box.numel():
            y1, x1 = box.min(0).values.tolist()
            y2, x2 = (box.max(0).values + 1).tolist()
            boxes[-1] = (y1, y2, x1, x2)
            peak = np.unravel_index(np.argmax((maps[sources[i]] * 255).astype("uint8")), maps[sources[i]].shape)
            assert y1 <= peak[0] < y2 and x1 <= peak[1] < x2
            assert int(box.shape[0]) == (y2 - y1) * (x2 - x1)  # a rectangle
        torch.testing.assert_close(float(lam[i]), 1 - len(box) / (height * width), atol=1e-6, rtol=0)
    assert torch.equal(out.input, paste_oracle(x, index, boxes))
    assert out.mask.dtype == torch.bool and out.mask.shape == ((batch if per_sample else 1), 1, height, width)
    torch.testing.assert_close(out.mask.double().mean(dim=(1, 2, 3)).float(), out.lam.reshape(-1), atol=1e-6, rtol=0)
    assert torch.equal(out.input, saliencymix_batch(x, y, NUM_CLASSES, per_sample=per_sample, partner=partner,
                                                    generator=gen(seed)).input)  # fmt: skip


@pytest.mark.parametrize("per_sample", [False, True])
def test_batch_box_is_the_official_box_of_the_source_saliency(per_sample: bool) -> None:
    # re-draw the λ the op drew (the same generator, the same order: partner, then λ) and rebuild the boxes
    batch, height, width = 6, 24, 20
    x = natural(3, batch, 3, height, width)
    out = saliencymix_batch(x, torch.arange(batch) % 4, 4, per_sample=per_sample, generator=gen(7))
    g = gen(7)
    index = torch.randperm(batch, generator=g)
    assert torch.equal(index, out.index)
    lam_drawn = sample_lam(1.0, batch if per_sample else None, generator=g)
    sources = index if per_sample else index[:1]
    for k, j in enumerate(sources.tolist()):
        sal = saliency_ref(x[j].numpy())
        y1, y2, x1, x2 = box_ref(sal, float(lam_drawn.reshape(-1)[k]))
        expected = torch.ones(height, width, dtype=torch.bool)
        expected[y1:y2, x1:x2] = False
        assert torch.equal(out.mask[k, 0], expected)
        rows, cols = np.unravel_index(np.argmax(sal), sal.shape)
        if y2 > y1 and x2 > x1:
            assert not out.mask[k, 0, rows, cols]  # the float map's peak is in the box on these images too


def test_per_batch_box_comes_from_the_first_partner_only() -> None:
    # the peak is wherever x[index[0]] is salient; the other images are moved around: the box must not change
    batch = 5
    x = natural(11, batch, 3, 16, 16)
    out = saliencymix_batch(x, torch.zeros(batch, dtype=torch.long), 2, generator=gen(3))
    first = int(out.index[0])
    others = [j for j in range(batch) if j != first]
    x2 = x.clone()
    x2[others] = natural(12, batch - 1, 3, 16, 16)
    out2 = saliencymix_batch(x2, torch.zeros(batch, dtype=torch.long), 2, generator=gen(3))
    assert torch.equal(out.index, out2.index) and torch.equal(out.mask, out2.mask) and out.mask.shape[0] == 1
    x3 = x.clone()
    x3[first] = natural(13, 1, 3, 16, 16)[0]
    assert not torch.equal(saliencymix_batch(x3, torch.zeros(batch, dtype=torch.long), 2, generator=gen(3)).mask,
                           out.mask)  # fmt: skip


@pytest.mark.parametrize("per_sample", [False, True])
def test_targets_carry_the_pasted_area(per_sample: bool) -> None:
    batch = 8
    x = natural(5, batch, 3, 16, 16).float()
    out = saliencymix_batch(x, torch.arange(batch), batch, per_sample=per_sample, partner="flip", generator=gen(2))
    lam = out.lam.expand(batch)
    rows = torch.arange(batch)
    torch.testing.assert_close(out.target[rows, rows], lam, atol=1e-6, rtol=0)
    torch.testing.assert_close(out.target.sum(1), torch.ones(batch))
    flipped = rows.flip(0)
    torch.testing.assert_close(out.target[rows, flipped][rows != flipped], (1 - lam)[rows != flipped])


def test_degenerate_cases_are_the_identity() -> None:
    x = draw_images(0, 4, 3, 1, 1, torch.float32)  # 1×1 images: a side ⌊√(1−λ)⌋ ≤ 1 gives an empty box (2·⌊1/2⌋)
    out = saliencymix_batch(x, torch.arange(4), 4, per_sample=True, generator=gen(0))
    assert torch.equal(out.input, x) and torch.equal(out.lam, torch.ones(4)) and bool(out.mask.all())
    x = natural(0, 4, 3, 8, 8).float()
    one = saliencymix_batch(x[:1], torch.zeros(1, dtype=torch.long), 4, generator=gen(0))  # its own partner
    assert torch.equal(one.input, x[:1]) and torch.equal(one.target, F.one_hot(torch.zeros(1).long(), 4).float())


def test_mix_keeps_the_input_and_does_not_need_its_gradient() -> None:
    x = natural(0, 4, 3, 8, 8).float().requires_grad_()
    before = x.detach().clone()
    out = saliencymix_batch(x, torch.arange(4), 4, generator=gen(0))
    out.input.sum().backward()
    assert torch.equal(x.detach(), before) and torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize(
    ("options", "error", "quoted"),
    [
        ({"saliency_size": 0}, ValueError, "0"),
        ({"saliency_size": 2.5}, TypeError, "2.5"),
        ({"saliency_size": True}, policy_error(True, int), "True"),
        ({"alpha": 0.0}, ValueError, "0.0"),
        ({"partner": "roll"}, ValueError, "roll"),
    ],
)
def test_bad_options_are_quoted(options: dict, error: type[Exception], quoted: str) -> None:
    x = natural(0, 4, 3, 8, 8).float()
    alpha = options.pop("alpha", 1.0)
    with pytest.raises(error, match=quoted):
        saliencymix_batch(x, torch.arange(4), 4, alpha, generator=gen(0), **options)
    with pytest.raises(error, match=quoted):
        SaliencyMix(alpha=alpha, **options)


@pytest.mark.parametrize("shape", [(4, 2), (4, 3, 8), (4, 1, 3, 8, 8)])
def test_needs_4d_input(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=str(list(shape)).replace("[", r"\[").replace("]", r"\]")):
        saliencymix_batch(torch.randn(*shape), torch.arange(4), 4, generator=gen(0))


# ------------------------------------------------------------------------------------- tasks and forms


@pytest.mark.parametrize("per_sample", [False, True])
def test_segmentation_masks_follow_the_image(per_sample: bool) -> None:
    batch, classes = 6, 5
    g = gen(4)
    mask = torch.randint(0, classes, (batch, 4, 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    x = torch.cat([mask[:, None].float(), torch.rand(batch, 2, 16, 16, generator=g)], dim=1)
    out = saliencymix_batch(x, mask, Targets(classes, task="segmentation"), per_sample=per_sample, generator=gen(1))
    assert out.target.dtype == torch.int64 and torch.equal(out.target, out.input[:, 0].round().long())
    assert not torch.equal(out.target, mask) or bool(out.mask.all())


@pytest.mark.parametrize("per_sample", [False, True])
def test_pair_form_equals_the_mixed_form_for_cross_entropy(per_sample: bool) -> None:
    x, y = natural(2, 8, 3, 16, 16).float(), torch.arange(8) % NUM_CLASSES
    mixed = saliencymix_batch(x, y, NUM_CLASSES, per_sample=per_sample, generator=gen(9))
    pair = saliencymix_batch(x, y, Targets(NUM_CLASSES, form="pair"), per_sample=per_sample, generator=gen(9))
    assert isinstance(pair.target, PairTarget) and torch.equal(pair.input, mixed.input)
    logits = torch.randn(8, NUM_CLASSES, generator=gen(0))
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    torch.testing.assert_close(pair_loss(ce, logits, pair.target), F.cross_entropy(logits, mixed.target))


# ------------------------------------------------------------------------------------- the callback


def test_callback_trains_and_leaves_validation_alone() -> None:
    module = UserModule()
    loader = make_loader()
    callback = SaliencyMix(alpha=1.0, p=1.0, seed=0)
    make_trainer([callback], limit_val_batches=2, num_sanity_val_steps=0).fit(module, loader, loader)
    assert module.seen["train"] and callback.saliency_size == 64 and "saliency_size" in callback.state_key
    for x, target in module.seen["train"]:
        assert target.shape == (x.shape[0], NUM_CLASSES)
        torch.testing.assert_close(target.sum(1), torch.ones(x.shape[0]))
    batches = list(loader)
    for (x, y), (vx, vy) in zip(module.seen["val"], batches):
        assert torch.equal(x, vx) and torch.equal(y, vy)

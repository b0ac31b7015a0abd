"""Tests of SmoothMix: the soft masks against the paper's formula and the reference code's grid, the blend, λ = the
mask's mean, the identity cases, the options' checks, segmentation and pair targets, and a quick fit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import NUM_CLASSES, Recorder, UserModule, make_loader, make_trainer, same
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_mixup.callbacks.smoothmix import SmoothMix
from lightning_mixup.functional import Targets, pair_loss
from lightning_mixup.functional.smoothmix import smooth_masks, smoothmix, smoothmix_batch
from strategies import DTYPES, SEEDS, draw_images, gen

SIGMA_RANGES = st.sampled_from([(0.25, 0.5), (0.1, 0.2), (0.5, 1.0), (0.0, 0.3), (0.3, 0.3)])


def draws(seed: int, n: int, height: int, width: int, sigma_range: tuple[float, float]) -> list[tuple[int, int, float]]:
    """The centre ``(u, v)`` and spread ``s`` of each of ``n`` masks, drawn as :func:`smooth_masks` draws them:
    all rows, then all columns, then all spreads, from the generator."""
    g = gen(seed)
    u = torch.randint(0, height, (n, 1), generator=g)[:, 0].tolist()
    v = torch.randint(0, width, (n, 1), generator=g)[:, 0].tolist()
    low, high = sigma_range
    s = (low + (high - low) * torch.rand(n, 1, generator=g))[:, 0].tolist()
    return list(zip(u, v, s))


def paper_bump(height: int, width: int, u: int, v: int, s: float, shape: str) -> torch.Tensor:
    """The partner's weight G ``[H, W]`` from the formula, pixel by pixel in float64: a Gaussian of the distance to the
    centre ``(u − ½, v − ½)`` with σ = ``s·H`` (rows), ``s·W`` (columns); Euclidean (circle) or L∞ (square)."""
    bump = torch.zeros(height, width, dtype=torch.float64)
    for i in range(height):
        for j in range(width):
            a = abs(i - (u - 0.5)) / (s * height) if s > 0 else math.inf
            b = abs(j - (v - 0.5)) / (s * width) if s > 0 else math.inf
            d2 = a * a + b * b if shape == "circle" else max(a, b) ** 2
            bump[i, j] = math.exp(-0.5 * d2)
    return bump


def reference_grid_bump(size: int, u: int, v: int, s: float) -> torch.Tensor:
    """The reference code's construction of G for a square image of even ``size`` (rewritten here): a ``2size``
    coordinate grid, rolled by ``u − size/2`` rows and ``v − size/2`` columns, cropped to its centre, then a Gaussian
    of the distance to the grid's middle ``(2size − 1)/2`` with σ = ``s·size``."""
    big = 2 * size
    ys, xs = torch.meshgrid(torch.arange(big), torch.arange(big), indexing="ij")
    grid = torch.stack([ys, xs], dim=-1).double()
    grid = torch.roll(grid, u - size // 2, 0)
    grid = torch.roll(grid, v - size // 2, 1)
    crop = big // 4
    grid = grid[crop : big - crop, crop : big - crop]
    middle = (big - 1) / 2
    return torch.exp(-((grid - middle) ** 2).sum(-1) / (2 * (s * size) ** 2))


# ------------------------------------------------------------------------------------- smooth_masks


@settings(max_examples=25, deadline=None)
@given(
    seed=SEEDS,
    n=st.integers(1, 4),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    shape=st.sampled_from(["circle", "square"]),
    sigma_range=SIGMA_RANGES,
)
def test_masks_match_the_formula(
    seed: int, n: int, height: int, width: int, shape: str, sigma_range: tuple[float, float]
) -> None:
    masks = smooth_masks(n, height, width, shape, sigma_range, generator=gen(seed))
    assert masks.shape == (n, 1, height, width) and masks.dtype == torch.float32
    assert ((masks >= 0) & (masks <= 1)).all()
    for k, (u, v, s) in enumerate(draws(seed, n, height, width, sigma_range)):
        assert sigma_range[0] - 1e-6 <= s <= sigma_range[1] + 1e-6
        expected = 1 - paper_bump(height, width, u, v, s, shape)
        torch.testing.assert_close(masks[k, 0].double(), expected, atol=1e-6, rtol=0)
    assert torch.equal(masks, smooth_masks(n, height, width, shape, sigma_range, generator=gen(seed)))


@pytest.mark.parametrize("size", [2, 4, 8, 32])
def test_circle_matches_the_reference_grid(size: int) -> None:
    # σ ~ U[0.25, 0.5)·size, centre from the rolled grid: the same mask as the reference code's, at every centre
    g = gen(size)
    corners = [(u, v) for u in range(size) for v in range(size)]
    if size > 8:  # a sample of the corners of a large image: the Python formula is slow
        corners = [corners[int(k)] for k in torch.randperm(len(corners), generator=g)[:12]] + [(0, 0), (31, 31)]
    for u, v in corners:
        s = float(0.25 + 0.25 * torch.rand((), generator=g))
        ours = 1 - paper_bump(size, size, u, v, s, "circle")
        torch.testing.assert_close(ours, 1 - reference_grid_bump(size, u, v, s), atol=1e-12, rtol=0)
    masks = smooth_masks(64, size, size, generator=gen(0))
    for k, (u, v, s) in enumerate(draws(0, 64, size, size, (0.25, 0.5))):
        torch.testing.assert_close(masks[k, 0].double(), 1 - reference_grid_bump(size, u, v, s), atol=1e-6, rtol=0)


def test_square_lets_more_of_the_partner_in_than_circle() -> None:
    # with the same draws exp(−max(a, b)²/2) >= exp(−(a² + b²)/2): the square's own weight is never above the circle's
    circle = smooth_masks(32, 16, 12, "circle", generator=gen(3))
    square = smooth_masks(32, 16, 12, "square", generator=gen(3))
    assert (square <= circle + 1e-7).all() and float((circle - square).max()) > 0.1


def test_a_larger_spread_takes_more_of_the_partner() -> None:
    means = [float(smooth_masks(512, 16, 16, "circle", r, generator=gen(0)).mean()) for r in ((0.1, 0.2), (0.25, 0.5))]
    assert means[0] > means[1] + 0.2
    # a narrow bump is ~1 − 2πσ² / (H·W) of own image at an inner centre
    narrow = smooth_masks(256, 32, 32, "circle", (0.05, 0.05), generator=gen(1))
    assert abs(float(narrow.mean()) - (1 - 2 * math.pi * 0.05**2)) < 0.01


def test_centres_are_uniform_over_pixel_corners() -> None:
    # the bump peaks at the corner (u − ½, v − ½): rows u − 1 and u (columns v − 1 and v) tie for the partner's peak
    height, width, n = 5, 7, 7000
    masks = smooth_masks(n, height, width, "circle", (0.05, 0.05), generator=gen(0))[:, 0]
    rows, cols = masks.amin(dim=2), masks.amin(dim=1)
    u = (rows == rows.amin(dim=1, keepdim=True)).int().argmax(dim=1)  # the first peak row: u − 1, or 0 when u = 0
    last_u = height - 1 - (rows == rows.amin(dim=1, keepdim=True)).flip(1).int().argmax(dim=1)
    v_last = width - 1 - (cols == cols.amin(dim=1, keepdim=True)).flip(1).int().argmax(dim=1)
    assert ((last_u - u == 1) | ((u == 0) & (last_u == 0))).all()  # a tie of two rows, except at the top edge
    centres_u = torch.where(last_u - u == 1, last_u, 0)
    counts = torch.bincount(centres_u, minlength=height).double() / n
    assert ((counts - 1 / height).abs() < 0.02).all()
    assert set(v_last.tolist()) == set(range(width))


def test_zero_spread_gives_an_empty_bump() -> None:
    masks = smooth_masks(16, 6, 5, "square", (0.0, 0.0), generator=gen(0))
    assert torch.equal(masks, torch.ones_like(masks))


# ------------------------------------------------------------------------------------- smoothmix, smoothmix_batch


@st.composite
def batches(draw: st.DrawFn) -> dict[str, object]:
    seed = draw(SEEDS)
    batch, channels = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    height, width = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    x = draw_images(seed, batch, channels, height, width, draw(st.sampled_from(DTYPES)))
    return {
        "x": x,
        "y": torch.randint(0, 4, (batch,), generator=gen(seed + 1)),
        "seed": seed + 2,
        "shape": draw(st.sampled_from(["circle", "square"])),
        "sigma_range": draw(SIGMA_RANGES),
        "per_sample": draw(st.booleans()),
        "partner": draw(st.sampled_from(["perm", "flip"])),
    }


@settings(max_examples=40, deadline=None)
@given(case=batches())
def test_batch_matches_a_slow_per_sample_oracle(case: dict) -> None:
    x, y, seed = case["x"], case["y"], case["seed"]
    batch, _, height, width = x.shape
    options = {k: case[k] for k in ("shape", "sigma_range", "per_sample", "partner")}
    out = smoothmix_batch(x, y, 4, 1.0, generator=gen(seed), **options)
    # the oracle draws as the op does: the partner index first, then the masks
    g = gen(seed)
    index = torch.randperm(batch, generator=g) if case["partner"] == "perm" else torch.arange(batch - 1, -1, -1)
    n = batch if case["per_sample"] else 1
    u = torch.randint(0, height, (n, 1), generator=g)[:, 0].tolist()
    v = torch.randint(0, width, (n, 1), generator=g)[:, 0].tolist()
    low, high = case["sigma_range"]
    s = (low + (high - low) * torch.rand(n, 1, generator=g))[:, 0].tolist()
    assert torch.equal(out.index, index)
    assert out.mask.shape == (n, 1, height, width) and out.mask.dtype == torch.float32
    assert out.lam.shape == ((batch,) if case["per_sample"] else ())
    tol = {torch.float32: 1e-5, torch.float64: 1e-6, torch.bfloat16: 5e-2}[x.dtype]
    for i in range(batch):
        k = i if case["per_sample"] else 0
        bump = paper_bump(height, width, u[k], v[k], s[k], case["shape"])
        lam = 1 - float(bump.mean())
        j = int(index[i])
        expected = (1 - bump) * x[i].double() + bump * x[j].double()
        torch.testing.assert_close(out.input[i].double(), expected, atol=tol, rtol=tol)
        target = lam * F.one_hot(y[i], 4).double() + (1 - lam) * F.one_hot(y[j], 4).double()
        torch.testing.assert_close(out.target[i].double(), target, atol=1e-6, rtol=0)
        torch.testing.assert_close(float(out.lam.expand(batch)[i]), lam, atol=1e-6, rtol=0)
    # λ is exactly the mean of the returned mask, the own image's weight
    assert torch.equal(out.lam, out.mask.mean(dim=(1, 2, 3), dtype=torch.float64).float().reshape(out.lam.shape))


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("shape", ["circle", "square"])
def test_lam_is_the_mean_of_the_mask_that_mixed_the_image(per_sample: bool, shape: str) -> None:
    batch = 10
    x = torch.randn(batch, 2, 12, 9, generator=gen(0), dtype=torch.float64)
    x[:, 0] = torch.arange(batch, dtype=torch.float64).view(-1, 1, 1) * 10
    out = smoothmix_batch(
        x, torch.arange(batch), batch, shape=shape, per_sample=per_sample, partner="flip", generator=gen(1)
    )
    index = torch.arange(batch - 1, -1, -1)
    mixed = index != torch.arange(batch)
    # channel 0 is m·10·i + (1 − m)·10·index[i]: solve for the own weight m
    own, other = x[mixed, 0], x[index[mixed], 0]
    m = (out.input[mixed, 0] - other) / (own - other)
    assert ((m > -1e-9) & (m < 1 + 1e-9)).all() and bool(((m > 0.01) & (m < 0.99)).any())  # it blends
    lam = out.lam.expand(batch)[mixed].double()
    torch.testing.assert_close(m.mean(dim=(1, 2)), lam, atol=1e-6, rtol=0)
    rows = torch.arange(batch)[mixed]
    torch.testing.assert_close(out.target[rows, rows], lam.float())


@settings(max_examples=25, deadline=None)
@given(case=batches())
def test_zero_spread_and_identity_partner_are_bit_identical(case: dict) -> None:
    x, y = case["x"], case["y"]
    out = smoothmix_batch(x, y, 4, sigma_range=(0.0, 0.0), per_sample=case["per_sample"], generator=gen(case["seed"]))
    assert torch.equal(out.input, x) and out.input.data_ptr() != x.data_ptr()
    assert bool((out.lam == 1).all()) and torch.equal(out.target, F.one_hot(y, 4).float())
    masks = smooth_masks(x.shape[0], x.shape[2], x.shape[3], case["shape"], generator=gen(case["seed"]))
    assert torch.equal(smoothmix(x, torch.arange(x.shape[0]), masks), x)
    assert torch.equal(smoothmix(x, torch.randperm(x.shape[0]), torch.ones_like(masks)), x)
    assert torch.equal(smoothmix(x, torch.flip(torch.arange(x.shape[0]), [0]), torch.zeros_like(masks)), x.flip(0))


def test_out_buffer_and_determinism() -> None:
    x, y = torch.randn(6, 3, 10, 10, generator=gen(0)), torch.arange(6) % 3
    a = smoothmix_batch(x, y, 3, per_sample=True, generator=gen(1))
    buffer = torch.empty_like(x)
    b = smoothmix_batch(x, y, 3, per_sample=True, generator=gen(1), out=buffer)
    assert b.input is buffer and torch.equal(a.input, b.input) and torch.equal(a.target, b.target)
    c = smoothmix_batch(x, y, 3, per_sample=True, generator=gen(2))
    assert not torch.equal(a.mask, c.mask)
    assert not torch.equal(a.mask[0], a.mask[1])  # one mask per sample
    batch_mode = smoothmix_batch(x, y, 3, generator=gen(1))
    assert batch_mode.mask.shape == (1, 1, 10, 10) and batch_mode.lam.shape == ()


def test_gradient_flows_to_both_images() -> None:
    x = torch.randn(4, 3, 8, 8, generator=gen(0), requires_grad=True)
    out = smoothmix_batch(x, torch.arange(4), 4, partner="flip", generator=gen(1))
    out.input.sum().backward()
    # each pixel gives m to its own mix and 1 − m to its partner's: the gradient of the sum is 1 everywhere
    torch.testing.assert_close(x.grad, torch.ones_like(x))


@pytest.mark.parametrize(
    ("kwargs", "error", "quoted"),
    [
        ({"shape": "triangle"}, ValueError, "'triangle'"),
        ({"shape": None}, ValueError, "None"),
        ({"sigma_range": "0.25"}, TypeError, "'0.25'"),
        ({"sigma_range": 0.25}, TypeError, "0.25"),
        ({"sigma_range": (0.25,)}, ValueError, r"\(0.25,\)"),
        ({"sigma_range": (0.25, 0.5, 1.0)}, ValueError, r"\(0.25, 0.5, 1.0\)"),
        ({"sigma_range": (0.5, 0.25)}, ValueError, r"\(0.5, 0.25\)"),
        ({"sigma_range": (-0.1, 0.5)}, ValueError, r"\(-0.1, 0.5\)"),
        ({"sigma_range": (0.1, math.inf)}, ValueError, "inf"),
        ({"sigma_range": (True, 0.5)}, TypeError, "True"),
        ({"sigma_range": ("a", 0.5)}, TypeError, "'a'"),
        ({"alpha": 0.0}, ValueError, "0.0"),
    ],
)
def test_bad_options_are_refused_with_the_value(kwargs: dict, error: type[Exception], quoted: str) -> None:
    x, y = torch.randn(2, 1, 4, 4), torch.arange(2)
    with pytest.raises(error, match=quoted):
        smoothmix_batch(x, y, 2, **kwargs)
    with pytest.raises(error, match=quoted):
        SmoothMix(**kwargs)
    if "sigma_range" in kwargs:
        with pytest.raises(error, match=quoted):
            smooth_masks(2, 4, 4, sigma_range=kwargs["sigma_range"])


@pytest.mark.parametrize("shape", [(4, 2), (4, 3, 8), (4, 1, 3, 8, 8)])
def test_needs_4d_input(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"SmoothMix expects a 4-D input"):
        smoothmix_batch(torch.randn(*shape), torch.arange(4), 2)


# ------------------------------------------------------------------------------------- segmentation and pair targets


@pytest.mark.parametrize("per_sample", [False, True])
def test_segmentation_targets_are_the_per_pixel_blend(per_sample: bool) -> None:
    classes, batch = 5, 6
    labels = torch.randint(0, classes, (batch, 9, 11), generator=gen(0))
    x = torch.randn(batch, 2, 9, 11, generator=gen(1), dtype=torch.float64)
    x[:, 0] = labels.double()  # channel 0 is the label mask: it is mixed as the targets must be
    spec = Targets(classes, task="segmentation")
    out = smoothmix_batch(x, labels, spec, per_sample=per_sample, generator=gen(2))
    probs = out.target
    assert probs.shape == (batch, classes, 9, 11) and probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(batch, 9, 11))
    # the expected label under the soft targets is the mixed image's channel 0
    expected_label = (probs.double() * torch.arange(classes, dtype=torch.float64).view(1, -1, 1, 1)).sum(dim=1)
    torch.testing.assert_close(expected_label, out.input[:, 0], atol=1e-5, rtol=0)
    # and each pixel holds the mask's weight on its own label, the rest on the partner's
    mask = out.mask.expand(batch, 1, 9, 11)[:, 0].double()
    own, other = F.one_hot(labels, classes).double(), F.one_hot(labels[out.index], classes).double()
    blend = (mask[..., None] * own + (1 - mask[..., None]) * other).permute(0, 3, 1, 2)
    torch.testing.assert_close(probs.double(), blend, atol=1e-6, rtol=0)
    assert bool(((probs > 0.01) & (probs < 0.99)).any())  # soft: not hard labels


def test_pair_form_equals_the_mixed_form_for_cross_entropy() -> None:
    x, y = torch.randn(8, 3, 8, 8, generator=gen(0)), torch.arange(8) % 4
    logits = torch.randn(8, 4, generator=gen(1))
    mixed = smoothmix_batch(x, y, 4, per_sample=True, generator=gen(2))
    pair = smoothmix_batch(x, y, Targets(4, form="pair"), per_sample=True, generator=gen(2))
    assert torch.equal(pair.input, mixed.input)
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    torch.testing.assert_close(pair_loss(ce, logits, pair.target), F.cross_entropy(logits, mixed.target))
    # segmentation: the pair's per-pixel weight is the mask
    labels = torch.randint(0, 4, (8, 8, 8), generator=gen(3))
    seg = smoothmix_batch(x, labels, Targets(4, "segmentation", "pair"), generator=gen(4))
    torch.testing.assert_close(seg.target.weight, seg.mask.expand(8, 1, 8, 8)[:, 0])


# ------------------------------------------------------------------------------------- the callback


def test_callback_fits_and_leaves_validation_alone() -> None:
    torch.manual_seed(0)
    module, recorder = UserModule(), Recorder()
    mixer = SmoothMix(shape="square", sigma_range=[0.2, 0.4], per_sample=True, seed=0)
    assert mixer.sigma_range == (0.2, 0.4) and "square" in mixer.state_key
    loader = make_loader()
    make_trainer([mixer, recorder], limit_val_batches=2).fit(module, loader, loader)
    originals = list(loader)
    assert len(recorder.batches) == len(originals)
    for (x, target), (x0, _) in zip(recorder.batches, originals):
        assert target.shape == (x.shape[0], NUM_CLASSES) and target.dtype == torch.float32
        torch.testing.assert_close(target.sum(dim=1), torch.ones(x.shape[0]))
        assert not torch.equal(x, x0)
    val = module.seen["val"]  # the sanity check's 2 batches, then the epoch's 2: all as the loader gives them
    assert len(val) == 4 and all(same(a, b) for seen, orig in zip(val, originals[:2] * 2) for a, b in zip(seen, orig))

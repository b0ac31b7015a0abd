"""Tests of FMix: Fourier noise, binarised masks (hard and soft) and the deterministic ``fmix(x, index, mask)``."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_mixup.functional import binarise_masks, fmix, fmix_batch, fourier_noise, sample_masks
from lightning_mixup.functional.fmix import _top_masks
from strategies import DTYPES, SEEDS, draw_images, gen


def uniform_share(mask: torch.Tensor) -> torch.Tensor:
    """Per mask ``[..., H, W]``: the share of interior pixels whose four neighbours all have the pixel's value."""
    c = mask[..., 1:-1, 1:-1]
    up, down = mask[..., :-2, 1:-1] == c, mask[..., 2:, 1:-1] == c
    left, right = mask[..., 1:-1, :-2] == c, mask[..., 1:-1, 2:] == c
    same = up & down & left & right
    return same.double().mean(dim=(-2, -1))


# ------------------------------------------------------------------------------------- fourier_noise


@settings(max_examples=20, deadline=None)
@given(
    seed=SEEDS,
    n=st.integers(1, 4),
    height=st.integers(1, 17),
    width=st.integers(1, 17),
    decay=st.sampled_from([0.5, 1.0, 3.0, 6.0]),
)
def test_fourier_noise_shape_and_determinism(seed: int, n: int, height: int, width: int, decay: float) -> None:
    noise = fourier_noise(n, height, width, decay, generator=gen(seed))
    assert noise.shape == (n, height, width) and noise.dtype == torch.float32
    assert torch.isfinite(noise).all()
    assert torch.equal(noise, fourier_noise(n, height, width, decay, generator=gen(seed)))


def test_fourier_noise_seeds_and_images_differ() -> None:
    a = fourier_noise(3, 16, 16, generator=gen(0))
    b = fourier_noise(3, 16, 16, generator=gen(1))
    assert not torch.equal(a, b)
    assert not torch.equal(a[0], a[1]) and not torch.equal(a[1], a[2])
    assert fourier_noise(2, 8, 8, device="cpu").shape == (2, 8, 8)


def test_fourier_noise_spectrum_decays() -> None:
    # the power at high frequencies falls faster for a larger decay power
    def high_share(decay: float) -> float:
        noise = fourier_noise(64, 32, 32, decay, generator=gen(0)).double()
        noise = noise - noise.mean(dim=(1, 2), keepdim=True)
        power = torch.fft.rfft2(noise).abs().pow(2)
        fy = torch.fft.fftfreq(32).abs().view(-1, 1)
        fx = torch.fft.rfftfreq(32).view(1, -1)
        high = (fy > 0.25) | (fx > 0.25)
        return float(power[:, high].sum() / power.sum())

    shares = [high_share(d) for d in (0.0001, 1.0, 2.0, 3.0)]
    assert shares[0] > 0.5  # nearly white noise: most of the power is at high frequencies
    assert shares[0] > shares[1] > shares[2] > shares[3]
    assert shares[3] < 0.01


# ------------------------------------------------------------------------------------- binarise_masks


@settings(max_examples=40, deadline=None)
@given(
    seed=SEEDS,
    n=st.integers(1, 6),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    lam_kind=st.sampled_from(["random", "edges"]),
)
def test_hard_masks(seed: int, n: int, height: int, width: int, lam_kind: str) -> None:
    g = gen(seed)
    noise = fourier_noise(n, height, width, generator=g)
    if lam_kind == "random":
        lam = torch.rand(n, generator=g, dtype=torch.float64)
    else:
        lam = torch.tensor([0.0, 1.0, 0.5, 1e-9, 1 - 1e-9, 1 / (height * width)], dtype=torch.float64)[:n]
        n = lam.numel()
        noise = noise[:n] if noise.shape[0] >= n else fourier_noise(n, height, width, generator=g)
    masks, lam_out = binarise_masks(noise, lam, generator=g)
    pixels = height * width
    assert masks.shape == (n, height, width) and masks.dtype == torch.float32
    assert ((masks == 0) | (masks == 1)).all()
    ones = masks.sum(dim=(1, 2)).long()
    low, high = torch.floor(lam * pixels).long(), torch.ceil(lam * pixels).long()
    assert ((ones == low) | (ones == high)).all()
    # λ returned is the share of ones (= the mask's mean)
    assert lam_out.shape == (n,) and lam_out.dtype == torch.float32
    assert torch.equal(lam_out, (ones.double() / pixels).float())
    # the ones are the top pixels of the noise
    for i in range(n):
        on, off = noise[i][masks[i] == 1], noise[i][masks[i] == 0]
        if on.numel() and off.numel():
            assert float(on.min()) >= float(off.max())


def _sort_cut(values: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
    """The slow oracle: the first ``num`` of each row's descending sort (ties broken in raster order)."""
    order = values.argsort(dim=1, descending=True, stable=True)
    ranks = torch.arange(values.shape[1]).expand_as(values)
    return torch.zeros_like(values, dtype=torch.bool).scatter_(1, order, ranks < num.view(-1, 1))


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, n=st.integers(1, 8), pixels=st.integers(1, 40), ties=st.booleans())
def test_top_masks_equal_a_sort_cut_at_num(seed: int, n: int, pixels: int, ties: bool) -> None:
    g = gen(seed)
    values = torch.stack([torch.randperm(pixels, generator=g) for _ in range(n)]).float()
    if ties:  # few distinct values: many ties at the threshold, taken in raster order like a stable sort
        values = torch.div(values, 3, rounding_mode="floor")
    num = torch.randint(0, pixels + 1, (n,), generator=g)
    num[: min(n, 2)] = torch.tensor([0, pixels])[: min(n, 2)]
    assert torch.equal(_top_masks(values, num), _sort_cut(values, num))


def test_hard_masks_use_both_roundings() -> None:
    # λN = 3.5: a fair coin picks ⌈λN⌉ = 4 or ⌊λN⌋ = 3 ones per mask
    noise = fourier_noise(2000, 4, 4, generator=gen(0))
    masks, lam = binarise_masks(noise, torch.full((2000,), 3.5 / 16), generator=gen(1))
    ones = masks.sum(dim=(1, 2))
    assert set(ones.unique().tolist()) == {3.0, 4.0}
    assert abs(float((ones == 4).double().mean()) - 0.5) < 0.05
    assert abs(float(lam.double().mean()) - 3.5 / 16) < 0.01


@settings(max_examples=40, deadline=None)
@given(
    seed=SEEDS,
    n=st.integers(1, 6),
    height=st.integers(1, 16),
    width=st.integers(1, 16),
    max_soft=st.sampled_from([0.01, 0.05, 0.1, 0.25, 0.5]),
)
def test_soft_masks(seed: int, n: int, height: int, width: int, max_soft: float) -> None:
    g = gen(seed)
    noise = fourier_noise(n, height, width, generator=g)
    lam = torch.rand(n, generator=g)
    masks, lam_out = binarise_masks(noise, lam, max_soft, generator=g)
    pixels = height * width
    assert ((masks >= 0) & (masks <= 1)).all()
    torch.testing.assert_close(masks.double().mean(dim=(1, 2)), lam_out.double(), atol=1e-6, rtol=0)
    fractional = ((masks > 0) & (masks < 1)).sum(dim=(1, 2))
    assert (fractional <= 2 * math.floor(pixels * max_soft)).all()
    # the mask is a non-increasing function of the noise: higher noise, more of the sample itself
    for i in range(n):
        order = noise[i].flatten().argsort(descending=True)
        values = masks[i].flatten()[order]
        assert bool((values[1:] <= values[:-1]).all())
    # λ stays close to the λ asked for: within one pixel of rounding
    assert ((lam_out.double() - lam.double()).abs() <= 1.0 / pixels + 1e-6).all()


def test_soft_masks_have_a_ramp() -> None:
    noise = fourier_noise(8, 32, 32, generator=gen(0))
    masks, lam = binarise_masks(noise, torch.full((8,), 0.5), 0.1, generator=gen(1))
    fractional = ((masks > 0) & (masks < 1)).sum(dim=(1, 2))
    assert (fractional > 100).all() and (fractional <= 2 * math.floor(1024 * 0.1)).all()
    torch.testing.assert_close(masks.double().mean(dim=(1, 2)), lam.double(), atol=1e-6, rtol=0)


def test_max_soft_zero_is_hard() -> None:
    noise = fourier_noise(8, 16, 16, generator=gen(0))
    lam = torch.rand(8, generator=gen(1))
    hard, _ = binarise_masks(noise, lam, 0.0, generator=gen(2))
    assert ((hard == 0) | (hard == 1)).all()


# ------------------------------------------------------------------------------------- sample_masks


@settings(max_examples=20, deadline=None)
@given(
    seed=SEEDS, batch=st.integers(1, 5), height=st.integers(1, 12), width=st.integers(1, 12), per_sample=st.booleans()
)
def test_sample_masks_shapes(seed: int, batch: int, height: int, width: int, per_sample: bool) -> None:
    lam_in = torch.rand(batch if per_sample else (), generator=gen(seed))
    mask, lam = sample_masks(lam_in, height, width, generator=gen(seed + 1))
    assert mask.shape == ((batch if per_sample else 1), 1, height, width)
    assert lam.shape == lam_in.shape and lam.dtype == torch.float32
    assert ((mask == 0) | (mask == 1)).all()
    torch.testing.assert_close(mask.double().mean(dim=(1, 2, 3)).reshape(lam.shape), lam.double(), atol=1e-7, rtol=0)
    again = sample_masks(lam_in, height, width, generator=gen(seed + 1))
    assert torch.equal(again[0], mask) and torch.equal(again[1], lam)


def test_masks_are_low_frequency() -> None:
    lam = torch.full((64,), 0.5)
    mask, lam_out = sample_masks(lam, 32, 32, decay_power=3.0, generator=gen(0))
    random = (torch.rand(64, 1, 32, 32, generator=gen(1)) < lam_out.view(-1, 1, 1, 1)).float()
    smooth, rough = uniform_share(mask), uniform_share(random)
    # a random binary mask of mean 1/2 has all four neighbours equal with probability 1/16
    assert float(rough.mean()) < 0.1
    assert float(smooth.mean()) > 0.7 and float(smooth.min()) > 0.5


def test_higher_decay_power_is_smoother() -> None:
    lam = torch.rand(128, generator=gen(0)) * 0.6 + 0.2
    shares = [
        float(uniform_share(sample_masks(lam, 32, 32, d, generator=gen(1))[0]).mean()) for d in (0.5, 1.0, 2.0, 3.0)
    ]
    assert shares[0] < shares[1] < shares[2] < shares[3]
    assert shares[3] - shares[0] > 0.4


# ------------------------------------------------------------------------------------- fmix


@st.composite
def cases(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Images, a partner permutation and per-sample hard masks ``[B, 1, H, W]``."""
    seed = draw(SEEDS)
    batch = draw(st.integers(1, 6))
    height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    x = draw_images(seed, batch, draw(st.integers(1, 3)), height, width, draw(st.sampled_from(DTYPES)))
    index = torch.randperm(batch, generator=gen(seed + 1))
    masks = (torch.rand(batch, 1, height, width, generator=gen(seed + 2)) < 0.5).float()
    return x, index, masks


@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_hard_mask_matches_oracle_exactly(case: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    x, index, masks = case
    out = fmix(x, index, masks)
    assert out.shape == x.shape and out.dtype == x.dtype
    for i in range(x.shape[0]):
        expected = torch.where(masks[i].bool(), x[i], x[int(index[i])])
        assert torch.equal(out[i], expected)
    # one mask [1, 1, H, W] for the batch equals that mask repeated per sample
    one = masks[:1]
    assert torch.equal(fmix(x, index, one), fmix(x, index, one.expand_as(masks).clone()))


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_soft_mask_matches_oracle(case: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    x, index, _ = case
    masks = torch.rand(x.shape[0], 1, x.shape[2], x.shape[3], generator=gen(7))
    out = fmix(x, index, masks)
    m = masks.to(x.dtype).double()  # the mask is applied in the input's dtype
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 5e-2}[x.dtype]
    for i in range(x.shape[0]):
        expected = m[i] * x[i].double() + (1 - m[i]) * x[int(index[i])].double()
        torch.testing.assert_close(out[i].double(), expected, atol=tol, rtol=tol)


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_all_ones_mask_is_bit_identical(case: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    x, index, masks = case
    one_mask = torch.ones(1, 1, x.shape[2], x.shape[3])
    for ones in (one_mask, torch.ones_like(masks), torch.ones_like(masks, dtype=torch.float64)):
        out = fmix(x, index, ones)
        assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()
    assert torch.equal(fmix(x, index, torch.zeros_like(masks)), x[index])


@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_identity_partner_is_exact(case: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    x, _, masks = case
    identity = torch.arange(x.shape[0])
    assert torch.equal(fmix(x, identity, masks), x)
    soft = torch.rand(masks.shape, generator=gen(3))
    assert torch.equal(fmix(x, identity, soft), x)
    assert torch.equal(fmix(x, identity, soft[:1]), x)


@pytest.mark.parametrize("per_sample", [False, True])
def test_fmix_gradient(per_sample: bool) -> None:
    x = torch.randn(4, 3, 8, 8, generator=gen(0), requires_grad=True)
    index = torch.tensor([1, 2, 3, 0])
    lam = torch.rand(4 if per_sample else (), generator=gen(1))
    mask, _ = sample_masks(lam, 8, 8, generator=gen(2))
    fmix(x, index, mask).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and bool((x.grad != 0).any())
    # each output pixel comes from one input pixel: with one mask for the batch every input pixel is used once,
    # with one mask per sample an input pixel is used 0, 1 or 2 times
    if per_sample:
        assert ((x.grad == 0) | (x.grad == 1) | (x.grad == 2)).all() and float(x.grad.sum()) == x.numel()
    else:
        assert torch.equal(x.grad, torch.ones_like(x))


@pytest.mark.parametrize("shape", [(4, 2), (4, 3, 8), (4, 1, 3, 8, 8)])
def test_fmix_needs_4d_input(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=str(list(shape)).replace("[", r"\[").replace("]", r"\]")):
        fmix(torch.randn(*shape), torch.arange(4), torch.ones(1, 1, 8, 8))


# ------------------------------------------------------------------------------------- fmix_batch


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("max_soft", [0.0, 0.1])
def test_fmix_batch_lam_is_mask_mean(per_sample: bool, max_soft: float) -> None:
    batch, height, width = 10, 12, 12
    x = torch.randn(batch, 2, height, width, generator=gen(0))
    x[:, 0] = torch.arange(batch, dtype=torch.float32).view(-1, 1, 1) * 10
    out = fmix_batch(
        x,
        torch.arange(batch),
        batch,
        alpha=1.0,
        max_soft=max_soft,
        per_sample=per_sample,
        partner="flip",
        generator=gen(1),
    )
    lam = out.lam.expand(batch)
    index = torch.arange(batch - 1, -1, -1)
    # channel 0 of the output is m·10·i + (1 − m)·10·index[i]: solve for the mask m
    own, other = x[:, 0], x[index, 0]
    mixed = index != torch.arange(batch)
    mask = (out.input[mixed, 0] - other[mixed]) / (own[mixed] - other[mixed])
    assert ((mask > -1e-5) & (mask < 1 + 1e-5)).all()
    torch.testing.assert_close(mask.double().mean(dim=(1, 2)), lam[mixed].double(), atol=1e-5, rtol=0)
    if max_soft == 0:
        assert ((mask == 0) | (mask == 1)).all()
    else:
        assert bool(((mask > 1e-3) & (mask < 1 - 1e-3)).any())
    torch.testing.assert_close(out.target[torch.arange(batch)[mixed], torch.arange(batch)[mixed]], lam[mixed])


@pytest.mark.parametrize(("alpha", "reformulate", "mean"), [(1.0, False, 0.5), (1.0, True, 2 / 3), (0.5, True, 0.75)])
def test_fmix_batch_lam_distribution(alpha: float, reformulate: bool, mean: float) -> None:
    # per-sample λ follows Beta(α, α), or Beta(α + 1, α) with reformulate, up to the binarisation (±1/64)
    x = torch.zeros(4000, 1, 8, 8)
    out = fmix_batch(
        x,
        torch.zeros(4000, dtype=torch.long),
        2,
        alpha=alpha,
        reformulate=reformulate,
        per_sample=True,
        generator=gen(0),
    )
    assert abs(float(out.lam.mean()) - mean) < 0.02


def test_fmix_batch_decay_power_changes_masks() -> None:
    x = torch.randn(8, 3, 16, 16, generator=gen(0))
    y = torch.arange(8)
    a = fmix_batch(x, y, 8, decay_power=1.0, per_sample=True, generator=gen(1))
    b = fmix_batch(x, y, 8, decay_power=3.0, per_sample=True, generator=gen(1))
    assert not torch.equal(a.input, b.input)


@pytest.mark.parametrize("per_sample", [False, True])
def test_reformulated_fmix_trains_on_the_first_label_only(per_sample: bool) -> None:
    """Official ``fmix_loss(..., reformulate=True)`` is ``cross_entropy(output, y1)``: the targets are the sample's own
    label, whatever the mask; λ (the mask's mean) still says how much of the image is its own."""
    x, y = torch.randn(16, 3, 16, 16), torch.arange(16) % 5
    out = fmix_batch(x, y, 5, 1.0, reformulate=True, per_sample=per_sample, generator=torch.Generator().manual_seed(2))
    assert torch.equal(out.target, torch.nn.functional.one_hot(y, 5).float())
    torch.testing.assert_close(out.mask.expand(16, -1, -1, -1).float().mean(dim=(1, 2, 3)), out.lam.expand(16))
    assert not torch.equal(out.input, x)  # the input is still mixed

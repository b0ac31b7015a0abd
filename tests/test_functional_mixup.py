"""Tests of the deterministic mixup op ``mixup(x, index, lam)`` against a slow per-sample oracle."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_mixup.functional import mix_targets, mixup, mixup_batch, partner_index
from strategies import DTYPES, SEEDS, gen

TOL = {torch.float32: 1e-6, torch.float64: 1e-12, torch.bfloat16: 1e-2}


def draw_case(seed: int, batch: int, shape: tuple[int, ...], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = gen(seed)
    x = (3 * torch.randn(batch, *shape, generator=g, dtype=torch.float64)).to(dtype)
    index = torch.randperm(batch, generator=g)
    return x, index


def oracle(x: torch.Tensor, index: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """out[i] = lam[i]·x[i] + (1 − lam[i])·x[index[i]], one sample at a time, in float64.

    λ is first rounded to the input's dtype, as ``mixup`` applies it.
    """
    lam = lam.to(x.dtype).double().expand(x.shape[0])  # λ is applied in the input's dtype
    out = torch.empty(x.shape, dtype=torch.float64)
    for i in range(x.shape[0]):
        out[i] = lam[i] * x[i].double() + (1 - lam[i]) * x[int(index[i])].double()
    return out


SHAPES = st.sampled_from([(3, 4, 4), (1, 5, 3), (7,), (2, 3), ()])


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 8), shape=SHAPES, dtype=st.sampled_from(DTYPES))
def test_per_sample_matches_oracle(seed: int, batch: int, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x, index = draw_case(seed, batch, shape, dtype)
    lam = torch.rand(batch, generator=gen(seed + 1))
    out = mixup(x, index, lam)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out.double(), oracle(x, index, lam), atol=TOL[dtype] * 10, rtol=TOL[dtype])
    # targets, per sample, likewise
    probs = torch.softmax(torch.randn(batch, 5, generator=gen(seed + 2)), dim=1)
    mixed = mix_targets(probs, index, lam)
    for i in range(batch):
        expected = lam[i] * probs[i] + (1 - lam[i]) * probs[int(index[i])]
        torch.testing.assert_close(mixed[i], expected, atol=1e-6, rtol=1e-6)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 8), shape=SHAPES, dtype=st.sampled_from(DTYPES))
def test_scalar_lam_equals_repeated_per_sample_lam(
    seed: int, batch: int, shape: tuple[int, ...], dtype: torch.dtype
) -> None:
    x, index = draw_case(seed, batch, shape, dtype)
    lam = torch.rand((), generator=gen(seed + 1))
    out = mixup(x, index, lam)
    torch.testing.assert_close(out.double(), oracle(x, index, lam), atol=TOL[dtype] * 10, rtol=TOL[dtype])
    assert torch.equal(out, mixup(x, index, lam.expand(batch).clone()))
    assert torch.equal(out, mixup(x, index, float(lam)))


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 8), shape=SHAPES, dtype=st.sampled_from(DTYPES), per_sample=st.booleans())
def test_lam_one_is_bit_identical(
    seed: int, batch: int, shape: tuple[int, ...], dtype: torch.dtype, per_sample: bool
) -> None:
    x, index = draw_case(seed, batch, shape, dtype)
    for lam in (1.0, torch.tensor(1.0), torch.ones(batch), torch.ones(batch, dtype=torch.float64)):
        if not per_sample and isinstance(lam, torch.Tensor) and lam.ndim:
            continue
        out = mixup(x, index, lam)
        assert torch.equal(out, x)
        assert out.data_ptr() != x.data_ptr()  # out of place


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 8), shape=SHAPES, dtype=st.sampled_from(DTYPES))
def test_lam_zero_gives_the_partner(seed: int, batch: int, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x, index = draw_case(seed, batch, shape, dtype)
    assert torch.equal(mixup(x, index, 0.0), x[index])
    assert torch.equal(mixup(x, index, torch.zeros(batch)), x[index])


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 8), shape=SHAPES, dtype=st.sampled_from(DTYPES), per_sample=st.booleans())
def test_identity_partner_leaves_batch_unchanged(
    seed: int, batch: int, shape: tuple[int, ...], dtype: torch.dtype, per_sample: bool
) -> None:
    x, _ = draw_case(seed, batch, shape, dtype)
    lam = torch.rand(batch if per_sample else (), generator=gen(seed + 1))
    out = mixup(x, torch.arange(batch), lam)
    torch.testing.assert_close(out, x, atol=0, rtol=TOL[dtype])


def test_mixup_input_not_modified() -> None:
    x, index = draw_case(0, 6, (3, 4, 4), torch.float32)
    before = x.clone()
    mixup(x, index, torch.rand(6, generator=gen(1)))
    assert torch.equal(x, before)


@pytest.mark.parametrize("per_sample", [False, True])
def test_mixup_gradient(per_sample: bool) -> None:
    x = torch.randn(5, 3, 4, 4, generator=gen(0), requires_grad=True)
    index = torch.tensor([1, 2, 3, 4, 0])
    lam = torch.rand(5, generator=gen(1)) if per_sample else torch.tensor(0.3)
    out = mixup(x, index, lam)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and bool((x.grad != 0).any())
    # each sample is used with weight lam[i] by itself and 1 − lam[i] by the sample whose partner it is
    lam_b = lam.expand(5)
    expected = lam_b + (1 - lam_b)[torch.argsort(index)]
    torch.testing.assert_close(x.grad[:, 0, 0, 0], expected)


def test_mixup_gradient_through_lam() -> None:
    x = torch.randn(4, 3, generator=gen(0))
    index = torch.tensor([1, 0, 3, 2])
    lam = torch.full((4,), 0.3, requires_grad=True)
    mixup(x, index, lam).sum().backward()
    torch.testing.assert_close(lam.grad, (x - x[index]).sum(dim=1))


def test_mixup_batch_lam_matches_generator_draws() -> None:
    # a per-batch λ is shared by all samples: the target of every mixed sample carries it
    x = torch.randn(8, 3, 4, 4, generator=gen(0))
    out = mixup_batch(x, torch.arange(8), 8, alpha=0.5, partner="flip", generator=gen(3))
    idx = partner_index(8, "flip")
    for i in range(8):
        assert float(out.target[i, i]) == pytest.approx(float(out.lam), abs=1e-6)
        assert float(out.target[i, int(idx[i])]) == pytest.approx(1 - float(out.lam), abs=1e-6)


@pytest.mark.parametrize("alpha", [0.2, 1.0])
def test_mixup_batch_lam_distribution(alpha: float) -> None:
    # per-sample λ of mixup_batch follows Beta(α, α): mean 1/2, variance 1 / (4(2α + 1))
    x = torch.zeros(20_000, 1)
    out = mixup_batch(x, torch.zeros(20_000, dtype=torch.long), 2, alpha=alpha, per_sample=True, generator=gen(0))
    assert abs(float(out.lam.mean()) - 0.5) < 0.01
    assert abs(float(out.lam.var()) - 1 / (4 * (2 * alpha + 1))) < 0.01

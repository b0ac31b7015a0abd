"""Tests of the random draws shared by every mixer: λ ~ Beta, the partner index, and ``expand_lam``."""

from __future__ import annotations

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_mixup.functional import expand_lam, partner_index, sample_beta, sample_lam
from strategies import SEEDS, gen, policy_error

ALPHAS = [0.1, 0.2, 1.0, 2.0]
# (a, b) pairs: Beta(α, α) as mixup and CutMix draw it, Beta(α + 1, α) as FMix's "reformulate" draws it
BETA_PARAMS = [(a, a) for a in ALPHAS] + [(a + 1.0, a) for a in ALPHAS]


def draw(a: float, b: float, n: int, seed: int) -> torch.Tensor:
    if a == b:
        return sample_lam(a, n, generator=gen(seed))
    return sample_beta(a, b, n, generator=gen(seed))


def beta_moments(a: float, b: float) -> tuple[float, float, float]:
    """Mean, variance and excess kurtosis of Beta(a, b)."""
    s = a + b
    mean = a / s
    var = a * b / (s * s * (s + 1))
    kurt = 6 * ((a - b) ** 2 * (s + 1) - a * b * (s + 2)) / (a * b * (s + 2) * (s + 3))
    return mean, var, kurt


# --------------------------------------------------------------------------------------------- λ ~ Beta


@pytest.mark.parametrize(("a", "b"), BETA_PARAMS)
def test_beta_moments_match(a: float, b: float) -> None:
    n = 200_000
    lam = draw(a, b, n, seed=1234).double()
    mean, var, kurt = beta_moments(a, b)
    se_mean = math.sqrt(var / n)
    se_var = var * math.sqrt((kurt + 2) / n)  # standard error of the sample variance
    assert abs(float(lam.mean()) - mean) < 5 * se_mean + 1e-6
    assert abs(float(lam.var()) - var) < 5 * se_var + 1e-6
    # and a tight absolute bound, whatever the parameters
    assert abs(float(lam.mean()) - mean) < 6e-3
    assert abs(float(lam.var()) - var) < 3e-3


@pytest.mark.parametrize(("a", "b"), BETA_PARAMS)
def test_beta_kolmogorov_smirnov(a: float, b: float) -> None:
    stats = pytest.importorskip("scipy.stats")
    n = 20_000
    lam = draw(a, b, n, seed=99).double().numpy()
    dist = stats.beta(a, b)
    # float32 cannot hold values in (1 - 2**-25, 1): for small b a sizeable share of the draws (about 9% for
    # Beta(0.1, 0.1)) rounds to exactly 1.0, an atom that the KS test would misread. So test the draws below a
    # cut-off c against the Beta law conditioned on X < c, and the share above c against 1 - F(c).
    c = 1.0 - 1e-5
    below = lam[lam < c]
    result = stats.kstest(below, lambda x: dist.cdf(x) / dist.cdf(c))
    assert result.pvalue > 0.01, (a, b, result)
    p_above = float(dist.sf(c))
    share_above = 1.0 - below.size / n
    assert abs(share_above - p_above) < 5 * math.sqrt(p_above * (1 - p_above) / n) + 1e-4, (share_above, p_above)


@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.1])
def test_small_alpha_never_nan(alpha: float) -> None:
    for size in (None, 1, 7, 20_000):
        lam = sample_lam(alpha, size, generator=gen(3))
        assert lam.dtype == torch.float32
        assert torch.isfinite(lam).all()
        assert ((lam >= 0) & (lam <= 1)).all()
    lam = sample_beta(alpha + 1.0, alpha, 20_000, generator=gen(4))
    assert torch.isfinite(lam).all() and ((lam >= 0) & (lam <= 1)).all()
    # Beta(α, α) with small α is U-shaped: most mass near 0 and 1
    lam = sample_lam(alpha, 10_000, generator=gen(5))
    assert float(((lam < 0.05) | (lam > 0.95)).float().mean()) > 0.5


@pytest.mark.parametrize("alpha", [1e3, 1e6])
def test_large_alpha_concentrates_at_half(alpha: float) -> None:
    lam = sample_lam(alpha, 10_000, generator=gen(0))
    assert torch.isfinite(lam).all()
    assert abs(float(lam.mean()) - 0.5) < 1e-2
    assert float(lam.std()) < 1 / math.sqrt(8 * alpha) * 1.2 + 1e-6


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, alpha=st.sampled_from(ALPHAS), size=st.one_of(st.none(), st.integers(1, 64)))
def test_sample_lam_shape_range_determinism(seed: int, alpha: float, size: int | None) -> None:
    lam = sample_lam(alpha, size, generator=gen(seed))
    assert lam.dtype == torch.float32
    assert lam.shape == (() if size is None else (size,))
    assert ((lam >= 0) & (lam <= 1)).all()
    again = sample_lam(alpha, size, generator=gen(seed))
    assert torch.equal(lam, again)


def test_same_generator_state_same_draws() -> None:
    g = gen(7)
    state = g.get_state()
    first = sample_beta(2.0, 0.5, 1000, generator=g)
    second = sample_beta(2.0, 0.5, 1000, generator=g)  # the generator moved on
    assert not torch.equal(first, second)
    g.set_state(state)
    assert torch.equal(sample_beta(2.0, 0.5, 1000, generator=g), first)


@pytest.mark.parametrize("alpha", ALPHAS)
def test_different_seeds_different_draws(alpha: float) -> None:
    a = sample_lam(alpha, 256, generator=gen(0))
    b = sample_lam(alpha, 256, generator=gen(1))
    assert not torch.equal(a, b)
    scalars = {float(sample_lam(alpha, generator=gen(s))) for s in range(20)}
    assert len(scalars) > 10


def test_draws_on_device_without_generator() -> None:
    lam = sample_lam(1.0, 5, device="cpu")
    assert lam.device.type == "cpu" and lam.shape == (5,)
    lam = sample_beta(2.0, 1.0, device=torch.device("cpu"))
    assert lam.shape == ()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_draws_on_generator_device_cuda() -> None:
    g = torch.Generator(device="cuda").manual_seed(0)
    lam = sample_lam(0.2, 100, generator=g)
    assert lam.device.type == "cuda" and lam.dtype == torch.float32
    assert torch.isfinite(lam).all() and ((lam >= 0) & (lam <= 1)).all()
    assert torch.equal(lam, sample_lam(0.2, 100, generator=torch.Generator(device="cuda").manual_seed(0)))
    idx = partner_index(9, "perm", generator=torch.Generator(device="cuda").manual_seed(0))
    assert idx.device.type == "cuda" and sorted(idx.tolist()) == list(range(9))


@pytest.mark.parametrize("alpha", [0, 0.0, -1, -0.5, float("nan"), float("inf"), -float("inf"), "1.0", None, True])
def test_sample_lam_rejects_bad_alpha(alpha: object) -> None:
    with pytest.raises(policy_error(alpha, (int, float)), match=re.escape(repr(alpha))):
        sample_lam(alpha, generator=gen(0))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("a", "b", "bad"),
    [(0.0, 1.0, "a=0.0"), (1.0, -2.0, "b=-2.0"), (float("nan"), 1.0, "a=nan"), (1.0, float("inf"), "b=inf")],
)
def test_sample_beta_rejects_bad_parameters(a: float, b: float, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        sample_beta(a, b, 3, generator=gen(0))


# --------------------------------------------------------------------------------------------- partners


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 64))
def test_perm_is_a_permutation(seed: int, batch: int) -> None:
    idx = partner_index(batch, "perm", generator=gen(seed))
    assert idx.dtype == torch.int64 and idx.shape == (batch,)
    assert sorted(idx.tolist()) == list(range(batch))
    assert torch.equal(idx, partner_index(batch, "perm", generator=gen(seed)))


def test_perm_default_and_differs_between_seeds() -> None:
    assert torch.equal(partner_index(32, generator=gen(0)), partner_index(32, "perm", generator=gen(0)))
    assert not torch.equal(partner_index(32, generator=gen(0)), partner_index(32, generator=gen(1)))
    assert not torch.equal(partner_index(32, generator=gen(0)), torch.arange(32))


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 7, 8, 33])
def test_flip_is_reversed(batch: int) -> None:
    idx = partner_index(batch, "flip", generator=gen(0))
    assert idx.tolist() == list(range(batch))[::-1]
    assert torch.equal(idx[idx], torch.arange(batch))  # an involution: partners are mutual
    if batch % 2 == 1:
        mid = batch // 2
        assert int(idx[mid]) == mid  # odd batch: the middle sample is its own partner
        assert int((idx == torch.arange(batch)).sum()) == 1
    else:
        assert not bool((idx == torch.arange(batch)).any())


def test_flip_uses_no_randomness() -> None:
    g = gen(0)
    state = g.get_state()
    partner_index(10, "flip", generator=g)
    assert torch.equal(g.get_state(), state)


@pytest.mark.parametrize("partner", ["bogus", "Perm", "reverse", ""])
def test_unknown_partner(partner: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(partner))):
        partner_index(4, partner, generator=gen(0))


@pytest.mark.parametrize("batch", [0, -3, 2.0, "4"])
def test_bad_batch_size(batch: object) -> None:
    with pytest.raises(policy_error(batch, int), match=re.escape(repr(batch))):
        partner_index(batch, "perm", generator=gen(0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- expand_lam


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_expand_lam_shapes_and_dtype(dtype: torch.dtype) -> None:
    like = torch.zeros(5, 3, 4, 2, dtype=dtype)
    assert expand_lam(0.25, like).shape == () and expand_lam(0.25, like).dtype == dtype
    assert expand_lam(torch.tensor(0.25), like).shape == ()
    lam = torch.linspace(0, 1, 5)
    out = expand_lam(lam, like)
    assert out.shape == (5, 1, 1, 1) and out.dtype == dtype
    assert torch.equal(out.flatten().float(), lam.to(dtype).float())
    assert expand_lam(lam, torch.zeros(5)).shape == (5,)
    assert expand_lam(lam, torch.zeros(5, 7)).shape == (5, 1)


@pytest.mark.parametrize("shape", [(4,), (6,), (5, 1), (1, 5)])
def test_expand_lam_rejects_wrong_shape(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        expand_lam(torch.full(shape, 0.5), torch.zeros(5, 3))

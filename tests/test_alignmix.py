"""Tests of AlignMix: the batched Sinkhorn against the official ``SinkhornDistance`` loop and plain multiplicative
Sinkhorn, ``alignmix_batch`` against a slow per-sample reference of the official ``mixup_aligned``, the identity plan
giving Manifold Mixup, and the callback through a forward hook."""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NUM_CLASSES, Recorder, UserModule, make_loader, make_trainer
from lightning_mixup.callbacks import alignmix as alignmix_callback_module
from lightning_mixup.callbacks.alignmix import AlignMix
from lightning_mixup.callbacks.base import MixStep
from lightning_mixup.functional import Targets, mixup, pair_loss
from lightning_mixup.functional.alignmix import (
    DIRECTIONS,
    aligned_sources,
    alignment_plan,
    alignmix,
    alignmix_batch,
    sample_directions,
    sinkhorn,
    squared_distances,
    transport,
)
from lightning_mixup.functional.sampling import partner_index, sample_lam
from lightning_mixup.models.classifier import Classifier
from lightning_mixup.models.nets import SmallCNN
from strategies import SEEDS, gen

# ------------------------------------------------------------------------------------- slow references


def official_plan(x: torch.Tensor, y: torch.Tensor, eps: float, max_iter: int, thresh: float) -> torch.Tensor:
    """The official ``SinkhornDistance.forward`` for one pair ``x [n, D]``, ``y [m, D]`` (without its ``+ 1e-8``
    inside ``log μ``): log-domain updates of ``u``, ``v``, stop once ``Σ|u − u_prev| < thresh``."""
    cost = ((x[:, None, :] - y[None, :, :]).abs() ** 2).sum(-1)
    mu, nu = torch.full((x.shape[0],), 1.0 / x.shape[0]), torch.full((y.shape[0],), 1.0 / y.shape[0])
    mu, nu = mu.to(x.dtype), nu.to(x.dtype)
    u, v = torch.zeros_like(mu), torch.zeros_like(nu)

    def M(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:  # noqa: N802 (the official name)
        return (-cost + u[:, None] + v[None, :]) / eps

    for _ in range(max_iter):
        u1 = u
        u = eps * (torch.log(mu) - torch.logsumexp(M(u, v), dim=-1)) + u
        v = eps * (torch.log(nu) - torch.logsumexp(M(u, v).T, dim=-1)) + v
        if float((u - u1).abs().sum()) < thresh:
            break
    return torch.exp(M(u, v))


def plain_sinkhorn(x: torch.Tensor, y: torch.Tensor, eps: float, iterations: int) -> torch.Tensor:
    """Textbook multiplicative Sinkhorn (no logs), for costs small enough not to underflow."""
    kernel = torch.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / eps)
    a, b = torch.full((x.shape[0],), 1.0 / x.shape[0]), torch.full((y.shape[0],), 1.0 / y.shape[0])
    a, b = a.to(x.dtype), b.to(x.dtype)
    v = torch.ones_like(b)
    for _ in range(iterations):
        u = a / (kernel @ v)
        v = b / (kernel.T @ u)
    return u[:, None] * kernel * v[None, :]


def alignmix_ref(h, y, alpha, per_sample, direction, seed, eps=0.1, iterations=100, tol=0.1):
    """The official ``mixup_aligned``, one sample at a time, with the draws of alignmix_batch (index, λ, direction)."""
    g = gen(seed)
    b, c = h.shape[:2]
    n = math.prod(h.shape[2:])
    index = partner_index(b, "perm", generator=g)
    size = b if per_sample else None
    lam = sample_lam(alpha, size, generator=g).expand(b)
    to_partner = sample_directions(direction, size, generator=g).expand(b)
    out, first, second = torch.empty_like(h), torch.empty_like(h), torch.empty_like(h)
    for i in range(b):
        j = int(index[i])
        feat1, feat2 = h[i].reshape(c, n), h[j].reshape(c, n)  # A, A'
        R = official_plan(feat1.T, feat2.T, eps, iterations, tol) * n
        if to_partner[i]:  # Ã = A R, final = λÃ + (1 − λ)A'
            one, two = feat1 @ R, feat2
        else:  # Ã' = A' Rᵀ, final = λA + (1 − λ)Ã'
            one, two = feat1, feat2 @ R.T
        first[i], second[i] = one.view(h.shape[1:]), two.view(h.shape[1:])
        out[i] = (lam[i] * one + (1 - lam[i]) * two).view(h.shape[1:])
    one_hot = F.one_hot(y, NUM_CLASSES).to(h.dtype)
    target = lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[index]
    return out, target, lam, index, (first, second)


# ------------------------------------------------------------------------------------- Sinkhorn


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 4), n=st.integers(1, 9), m=st.integers(1, 9), tol=st.sampled_from([0.0, 0.1]))
def test_sinkhorn_equals_the_official_loop_pair_by_pair(seed: int, batch: int, n: int, m: int, tol: float) -> None:
    x = torch.randn(batch, n, 5, generator=gen(seed), dtype=torch.float64)
    y = torch.randn(batch, m, 5, generator=gen(seed + 1), dtype=torch.float64)
    plan = sinkhorn(x, y, 0.1, 100, tol)
    assert plan.shape == (batch, n, m) and plan.dtype == torch.float64
    for i in range(batch):  # each pair its own stopping: a pair's plan does not depend on the rest of the batch
        torch.testing.assert_close(plan[i], official_plan(x[i], y[i], 0.1, 100, tol), rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(plan.sum(1), torch.full((batch, m), 1.0 / m, dtype=torch.float64))  # exact: last


def test_sinkhorn_equals_plain_multiplicative_sinkhorn() -> None:
    x, y = torch.randn(3, 6, 4, dtype=torch.float64), torch.randn(3, 7, 4, dtype=torch.float64)
    plan = sinkhorn(x, y, eps=2.0, iterations=7, tol=0.0)
    torch.testing.assert_close(plan, torch.stack([plain_sinkhorn(x[i], y[i], 2.0, 7) for i in range(3)]))


@pytest.mark.parametrize("eps", [0.1, 1.0])
def test_sinkhorn_marginals_are_uniform(eps: float) -> None:
    g = gen(0)
    x, y = 0.3 * torch.randn(8, 16, 8, generator=g), 0.3 * torch.randn(8, 12, 8, generator=g)
    plan = sinkhorn(x, y, eps, iterations=500, tol=0.0)
    assert plan.dtype == torch.float32 and (plan >= 0).all()
    torch.testing.assert_close(plan.sum(2), torch.full((8, 16), 1 / 16), atol=1e-5, rtol=0)
    torch.testing.assert_close(plan.sum(1), torch.full((8, 12), 1 / 12), atol=1e-6, rtol=0)
    official = sinkhorn(x, y, eps)  # the official defaults stop early: the columns still exact, the rows close
    torch.testing.assert_close(official.sum(1), torch.full((8, 12), 1 / 12), atol=1e-6, rtol=0)
    torch.testing.assert_close(official.sum(2), torch.full((8, 16), 1 / 16), atol=0.1 / (16 * eps), rtol=0)


def test_sinkhorn_does_not_overflow_on_large_costs() -> None:
    x = 30 * torch.randn(4, 16, 64, generator=gen(1))  # C/ε ~ 1e6: the kernel exp(−C/ε) underflows to 0
    plan = sinkhorn(x, x[:, torch.randperm(16, generator=gen(2))], 0.1)
    assert torch.isfinite(plan).all()
    torch.testing.assert_close(plan.sum(1), torch.full((4, 16), 1 / 16))


def test_squared_distances() -> None:
    x, y = torch.randn(2, 5, 3, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(squared_distances(x, y), ((x[:, :, None] - y[:, None]) ** 2).sum(-1))


# ------------------------------------------------------------------------------------- the alignment and the mix


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, per_sample=st.booleans(), shape=st.sampled_from([(2, 3, 3), (4, 5), (3, 2, 2, 2)]))
def test_the_identity_plan_gives_manifold_mixup(seed: int, per_sample: bool, shape: tuple[int, ...]) -> None:
    g = gen(seed)
    h = torch.randn(5, *shape, generator=g)
    index = partner_index(5, generator=g)
    lam = sample_lam(2.0, 5 if per_sample else None, generator=g)
    to_partner = sample_directions("random", 5 if per_sample else None, generator=g)
    n = math.prod(shape[1:])
    identity = torch.eye(n).unsqueeze(0) / n
    torch.testing.assert_close(alignmix(h, index, lam, to_partner, plan=identity), mixup(h, index, lam))
    first, second = aligned_sources(h, index, to_partner, plan=identity)
    torch.testing.assert_close(first, h)
    torch.testing.assert_close(second, h[index])


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_alignmix_batch_equals_a_per_sample_oracle(per_sample: bool, direction: str) -> None:
    for seed in range(3):
        h = torch.randn(6, 4, 3, 3, generator=gen(100 + seed), dtype=torch.float64)
        y = torch.arange(6) % NUM_CLASSES
        out = alignmix_batch(h, y, NUM_CLASSES, 2.0, direction=direction, per_sample=per_sample, generator=gen(seed))
        ref, target, lam, index, (first, second) = alignmix_ref(h, y, 2.0, per_sample, direction, seed)
        torch.testing.assert_close(out.input, ref)
        torch.testing.assert_close(out.target, target.float())
        torch.testing.assert_close(out.lam.expand(6), lam)
        torch.testing.assert_close(out.index, index)
        torch.testing.assert_close(out.sources[0], first)
        torch.testing.assert_close(out.sources[1], second)
        assert out.mask is None and out.lam.shape == ((6,) if per_sample else ())
        torch.testing.assert_close(out.target.sum(1), torch.ones(6))


def test_a_spatially_permuted_partner_is_aligned_back() -> None:
    """A partner whose positions are the sample's, shuffled: the plan finds the permutation, so the partner
    aligned to the sample is the sample itself (and the sample aligned to the partner is the partner)."""
    g = gen(3)
    h = torch.randn(2, 8, 4, 4, generator=g)
    perm = torch.randperm(16, generator=g)
    h[1] = h[0].flatten(1)[:, perm].view(8, 4, 4)
    index = torch.tensor([1, 0])
    plan = alignment_plan(h, index)
    assert torch.equal((plan[0] * 16).argmax(1), perm.argsort())  # position i of h[0] is position perm⁻¹(i) of h[1]
    torch.testing.assert_close(alignmix(h, index, 0.3, False), h, atol=1e-4, rtol=0)
    torch.testing.assert_close(alignmix(h, index, 0.3, True), h[index], atol=1e-4, rtol=0)


@pytest.mark.parametrize("to_partner", [False, True])
def test_after_global_pooling_it_is_manifold_mixup(to_partner: bool) -> None:
    """R's columns sum to 1 exactly and its rows once converged: the spatial mean of each channel is mixup's."""
    h, index = 0.3 * torch.randn(6, 5, 3, 3, generator=gen(4)), torch.tensor([3, 0, 5, 1, 2, 4])
    lam = torch.rand(6, generator=gen(5))
    out = alignmix(h, index, lam, to_partner, iterations=500, tol=0.0)
    torch.testing.assert_close(out.mean((2, 3)), mixup(h, index, lam).mean((2, 3)), atol=1e-5, rtol=0)


def test_lam_one_is_the_identity_when_the_partner_is_aligned_to_the_sample() -> None:
    h, index = torch.randn(4, 3, 2, 2), torch.tensor([1, 2, 3, 0])
    assert torch.equal(alignmix(h, index, 1.0, False), h)
    assert torch.equal(alignmix(h, index, torch.ones(4), torch.zeros(4, dtype=torch.bool)), h)
    moved = alignmix(h, index, 1.0, True)  # the sample moved into its partner's geometry: its own features only
    torch.testing.assert_close(moved, transport(h, alignment_plan(h, index).transpose(1, 2) * 4))


def test_the_plan_carries_no_gradient() -> None:
    h = torch.randn(4, 3, 2, 2, requires_grad=True)
    index, lam = torch.tensor([1, 0, 3, 2]), torch.tensor([0.2, 0.5, 0.7, 0.9])
    for to_partner in (False, True):
        (grad,) = torch.autograd.grad(alignmix(h, index, lam, to_partner).square().sum(), h)
        plan = alignment_plan(h.detach(), index)
        (fixed,) = torch.autograd.grad(alignmix(h, index, lam, to_partner, plan=plan).square().sum(), h)
        torch.testing.assert_close(grad, fixed)


def test_bf16_and_channels_last_keep_the_dtype_and_format() -> None:
    h = torch.randn(4, 6, 3, 3)
    index = torch.tensor([2, 3, 0, 1])
    expected = alignmix(h, index, 0.6, torch.tensor([True, False, True, False]))
    cl = h.contiguous(memory_format=torch.channels_last)
    out = alignmix(cl, index, 0.6, torch.tensor([True, False, True, False]))
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected)
    low = alignmix(h.bfloat16(), index, 0.6, True)
    assert low.dtype == torch.bfloat16 and torch.isfinite(low).all()


# ------------------------------------------------------------------------------------- targets and options


@pytest.mark.parametrize("task", ["multilabel", "regression"])
def test_other_tasks_mix_their_targets_with_lam(task: str) -> None:
    h = torch.randn(6, 4, 2, 2)
    target = torch.rand(6, 3) if task == "multilabel" else torch.randn(6)
    out = alignmix_batch(h, target, Targets(3, task), per_sample=True, generator=gen(0))
    lam = out.lam.view(-1, 1) if task == "multilabel" else out.lam
    torch.testing.assert_close(out.target, lam * target + (1 - lam) * target[out.index])


def test_pair_form_equals_mixed_form_for_cross_entropy() -> None:
    h, y = torch.randn(6, 4, 2, 2), torch.arange(6) % NUM_CLASSES
    mixed = alignmix_batch(h, y, NUM_CLASSES, per_sample=True, generator=gen(1))
    pair = alignmix_batch(h, y, Targets(NUM_CLASSES, form="pair"), per_sample=True, generator=gen(1))
    torch.testing.assert_close(pair.input, mixed.input)
    logits = torch.randn(6, NUM_CLASSES)
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    torch.testing.assert_close(pair_loss(ce, logits, pair.target), F.cross_entropy(logits, mixed.target))


def test_segmentation_is_refused() -> None:
    h, masks = torch.randn(2, 3, 4, 4), torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match="per-sample targets only"):
        alignmix_batch(h, masks, Targets(3, "segmentation"), generator=gen(0))
    with pytest.raises(ValueError, match="cannot mix task='segmentation'"):
        AlignMix(layers=["net.layer1"], task="segmentation")


BAD = [
    ({"eps": 0.0}, ValueError, "eps must be a finite number > 0, got 0.0"),
    ({"eps": -1}, ValueError, "eps must be a finite number > 0, got -1"),
    ({"eps": float("nan")}, ValueError, "got nan"),
    ({"eps": True}, TypeError, "eps must be a finite number > 0, got True"),
    ({"iterations": 0}, ValueError, "iterations must be an int >= 1, got 0"),
    ({"iterations": 2.5}, TypeError, "iterations must be an int >= 1, got 2.5"),
    ({"tol": -0.1}, ValueError, "tol must be a finite number >= 0, got -0.1"),
    ({"direction": "sideways"}, ValueError, "direction must be one of .*got 'sideways'"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD)
def test_bad_options_are_quoted(kwargs: dict, error: type, message: str) -> None:
    h, y = torch.randn(4, 3, 2, 2), torch.arange(4) % NUM_CLASSES
    with pytest.raises(error, match=message):
        alignmix_batch(h, y, NUM_CLASSES, generator=gen(0), **kwargs)
    with pytest.raises(error, match=message):
        AlignMix(layers=["net.layer1"], **kwargs)
    if "direction" not in kwargs:
        with pytest.raises(error, match=message):
            sinkhorn(torch.randn(1, 2, 3), torch.randn(1, 2, 3), **kwargs)


def test_bad_inputs_are_explained() -> None:
    with pytest.raises(ValueError, match=r"feature map \[B, C, H, W\].*got shape \[4, 8\]"):
        alignmix_batch(torch.randn(4, 8), torch.arange(4) % 2, 2, generator=gen(0))
    with pytest.raises(ValueError, match=r"plan must have shape \[4 or 1, 4, 4\]"):
        alignmix(torch.randn(4, 3, 2, 2), torch.arange(4), 0.5, plan=torch.ones(4, 3, 3))
    with pytest.raises(ValueError, match=r"to_partner must be a bool or have shape \[4\]"):
        alignmix(torch.randn(4, 3, 2, 2), torch.arange(4), 0.5, torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="sinkhorn needs points"):
        sinkhorn(torch.randn(2, 3, 4), torch.randn(2, 3, 5))


# ------------------------------------------------------------------------------------- the callback


def cnn_module() -> UserModule:
    module = UserModule()
    module.net = SmallCNN(in_channels=3, num_classes=NUM_CLASSES, width=4)
    return module


class Spy:
    def __init__(self, fn: Any) -> None:
        self.fn, self.calls = fn, []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        return self.fn(*args, **kwargs)


@pytest.mark.parametrize("per_sample", [False, True])
def test_the_hook_mixes_the_layer_output(per_sample: bool, monkeypatch: Any) -> None:
    torch.manual_seed(0)
    module = cnn_module().eval()
    cb = AlignMix(layers=["net.layer2"], include_input=False, per_sample=per_sample, num_classes=NUM_CLASSES)
    spy = Spy(alignmix_callback_module.alignmix)
    monkeypatch.setattr(alignmix_callback_module, "alignmix", spy)
    cb.setup(SimpleNamespace(global_rank=0), module, "fit")
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % NUM_CLASSES
    mixed = cb.mix(MixStep(x, y, NUM_CLASSES, torch.Generator().manual_seed(0)))
    out = module(x)
    (((_, index, lam, to_partner), kwargs),) = spy.calls
    assert kwargs == {"eps": 0.1, "iterations": 100, "tol": 0.1} and to_partner.shape == lam.shape
    net = module.net
    h = alignmix(net.layer2(net.layer1(x)), index, lam, to_partner)
    torch.testing.assert_close(out, net.head(net.pool(net.layer3(h))))
    one_hot = F.one_hot(y, NUM_CLASSES).float()
    lam_y = lam.view(-1, 1) if lam.ndim else lam
    torch.testing.assert_close(mixed.target, lam_y * one_hot + (1 - lam_y) * one_hot[index])
    torch.testing.assert_close(module(x), net(x))  # disarmed after one forward
    cb.teardown(None, module, "fit")
    assert sum(len(m._forward_hooks) for m in module.modules()) == 0


def test_one_epoch_fit_with_a_small_cnn() -> None:
    recorder = Recorder(at_end=True)
    cb = AlignMix(layers=["net.layer1"], per_sample=True)
    module = cnn_module()
    loader = make_loader()
    make_trainer([cb, recorder], limit_val_batches=2).fit(module, loader, loader)
    assert recorder.batches and all(torch.isfinite(p).all() for p in module.parameters())
    for _, target in recorder.batches:
        torch.testing.assert_close(target.sum(1), torch.ones(target.shape[0]))
    assert any(((target > 0) & (target < 1)).any() for _, target in recorder.batches)  # mixed
    assert cb._fired > 0  # the hidden layer was mixed (not only the input)
    val = [x for x, _ in loader][:2]
    assert len(module.seen["val"]) >= 2 and all(torch.equal(b[0], v) for b, v in zip(module.seen["val"][-2:], val))
    assert cb._handles == []


def test_one_epoch_fit_of_the_classifier_logs_the_direction() -> None:
    net = SmallCNN(in_channels=3, num_classes=NUM_CLASSES, width=4)
    trainer = make_trainer([AlignMix(layers=["net.layer3"], include_input=False, seed=0)], limit_val_batches=0)
    trainer.fit(Classifier(net, num_classes=NUM_CLASSES), make_loader())
    assert 0.0 <= float(trainer.callback_metrics["mix/to_partner"]) <= 1.0


def test_a_layer_that_is_not_a_feature_map_is_named() -> None:
    cb = AlignMix(layers=["net.head"], include_input=False)
    with pytest.raises(ValueError, match=r"layer 'net.head': AlignMix needs a feature map"):
        make_trainer([cb]).fit(cnn_module(), make_loader())

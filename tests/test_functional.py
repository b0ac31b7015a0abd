"""Properties shared by the three batch mixers (mixup_batch, cutmix_batch, fmix_batch), the target helpers and
the errors of the functional layer.

The batch mixers are tested as black boxes: with labels ``arange(B)`` each mixed target row reveals the partner
``j`` of sample ``i`` and its λ (``target[i, i]``), and an input whose channel 0 holds the sample's id reveals,
pixel by pixel, which sample a mixed pixel came from. Method-specific tests of the deterministic ops live in
test_functional_mixup.py, test_functional_cutmix.py and test_functional_fmix.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lightning_mixup.functional import (
    MixedBatch,
    cutmix_batch,
    fmix_batch,
    mix_targets,
    mixup_batch,
    to_probs,
)
from strategies import DTYPES, SEEDS, gen, policy_error

OPS: dict[str, Callable[..., MixedBatch]] = {"mixup": mixup_batch, "cutmix": cutmix_batch, "fmix": fmix_batch}
IMAGE_OPS = ["cutmix", "fmix"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def tagged_images(batch: int, channels: int, height: int, width: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    """Random images whose channel 0 holds the sample's index, so that any pixel tells where it came from."""
    x = torch.randn(batch, channels, height, width, generator=gen(seed), dtype=torch.float64)
    x[:, 0] = torch.arange(batch, dtype=torch.float64).view(-1, 1, 1)
    return x.to(dtype)


def random_probs(batch: int, num_classes: int, seed: int) -> torch.Tensor:
    """Probability rows: a mix of smooth rows and exact one-hot rows."""
    g = gen(seed)
    probs = torch.softmax(3 * torch.randn(batch, num_classes, generator=g), dim=1)
    onehot = torch.rand(batch, generator=g) < 0.3
    hard = torch.nn.functional.one_hot(torch.randint(num_classes, (batch,), generator=g), num_classes).float()
    return torch.where(onehot[:, None], hard, probs)


def recover_partners(target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """From targets mixed with labels ``arange(B)``: each row's partner ``j`` and the weight on the sample itself.

    A row that is exactly one-hot on itself (partner is itself, or λ = 1) gives ``j = i``.
    """
    batch = target.shape[0]
    self_weight = target[torch.arange(batch), torch.arange(batch)]
    others = target[:, :batch].clone()
    others[torch.arange(batch), torch.arange(batch)] = 0
    j = torch.where(others.amax(dim=1) > 0, others.argmax(dim=1), torch.arange(batch, device=target.device))
    return j, self_weight


def check_common(out: MixedBatch, x: torch.Tensor, num_classes: int, per_sample: bool) -> None:
    batch = x.shape[0]
    assert isinstance(out, MixedBatch)
    assert out.input.shape == x.shape and out.input.dtype == x.dtype and out.input.device == x.device
    assert out.target.shape == (batch, num_classes) and out.target.is_floating_point()
    assert out.target.device == x.device
    assert (out.target >= 0).all()
    sums = out.target.sum(dim=1).double()
    torch.testing.assert_close(sums, torch.ones(batch, dtype=torch.float64), atol=1e-5, rtol=0)
    assert out.lam.shape == ((batch,) if per_sample else ())
    assert out.lam.is_floating_point() and out.lam.device == x.device
    assert ((out.lam >= 0) & (out.lam <= 1)).all()


def is_rectangle(region: torch.Tensor) -> bool:
    """True if the boolean ``[H, W]`` region is empty or a single axis-aligned box."""
    if not region.any():
        return True
    rows, cols = region.any(dim=1), region.any(dim=0)
    r, c = rows.nonzero().flatten(), cols.nonzero().flatten()
    contiguous = (r[-1] - r[0] + 1 == r.numel()) and (c[-1] - c[0] + 1 == c.numel())
    return bool(contiguous) and torch.equal(region, rows[:, None] & cols[None, :])


# ------------------------------------------------------------------------------------- the batch mixers


@pytest.mark.parametrize("op", list(OPS))
@settings(max_examples=40, deadline=None)
@given(
    seed=SEEDS,
    batch=st.integers(1, 7),
    channels=st.integers(1, 3),
    height=st.integers(1, 9),
    width=st.integers(1, 9),
    dtype=st.sampled_from(DTYPES),
    per_sample=st.booleans(),
    partner=st.sampled_from(["perm", "flip"]),
    alpha=st.sampled_from([0.2, 1.0, 4.0]),
)
def test_batch_mixer_properties(
    op: str,
    seed: int,
    batch: int,
    channels: int,
    height: int,
    width: int,
    dtype: torch.dtype,
    per_sample: bool,
    partner: str,
    alpha: float,
) -> None:
    fn = OPS[op]
    x = tagged_images(batch, channels, height, width, dtype, seed)
    x_before = x.clone()
    num_classes = max(batch, 2)
    labels = torch.arange(batch)
    kw: dict[str, Any] = dict(alpha=alpha, per_sample=per_sample, partner=partner)

    out = fn(x, labels, num_classes, generator=gen(seed), **kw)
    check_common(out, x, num_classes, per_sample)
    assert torch.equal(x, x_before)  # out of place

    lam = out.lam.expand(batch).double()
    j, self_weight = recover_partners(out.target)
    mixed = j != torch.arange(batch)
    # the targets carry the returned λ
    torch.testing.assert_close(self_weight[mixed].double(), lam[mixed], atol=1e-6, rtol=0)
    if partner == "flip":
        assert torch.equal(j[mixed], (batch - 1 - torch.arange(batch))[mixed])
    else:
        assert j[mixed].unique().numel() == int(mixed.sum())

    if op == "mixup":
        w = lam.view(-1, 1, 1, 1)
        expected = w * x.double() + (1 - w) * x[j].double()
        tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 5e-2}[dtype]
        torch.testing.assert_close(out.input.double(), expected, atol=tol, rtol=tol)
    else:
        # every pixel is exactly the pixel of x[i] or of x[j] at the same place
        from_self = out.input[:, 0] == x[:, 0]  # [B, H, W]
        assert torch.equal(out.input, torch.where(from_self[:, None], x, x[j]))
        share = from_self.double().mean(dim=(1, 2))
        torch.testing.assert_close(share[mixed], lam[mixed], atol=1e-6, rtol=0)
        if op == "cutmix":
            for i in range(batch):
                assert is_rectangle(~from_self[i])
        if not per_sample and int(mixed.sum()) > 1:
            first = from_self[mixed][0]
            assert all(torch.equal(m, first) for m in from_self[mixed])

    # the same draw with probability targets: same input, targets mixed with the same partners and λ
    probs = random_probs(batch, num_classes, seed)
    out_p = fn(x, probs, num_classes, generator=gen(seed), **kw)
    check_common(out_p, x, num_classes, per_sample)
    assert torch.equal(out_p.input, out.input) and torch.equal(out_p.lam, out.lam)
    w = lam.view(-1, 1)
    expected = w * probs.double() + (1 - w) * probs[j].double()
    torch.testing.assert_close(out_p.target.double(), expected, atol=1e-6, rtol=0)

    # determinism: the same seed draws the same batch
    again = fn(x, labels, num_classes, generator=gen(seed), **kw)
    assert torch.equal(again.input, out.input) and torch.equal(again.target, out.target)
    assert torch.equal(again.lam, out.lam)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("per_sample", [False, True])
def test_different_seeds_mix_differently(op: str, per_sample: bool) -> None:
    x = torch.randn(16, 3, 16, 16, generator=gen(0))
    y = torch.arange(16) % 4
    outs = [OPS[op](x, y, 4, per_sample=per_sample, generator=gen(s)) for s in range(3)]
    assert not torch.equal(outs[0].input, outs[1].input)
    assert not torch.equal(outs[1].input, outs[2].input)
    assert not torch.equal(outs[0].target, outs[1].target)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("device", DEVICES)
def test_works_without_generator(op: str, device: str) -> None:
    x = torch.randn(6, 3, 8, 8, device=device)
    out = OPS[op](x, torch.arange(6, device=device) % 3, 3, per_sample=True)
    check_common(out, x, 3, per_sample=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("gen_device", ["cpu", "cuda"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_cuda_input(op: str, gen_device: str, per_sample: bool) -> None:
    x = tagged_images(8, 3, 16, 16, torch.float32, 0).cuda()
    out = OPS[op](x, torch.arange(8, device="cuda"), 8, per_sample=per_sample, generator=gen(0, gen_device))
    check_common(out, x, 8, per_sample)
    j, _ = recover_partners(out.target)
    if op != "mixup":
        from_self = out.input[:, 0] == x[:, 0]
        assert torch.equal(out.input, torch.where(from_self[:, None], x, x[j]))


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("per_sample", [False, True])
def test_gradient_flows_to_input(op: str, per_sample: bool) -> None:
    x = torch.randn(6, 2, 8, 8, generator=gen(0), requires_grad=True)
    out = OPS[op](x, torch.arange(6) % 3, 3, per_sample=per_sample, generator=gen(1))
    (out.input * torch.randn_like(out.input)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and bool((x.grad != 0).any())
    x.grad = None
    out = OPS[op](x, torch.arange(6) % 3, 3, per_sample=per_sample, generator=gen(1))
    out.input.sum().backward()
    # every output pixel is a convex combination of input pixels, so the sum's gradient is the number of uses
    assert torch.isfinite(x.grad).all() and bool((x.grad != 0).any())
    torch.testing.assert_close(x.grad.sum(), torch.tensor(float(x.numel())), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("partner", ["perm", "flip"])
def test_batch_of_one(op: str, per_sample: bool, partner: str) -> None:
    x = torch.randn(1, 3, 8, 8, generator=gen(0))
    out = OPS[op](x, torch.tensor([1]), 2, per_sample=per_sample, partner=partner, generator=gen(0))
    check_common(out, x, 2, per_sample)
    assert torch.equal(out.input, x)  # the only partner is the sample itself
    assert torch.equal(out.target, torch.tensor([[0.0, 1.0]]))


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("batch", [3, 5, 9])
def test_odd_batch_flip_keeps_middle_sample(op: str, per_sample: bool, batch: int) -> None:
    x = tagged_images(batch, 3, 8, 8, torch.float32, 1)
    out = OPS[op](x, torch.arange(batch), batch, alpha=1.0, per_sample=per_sample, partner="flip", generator=gen(2))
    check_common(out, x, batch, per_sample)
    mid = batch // 2
    assert torch.equal(out.input[mid], x[mid])
    assert torch.equal(out.target[mid], torch.nn.functional.one_hot(torch.tensor(mid), batch).float())
    j, _ = recover_partners(out.target)
    lam = out.lam.expand(batch)
    for i in range(batch):
        if i != mid and float(lam[i]) < 1:
            assert int(j[i]) == batch - 1 - i


@pytest.mark.parametrize("op", list(OPS))
def test_mixes_any_channel_count_and_non_square(op: str) -> None:
    x = torch.randn(4, 5, 7, 13, generator=gen(0))
    out = OPS[op](x, torch.arange(4), 4, per_sample=True, generator=gen(0))
    check_common(out, x, 4, per_sample=True)


def test_mixup_batch_accepts_non_image_inputs() -> None:
    for shape in [(6,), (6, 10), (6, 4, 10), (6, 1, 2, 3, 4)]:
        x = torch.randn(*shape, generator=gen(0))
        for per_sample in (False, True):
            out = mixup_batch(x, torch.arange(6) % 2, 2, alpha=0.4, per_sample=per_sample, generator=gen(1))
            check_common(out, x, 2, per_sample)


# ------------------------------------------------------------------------------------- targets


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 10), num_classes=st.integers(2, 12), dtype=st.sampled_from(DTYPES))
def test_to_probs(seed: int, batch: int, num_classes: int, dtype: torch.dtype) -> None:
    labels = torch.randint(num_classes, (batch,), generator=gen(seed))
    for int_dtype in (torch.int64, torch.int32, torch.uint8):
        probs = to_probs(labels.to(int_dtype), num_classes)
        assert probs.dtype == torch.float32 and probs.shape == (batch, num_classes)
        assert torch.equal(probs.argmax(dim=1), labels) and torch.equal(probs.sum(dim=1), torch.ones(batch))
    assert to_probs(labels, num_classes, dtype=dtype).dtype == dtype
    soft = random_probs(batch, num_classes, seed)
    out = to_probs(soft.to(dtype), num_classes)
    assert out.dtype == torch.float32
    assert torch.equal(out, soft.to(dtype).float())
    assert torch.equal(to_probs(soft, num_classes, dtype=torch.float64), soft.double())


def test_to_probs_accepts_low_precision_probabilities() -> None:
    # bfloat16 rounds each entry by up to 2**-9 relative: a valid row may then sum to 1 ± 4e-3
    soft = torch.softmax(torch.randn(64, 7, generator=gen(0)), dim=1)
    for dtype in (torch.bfloat16, torch.float16):
        low = soft.to(dtype)
        assert torch.equal(to_probs(low, 7), low.float())
    with pytest.raises(ValueError, match=re.escape("1.01953")):  # 0.52 is 0.51953125 in bfloat16
        to_probs(torch.tensor([[0.52, 0.5]], dtype=torch.bfloat16), 2)


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, batch=st.integers(1, 8), num_classes=st.integers(2, 6), per_sample=st.booleans())
def test_mix_targets_matches_loop(seed: int, batch: int, num_classes: int, per_sample: bool) -> None:
    g = gen(seed)
    probs = random_probs(batch, num_classes, seed)
    index = torch.randperm(batch, generator=g)
    lam = torch.rand(batch, generator=g) if per_sample else torch.rand((), generator=g)
    out = mix_targets(probs, index, lam)
    assert out.shape == probs.shape and out.dtype == probs.dtype
    for i in range(batch):
        li = float(lam[i]) if per_sample else float(lam)
        expected = li * probs[i] + (1 - li) * probs[int(index[i])]
        torch.testing.assert_close(out[i], expected, atol=1e-6, rtol=1e-6)
    assert (out >= 0).all()
    torch.testing.assert_close(out.sum(dim=1), torch.ones(batch), atol=1e-5, rtol=0)
    # λ = 1 keeps the targets exactly, a Python float works like a tensor
    assert torch.equal(mix_targets(probs, index, 1.0), probs)
    assert torch.equal(mix_targets(probs, index, torch.ones(batch)), probs)
    torch.testing.assert_close(mix_targets(probs, index, 0.3), mix_targets(probs, index, torch.full((batch,), 0.3)))


@pytest.mark.parametrize(
    ("target", "num_classes", "bad"),
    [
        (torch.tensor([0, 10, 3]), 10, "[10]"),
        (torch.tensor([0, -1, 3]), 10, "[-1]"),
        (torch.tensor([2, 2]), 2, "[2, 2]"),
        (torch.tensor([[0.5, 0.4]]), 2, "0.9"),
        (torch.tensor([[0.7, 0.7, 0.0]]), 3, "1.4"),
        (torch.tensor([[1.2, -0.2]]), 2, "-0.2"),
        (torch.tensor([[float("nan"), 1.0]]), 2, "nan"),
        (torch.tensor([[0.5, 0.5, 0.0]]), 2, "3 columns"),
        (torch.tensor([[0.5, 0.5]]), 3, "num_classes=3"),
        (torch.tensor([[0, 1], [1, 0]]), 2, "[2, 2]"),
        (torch.tensor([True, False]), 2, "torch.bool"),
        (torch.zeros(2, 2, 2), 2, "[2, 2, 2]"),
        (torch.tensor([0.0, 1.0]), 2, "[2]"),
    ],
)
def test_to_probs_rejects_bad_targets(target: torch.Tensor, num_classes: int, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        to_probs(target, num_classes)


@pytest.mark.parametrize("num_classes", [1, 0, -3, 2.5, 10.0, "10", None, True])
def test_to_probs_rejects_bad_num_classes(num_classes: object) -> None:
    with pytest.raises(policy_error(num_classes, int), match=re.escape(repr(num_classes))):
        to_probs(torch.tensor([0, 1]), num_classes)  # type: ignore[arg-type]


def test_to_probs_rejects_non_tensor() -> None:
    with pytest.raises(TypeError, match="list"):
        to_probs([0, 1], 2)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- errors of the batch mixers


def call(op: str, x: torch.Tensor | None = None, target: Any = None, num_classes: Any = 4, **kw: Any) -> MixedBatch:
    x = torch.randn(4, 3, 8, 8) if x is None else x
    target = torch.tensor([0, 1, 2, 3]) if target is None else target
    return OPS[op](x, target, num_classes, generator=gen(0), **kw)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("alpha", [0, 0.0, -1.0, float("nan"), float("inf"), "1"])
def test_bad_alpha(op: str, alpha: object) -> None:
    with pytest.raises(policy_error(alpha, (int, float)), match=re.escape(repr(alpha))):
        call(op, alpha=alpha)


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), float("inf")])
def test_bad_alpha_fmix_reformulate(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"alpha.*" + re.escape(repr(alpha))):
        call("fmix", alpha=alpha, reformulate=True)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("partner", ["bogus", "random", "FLIP"])
def test_bad_partner(op: str, partner: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(partner))):
        call(op, partner=partner)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("num_classes", [1, 0, 4.0, "4", None])
def test_bad_num_classes(op: str, num_classes: object) -> None:
    with pytest.raises(policy_error(num_classes, int), match=re.escape(repr(num_classes))):
        call(op, num_classes=num_classes)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize(
    ("target", "num_classes", "bad"),
    [
        (torch.tensor([0, 1, 10, 3]), 10, "[10]"),
        (torch.tensor([0, -1, 2, 3]), 10, "[-1]"),
        (torch.tensor([[0.5, 0.2]] * 4), 2, "0.7"),
        (torch.tensor([[1.5, -0.5]] * 4), 2, "-0.5"),
        (torch.full((4, 3), 1 / 3), 4, "3 columns"),
        (torch.full((4, 3), 1 / 3), 4, "num_classes=4"),
    ],
)
def test_bad_targets(op: str, target: torch.Tensor, num_classes: int, bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(bad)):
        call(op, target=target, num_classes=num_classes)


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("batch_target", [3, 5, 1])
def test_batch_size_mismatch(op: str, batch_target: int) -> None:
    with pytest.raises(ValueError, match=re.escape("batch size 4") + r".*" + re.escape(str(batch_target))):
        call(op, target=torch.zeros(batch_target, dtype=torch.long))
    with pytest.raises(ValueError, match=re.escape("batch size 4") + r".*" + re.escape(f"[{batch_target}, 4]")):
        call(op, target=torch.full((batch_target, 4), 0.25))


@pytest.mark.parametrize("op", IMAGE_OPS)
@pytest.mark.parametrize("shape", [(4, 2), (4, 3, 8), (4,), (4, 1, 3, 8, 8)])
def test_image_mixers_need_4d_input(op: str, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=re.escape(str(list(shape)))):
        call(op, x=torch.randn(*shape))


@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.int32, torch.bool])
def test_integer_input_rejected(op: str, dtype: torch.dtype) -> None:
    x = torch.zeros(4, 3, 8, 8, dtype=dtype)
    with pytest.raises(TypeError, match=re.escape(str(dtype))):
        call(op, x=x)


@pytest.mark.parametrize("op", list(OPS))
def test_non_tensor_input_rejected(op: str) -> None:
    with pytest.raises(TypeError, match="list"):
        call(op, x=[[0.0]] * 4)  # type: ignore[arg-type]


@pytest.mark.parametrize("op", list(OPS))
def test_empty_batch_rejected(op: str) -> None:
    with pytest.raises(ValueError, match=re.escape("[0, 3, 8, 8]")):
        call(op, x=torch.zeros(0, 3, 8, 8), target=torch.zeros(0, dtype=torch.long))


@pytest.mark.parametrize(
    ("decay_power", "bad"), [(0, "0"), (-1.0, "-1.0"), (float("nan"), "nan"), (float("inf"), "inf")]
)
def test_fmix_bad_decay_power(decay_power: float, bad: str) -> None:
    with pytest.raises(ValueError, match=r"decay_power.*" + re.escape(bad)):
        call("fmix", decay_power=decay_power)


@pytest.mark.parametrize(
    ("max_soft", "bad"), [(-0.1, "-0.1"), (0.6, "0.6"), (1, "1"), (float("nan"), "nan"), ("0.1", "'0.1'")]
)
def test_fmix_bad_max_soft(max_soft: float, bad: str) -> None:
    with pytest.raises(policy_error(max_soft, (int, float)), match=r"max_soft.*" + re.escape(bad)):
        call("fmix", max_soft=max_soft)

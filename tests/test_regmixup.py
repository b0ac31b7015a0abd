"""Tests of RegMixup: the doubled batch (clean, then mixup), its targets in every form, the loss identity with the
official formula (η and both reductions, through a real Trainer), other batch entries, validation untouched."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader

from conftest import NUM_CLASSES, Recorder, UserModule, make_loader, make_trainer
from strategies import DTYPES, SEEDS, gen
from lightning_mixup.callbacks.regmixup import RegMixup, repeat_other_entries
from lightning_mixup.functional import PairTarget, Targets, mixup_batch, pair_loss
from lightning_mixup.functional.regmixup import regmixup_batch
from lightning_mixup.models import Classifier
from lightning_mixup.models.nets.cnn import SmallCNN

C = 5
SHAPES = st.sampled_from([(3, 4, 4), (1, 5, 3), (7,), ()])


def oracle(
    x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, lam: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official training step's batch, one sample at a time in float64: ``cat([x, mixed_x])`` and the soft
    targets of ``targets_a = cat([y, y])``, ``targets_b = cat([y, y[index]])`` with weight 1 then λ."""
    batch = x.shape[0]
    weight = lam.double().expand(batch)  # the targets take λ as drawn (float32)
    lam = lam.to(x.dtype).double().expand(batch)  # the input takes it in its own dtype
    inputs, targets = [], []
    eye = torch.eye(C, dtype=torch.float64)
    for i in range(batch):
        inputs.append(x[i].double())
        targets.append(eye[int(y[i])])
    for i in range(batch):
        j = int(index[i])
        inputs.append(lam[i] * x[i].double() + (1 - lam[i]) * x[j].double())
        targets.append(weight[i] * eye[int(y[i])] + (1 - weight[i]) * eye[int(y[j])])
    return torch.stack(inputs), torch.stack(targets)


@settings(max_examples=30, deadline=None)
@given(
    seed=SEEDS, batch=st.integers(1, 7), shape=SHAPES, dtype=st.sampled_from(DTYPES), per_sample=st.booleans(),
    partner=st.sampled_from(["perm", "flip"]), buffered=st.booleans(),
)  # fmt: skip
def test_first_half_is_the_clean_batch_and_second_half_is_mixup(
    seed: int, batch: int, shape: tuple[int, ...], dtype: torch.dtype, per_sample: bool, partner: str, buffered: bool
) -> None:
    x = (3 * torch.randn(batch, *shape, generator=gen(seed), dtype=torch.float64)).to(dtype)
    y = torch.randint(0, C, (batch,), generator=gen(seed + 1))
    options = {"per_sample": per_sample, "partner": partner}
    out = torch.full((2 * batch, *shape), float("nan"), dtype=dtype) if buffered else None
    got = regmixup_batch(x, y, C, 10.0, generator=gen(seed + 2), out=out, **options)
    ref = mixup_batch(x, y, C, 10.0, generator=gen(seed + 2), **options)  # the same draws
    assert got.input.shape == (2 * batch, *shape) and got.input.dtype == dtype
    assert got.target.shape == (2 * batch, C) and got.target.dtype == torch.float32
    assert got.mask is None and (got.input is out or not buffered)
    assert torch.equal(got.input[:batch], x) and torch.equal(got.target[:batch], torch.eye(C)[y])
    assert torch.equal(got.input[batch:], ref.input) and torch.equal(got.target[batch:], ref.target)
    assert torch.equal(got.lam, ref.lam) and torch.equal(got.index, ref.index)
    assert got.lam.shape == ((batch,) if per_sample else ())
    inputs, targets = oracle(x, y, got.index, got.lam)
    tol = {torch.float32: 1e-5, torch.float64: 1e-12, torch.bfloat16: 5e-2}[dtype]
    torch.testing.assert_close(got.input.double(), inputs, atol=tol * 10, rtol=tol)
    torch.testing.assert_close(got.target.double(), targets, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(got.target.sum(dim=1), torch.ones(2 * batch))


@pytest.mark.parametrize("channels_last", [False, True])
def test_the_callback_buffer_path_equals_the_plain_path(channels_last: bool) -> None:
    x = torch.randn(6, 3, 5, 4)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(6) % C
    buffer = RegMixup().buffer_for(x)
    assert buffer.shape == (12, 3, 5, 4) and buffer.is_contiguous(
        memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )
    fast = regmixup_batch(x, y, C, per_sample=True, generator=gen(3), out=buffer)
    plain = regmixup_batch(x, y, C, per_sample=True, generator=gen(3))
    assert fast.input.data_ptr() == buffer.data_ptr() and torch.equal(fast.input, plain.input)
    assert torch.equal(fast.target, plain.target) and torch.equal(fast.lam, plain.lam)
    assert RegMixup(reuse_buffer=False).buffer_for(x) is None


def test_a_batch_of_one_is_the_sample_twice() -> None:
    x, y = torch.randn(1, 3, 4, 4), torch.tensor([2])
    got = regmixup_batch(x, y, C, generator=gen(0))
    assert torch.equal(got.input, torch.cat([x, x])) and torch.equal(got.target, torch.eye(C)[[2, 2]])


def test_the_second_half_is_mixup_with_a_large_alpha() -> None:
    """α = 20: λ ~ Beta(20, 20), mean ½ and standard deviation 1/(2·√41) ≈ 0.078 (the paper's point)."""
    x, y = torch.randn(4000, 1), torch.zeros(4000, dtype=torch.long)
    lam = regmixup_batch(x, y, C, 20.0, per_sample=True, generator=gen(0)).lam
    assert abs(float(lam.mean()) - 0.5) < 0.01 and abs(float(lam.std()) - 0.5 / 41**0.5) < 0.005


@pytest.mark.parametrize("per_sample", [False, True])
def test_loss_identity_with_the_official_formula(per_sample: bool) -> None:
    """The mean cross-entropy over the 2B rows (mixed or pair form) is the official code's
    ``λ·CE(logits, cat[y, y]) + (1 − λ)·CE(logits, cat[y, y[index]])``, which is ½·(CE_clean + CE_mix)."""
    batch = 6
    x, y = torch.randn(batch, 3, 4, 4, generator=gen(1)), torch.randint(0, C, (batch,), generator=gen(2))
    mixed = regmixup_batch(x, y, C, 20.0, per_sample=per_sample, generator=gen(3))
    pair = regmixup_batch(x, y, Targets(C, form="pair"), 20.0, per_sample=per_sample, generator=gen(3))
    logits = torch.randn(2 * batch, C, generator=gen(4), dtype=torch.float64)
    lam, index = mixed.lam.double(), mixed.index
    targets_a, targets_b = torch.cat([y, y]), torch.cat([y, y[index]])
    ce = F.cross_entropy(logits, targets_a, reduction="none"), F.cross_entropy(logits, targets_b, reduction="none")
    weight = torch.cat([torch.ones(batch, dtype=torch.float64), lam.expand(batch)])
    official = (weight * ce[0] + (1 - weight) * ce[1]).mean()
    if not per_sample:  # literally the official criterion: a scalar λ on two batch means
        torch.testing.assert_close(lam * ce[0].mean() + (1 - lam) * ce[1].mean(), official)
    clean = F.cross_entropy(logits[:batch], y)
    mix = (lam * F.cross_entropy(logits[batch:], y, reduction="none")
           + (1 - lam) * F.cross_entropy(logits[batch:], y[index], reduction="none")).mean()  # fmt: skip
    torch.testing.assert_close(official, (clean + mix) / 2)
    torch.testing.assert_close(F.cross_entropy(logits, mixed.target.double()), official)
    assert torch.equal(pair.target.a, targets_a) and torch.equal(pair.target.b, targets_b)
    assert torch.equal(pair.target.weight, weight.float())
    ce_rows = torch.nn.CrossEntropyLoss(reduction="none")
    torch.testing.assert_close(pair_loss(ce_rows, logits, pair.target), official)


def test_every_task_doubles_its_targets() -> None:
    x = torch.randn(4, 2, 3, 3, generator=gen(0))
    rows = (torch.rand(4, C, generator=gen(1)) > 0.5).float()
    got = regmixup_batch(x, rows, Targets(C, task="multilabel"), generator=gen(2))
    ref = mixup_batch(x, rows, Targets(C, task="multilabel"), 20.0, generator=gen(2))
    assert torch.equal(got.target, torch.cat([rows, ref.target]))
    values = torch.randn(4, 2, generator=gen(3))
    got = regmixup_batch(x, values, Targets(task="regression"), generator=gen(2))
    assert torch.equal(got.target[:4], values) and got.target.shape == (8, 2)
    soft = torch.softmax(torch.randn(4, C, generator=gen(4)), dim=1)
    got = regmixup_batch(x, soft, C, generator=gen(2))
    assert torch.equal(got.target[:4], soft)
    pair = regmixup_batch(x, torch.tensor([0, 1, 2, 3]), Targets(C, form="pair"), per_sample=True, generator=gen(2))
    assert isinstance(pair.target, PairTarget) and pair.target.weight.shape == (8,)
    assert torch.equal(pair.target.weight[:4], torch.ones(4)) and torch.equal(pair.target.weight[4:], pair.lam)


@pytest.mark.parametrize("form", ["mixed", "pair"])
def test_segmentation_masks_follow_the_image(form: str) -> None:
    """Channel 0 of the image is the label mask: the mixed half's target at each pixel weighs the labels as the
    image weighs its sources; the clean half keeps the mask (one-hot per pixel, the mixed half's form)."""
    batch, size = 5, 6
    labels = torch.randint(0, C, (batch, size, size), generator=gen(0))
    x = torch.randn(batch, 2, size, size, generator=gen(1))
    x[:, 0] = labels.float()
    got = regmixup_batch(x, labels, Targets(C, task="segmentation", form=form), per_sample=True, generator=gen(2))
    lam = got.lam.view(-1, 1, 1)
    own, other = labels, labels[got.index]
    torch.testing.assert_close(got.input[batch:, 0], lam * own.float() + (1 - lam) * other.float())
    if form == "pair":
        a, b, weight = got.target
        assert torch.equal(a, torch.cat([labels, own])) and torch.equal(b, torch.cat([labels, other]))
        assert torch.equal(weight, torch.cat([torch.ones(batch, size, size), lam.expand(batch, size, size)]))
        return
    probs = got.target
    assert probs.shape == (2 * batch, C, size, size)
    one_hot = F.one_hot(labels, C).permute(0, 3, 1, 2).float()
    assert torch.equal(probs[:batch], one_hot)
    expected = lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[got.index]
    torch.testing.assert_close(probs[batch:], expected)
    # the expected label, read off the target, is the mixed image's channel 0
    classes = torch.arange(C, dtype=torch.float32).view(1, C, 1, 1)
    torch.testing.assert_close((probs * classes).sum(dim=1), got.input[:, 0])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"alpha": 0.0}, ValueError, "alpha must be a finite number > 0, got 0.0"),
        ({"alpha": -1.0}, ValueError, "got -1.0"),
        ({"alpha": "20"}, TypeError, "got '20'"),
        ({"out": torch.empty(4, 3)}, ValueError, r"doubled batch \[8, \.\.\.\] .* got \[4, 3\]"),
        ({"out": torch.empty(8, 3, dtype=torch.float64)}, ValueError, "out must match the input"),
        ({"partner": "roll"}, ValueError, "'roll'"),
    ],
)
def test_bad_options_of_the_op_are_quoted(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        regmixup_batch(torch.randn(4, 3), torch.tensor([0, 1, 2, 3]), C, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"eta": -0.5}, ValueError, r"eta must be a finite number >= 0, got -0.5"),
        ({"eta": float("inf")}, ValueError, "got inf"),
        ({"eta": True}, TypeError, "got True"),
        ({"alpha": 0}, ValueError, "alpha must be a finite number > 0, got 0"),
        ({"reduction": "none"}, ValueError, "'none'"),
    ],
)
def test_bad_options_of_the_callback_are_quoted(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        RegMixup(**kwargs)


# ------------------------------------------------------------------------------------- in a Trainer


class GradModule(UserModule):
    """UserModule that keeps the gradient of its first step (what the optimizer would apply)."""

    def __init__(self) -> None:
        super().__init__()
        self.grads: list[torch.Tensor] = []

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if not self.grads:
            self.grads = [p.grad.detach().clone() for p in self.parameters()]


@pytest.mark.parametrize(
    ("eta", "reduction", "per_sample"),
    [(1.0, "mean", False), (1.0, "sum", True), (0.3, "sum", False), (2.5, "mean", True)],
)
def test_gradient_is_the_official_loss(eta: float, reduction: str, per_sample: bool) -> None:
    """One training step's gradient is that of ``c·(CE_clean.mean() + η·CE_mix.mean())``, c = ½ (mean: the official
    code) or 1 (sum: the paper's equation), computed from the raw batch with the callback's λ and partners."""
    module, before, after = GradModule(), Recorder(), Recorder()
    start = copy.deepcopy(module)
    callback = RegMixup(alpha=10.0, eta=eta, reduction=reduction, per_sample=per_sample, seed=3)
    make_trainer([before, callback, after], limit_train_batches=1).fit(module, make_loader())
    (x, y), (doubled, target) = before.batches[0], after.batches[0]
    batch = x.shape[0]
    assert torch.equal(doubled[:batch], x) and torch.equal(target[:batch], torch.eye(NUM_CLASSES)[y])
    logits = start(doubled)
    lam_rows = target[batch:]  # λ·onehot(y) + (1 − λ)·onehot(y[index])
    clean = F.cross_entropy(logits[:batch], y)
    mix = -(lam_rows * logits[batch:].log_softmax(dim=1)).sum(dim=1).mean()
    official = (clean + eta * mix) * (0.5 if reduction == "mean" else 1.0)
    expected = torch.autograd.grad(official, list(start.parameters()))
    for got, want in zip(module.grads, expected):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_one_epoch_fit_doubles_training_batches_only(loader: DataLoader) -> None:
    module, before, after = UserModule(), Recorder(), Recorder()
    trainer = make_trainer([before, RegMixup(seed=0), after], num_sanity_val_steps=1)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    assert len(after.batches) == len(loader)
    for (x, y), (doubled, target), seen in zip(before.batches, after.batches, module.seen["train"]):
        assert doubled.shape == (16, 3, 8, 8) and target.shape == (16, NUM_CLASSES)
        assert torch.equal(doubled[:8], x) and torch.equal(target[:8], torch.eye(NUM_CLASSES)[y])
        torch.testing.assert_close(target.sum(dim=1), torch.ones(16))
        assert torch.equal(seen[0], doubled) and torch.equal(seen[1], target)
    assert 0.3 < float(trainer.callback_metrics["mix/lam"]) < 0.7
    data = [batch for batch in loader]
    assert len(module.seen["val"]) == 1 + len(loader)  # the sanity check's batch, then the epoch's
    for (x, y), (vx, vy) in zip(data[:1] + data, module.seen["val"]):
        assert torch.equal(vx, x) and torch.equal(vy, y) and vy.dtype == torch.int64
    assert all(torch.isfinite(p).all() for p in module.parameters())


@pytest.mark.parametrize(("targets", "eta"), [("mixed", 1.0), ("pair", 0.5)])
def test_classifier_trains(targets: str, eta: float, loader: DataLoader) -> None:
    model = Classifier(SmallCNN(in_channels=3, num_classes=NUM_CLASSES, width=8), num_classes=NUM_CLASSES)
    after = Recorder()
    trainer = make_trainer([RegMixup(targets=targets, eta=eta, reduction="sum", seed=1), after])
    trainer.fit(model, train_dataloaders=loader, val_dataloaders=loader)
    assert all(b[0].shape[0] == 16 for b in after.batches)
    if targets == "pair":
        a, b, weight = after.batches[0][1]
        assert torch.equal(a[:8], b[:8]) and torch.equal(weight[:8], torch.ones(8))
    assert torch.isfinite(trainer.callback_metrics["train/loss"])
    assert "val/acc" in trainer.callback_metrics


class DictModule(UserModule):
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        self.seen["train"].append({k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in batch.items()})
        return F.cross_entropy(self(batch["image"]), batch["label"])


def test_other_batch_entries_follow_the_rows() -> None:
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, NUM_CLASSES, (16,))
    data = [{"image": x[i], "label": y[i], "id": torch.tensor(i), "name": f"s{i}"} for i in range(16)]
    loader = DataLoader(data, batch_size=8)  # default collate: "name" is a list of 8 strings
    module = DictModule()
    make_trainer([RegMixup(input_key="image", target_key="label", seed=0)]).fit(module, loader)
    for j, seen in enumerate(module.seen["train"]):
        ids = torch.arange(8 * j, 8 * j + 8)
        assert seen["image"].shape[0] == 16 and seen["label"].shape == (16, NUM_CLASSES)
        assert torch.equal(seen["id"], torch.cat([ids, ids]))
        assert seen["name"] == [f"s{i}" for i in ids.tolist()] * 2
    batch = [torch.zeros(3, 2), torch.zeros(3), torch.ones(3, 1), torch.tensor(7.0), torch.ones(5)]
    repeat_other_entries(batch, (0, -4), 3)  # negative keys index a list batch too
    assert [tuple(t.shape) for t in batch] == [(3, 2), (3,), (6, 1), (), (5,)]


def test_eta_needs_the_module_forward_and_its_logits(loader: DataLoader) -> None:
    class NoForward(UserModule):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return F.cross_entropy(self.net(batch[0]), batch[1])

    class Pair(UserModule):
        def forward(self, x: torch.Tensor) -> Any:
            return self.net(x), x

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            return F.cross_entropy(self(batch[0])[0], batch[1])

    with pytest.raises(RuntimeError, match=r"RegMixup\(eta=0.5\): the module's forward was not called"):
        make_trainer([RegMixup(eta=0.5)]).fit(NoForward(), loader)
    with pytest.raises(ValueError, match="must be the logits of the 16 rows .* got tuple"):
        make_trainer([RegMixup(eta=0.5)]).fit(Pair(), loader)
    make_trainer([RegMixup(eta=1.0)], limit_train_batches=1).fit(NoForward(), loader)  # η = 1: no hook needed
    callback = RegMixup(eta=0.5)
    make_trainer([callback], limit_train_batches=1).fit(UserModule(), loader)
    assert callback._handles == []  # removed in teardown

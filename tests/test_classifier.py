"""The generic Classifier: losses on hard and soft targets, metrics, optimizers from factories."""

from __future__ import annotations

from functools import partial
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torch.utils.data import DataLoader, TensorDataset

from conftest import make_loader, make_trainer
from lightning_mixup import Classifier, MixUp
from lightning_mixup.functional import PairTarget, Targets


def _model(**kwargs: Any) -> Classifier:
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4))
    return Classifier(net, num_classes=4, **kwargs)


def test_forward_returns_the_nets_logits() -> None:
    model = _model()
    x = torch.randn(5, 3, 8, 8)
    assert torch.equal(model(x), model.net(x))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_ce_loss_is_the_same_for_labels_and_their_one_hot_rows(smoothing: float) -> None:
    model = _model(label_smoothing=smoothing)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    expected = F.cross_entropy(logits, y, label_smoothing=smoothing)
    torch.testing.assert_close(model.loss(logits, y), expected)
    torch.testing.assert_close(model.loss(logits, F.one_hot(y, 4).float()), expected)


def test_ce_loss_on_mixed_targets_is_the_mixed_loss() -> None:
    model = _model()
    logits, lam = torch.randn(6, 4), 0.3
    a, b = torch.tensor([0, 1, 2, 3, 0, 1]), torch.tensor([1, 1, 3, 0, 2, 2])
    target = lam * F.one_hot(a, 4).float() + (1 - lam) * F.one_hot(b, 4).float()
    expected = lam * F.cross_entropy(logits, a) + (1 - lam) * F.cross_entropy(logits, b)
    torch.testing.assert_close(model.loss(logits, target), expected)


def test_bce_loss_with_smoothing() -> None:
    model = _model(loss="bce", label_smoothing=0.2)
    logits, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    target = F.one_hot(y, 4).float() * 0.8 + 0.05
    expected = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1).mean()
    torch.testing.assert_close(model.loss(logits, y), expected)


def test_bf16_logits_are_handled_in_float32() -> None:
    model = _model()
    logits = torch.randn(6, 4).bfloat16()
    assert model.loss(logits, torch.softmax(torch.randn(6, 4), 1)).dtype == torch.float32


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": "focal"}, "loss must be one of .*got 'focal'"),
        ({"label_smoothing": 1.0}, r"label_smoothing must be in \[0, 1\), got 1.0"),
        ({"num_classes": 1}, "num_classes must be an int >= 2, got 1"),
        ({"net": "resnet"}, "net must be an nn.Module, got str"),
        ({"task": "binary"}, "task must be one of .*got 'binary'"),
        ({"task": "multilabel", "loss": "ce"}, "loss='ce' does not fit task='multilabel'.*use one of"),
        ({"task": "multilabel", "loss": "softmax_bce"}, "loss='softmax_bce' does not fit task='multilabel'"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"net": nn.Linear(2, 2), "num_classes": 2, **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        Classifier(**args)


def test_fit_validate_test_log_accuracy_and_ece() -> None:
    model = _model(
        optimizer=partial(torch.optim.SGD, lr=0.1, momentum=0.9),
        scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5),
    )
    loader = make_loader()
    trainer = make_trainer([MixUp()], max_epochs=2)
    trainer.fit(model, loader, loader)
    assert {"train/loss", "val/acc", "val/ece", "val/loss"} <= set(trainer.callback_metrics)
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.025)
    (result,) = trainer.test(model, loader, verbose=False)
    assert 0 <= result["test/acc"] <= 1 and 0 <= result["test/ece"] <= 1
    preds = torch.cat(trainer.predict(model, loader))
    torch.testing.assert_close(preds.sum(1), torch.ones(len(preds)))


def test_default_optimizer_is_adamw() -> None:
    model = _model()
    assert isinstance(model.configure_optimizers(), torch.optim.AdamW)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_softmax_bce_is_the_official_codes_bceloss_of_the_softmax(smoothing: float) -> None:
    """Manifold Mixup, PatchUp and PuzzleMix (official CIFAR code): ``nn.BCELoss()(softmax(output), target)``."""
    model = _model(loss="softmax_bce", label_smoothing=smoothing)
    logits = torch.randn(6, 4, requires_grad=True)
    target = torch.softmax(torch.randn(6, 4), 1)
    smoothed = target * (1 - smoothing) + smoothing / 4
    expected = nn.BCELoss()(logits.softmax(1), smoothed)
    torch.testing.assert_close(model.loss(logits, target), expected)
    (grad,) = torch.autograd.grad(model.loss(logits, target), logits)
    (official,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, official)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # BCELoss itself refuses autocast
        assert torch.isfinite(model.loss(logits * 100, target))
    # its gradient is a fraction of cross-entropy's, as the issue measured (C = 4 here: between 0.1 and 1)
    (ce_grad,) = torch.autograd.grad(F.cross_entropy(logits, target), logits)
    assert 0.05 < float(grad.norm() / ce_grad.norm()) < 1.0


def test_softmax_bce_trains(tmp_path: Any) -> None:
    model = _model(loss="softmax_bce", optimizer=partial(torch.optim.SGD, lr=0.5))
    make_trainer([MixUp(seed=0)], max_epochs=2).fit(model, make_loader())
    assert all(torch.isfinite(p).all() for p in model.parameters())


def _pair_and_mixed(task: str = "multiclass", seed: int = 0) -> tuple[PairTarget, torch.Tensor]:
    """The same mix of a batch of 8 in both forms: ``Targets(form="pair")`` and the default mixed form."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(8, 3, 8, 8, generator=g)
    y = torch.randint(0, 4, (8,), generator=g) if task == "multiclass" else (torch.rand(8, 4, generator=g) < 0.5)
    index, lam = torch.randperm(8, generator=g), torch.rand(8, generator=g)
    pair = Targets(4, task=task, form="pair").read(y, x).mix(index, lam)
    mixed = Targets(4, task=task).read(y, x).mix(index, lam)
    assert isinstance(pair, PairTarget) and isinstance(mixed, torch.Tensor)
    return pair, mixed


@pytest.mark.parametrize("loss", ["ce", "bce", "softmax_bce"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_pair_form_loss_equals_the_mixed_form_loss(loss: str, smoothing: float) -> None:
    """Each loss is affine in the target, so ``w·ℓ(a) + (1 − w)·ℓ(b) = ℓ(w·a + (1 − w)·b)``, gradients too."""
    model = _model(loss=loss, label_smoothing=smoothing)
    pair, mixed = _pair_and_mixed()
    logits = torch.randn(8, 4, requires_grad=True)
    torch.testing.assert_close(model.loss(logits, pair), model.loss(logits, mixed))
    (grad_pair,) = torch.autograd.grad(model.loss(logits, pair), logits)
    (grad_mixed,) = torch.autograd.grad(model.loss(logits, mixed), logits)
    torch.testing.assert_close(grad_pair, grad_mixed)
    torch.testing.assert_close(model.sample_loss(logits, mixed).mean(), model.loss(logits, mixed))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_multilabel_bce_on_pairs_and_mixed_rows(smoothing: float) -> None:
    model = _model(task="multilabel", label_smoothing=smoothing)
    assert model.loss_name == "bce"
    pair, mixed = _pair_and_mixed("multilabel")
    logits = torch.randn(8, 4)
    smoothed = mixed * (1 - smoothing) + smoothing / 2  # each label ε/2 towards 1/2
    expected = F.binary_cross_entropy_with_logits(logits, smoothed, reduction="none").sum(1).mean()
    torch.testing.assert_close(model.loss(logits, mixed), expected)
    torch.testing.assert_close(model.loss(logits, pair), expected)


def test_fit_with_pair_targets_logs_mixed_training_accuracy() -> None:
    model = _model()
    loader = make_loader()
    trainer = make_trainer([MixUp(targets="pair", seed=0)], max_epochs=1)
    trainer.fit(model, loader, loader)
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "train/acc_dominant", "val/acc"} <= set(metrics)
    assert 0 <= float(metrics["train/acc"]) <= 1 and 0 <= float(metrics["train/acc_dominant"]) <= 1


def test_multilabel_fit_validates_with_multilabel_metrics() -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(32, 3, 8, 8, generator=g), (torch.rand(32, 4, generator=g) < 0.3).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = _model(task="multilabel", optimizer=partial(torch.optim.SGD, lr=0.1))
    trainer = make_trainer([MixUp(task="multilabel", num_classes=4, seed=0)], max_epochs=1)
    trainer.fit(model, loader, loader)
    metrics = trainer.callback_metrics
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "val/f1"} <= set(metrics)
    assert "val/ece" not in metrics
    assert all(0 <= float(metrics[k]) <= 1 for k in ("train/acc", "val/acc", "val/f1"))
    preds = torch.cat(trainer.predict(model, loader))  # sigmoid per label: rows need not sum to 1
    assert preds.shape == (32, 4) and bool(((preds > 0) & (preds < 1)).all())
    torch.testing.assert_close(preds, torch.sigmoid(model(x)))

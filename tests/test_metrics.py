"""MixedAccuracy: plain accuracy on clean labels, the mixed credit on mixed ones, pairs read as their mixed rows."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassAccuracy, MultilabelAccuracy
from torchmetrics.utilities.data import dim_zero_sum

from lightning_mixup.functional import PairTarget, Targets
from lightning_mixup.metrics import MixedAccuracy

C = 5


def _batch(n: int = 40, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Logits, labels, a partner index and per-sample λ (never exactly 0.5)."""
    g = torch.Generator().manual_seed(seed)
    logits, y = torch.randn(n, C, generator=g), torch.randint(0, C, (n,), generator=g)
    index, lam = torch.randperm(n, generator=g), torch.rand(n, generator=g) * 0.98 + 0.01
    return logits, y, index, lam


@pytest.mark.parametrize("mode", ["weighted", "dominant"])
@pytest.mark.parametrize("top_k", [1, 2])
def test_clean_labels_give_plain_accuracy(mode: str, top_k: int) -> None:
    logits, y, _, _ = _batch()
    expected = MulticlassAccuracy(C, top_k=top_k, average="micro")(logits, y)
    torch.testing.assert_close(MixedAccuracy(num_classes=C, mode=mode, top_k=top_k)(logits, y), expected)
    torch.testing.assert_close(
        MixedAccuracy(num_classes=C, mode=mode, top_k=top_k)(logits, F.one_hot(y, C).float()), expected
    )
    pair = PairTarget(y, y.roll(1), torch.ones(len(y)))  # λ = 1: the batch's own labels
    torch.testing.assert_close(MixedAccuracy(num_classes=C, mode=mode, top_k=top_k)(logits, pair), expected)


def test_hand_computed_weighted_and_dominant() -> None:
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    # sample 0: 0.7·class 0 + 0.3·class 1, predicted 0; sample 1: 0.4·class 1 + 0.6·class 2, predicted 1;
    # sample 2: 0.8·class 1 + 0.2·class 2, predicted 2; sample 3: clean class 0, predicted 0
    a, b = torch.tensor([0, 1, 1, 0]), torch.tensor([1, 2, 2, 0])
    weight = torch.tensor([0.7, 0.4, 0.8, 0.25])
    mixed = torch.lerp(torch.eye(3)[b], torch.eye(3)[a], weight[:, None])
    weighted, dominant = (0.7 + 0.4 + 0.2 + 1.0) / 4, (1 + 0 + 0 + 1) / 4
    for target in (mixed, PairTarget(a, b, weight)):
        assert float(MixedAccuracy(num_classes=3)(logits, target)) == pytest.approx(weighted)
        assert float(MixedAccuracy(num_classes=3, mode="dominant")(logits, target)) == pytest.approx(dominant)
    # top 2: sample 1's {1, 2} hold all of its mass, sample 2's {2, 0 or 1} ...
    top2 = logits.topk(2, dim=1).indices
    expected = float(mixed.gather(1, top2).sum(1).mean())
    assert float(MixedAccuracy(num_classes=3, top_k=2)(logits, mixed)) == pytest.approx(expected)


@pytest.mark.parametrize("mode", ["weighted", "dominant"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_pair_targets_read_as_their_mixed_probabilities(mode: str, per_sample: bool) -> None:
    logits, y, index, lam = _batch()
    lam = lam if per_sample else lam[0]
    x = torch.zeros(len(y), 3)
    pair = Targets(C, form="pair").read(y, x).mix(index, lam)
    mixed = Targets(C).read(y, x).mix(index, lam)
    assert isinstance(pair, PairTarget)
    torch.testing.assert_close(
        MixedAccuracy(num_classes=C, mode=mode)(logits, pair), MixedAccuracy(num_classes=C, mode=mode)(logits, mixed)
    )
    # a pair of probability rows (soft labels as they came) too
    soft = PairTarget(F.one_hot(pair.a, C).float(), F.one_hot(pair.b, C).float(), pair.weight)
    torch.testing.assert_close(
        MixedAccuracy(num_classes=C, mode=mode)(logits, soft), MixedAccuracy(num_classes=C, mode=mode)(logits, mixed)
    )


def test_ties_count_the_own_label_of_a_pair() -> None:
    logits = torch.tensor([[0.0, 1.0, 0.0]])
    pair = PairTarget(torch.tensor([1]), torch.tensor([0]), torch.tensor([0.5]))
    assert float(MixedAccuracy(mode="dominant")(logits, pair)) == 1.0
    assert float(MixedAccuracy(mode="weighted")(logits, pair)) == 0.5


def test_torchmetrics_accuracy_reads_zero_on_mixed_targets_where_ours_reads_the_truth() -> None:
    """The pitfall: ``MulticlassAccuracy(logits [B, C], probs [B, C])`` compares the two entry by entry."""
    logits, y, index, lam = _batch(n=64)
    logits = logits * 0.1 + 5 * F.one_hot(y, C)  # a net that predicts every own label: dominant accuracy ~1
    mixed = Targets(C).read(y, torch.zeros(64, 1)).mix(index, 0.8)
    assert float(MulticlassAccuracy(C, average="micro")(logits, mixed)) < 0.05  # silently wrong
    assert float(MixedAccuracy(num_classes=C, mode="dominant")(logits, mixed)) == 1.0
    expected = float((0.8 + 0.2 * (y == y[index]).float()).mean())  # own share, plus the partner's if same class
    assert float(MixedAccuracy(num_classes=C)(logits, mixed)) == pytest.approx(expected)


def test_multilabel_clean_mixed_and_pair() -> None:
    g = torch.Generator().manual_seed(1)
    logits, y = torch.randn(30, C, generator=g), (torch.rand(30, C, generator=g) < 0.4).long()
    expected = MultilabelAccuracy(num_labels=C)(logits, y)
    for mode in ("weighted", "dominant"):
        torch.testing.assert_close(MixedAccuracy("multilabel", C, mode=mode)(logits, y), expected)
        torch.testing.assert_close(MixedAccuracy("multilabel", C, mode=mode)(logits.sigmoid(), y.bool()), expected)
    index, lam = torch.randperm(30, generator=g), torch.tensor(0.7)
    spec = Targets(C, task="multilabel")
    mixed = spec.read(y, logits).mix(index, lam)
    pair = Targets(C, task="multilabel", form="pair").read(y, logits).mix(index, lam)
    predicted = logits > 0
    weighted = torch.where(predicted, mixed, 1 - mixed).mean()  # credit t for a predicted 1, 1 − t for a 0
    dominant = (predicted == (mixed >= 0.5)).float().mean()
    for target in (mixed, pair):
        torch.testing.assert_close(MixedAccuracy("multilabel", C)(logits, target), weighted)
        torch.testing.assert_close(MixedAccuracy("multilabel", C, mode="dominant")(logits, target), dominant)


def test_accumulates_sums_over_updates_and_resets() -> None:
    logits, y, index, lam = _batch()
    mixed = Targets(C).read(y, logits).mix(index, lam)
    whole = MixedAccuracy(num_classes=C)(logits, mixed)
    metric = MixedAccuracy(num_classes=C)
    metric.update(logits[:15], mixed[:15])
    metric.update(logits[15:], mixed[15:])
    torch.testing.assert_close(metric.compute(), whole)
    # DDP: both states are sums, so the ranks' states add up to the whole batch's
    assert metric._reductions["correct"] is dim_zero_sum and metric._reductions["total"] is dim_zero_sum
    metric.reset()
    assert int(metric.total) == 0 and float(metric.correct) == 0.0


LABELS = torch.zeros(4, dtype=torch.long)
BAD_INPUT = [
    ({}, torch.randn(4), LABELS, r"preds must be float scores .* shape \[B, C\], got .* shape \[4\]"),
    ({"num_classes": 3}, torch.randn(4, 5), LABELS, "preds have 5 columns but num_classes=3"),
    ({}, torch.randn(5, 3), LABELS, r"class indices \[B\] .* preds of shape \[5, 3\], got torch.int64 shape \[4\]"),
    ({}, torch.randn(4, 3), torch.rand(4, 2), r"must have the shape of preds \[4, 3\], got \[4, 2\]"),
    ({}, torch.randn(4, 3), torch.tensor([0, 1, 3, 0]), r"label out of range \[0, 3\): got \[3\]"),
    ({}, torch.randn(2, 3), torch.tensor([[0.5, 0.6, 0], [1, 0, 0]]), "sum to 1 per row; row 0 sums to 1.1"),
    (
        {},
        torch.randn(4, 3),
        PairTarget(LABELS, LABELS, torch.ones(4, 2, 2)),
        r"PairTarget.weight must be one weight per sample, shape \[4\], got \[4, 2, 2\]",
    ),
    ({}, torch.randn(4, 3), PairTarget(LABELS, LABELS, torch.full((4,), 1.5)), r"weight must lie in \[0, 1\], got"),
    ({}, torch.randn(4, 3), PairTarget(LABELS, torch.eye(3)[LABELS], torch.ones(4)), "must have the same form"),
    ({"task": "multilabel"}, torch.randn(2, 3), torch.tensor([[0, 2.0, 1], [1, 1, 1]]), r"in \[0, 1\], got \[2.0\]"),
    ({"task": "multilabel"}, torch.randn(2, 3), torch.tensor([0, 1]), r"the shape of preds \[2, 3\], got \[2\]"),
]


@pytest.mark.parametrize(("kwargs", "preds", "target", "message"), BAD_INPUT)
def test_bad_input_quotes_what_came(kwargs: dict[str, Any], preds: torch.Tensor, target: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        MixedAccuracy(**kwargs).update(preds, target)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mode": "soft"}, r"mode must be one of \('weighted', 'dominant'\), got 'soft'"),
        ({"task": "binary"}, "task must be one of .*got 'binary'"),
        ({"top_k": 0}, "top_k must be a positive int, got 0"),
        ({"num_classes": 3, "top_k": 4}, "top_k must be <= num_classes=3, got 4"),
        ({"task": "multilabel", "top_k": 2}, "top_k applies to task='multiclass' only"),
        ({"threshold": 1.5}, r"threshold must be a finite number in \[0, 1\], got 1.5"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        MixedAccuracy(**kwargs)

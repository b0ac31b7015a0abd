"""Remix (arXiv 2007.03943): the functional op against the paper's equations, the callback, the long-tailed digits."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import NUM_CLASSES, Recorder, UserModule, make_loader, make_trainer
from strategies import SEEDS, gen
from lightning_mixup.callbacks.remix import Remix
from lightning_mixup.data import DigitsDataModule
from lightning_mixup.data.digits import long_tail
from lightning_mixup.functional import PairTarget, Targets, mixup_batch, pair_loss
from lightning_mixup.functional.remix import remix_batch, remix_label_weight
from lightning_mixup.models import Classifier
from lightning_mixup.models.nets import SmallCNN


def paper_label_weight(lam: float, n_i: float, n_j: float, kappa: float, tau: float) -> float:
    """The paper's λ_y of a pair (x_i, x_j) mixed with λ (the share of x_i), one pair at a time."""
    if n_i / n_j >= kappa and lam < tau:
        return 0.0
    if n_i / n_j <= 1 / kappa and 1 - lam < tau:
        return 1.0
    return lam


def oracle(x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, lam: torch.Tensor, counts, kappa, tau, classes):
    """Input and probabilities by the paper's equations, a sample at a time."""
    mixed, probs = torch.empty_like(x), torch.zeros(x.shape[0], classes)
    for i in range(x.shape[0]):
        j = int(index[i])
        lam_i = float(lam.reshape(-1)[i if lam.ndim else 0])
        mixed[i] = torch.lerp(x[j], x[i], torch.tensor(lam_i, dtype=x.dtype))
        weight = paper_label_weight(lam_i, counts[int(y[i])], counts[int(y[j])], kappa, tau)
        probs[i, int(y[i])] += weight
        probs[i, int(y[j])] += 1 - weight
    return mixed, probs


@st.composite
def cases(draw: st.DrawFn):
    seed = draw(SEEDS)
    batch, classes = draw(st.integers(2, 12)), draw(st.integers(2, 6))
    counts = draw(st.lists(st.integers(1, 400), min_size=classes, max_size=classes))
    kappa = draw(st.sampled_from([1.5, 3.0, 10.0]))
    tau = draw(st.sampled_from([0.2, 0.5, 0.9]))
    alpha = draw(st.sampled_from([0.2, 1.0, 4.0]))
    x = torch.randn(batch, 3, 2, 2, generator=gen(seed))
    y = torch.randint(0, classes, (batch,), generator=gen(seed + 1))
    return seed, x, y, classes, counts, kappa, tau, alpha


@settings(max_examples=60, deadline=None)
@given(case=cases(), per_sample=st.booleans(), partner=st.sampled_from(["perm", "flip"]))
def test_matches_the_papers_equations_sample_by_sample(case, per_sample: bool, partner: str) -> None:
    seed, x, y, classes, counts, kappa, tau, alpha = case
    options = dict(per_sample=per_sample, partner=partner)
    out = remix_batch(x, y, classes, alpha, class_counts=counts, kappa=kappa, tau=tau, generator=gen(seed), **options)
    ref = mixup_batch(x, y, classes, alpha, generator=gen(seed), **options)  # the same draws as mixup's
    assert torch.equal(out.index, ref.index) and torch.equal(out.lam, ref.lam) and torch.equal(out.input, ref.input)
    assert out.lam.shape == ((x.shape[0],) if per_sample else ()) and out.mask is None
    mixed, probs = oracle(x, y, out.index, out.lam, counts, kappa, tau, classes)
    torch.testing.assert_close(out.input, mixed, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.target, probs, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.target.sum(dim=1), torch.ones(x.shape[0]))
    spec = Targets(classes, form="pair")
    pair = remix_batch(x, y, spec, alpha, class_counts=counts, kappa=kappa, tau=tau, generator=gen(seed), **options)
    assert (
        isinstance(pair.target, PairTarget)
        and torch.equal(pair.target.a, y)
        and torch.equal(pair.target.b, y[out.index])
    )
    torch.testing.assert_close(pair.target.weight, remix_label_weight(out.lam, y, out.index, counts, kappa, tau))
    ce = torch.nn.CrossEntropyLoss(reduction="none")
    logits = torch.randn(x.shape[0], classes, generator=gen(seed + 2))
    torch.testing.assert_close(pair_loss(ce, logits, pair.target), F.cross_entropy(logits, out.target))


def test_the_three_cases_of_the_label_weight() -> None:
    counts = [300, 100, 30]  # class 0 is 3× class 1 and 10× class 2; class 1 is 3.3× class 2
    labels, index = torch.tensor([0, 1, 2, 0, 1]), torch.tensor([1, 0, 0, 0, 2])
    low = remix_label_weight(torch.tensor(0.3), labels, index, counts)
    torch.testing.assert_close(low, torch.tensor([0.0, 0.3, 0.3, 0.3, 0.0]))  # majorities with λ < τ lose their label
    high = remix_label_weight(torch.tensor(0.7), labels, index, counts)
    torch.testing.assert_close(high, torch.tensor([0.7, 1.0, 1.0, 0.7, 0.7]))  # minorities with 1 − λ < τ keep all
    # the boundaries: n_i / n_j = κ counts, λ = τ does not (strict), 1 − λ = τ does not
    assert remix_label_weight(0.5, labels, index, counts).tolist() == [0.5] * 5
    assert remix_label_weight(0.3, torch.tensor([0]), torch.tensor([0]), counts).tolist() == [pytest.approx(0.3)]


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, per_sample=st.booleans(), form=st.sampled_from(["mixed", "pair"]), spread=st.floats(1.0, 2.9))
def test_balanced_counts_give_mixup_exactly(seed: int, per_sample: bool, form: str, spread: float) -> None:
    x, y = torch.randn(10, 1, 3, 3, generator=gen(seed)), torch.arange(10) % 4
    counts = [100.0, 100.0 * spread, 100.0, 100.0]  # every ratio < κ = 3: no pair is rebalanced
    spec = Targets(4, form=form)
    out = remix_batch(x, y, spec, 0.7, class_counts=counts, per_sample=per_sample, generator=gen(seed))
    ref = mixup_batch(x, y, spec, 0.7, per_sample=per_sample, generator=gen(seed))
    assert torch.equal(out.input, ref.input) and torch.equal(out.lam, ref.lam)
    if form == "pair":
        assert all(torch.equal(a, b) for a, b in zip(out.target, ref.target))
    else:
        assert torch.equal(out.target, ref.target)


def test_probability_targets_take_their_most_probable_class() -> None:
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    smooth = F.one_hot(y, 2).float() * 0.9 + 0.05
    options = dict(class_counts=[90, 10], per_sample=True, generator=gen(3))
    hard = remix_batch(torch.randn(6, 4), y, 2, **options)
    options["generator"] = gen(3)
    soft = remix_batch(torch.randn(6, 4), smooth, 2, **options)
    weight = remix_label_weight(hard.lam, y, hard.index, [90, 10])
    torch.testing.assert_close(soft.target, torch.lerp(smooth[hard.index], smooth, weight[:, None]))
    assert torch.equal(hard.index, soft.index)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"kappa": 1.0}, ValueError, r"kappa must be a finite number > 1 \(κ ≤ 1 would make .*got 1.0"),
        ({"kappa": 0.5}, ValueError, "both the majority and the minority.*got 0.5"),
        ({"kappa": "3"}, TypeError, "got '3'"),
        ({"kappa": True}, TypeError, "got True"),
        ({"tau": 0.0}, ValueError, r"tau must be a number in \(0, 1\).*got 0.0"),
        ({"tau": 1.0}, ValueError, "got 1.0"),
        ({"tau": 1.5}, ValueError, "got 1.5"),
        ({"tau": float("nan")}, ValueError, "got nan"),
        ({"class_counts": [10, 20]}, ValueError, r"one count per class \(3\), got 2: \[10, 20\]"),
        ({"class_counts": [10, 0, 5]}, ValueError, r"numbers > 0.*got \[10, 0, 5\]"),
        ({"class_counts": [10, -1, 5]}, ValueError, r"got \[10, -1, 5\]"),
        ({"class_counts": [10, math.inf, 5]}, ValueError, "got"),
        ({"class_counts": [10, True, 5]}, TypeError, r"got \[10, True, 5\]"),
        ({"class_counts": "10,20,30"}, TypeError, "got '10,20,30'"),
        ({"class_counts": torch.ones(3, 1)}, ValueError, r"1-D.*\[3, 1\]"),
    ],
)
def test_bad_options_are_refused_quoting_the_value(options: dict, error: type, match: str) -> None:
    kwargs = {"class_counts": [30, 10, 3], **options}
    with pytest.raises(error, match=match):
        remix_batch(torch.randn(4, 2), torch.arange(4) % 3, 3, generator=gen(0), **kwargs)
    if "class_counts" not in options or isinstance(options["class_counts"], list):
        with pytest.raises(error, match=match):
            Remix(num_classes=3, **kwargs)


def test_other_tasks_are_refused() -> None:
    with pytest.raises(ValueError, match="task='multiclass' targets only, got 'multilabel'"):
        remix_batch(torch.randn(4, 2), torch.ones(4, 3), Targets(3, task="multilabel"), class_counts=[3, 2, 1])
    with pytest.raises(ValueError, match=r"Remix cannot mix task='segmentation' targets; it mixes \['multiclass'\]"):
        Remix(class_counts=[3, 1], task="segmentation")
    assert Remix.FORMS == ("mixed", "pair")


# ------------------------------------------------------------------------------------- the callback


def test_a_one_epoch_fit_mixes_training_and_leaves_validation_alone() -> None:
    loader = make_loader()
    data = torch.cat([x for x, _ in loader]), torch.cat([y for _, y in loader])
    module, after = UserModule(), Recorder()
    remix = Remix(class_counts=[400, 100, 40, 10], per_sample=True, seed=1)
    trainer = make_trainer([remix, after], num_sanity_val_steps=0)
    trainer.fit(module, loader, loader)
    assert len(after.batches) == len(loader)
    for x, y in after.batches:
        assert x.shape == (8, 3, 8, 8) and y.shape == (8, NUM_CLASSES) and y.dtype == torch.float32
        torch.testing.assert_close(y.sum(dim=1), torch.ones(8))
    assert 0 < float(trainer.callback_metrics["mix/rebalanced"]) < 1
    assert len(module.seen["val"]) == len(loader)
    for j, (x, y) in enumerate(module.seen["val"]):
        assert torch.equal(x, data[0][8 * j : 8 * j + 8]) and torch.equal(y, data[1][8 * j : 8 * j + 8])


def test_counts_must_come_from_the_argument_or_the_datamodule() -> None:
    trainer = make_trainer([Remix(seed=0)])
    with pytest.raises(ValueError, match=r"pass class_counts=\[\.\.\.\] to Remix, or fit with a datamodule .*"):
        trainer.fit(UserModule(), make_loader())
    with pytest.raises(ValueError, match=r"Remix\(class_counts=\.\.\.\) does not fit the 4 classes.*got 3"):
        make_trainer([Remix(class_counts=[3, 2, 1])]).fit(UserModule(), make_loader())


def test_a_one_epoch_fit_on_the_long_tailed_digits_reads_the_datamodules_counts() -> None:
    datamodule = DigitsDataModule(batch_size=64, imbalance_ratio=10)
    remix, after = Remix(seed=0), Recorder()
    model = Classifier(SmallCNN(in_channels=1, width=8), num_classes=10)
    trainer = make_trainer([remix, after], limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=datamodule)
    assert remix._counts == tuple(float(c) for c in datamodule.class_counts)
    assert len(after.batches) == math.ceil(sum(datamodule.class_counts) / 64)
    for _, y in after.batches:
        torch.testing.assert_close(y.sum(dim=1), torch.ones(y.shape[0]))
    assert 0 < float(trainer.callback_metrics["mix/rebalanced"]) < 1


# ------------------------------------------------------------------------------------- the long-tailed digits


def test_long_tailed_digits_follow_the_exponential_profile_on_the_training_split_only() -> None:
    balanced, lt = DigitsDataModule(), DigitsDataModule(imbalance_ratio=100, imbalance_seed=3)
    balanced.setup(), lt.setup()
    n_max = min(balanced.class_counts)
    expected = [max(1, math.floor(n_max * 100 ** (-c / 9))) for c in range(10)]
    assert lt.class_counts == expected and expected[0] == n_max and expected[-1] == 1
    assert lt.class_counts == torch.bincount(lt.train_set.tensors[1], minlength=10).tolist()
    for split in ("val_set", "test_set"):  # the very same tensors: samples, order and normalisation
        for a, b in zip(getattr(balanced, split).tensors, getattr(lt, split).tensors):
            assert torch.equal(a, b)
    # the long-tailed training images are balanced ones
    rows = {tuple(r.tolist()) for r in balanced.train_set.tensors[0].flatten(1)}
    kept = lt.train_set.tensors[0].flatten(1)
    assert all(tuple(r.tolist()) in rows for r in kept)
    other = DigitsDataModule(imbalance_ratio=100, imbalance_seed=4)
    other.setup()
    assert other.class_counts == lt.class_counts and not torch.equal(other.train_set.tensors[0], kept)


def test_without_a_ratio_the_digits_are_unchanged() -> None:
    default, explicit = DigitsDataModule(), DigitsDataModule(imbalance_ratio=None, imbalance_seed=5)
    default.setup(), explicit.setup()
    for a, b in zip(default.train_set.tensors, explicit.train_set.tensors):
        assert torch.equal(a, b)
    assert sum(default.class_counts) == len(default.train_set) == 1797 - 359 - 180
    ones = DigitsDataModule(imbalance_ratio=1)
    assert ones.class_counts == [min(default.class_counts)] * 10


@pytest.mark.parametrize(("value", "error"), [(0.5, ValueError), (math.nan, ValueError), ("10", TypeError)])
def test_a_bad_imbalance_ratio_is_refused(value: object, error: type) -> None:
    with pytest.raises(error, match=f"imbalance_ratio must be None or a finite number >= 1, got {value!r}"):
        DigitsDataModule(imbalance_ratio=value)


def test_long_tail_keeps_at_least_one_sample_per_class() -> None:
    labels = torch.arange(30) % 3
    keep = long_tail(labels, torch.arange(30), 3, 1000.0)
    assert torch.bincount(labels[keep]).tolist() == [10, 1, 1]
    indices = torch.randperm(30, generator=gen(0))[:24]  # a subset in any order: a sorted subset of it comes back
    keep = long_tail(labels, indices, 3, 4.0, seed=2)
    assert torch.equal(keep, keep.sort().values) and keep.unique().numel() == keep.numel()
    assert set(keep.tolist()) <= set(indices.tolist())
    n_max = int(torch.bincount(labels[indices], minlength=3).min())
    assert torch.bincount(labels[keep]).tolist() == [n_max, n_max // 2, n_max // 4]


def test_the_hydra_configs_compose() -> None:
    import hydra
    from hydra import compose, initialize_config_dir

    from lightning_mixup.train import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["data=digits_lt", "mix=remix"])
    assert cfg.data.imbalance_ratio == 10 and cfg.mix.kappa == 3.0 and cfg.mix.tau == 0.5
    remix = hydra.utils.instantiate(cfg.mix)
    assert isinstance(remix, Remix) and remix.class_counts is None and remix.alpha == 1.0
    assert hydra.utils.instantiate(cfg.data).class_counts[-1] == 12

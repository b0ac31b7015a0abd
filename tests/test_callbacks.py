"""The mixing callbacks inside a real Trainer: what they change, what they leave alone, their errors."""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset

from conftest import NUM_CLASSES, Recorder, UserModule, make_loader, make_trainer
from strategies import policy_error
from lightning_mixup import CutMix, FMix, MixUp, RandomChoice
from lightning_mixup.callbacks.random_choice import FORWARDED_HOOKS
from lightning_mixup.methods import get, names
from lightning_mixup.callbacks.base import MixStep, mixing_seed

LAYERS = {  # UserModule's options: its map before pooling and fc; its 4 classes
    "snapmix": {"feature_layer": "net.1", "classifier_layer": "net.4"},
    "remix": {"class_counts": [400, 100, 40, 10]},
}
MIXERS = {
    name: partial(get(name).make, **LAYERS.get(name, {})) for name in names("input", "saliency", task="multiclass")
}  # hidden: test_hidden.py; regression only (C-Mixup): test_cmixup.py; attention (TransMix): test_transmix.py
CONVEX = {name for name in MIXERS if "pair" in get(name).callback.FORMS}  # pairwise targets: rows sum to 1
MIXERS["random_choice"] = lambda **kw: RandomChoice([MixUp(alpha=0.8), CutMix(), FMix()], weights=[1, 1, 1], **kw)


def _per_sample(name: str, per_sample: bool) -> dict[str, Any]:
    return {} if name == "random_choice" else {"per_sample": per_sample}


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", sorted(MIXERS))
def test_user_module_trains_with_every_mixer(name: str, per_sample: bool, loader: DataLoader) -> None:
    module = UserModule()
    after = Recorder()
    trainer = make_trainer([MIXERS[name](seed=1, **_per_sample(name, per_sample)), after], max_epochs=2)
    trainer.fit(module, loader)
    assert len(after.batches) == 2 * len(loader)
    rows = 8 * (1 if name == "random_choice" else get(name).callback.OUTPUT_ROWS)  # RegMixup: clean + mixed
    for x, y in after.batches:
        assert x.shape == (rows, 3, 8, 8) and x.dtype == torch.float32
        assert y.shape == (rows, NUM_CLASSES) and y.dtype == torch.float32
        if name in CONVEX or name == "random_choice":  # SnapMix's CAM weights need not sum to 1 (as the paper's)
            torch.testing.assert_close(y.sum(dim=1), torch.ones(rows))
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_mixed_batch_is_what_the_module_sees(loader: DataLoader) -> None:
    module, before, after = UserModule(), Recorder(), Recorder()
    make_trainer([before, MixUp(seed=0), after]).fit(module, loader)
    for raw, mixed, seen in zip(before.batches, after.batches, module.seen["train"]):
        torch.testing.assert_close(mixed[0], seen[0], rtol=0, atol=0)
        torch.testing.assert_close(mixed[1], seen[1], rtol=0, atol=0)
        assert not torch.equal(raw[0], mixed[0])
        assert raw[1].dtype == torch.int64


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_validation_test_predict_and_sanity_check_are_never_mixed(name: str, loader: DataLoader) -> None:
    data = torch.cat([x for x, _ in loader]), torch.cat([y for _, y in loader])
    module = UserModule()
    trainer = make_trainer([MIXERS[name](seed=0)], num_sanity_val_steps=2, max_epochs=1)
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    trainer.validate(module, loader, verbose=False)
    trainer.test(module, loader, verbose=False)
    trainer.predict(module, loader)
    n = len(loader)
    order = {"val": [0, 1] + list(range(n)) * 2, "test": list(range(n)), "predict": list(range(n))}
    for stage, positions in order.items():
        batches = module.seen[stage]
        assert len(batches) == len(positions), stage
        for j, (x, y) in zip(positions, batches):
            assert torch.equal(x, data[0][8 * j : 8 * j + 8]), stage
            assert torch.equal(y, data[1][8 * j : 8 * j + 8]) and y.dtype == torch.int64, stage


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_p_zero_leaves_training_batches_unchanged(name: str, loader: DataLoader) -> None:
    before, after = Recorder(), Recorder()
    make_trainer([before, MIXERS[name](p=0.0), after], max_epochs=2).fit(UserModule(), loader)
    assert len(before.batches) == len(after.batches) == 2 * len(loader)
    for raw, out in zip(before.batches, after.batches):
        assert torch.equal(raw[0], out[0]) and torch.equal(raw[1], out[1])


def test_p_applies_about_that_fraction_of_batches() -> None:
    loader = make_loader(n=8 * 200, batch_size=8)
    before, after = Recorder(), Recorder()
    make_trainer([before, CutMix(p=0.3, seed=3), after], limit_train_batches=200).fit(UserModule(), loader)
    mixed = sum(not torch.equal(a[1], b[1]) for a, b in zip(before.batches, after.batches))
    assert 0.3 * 200 - 3 * (200 * 0.21) ** 0.5 <= mixed <= 0.3 * 200 + 3 * (200 * 0.21) ** 0.5


def test_epoch_window(loader: DataLoader) -> None:
    after = Recorder()
    make_trainer([MixUp(start_epoch=1, stop_epoch=3), after], max_epochs=4).fit(UserModule(), loader)
    per_epoch = [after.batches[i * len(loader) : (i + 1) * len(loader)] for i in range(4)]
    kinds = [{b[1].dtype for b in epoch} for epoch in per_epoch]
    assert kinds == [{torch.int64}, {torch.float32}, {torch.float32}, {torch.int64}]


def test_lambda_statistics_are_logged(loader: DataLoader) -> None:
    trainer = make_trainer([MixUp(per_sample=True)], max_epochs=1)
    trainer.fit(UserModule(), loader)
    metrics = trainer.callback_metrics
    assert {"mix/lam", "mix/lam_std", "mix/applied"} <= set(metrics)
    assert 0.0 <= float(metrics["mix/lam"]) <= 1.0 and float(metrics["mix/applied"]) == 1.0


def test_dict_batches_with_string_keys() -> None:
    class DictData(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.x, self.y = torch.randn(16, 3, 8, 8), torch.randint(0, NUM_CLASSES, (16,))

        def __len__(self) -> int:
            return 16

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"image": self.x[i], "label": self.y[i], "id": torch.tensor(i)}

    class DictModule(UserModule):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            self.seen["train"].append(batch["label"].clone())
            return torch.nn.functional.cross_entropy(self(batch["image"]), batch["label"])

    module = DictModule()
    cb = CutMix(input_key="image", target_key="label", per_sample=True)
    make_trainer([cb]).fit(module, DataLoader(DictData(), batch_size=8))
    assert all(y.shape == (8, NUM_CLASSES) for y in module.seen["train"])


class _Injector(Callback):
    """Replaces the batch's content before the mixer sees it (to feed bad batches through a real Trainer)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.fn(batch)


def _fit_with(batch_fn: Any, mixer: Any, module: UserModule | None = None, loader: DataLoader | None = None) -> None:
    make_trainer([_Injector(batch_fn), mixer]).fit(module or UserModule(), loader or make_loader())


def test_tuple_batch_is_refused_with_an_explanation() -> None:
    class TupleLoader(DataLoader):
        def __iter__(self) -> Any:
            return (tuple(b) for b in super().__iter__())

    base = make_loader()
    loader = TupleLoader(base.dataset, batch_size=8)
    with pytest.raises(TypeError, match="tuple batch"):
        make_trainer([MixUp()]).fit(UserModule(), loader)


def test_dict_batch_without_the_key() -> None:
    data = [{"x": torch.randn(3, 8, 8), "y": torch.tensor(1)} for _ in range(8)]
    with pytest.raises(KeyError, match=r"no key 'image'.*\['x', 'y'\]"):
        make_trainer([MixUp(input_key="image", target_key="y")]).fit(UserModule(), DataLoader(data, batch_size=4))


def test_missing_num_classes_says_how_to_set_it() -> None:
    with pytest.raises(ValueError, match="num_classes=.*num_classes` attribute"):
        make_trainer([MixUp()]).fit(UserModule(num_classes=None), make_loader())


def test_explicit_num_classes_is_used_when_the_module_has_none(loader: DataLoader) -> None:
    after = Recorder()
    make_trainer([MixUp(num_classes=NUM_CLASSES), after]).fit(UserModule(num_classes=None), loader)
    assert after.batches[0][1].shape == (8, NUM_CLASSES)


@pytest.mark.parametrize("bad", [1, 0, 2.5, "10", True])
def test_wrong_num_classes_values(bad: Any) -> None:
    with pytest.raises(policy_error(bad, int), match=f"num_classes must be an int >= 2, got {bad!r}"):
        MixUp(num_classes=bad)


def test_num_classes_smaller_than_the_labels() -> None:
    with pytest.raises(ValueError, match=r"label out of range \[0, 3\)"):
        make_trainer([MixUp(num_classes=3)]).fit(UserModule(num_classes=None), make_loader(n=64))


def test_probability_targets_that_do_not_sum_to_one() -> None:
    def bad_probs(batch: list[torch.Tensor]) -> None:
        batch[1] = torch.full((batch[0].shape[0], NUM_CLASSES), 0.3)

    with pytest.raises(ValueError, match="sum to 1.*sums to 1.2"):
        _fit_with(bad_probs, MixUp())


def test_probability_targets_are_mixed_again() -> None:
    """Soft targets from upstream (e.g. distillation) go through unchanged in form."""
    rows = []

    def soft(batch: list[torch.Tensor]) -> None:
        batch[1] = torch.softmax(torch.randn(batch[0].shape[0], NUM_CLASSES), dim=1)
        rows.append(batch[1])

    after = Recorder()
    make_trainer([_Injector(soft), CutMix(), after]).fit(UserModule(), make_loader())
    for (_, y), _orig in zip(after.batches, rows):
        torch.testing.assert_close(y.sum(1), torch.ones(8))


@pytest.mark.parametrize("cls", [CutMix, FMix])
@pytest.mark.parametrize("shape", [(3, 64), (3, 8, 8, 2)])
def test_non_4d_input_to_cutmix_and_fmix(cls: type, shape: tuple[int, ...]) -> None:
    loader = make_loader(shape=shape)
    with pytest.raises(ValueError, match=r"4-D input .*got shape \[8, " + ", ".join(map(str, shape))):
        make_trainer([cls()]).fit(UserModule(), loader)


def test_mixup_accepts_any_input_shape() -> None:
    class VectorModule(UserModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = torch.nn.Linear(5, NUM_CLASSES)

    after = Recorder()
    make_trainer([MixUp(), after]).fit(VectorModule(), make_loader(shape=(5,)))
    assert after.batches[0][1].shape == (8, NUM_CLASSES)


def test_batch_of_one_is_left_unchanged_with_a_warning() -> None:
    before, after = Recorder(), Recorder()
    with pytest.warns(UserWarning, match="batch of 1 sample cannot be mixed"):
        make_trainer([before, MixUp(), after]).fit(UserModule(), make_loader(n=9, batch_size=8))
    assert torch.equal(before.batches[-1][0], after.batches[-1][0]) and after.batches[-1][1].dtype == torch.int64
    assert after.batches[0][1].dtype == torch.float32


def test_odd_batch_with_flip_partner_keeps_the_middle_sample() -> None:
    before, after = Recorder(), Recorder()
    make_trainer([before, MixUp(partner="flip"), after]).fit(UserModule(), make_loader(n=7, batch_size=7))
    (x, y), (mx, my) = before.batches[0], after.batches[0]
    assert torch.equal(mx[3], x[3])
    assert torch.equal(my[3], torch.nn.functional.one_hot(y[3], NUM_CLASSES).float())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "alpha must be a finite number > 0, got 0.0"),
        ({"alpha": -1}, "got -1"),
        ({"alpha": float("nan")}, "got nan"),
        ({"p": 1.5}, r"p must be a probability in \[0, 1\], got 1.5"),
        ({"p": -0.1}, "got -0.1"),
        ({"partner": "shuffle"}, "partner must be one of .*got 'shuffle'"),
        ({"start_epoch": -1}, "start_epoch must be an int >= 0, got -1"),
        ({"start_epoch": 3, "stop_epoch": 2}, "stop_epoch must be > start_epoch=3, got 2"),
        ({"input_key": 1.5}, "input_key must be an int .* or a str .*got 1.5"),
    ],
)
def test_bad_hyper_parameters_fail_in_init(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        MixUp(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decay_power": 0}, "decay_power must be a finite number > 0, got 0"),
        ({"max_soft": 0.7}, r"max_soft must be in \[0, 0.5\], got 0.7"),
    ],
)
def test_bad_fmix_parameters(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FMix(**kwargs)


def test_random_choice_errors() -> None:
    with pytest.raises(ValueError, match=r"got 1 weights \[1.0\] for 2 mixers"):
        RandomChoice([MixUp(), CutMix()], weights=[1.0])
    with pytest.raises(ValueError, match="weights must be finite, >= 0 and not all 0, got"):
        RandomChoice([MixUp(), CutMix()], weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="at least one mixer"):
        RandomChoice([])
    with pytest.raises(TypeError, match="takes mixing callbacks, got 'mixup'"):
        RandomChoice(["mixup"])


def test_random_choice_respects_its_weights() -> None:
    counts: Counter[str] = Counter()

    def counting(cls: type, tag: str) -> Any:
        class Counting(cls):  # type: ignore[misc, valid-type]
            def mix(self, *args: Any) -> Any:
                counts[tag] += 1
                return super().mix(*args)

        return Counting()

    choice = RandomChoice([counting(MixUp, "a"), counting(CutMix, "b"), counting(FMix, "c")], weights=[1, 3, 0])
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 1, 4, 4), torch.arange(4) % 2
    n = 4000
    for _ in range(n):
        choice.maybe_mix(MixStep(x, y, 2, g))
    assert counts["c"] == 0
    assert abs(counts["b"] / n - 0.75) < 3 * (0.75 * 0.25 / n) ** 0.5


def test_random_choice_honours_the_chosen_mixers_probability() -> None:
    choice = RandomChoice([MixUp(p=0.0), CutMix(p=1.0)], weights=[1, 1])
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, 1, 4, 4), torch.arange(4) % 2
    results = [choice.maybe_mix(MixStep(x, y, 2, g)) for _ in range(400)]
    unmixed = sum(r is None for r in results)
    assert 140 < unmixed < 260


def test_state_dict_is_tiny_and_restores_the_draws(loader: DataLoader) -> None:
    mixer = CutMix(per_sample=True, seed=5)
    make_trainer([mixer]).fit(UserModule(), loader)
    state = mixer.state_dict()
    (rank0,) = state["ranks"]
    assert set(rank0) == {"seed", "generator", "device_type", "host_generator"}
    assert rank0["host_generator"] is None  # on the CPU the generator draws the host's decisions itself
    assert rank0["generator"].numel() < 10_000
    x, y = torch.randn(8, 3, 8, 8), torch.arange(8) % NUM_CLASSES
    expected = mixer.mix(MixStep(x, y, NUM_CLASSES, mixer.generator_for(torch.device("cpu"))))
    restored = CutMix(per_sample=True, seed=5)
    restored.load_state_dict(state)
    got = restored.mix(MixStep(x, y, NUM_CLASSES, restored.generator_for(torch.device("cpu"))))
    assert torch.equal(expected.lam, got.lam) and torch.equal(expected.input, got.input)


def test_state_keys_differ_for_two_mixers_of_one_class() -> None:
    assert MixUp(alpha=0.2).state_key != MixUp(alpha=1.0).state_key


def test_same_seed_same_draws_and_ranks_differ(loader: DataLoader) -> None:
    runs = []
    for _ in range(2):
        after = Recorder()
        make_trainer([FMix(per_sample=True, seed=7), after]).fit(UserModule(), loader)
        runs.append(after.batches)
    for a, b in zip(*runs):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len({mixing_seed(7, rank) for rank in range(8)}) == 8


def test_run_seed_is_used_when_no_seed_is_given(loader: DataLoader) -> None:
    import lightning.pytorch as pl

    def run(seed: int) -> torch.Tensor:
        pl.seed_everything(seed)
        after = Recorder()
        make_trainer([MixUp(per_sample=True), after]).fit(UserModule(), loader)
        return after.batches[0][1]

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_tensor_batch_is_refused(loader: DataLoader) -> None:
    x = torch.randn(16, 3, 8, 8)
    with pytest.raises(TypeError, match="expects a list or dict batch, got Tensor"):
        make_trainer([MixUp()]).fit(UserModule(), DataLoader(TensorDataset(x).tensors[0], batch_size=8))


def test_random_choice_forwards_every_callback_hook_to_its_mixers(loader: DataLoader) -> None:
    calls: Counter[str] = Counter()

    class Watching(MixUp):
        def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
            calls["on_train_epoch_start"] += 1

        def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
            calls["on_fit_end"] += 1

        def on_train_batch_start(self, *args: Any) -> None:  # never: the wrapper mixes through maybe_mix
            calls["on_train_batch_start"] += 1

    make_trainer([RandomChoice([Watching(), CutMix()], seed=0)], max_epochs=2).fit(UserModule(), loader)
    assert calls == {"on_train_epoch_start": 2, "on_fit_end": 1}
    hooks = {name for name in vars(Callback) if name.startswith("on_") or name in ("setup", "teardown")}
    assert set(FORWARDED_HOOKS) == hooks - {"on_train_batch_start", "on_save_checkpoint", "on_load_checkpoint"}

"""The regression example: the bundled diabetes data, the Regressor, and the regress config with C-Mixup and mixup."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_mixup.callbacks import MixUp
from lightning_mixup.data.diabetes import DiabetesDataModule, load_diabetes, quantile_bins
from lightning_mixup.functional import PairTarget
from lightning_mixup.models.regressor import Regressor
from lightning_mixup.train import config_dir, train


@pytest.fixture(scope="module")
def datamodule() -> DiabetesDataModule:
    dm = DiabetesDataModule(batch_size=32)
    dm.setup("fit")
    return dm


# ---- data ------------------------------------------------------------------------------------------------------


def test_the_bundled_file_is_scikit_learns_data() -> None:
    x, y = load_diabetes()
    assert x.shape == (442, 10) and y.shape == (442,) and x.dtype == y.dtype == torch.float64
    assert x[0].tolist() == [59.0, 2.0, 32.1, 101.0, 157.0, 93.2, 38.0, 4.0, 4.8598, 87.0]
    assert y[:3].tolist() == [151.0, 75.0, 141.0]
    datasets = pytest.importorskip("sklearn.datasets")
    reference = datasets.load_diabetes(scaled=False)
    assert torch.equal(x, torch.from_numpy(reference.data)) and torch.equal(y, torch.from_numpy(reference.target))


def test_the_package_does_not_import_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import lightning_mixup.data.diabetes as module

    monkeypatch.setitem(sys.modules, "sklearn", None)  # any import of sklearn now fails
    x, _ = importlib.reload(module).load_diabetes()
    assert x.shape == (442, 10)


def test_splits_are_disjoint_seeded_and_standardised_with_training_statistics(datamodule: DiabetesDataModule) -> None:
    x, y = load_diabetes()
    train_x, train_y = datamodule.train_set.tensors
    assert (len(datamodule.train_set), len(datamodule.val_set), len(datamodule.test_set)) == (310, 44, 88)
    torch.testing.assert_close(train_x.mean(dim=0), torch.zeros(10), atol=1e-5, rtol=0)
    torch.testing.assert_close(train_x.std(dim=0), torch.ones(10), atol=1e-5, rtol=0)
    assert abs(float(train_y.mean())) < 1e-5 and abs(float(train_y.std()) - 1) < 1e-5
    # every sample lands in exactly one split, and the original values come back with the training statistics
    raw = [
        torch.cat([f.double() * datamodule.std.double() + datamodule.mean.double(), t.double()[:, None]], dim=1)
        for f, t in (part.tensors for part in (datamodule.train_set, datamodule.val_set, datamodule.test_set))
    ]
    ours = torch.cat(raw)
    ours[:, -1] = ours[:, -1] * datamodule.target_std + datamodule.target_mean
    order = lambda rows: rows[torch.argsort(rows[:, 0] * 1e6 + rows[:, -1] * 1e2 + rows[:, 2])]  # noqa: E731
    torch.testing.assert_close(order(ours), order(torch.cat([x, y[:, None]], dim=1)), atol=1e-3, rtol=0)
    test_y = datamodule.test_set.tensors[1] * datamodule.target_std + datamodule.target_mean
    assert float(test_y.min()) < 60 and float(test_y.max()) > 280  # stratified: the test split spans the range
    again = DiabetesDataModule()
    again.setup()
    assert torch.equal(again.test_set.tensors[1], datamodule.test_set.tensors[1])
    other = DiabetesDataModule(split_seed=1)
    other.setup()
    assert not torch.equal(other.test_set.tensors[1], datamodule.test_set.tensors[1])


def test_quantile_bins_are_even() -> None:
    bins = quantile_bins(torch.randn(100), 10)
    assert torch.bincount(bins).tolist() == [10] * 10


def test_bad_data_options_are_quoted() -> None:
    with pytest.raises(ValueError, match="got 0.9"):
        DiabetesDataModule(val_fraction=0.9, test_fraction=0.2)
    with pytest.raises(ValueError, match="got 0"):
        DiabetesDataModule(strata=0)


# ---- the module ------------------------------------------------------------------------------------------------


def test_loss_squeezes_a_single_output_and_refuses_other_shapes() -> None:
    model = Regressor(nn.Linear(3, 1))
    pred, y = torch.randn(4, 1), torch.randn(4)
    torch.testing.assert_close(model.loss(pred, y), F.mse_loss(pred[:, 0], y))
    two = torch.randn(4, 2)
    torch.testing.assert_close(model.loss(two, torch.zeros(4, 2)), two.square().mean())
    with pytest.raises(ValueError, match=r"shape \[4, 2\] but the targets \[4\]"):
        model.loss(two, y)
    with pytest.raises(TypeError, match="got str"):
        Regressor("mlp")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="got 0"):
        Regressor(nn.Linear(3, 1), target_std=0)


def test_a_pair_trains_as_its_mixed_target() -> None:
    model = Regressor(nn.Linear(3, 1))
    pair = PairTarget(torch.randn(5), torch.randn(5), torch.rand(5))
    mixed = Regressor.mixed_target(pair)
    torch.testing.assert_close(mixed, pair.weight * pair.a + (1 - pair.weight) * pair.b)
    out = torch.randn(5, 1, requires_grad=True)
    (g_pair,) = torch.autograd.grad(model.loss(out, pair), out)
    (g_mixed,) = torch.autograd.grad(model.loss(out, mixed), out)
    torch.testing.assert_close(g_pair, g_mixed)


def test_metrics_are_in_the_original_units_read_from_the_datamodule(datamodule: DiabetesDataModule) -> None:
    torch.manual_seed(0)
    model = Regressor(nn.Linear(10, 1))
    trainer = make_trainer([], max_epochs=1, limit_train_batches=2)
    trainer.fit(model, datamodule=datamodule)
    assert model.target_std == (datamodule.target_std,) and model.target_mean == (datamodule.target_mean,)
    (results,) = trainer.test(model, datamodule=datamodule, verbose=False)
    x, y = datamodule.test_set.tensors
    with torch.no_grad():
        pred = model(x)[:, 0] * datamodule.target_std + datamodule.target_mean
    raw = y * datamodule.target_std + datamodule.target_mean
    assert results["test/rmse"] == pytest.approx(float((pred - raw).square().mean().sqrt()), rel=1e-4)
    assert results["test/mae"] == pytest.approx(float((pred - raw).abs().mean()), rel=1e-4)
    assert results["test/loss"] == pytest.approx(
        float(((pred - raw) / datamodule.target_std).square().mean()), rel=1e-3
    )
    predicted = torch.cat(trainer.predict(model, DataLoader(TensorDataset(x, y), batch_size=50)))
    torch.testing.assert_close(predicted, pred)


def test_the_regressor_trains_with_mixup_in_pair_form() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 4, generator=g)
    y = torch.stack([x.sum(dim=1), x[:, 0]], dim=1)  # two target columns
    data = DataLoader(TensorDataset(x, y), batch_size=8)
    model = Regressor(nn.Linear(4, 2), target_mean=[1.0, 2.0], target_std=[3.0, 4.0])
    trainer = make_trainer([MixUp(task="regression", targets="pair", seed=0)], limit_val_batches=1)
    trainer.fit(model, data, data)
    assert trainer.callback_metrics["mix/applied"] == 1.0 and float(trainer.callback_metrics["train/rmse"]) > 0


# ---- the config ------------------------------------------------------------------------------------------------


def _compose(tmp_path: Path, *overrides: str):  # noqa: ANN202
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("regress", overrides=[f"paths.output_dir={tmp_path}", *overrides])


def test_the_regress_config_has_no_mixer_by_default(tmp_path: Path) -> None:
    cfg = _compose(tmp_path)
    assert "_target_" not in cfg.mix and cfg.model._target_.endswith("Regressor")
    assert (cfg.callbacks.model_checkpoint.monitor, cfg.callbacks.model_checkpoint.mode) == ("val/rmse", "min")
    assert cfg.objective == "val/rmse" and cfg.net.in_features == 10 and cfg.net.num_classes == 1
    assert _compose(tmp_path, "mix=mixup").mix.task == "regression"


@pytest.mark.slow
def test_the_regress_config_trains_and_tests_with_c_mixup(tmp_path: Path) -> None:
    cfg = _compose(tmp_path, "mix=cmixup", "mix.bandwidth=0.5", "trainer.fast_dev_run=true", "trainer=cpu")
    assert (cfg.mix.task, cfg.mix.alpha, cfg.mix.kernel) == ("regression", 2.0, "gaussian")
    metrics = train(cfg)
    assert metrics["mix/applied"] == 1.0 and 0 < metrics["test/rmse"] < 1000 and 0 < metrics["test/mae"] < 1000

"""A generic regression LightningModule for any ``nn.Module`` net, trained with the mean squared error on plain,
mixed or paired float targets."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.regression import MeanAbsoluteError, MeanSquaredError

from lightning_mixup.checks import check_channel_stats, check_number
from lightning_mixup.functional.targets import PairTarget, pair_loss
from lightning_mixup.models.classifier import OptimizerFactory, SchedulerFactory, optimizers

Stat = float | Sequence[float] | Tensor


class Regressor(pl.LightningModule):
    """Train ``net`` (any module returning predictions ``[B]`` or ``[B, ...]``) with the mean squared error.

    Targets are float values ``[B]`` or ``[B, ...]``, as they are or mixed by a mixer with ``task="regression"``
    (C-Mixup, mixup, ...), or a :class:`~lightning_mixup.functional.PairTarget` ``(a, b, weight)`` (a mixer's
    ``targets="pair"``), whose loss ``weight·MSE(a) + (1 − weight)·MSE(b)`` differs from the MSE of the mixed target
    by a constant of the targets alone (same gradient). A prediction ``[B, 1]`` for targets ``[B]`` is squeezed
    (a net with one output, e.g. ``MLP(num_classes=1)``).

    Train, validation and test log ``{stage}/rmse`` and ``{stage}/mae`` (torchmetrics ``MeanSquaredError(squared=
    False)`` and ``MeanAbsoluteError``, over every element) in the *original* units of the targets, and
    ``{stage}/loss``, the MSE in the units the net is trained in. The targets are taken to be standardised as
    ``(y − target_mean) / target_std``: the metrics undo it (``p·target_std + target_mean``). Training metrics are
    those of the targets the net is trained on (the mixed ones where a mixer mixes).

    Args:
        net: the network.
        optimizer: a factory ``params -> Optimizer`` (Hydra's ``_partial_: true``); None gives ``AdamW(lr=1e-3)``.
        scheduler: a factory ``optimizer -> LR scheduler`` (stepped each epoch), or None.
        input_key / target_key: where the input and targets sit in a list or dict batch.
        lr: the learning rate of every parameter group, replacing the optimizer factory's (``lr_find``); None keeps it.
        target_mean / target_std: the standardisation of the targets (a number, or one per target column); None:
            the datamodule's ``target_mean`` / ``target_std`` attributes at setup where it has them (e.g.
            :class:`~lightning_mixup.data.diabetes.DiabetesDataModule`), else 0 and 1 (metrics in training units).

    Example:
        >>> model = Regressor(nn.Linear(4, 1), target_mean=100.0, target_std=50.0)
        >>> pred, y = torch.randn(8, 1), torch.randn(8)
        >>> bool(torch.allclose(model.loss(pred, y), F.mse_loss(pred[:, 0], y)))
        True
        >>> model.to_original(torch.tensor([0.0, 1.0]))
        tensor([100., 150.])
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        input_key: int | str = 0,
        target_key: int | str = 1,
        lr: float | None = None,
        target_mean: Stat | None = None,
        target_std: Stat | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.input_key = input_key
        self.target_key = target_key
        self.lr = None if lr is None else check_number("lr", lr, 0.0, open_low=True)
        self._given = (
            check_channel_stats("target_mean", target_mean, False),
            check_channel_stats("target_std", target_std, True),
        )
        self.target_mean, self.target_std = self._given
        for stage in ("train", "val", "test"):
            setattr(self, f"{stage}_rmse", MeanSquaredError(squared=False))
            setattr(self, f"{stage}_mae", MeanAbsoluteError())

    def setup(self, stage: str) -> None:
        """Take the datamodule's ``target_mean`` / ``target_std`` where none were given."""
        datamodule = getattr(self.trainer, "datamodule", None)
        for i, name in enumerate(("target_mean", "target_std")):
            found = getattr(datamodule, name, None)
            if self._given[i] is None and found is not None:
                setattr(self, name, check_channel_stats(name, found, name == "target_std"))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def to_original(self, values: Tensor) -> Tensor:
        """Predictions or targets in the original units: ``values·target_std + target_mean`` (the last dim holds the
        target columns where the statistics have one per column)."""
        values = values.float()
        if self.target_std is not None:
            values = values * torch.tensor(self.target_std, device=values.device)
        if self.target_mean is not None:
            values = values + torch.tensor(self.target_mean, device=values.device)
        return values

    def _match(self, output: Tensor, target: Tensor) -> Tensor:
        """``output`` shaped as ``target``: a trailing output dim of 1 is dropped for targets without it."""
        if output.ndim == target.ndim + 1 and output.shape[-1] == 1:
            output = output.squeeze(-1)
        if output.shape != target.shape:
            raise ValueError(
                f"the net's predictions have shape {list(output.shape)} but the targets {list(target.shape)}; "
                "give the net as many outputs as target columns"
            )
        return output.float()

    def loss(self, output: Tensor, target: Tensor | PairTarget) -> Tensor:
        """The mean squared error against float targets or a :class:`~lightning_mixup.functional.PairTarget`."""
        if isinstance(target, PairTarget):
            output = self._match(output, target.a)
            return pair_loss(lambda o, t: F.mse_loss(o, t.float(), reduction="none"), output, target)
        return F.mse_loss(self._match(output, target), target.float())

    @staticmethod
    def mixed_target(target: Tensor | PairTarget) -> Tensor:
        """One target tensor for any training target: a pair's mix ``weight·a + (1 − weight)·b``."""
        if isinstance(target, PairTarget):
            weight = target.weight.float().view(*target.weight.shape, *([1] * (target.a.ndim - target.weight.ndim)))
            return torch.lerp(target.b.float(), target.a.float(), weight)
        return target.float()

    def _step(self, batch: Any, stage: str) -> Tensor:
        x, target = batch[self.input_key], batch[self.target_key]
        output = self(x)
        loss = self.loss(output, target)
        values = self.mixed_target(target)
        prediction = self.to_original(self._match(output.detach(), values))
        values = self.to_original(values)
        rmse, mae = getattr(self, f"{stage}_rmse"), getattr(self, f"{stage}_mae")
        rmse(prediction, values)
        mae(prediction, values)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", batch_size=x.shape[0], sync_dist=stage != "train")
        self.log(f"{stage}/rmse", rmse, prog_bar=stage != "train", batch_size=x.shape[0])
        self.log(f"{stage}/mae", mae, batch_size=x.shape[0])
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Predictions in the original units."""
        x = batch[self.input_key] if isinstance(batch, (list, tuple, dict)) else batch
        output = self(x)
        if output.ndim == 2 and output.shape[1] == 1:
            output = output[:, 0]
        return self.to_original(output)

    def configure_optimizers(self) -> Any:
        return optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory, self.lr)

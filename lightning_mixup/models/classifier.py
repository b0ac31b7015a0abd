"""A generic classifier LightningModule for any ``nn.Module`` net, trained on hard or soft targets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassCalibrationError

from lightning_mixup.checks import check_number
from lightning_mixup.functional.targets import check_num_classes, to_probs

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# a scheduler class is one (jsonargparse/LightningCLI: --model.scheduler=torch.optim.lr_scheduler.CosineAnnealingLR)
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
LOSSES = ("ce", "bce", "softmax_bce")


def softmax_bce(logits: Tensor, probs: Tensor) -> Tensor:
    """``torch.nn.BCELoss()(logits.softmax(1), probs)``: binary cross-entropy of the softmax probabilities, averaged
    over batch × classes, exactly as the official Manifold Mixup, PatchUp and PuzzleMix code computes it (logs
    clamped at −100 by ``BCELoss``), in float32 with autocast off (``BCELoss`` refuses autocast).

    Example:
        >>> logits, probs = torch.randn(4, 3), torch.eye(3)[[0, 1, 2, 0]]
        >>> bool(torch.allclose(softmax_bce(logits, probs), torch.nn.BCELoss()(logits.softmax(1), probs)))
        True
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        return F.binary_cross_entropy(logits.float().softmax(dim=1), probs.float())


class Classifier(pl.LightningModule):
    """Train ``net`` (any module returning logits ``[B, C]``) with cross-entropy or binary cross-entropy.

    Targets may be class indices ``[B]`` or probabilities ``[B, C]`` (what the mixers write), so every
    mixing callback works with it. Validation and test log accuracy and the expected calibration error
    (ECE, 15 bins, L1) from torchmetrics, and the loss on hard labels.

    Args:
        net: the network; ``forward(x)`` returns its logits.
        num_classes: number of classes (mixers read it from here).
        optimizer: a factory ``params -> Optimizer``, e.g. Hydra's ``_partial_: true`` or
            ``functools.partial(torch.optim.SGD, lr=0.1)``; None gives ``AdamW(lr=1e-3)``.
        scheduler: a factory ``optimizer -> LR scheduler`` (stepped each epoch), or None.
        label_smoothing: ε of label smoothing, applied in the loss after mixing.
        loss: ``"ce"`` (softmax cross-entropy), ``"bce"`` (per-class sigmoid BCE, summed over classes,
            averaged over the batch) or ``"softmax_bce"`` (``BCELoss(softmax(logits), target)`` averaged over
            batch × classes: the loss of the official Manifold Mixup, PatchUp and PuzzleMix CIFAR code, whose
            gradient is about 0.1–0.16× cross-entropy's at C = 10 and ~0.01× at C = 100). For the two BCE losses
            smoothing moves ε of the mass to a uniform ``ε / C``.
        input_key / target_key: where the input and targets sit in a list or dict batch.
        lr: the learning rate of every parameter group, replacing the optimizer factory's; None keeps it.
            ``Tuner(trainer).lr_find(model)`` sets it to the rate it suggests.

    Example:
        >>> from functools import partial
        >>> from lightning_mixup.models.nets import SmallCNN
        >>> model = Classifier(SmallCNN(), num_classes=10, optimizer=partial(torch.optim.SGD, lr=0.1))
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        loss: str = "ce",
        input_key: int | str = 0,
        target_key: int | str = 1,
        lr: float | None = None,
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if (
            isinstance(label_smoothing, bool)
            or not isinstance(label_smoothing, (int, float))
            or not 0.0 <= label_smoothing < 1.0
        ):
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = float(label_smoothing)
        self.loss_name = loss
        self.input_key = input_key
        self.target_key = target_key
        self.lr = None if lr is None else check_number("lr", lr, 0.0, open_low=True)
        self._auxiliary_losses: dict[str, Tensor] = {}
        for stage in ("val", "test"):
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes=num_classes, average="micro"))
            setattr(self, f"{stage}_ece", MulticlassCalibrationError(num_classes=num_classes, n_bins=15, norm="l1"))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def add_auxiliary_loss(self, name: str, loss: Tensor) -> None:
        """Add ``loss`` to the next training step's loss, logged as ``train/<name>``: the
        :class:`~lightning_mixup.callbacks.AcceptsAuxiliaryLoss` protocol (PuzzleMix's ``clean_lam``)."""
        self._auxiliary_losses[name] = loss

    def loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """The training loss for class indices ``[B]`` or probabilities ``[B, C]``, with label smoothing."""
        logits = logits.float()
        if self.loss_name == "ce":
            if target.is_floating_point():
                target = target.float()
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        probs = to_probs(target, self.num_classes)
        if self.label_smoothing:
            probs = probs * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_classes
        if self.loss_name == "softmax_bce":
            return softmax_bce(logits, probs)
        return F.binary_cross_entropy_with_logits(logits, probs, reduction="none").sum(dim=1).mean()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, target = batch[self.input_key], batch[self.target_key]
        logits = self(x)
        loss = self.loss(logits, target)
        hard = target.argmax(dim=1) if target.is_floating_point() else target
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        self.log("train/acc", (logits.argmax(dim=1) == hard).float().mean(), batch_size=x.shape[0])
        for name, extra in self._auxiliary_losses.items():
            self.log(f"train/{name}", extra, batch_size=x.shape[0])
            loss = loss + extra
        self._auxiliary_losses.clear()
        return loss

    def _evaluate(self, batch: Any, stage: str) -> None:
        x, target = batch[self.input_key], batch[self.target_key]
        logits = self(x).float()
        if target.is_floating_point():
            target = target.argmax(dim=1)
        acc, ece = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_ece")
        acc(logits, target)
        ece(logits.softmax(dim=1), target)
        self.log(f"{stage}/loss", F.cross_entropy(logits, target), batch_size=x.shape[0], sync_dist=True)
        self.log(f"{stage}/acc", acc, prog_bar=True, batch_size=x.shape[0])
        self.log(f"{stage}/ece", ece, batch_size=x.shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self(batch[self.input_key]).softmax(dim=1)

    def configure_optimizers(self) -> Any:
        if self.optimizer_factory is None:
            optimizer = torch.optim.AdamW(self.parameters(), lr=1e-3)
        else:
            optimizer = self.optimizer_factory(self.parameters())
        if self.lr is not None:  # before the scheduler, which records each group's initial_lr
            for group in optimizer.param_groups:
                group["lr"] = self.lr
        if self.scheduler_factory is None:
            return optimizer
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer), "interval": "epoch"},
        }

"""A generic classifier LightningModule for any ``nn.Module`` net, trained on hard, soft or paired targets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MultilabelAccuracy,
    MultilabelF1Score,
)

from lightning_mixup.checks import check_choice, check_number
from lightning_mixup.functional.targets import PairTarget, check_multilabel, check_num_classes, pair_loss, to_probs
from lightning_mixup.metrics import MixedAccuracy

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
# a scheduler class is one (jsonargparse/LightningCLI: --model.scheduler=torch.optim.lr_scheduler.CosineAnnealingLR)
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]
LOSSES = ("ce", "bce", "softmax_bce")
CLASSIFIER_TASKS = ("multiclass", "multilabel")
TASK_LOSSES = {"multiclass": LOSSES, "multilabel": ("bce",)}
"""The losses that fit each task: a softmax (``ce``, ``softmax_bce``) makes the labels exclude each other."""


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

    Targets may be class indices ``[B]``, probabilities ``[B, C]`` (what the mixers write) or a
    :class:`~lightning_mixup.functional.PairTarget` ``(a, b, weight)`` (a mixer's ``targets="pair"``), so every
    mixing callback works with it; a pair's loss, ``weight·ℓ(a) + (1 − weight)·ℓ(b)``, equals the loss of its
    mixed probabilities for each of the losses. ``train/acc`` is the weighted accuracy of
    :class:`~lightning_mixup.metrics.MixedAccuracy` (λ·[pred = a] + (1 − λ)·[pred = b]; plain accuracy on clean
    batches), ``train/acc_dominant`` the accuracy against the label with the larger share. Validation and test
    log accuracy, balanced accuracy (``bacc``: the mean recall over the classes) and the expected calibration error
    (ECE, 15 bins, L1) from torchmetrics, and the loss on hard labels; with ``task="multilabel"``, accuracy and
    macro F1 over the labels (threshold 0.5) and the BCE.

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
            smoothing moves ε of the mass to a uniform ``ε / C``. None: ``"ce"``, or ``"bce"`` for
            ``task="multilabel"``, the one loss that fits it.
        input_key / target_key: where the input and targets sit in a list or dict batch.
        lr: the learning rate of every parameter group, replacing the optimizer factory's; None keeps it.
            ``Tuner(trainer).lr_find(model)`` sets it to the rate it suggests.
        task: ``"multiclass"`` (one class per sample) or ``"multilabel"`` (``num_classes`` independent labels;
            targets are rows ``[B, C]`` in [0, 1], multi-hot, mixed or a pair of them; mix them with
            ``MixUp(task="multilabel")``). Multi-label trains with ``loss="bce"`` only (its label smoothing moves
            each label ε/2 towards 1/2), and predicts sigmoid probabilities instead of a softmax.

    Example:
        >>> from functools import partial
        >>> from lightning_mixup.models.nets import SmallCNN
        >>> model = Classifier(SmallCNN(), num_classes=10, optimizer=partial(torch.optim.SGD, lr=0.1))
        >>> from lightning_mixup.functional import PairTarget
        >>> pair = PairTarget(torch.tensor([3, 1]), torch.tensor([7, 1]), torch.tensor([0.6, 0.8]))
        >>> mixed = torch.lerp(torch.eye(10)[pair.b], torch.eye(10)[pair.a], pair.weight[:, None])
        >>> logits = torch.randn(2, 10)
        >>> bool(torch.allclose(model.loss(logits, pair), model.loss(logits, mixed)))
        True
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        label_smoothing: float = 0.0,
        loss: str | None = None,
        input_key: int | str = 0,
        target_key: int | str = 1,
        lr: float | None = None,
        task: str = "multiclass",
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        check_choice("task", task, CLASSIFIER_TASKS)
        if loss is None:  # reassigned before save_hyperparameters, which reads the arguments from this frame
            loss = TASK_LOSSES[task][0]
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        if loss not in TASK_LOSSES[task]:
            raise ValueError(
                f"loss={loss!r} does not fit task={task!r}: its softmax makes the labels exclude each other; "
                f"use one of {TASK_LOSSES[task]}"
            )
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
        self.task = task
        self._auxiliary_losses: dict[str, Tensor] = {}
        # the targets were checked by the mixer (or the loss fails on them): no per-step host-device sync
        self.train_acc = MixedAccuracy(task, num_classes, mode="weighted", validate_args=False)
        self.train_acc_dominant = MixedAccuracy(task, num_classes, mode="dominant", validate_args=False)
        for stage in ("val", "test"):
            if task == "multilabel":
                setattr(self, f"{stage}_acc", MultilabelAccuracy(num_labels=num_classes))
                setattr(self, f"{stage}_f1", MultilabelF1Score(num_labels=num_classes))
                continue
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes=num_classes, average="micro"))
            setattr(self, f"{stage}_bacc", MulticlassAccuracy(num_classes=num_classes, average="macro"))
            setattr(self, f"{stage}_ece", MulticlassCalibrationError(num_classes=num_classes, n_bins=15, norm="l1"))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def add_auxiliary_loss(self, name: str, loss: Tensor) -> None:
        """Add ``loss`` to the next training step's loss, logged as ``train/<name>``: the
        :class:`~lightning_mixup.callbacks.AcceptsAuxiliaryLoss` protocol (PuzzleMix's ``clean_lam``)."""
        self._auxiliary_losses[name] = loss

    def loss(self, logits: Tensor, target: Tensor | PairTarget) -> Tensor:
        """The training loss for class indices ``[B]``, probabilities ``[B, C]`` (multi-label rows for
        ``task="multilabel"``) or a :class:`~lightning_mixup.functional.PairTarget` of them, with label smoothing.
        A pair's loss is ``pair_loss`` of :meth:`sample_loss`: the mean of ``weight·ℓ(a) + (1 − weight)·ℓ(b)``,
        equal to the loss of the mixed probabilities (each loss is affine in the target)."""
        if isinstance(target, PairTarget):
            return pair_loss(self.sample_loss, logits, target)
        logits = logits.float()
        if self.loss_name == "ce":
            if target.is_floating_point():
                target = target.float()
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        probs = self._smoothed(target)
        if self.loss_name == "softmax_bce":
            return softmax_bce(logits, probs)
        return F.binary_cross_entropy_with_logits(logits, probs, reduction="none").sum(dim=1).mean()

    def sample_loss(self, logits: Tensor, target: Tensor) -> Tensor:
        """The loss of each sample ``[B]`` (float32) for class indices ``[B]`` or rows ``[B, C]``: what
        :func:`~lightning_mixup.functional.pair_loss` takes; its mean is :meth:`loss`.

        Example:
            >>> model = Classifier(torch.nn.Linear(4, 3), num_classes=3, loss="softmax_bce")
            >>> logits, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 0, 1])
            >>> bool(torch.allclose(model.sample_loss(logits, y).mean(), model.loss(logits, y)))
            True
        """
        logits = logits.float()
        if self.loss_name == "ce":
            if target.is_floating_point():
                target = target.float()
            return F.cross_entropy(logits, target, reduction="none", label_smoothing=self.label_smoothing)
        probs = self._smoothed(target)
        if self.loss_name == "softmax_bce":
            with torch.autocast(device_type=logits.device.type, enabled=False):
                return F.binary_cross_entropy(logits.softmax(dim=1), probs, reduction="none").mean(dim=1)
        return F.binary_cross_entropy_with_logits(logits, probs, reduction="none").sum(dim=1)

    def _smoothed(self, target: Tensor) -> Tensor:
        """Float32 rows ``[B, C]`` of the targets (probabilities, or multi-label rows) with label smoothing: ε of
        the mass moved to a uniform ``ε / C`` (multi-label: each label ε/2 towards 1/2)."""
        if self.task == "multilabel":
            rows = check_multilabel(target, self.num_classes)
            share = self.label_smoothing / 2
        else:
            rows = to_probs(target, self.num_classes)
            share = self.label_smoothing / self.num_classes
        if self.label_smoothing:
            rows = rows * (1.0 - self.label_smoothing) + share
        return rows

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, target = batch[self.input_key], batch[self.target_key]
        logits = self(x)
        loss = self.loss(logits, target)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        self.train_acc(logits.detach(), target)
        self.train_acc_dominant(logits.detach(), target)
        self.log("train/acc", self.train_acc, batch_size=x.shape[0])
        self.log("train/acc_dominant", self.train_acc_dominant, batch_size=x.shape[0])
        for name, extra in self._auxiliary_losses.items():
            self.log(f"train/{name}", extra, batch_size=x.shape[0])
            loss = loss + extra
        self._auxiliary_losses.clear()
        return loss

    def _evaluate(self, batch: Any, stage: str) -> None:
        x, target = batch[self.input_key], batch[self.target_key]
        logits = self(x).float()
        if self.task == "multilabel":
            self._evaluate_multilabel(x, logits, target, stage)
            return
        if target.is_floating_point():
            target = target.argmax(dim=1)
        acc, bacc, ece = (getattr(self, f"{stage}_{name}") for name in ("acc", "bacc", "ece"))
        acc(logits, target)
        bacc(logits, target)
        ece(logits.softmax(dim=1), target)
        self.log(f"{stage}/loss", F.cross_entropy(logits, target), batch_size=x.shape[0], sync_dist=True)
        self.log(f"{stage}/acc", acc, prog_bar=True, batch_size=x.shape[0])
        self.log(f"{stage}/bacc", bacc, batch_size=x.shape[0])  # balanced: the mean recall over the classes
        self.log(f"{stage}/ece", ece, batch_size=x.shape[0])

    def _evaluate_multilabel(self, x: Tensor, logits: Tensor, target: Tensor, stage: str) -> None:
        rows = check_multilabel(target, self.num_classes)
        hard = (rows >= 0.5).long()  # soft rows count as their dominant labels
        acc, f1 = getattr(self, f"{stage}_acc"), getattr(self, f"{stage}_f1")
        acc(logits, hard)
        f1(logits, hard)
        loss = F.binary_cross_entropy_with_logits(logits, rows, reduction="none").sum(dim=1).mean()
        self.log(f"{stage}/loss", loss, batch_size=x.shape[0], sync_dist=True)
        self.log(f"{stage}/acc", acc, prog_bar=True, batch_size=x.shape[0])
        self.log(f"{stage}/f1", f1, batch_size=x.shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """Class probabilities ``[B, C]``: the softmax (multiclass) or each label's sigmoid (multilabel)."""
        logits = self(batch[self.input_key])
        return logits.sigmoid() if self.task == "multilabel" else logits.softmax(dim=1)

    def configure_optimizers(self) -> Any:
        return optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory, self.lr)


def optimizers(
    params: Iterable[nn.Parameter],
    optimizer: OptimizerFactory | None,
    scheduler: SchedulerFactory | None = None,
    lr: float | None = None,
) -> Any:
    """What ``configure_optimizers`` returns for the package's modules: ``optimizer(params)`` (None: AdamW(1e-3)),
    every group's learning rate replaced by ``lr`` when given (``lr_find``), and ``scheduler`` stepped each epoch."""
    built = torch.optim.AdamW(params, lr=1e-3) if optimizer is None else optimizer(params)
    if lr is not None:  # before the scheduler, which records each group's initial_lr
        for group in built.param_groups:
            group["lr"] = lr
    if scheduler is None:
        return built
    return {"optimizer": built, "lr_scheduler": {"scheduler": scheduler(built), "interval": "epoch"}}

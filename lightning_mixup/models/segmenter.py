"""A generic semantic-segmentation LightningModule for any net returning per-pixel logits ``[B, C, H, W]``."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

from lightning_mixup.checks import check_int
from lightning_mixup.functional.targets import PairTarget, check_num_classes, pair_loss
from lightning_mixup.models.classifier import OptimizerFactory, SchedulerFactory, optimizers

NO_IGNORE = -100  # PyTorch's default ignore_index: no class index is negative


class Segmenter(pl.LightningModule):
    """Train ``net`` (any module returning logits ``[B, C, H, W]``) with per-pixel cross-entropy.

    The training targets may be what a segmentation mixer writes (``task="segmentation"``): a class-index mask
    ``[B, H, W]`` (int), per-pixel probabilities ``[B, C, H, W]`` (float; all-zero rows at ignored pixels) or a
    :class:`~lightning_mixup.functional.PairTarget` ``(a, b, weight)`` of two masks and a per-pixel weight. The loss
    of a mask is :func:`torch.nn.functional.cross_entropy` (the mean over the pixels that are not ``ignore_index``);
    probabilities and pairs are normalised the same way, by the labelled share of the pixels (a blended pixel
    with one ignored source counts as the other source's share), so the loss keeps its scale from a mixed batch to
    an unmixed one; a pair's loss equals the soft loss of its mixed probabilities.

    Validation and test log ``{stage}/miou`` (mean intersection over union over the classes,
    ``MulticlassJaccardIndex(average="macro")``), ``{stage}/acc`` (pixel accuracy) and ``{stage}/loss``; pixels
    labelled ``ignore_index`` count in neither.

    Args:
        net: the network; ``forward(x)`` must return logits ``[B, num_classes, H, W]``.
        num_classes: the number of classes (the mixers read it from ``num_classes``).
        optimizer: a factory ``params -> Optimizer`` (e.g. ``partial(torch.optim.SGD, lr=0.05)``); None: AdamW(1e-3).
        scheduler: a factory ``optimizer -> LRScheduler`` stepped every epoch; None: a constant rate.
        ignore_index: the label of pixels to skip in the loss and the metrics (e.g. 255); None: every pixel counts.
        input_key / target_key: where the image and the mask sit in a dict (or list) batch.

    Example:
        >>> from lightning_mixup.models.nets.fcn import SmallFCN
        >>> model = Segmenter(SmallFCN(num_classes=3), num_classes=3, ignore_index=255)
        >>> logits, mask = torch.randn(2, 3, 4, 4), torch.randint(3, (2, 4, 4))
        >>> bool(torch.allclose(model.loss(logits, mask), F.cross_entropy(logits, mask)))
        True
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        ignore_index: int | None = None,
        input_key: int | str = "image",
        target_key: int | str = "mask",
    ) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if not isinstance(net, nn.Module):
            raise TypeError(f"net must be an nn.Module, got {type(net).__name__}")
        if ignore_index is not None:
            check_int("ignore_index", ignore_index)
            if 0 <= ignore_index < num_classes:
                raise ValueError(f"ignore_index must not be a class in [0, {num_classes}), got {ignore_index!r}")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.num_classes = num_classes
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.ignore_index = ignore_index
        self.input_key = input_key
        self.target_key = target_key
        self.pixel_loss = nn.CrossEntropyLoss(reduction="none", ignore_index=self._ce_ignore)
        self._auxiliary_losses: dict[str, Tensor] = {}
        for stage in ("val", "test"):
            metric = MulticlassJaccardIndex(num_classes, average="macro", ignore_index=ignore_index)
            setattr(self, f"{stage}_miou", metric)
            setattr(self, f"{stage}_acc", MulticlassAccuracy(num_classes, average="micro", ignore_index=ignore_index))

    @property
    def _ce_ignore(self) -> int:
        return NO_IGNORE if self.ignore_index is None else self.ignore_index

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def add_auxiliary_loss(self, name: str, loss: Tensor) -> None:
        """Add ``loss`` to the next training step's loss, logged as ``train/<name>`` (PuzzleMix's ``clean_lam``)."""
        self._auxiliary_losses[name] = loss

    def loss(self, logits: Tensor, target: Tensor | PairTarget) -> Tensor:
        """Per-pixel cross-entropy of logits ``[B, C, H, W]`` against a mask ``[B, H, W]``, probabilities
        ``[B, C, H, W]`` or a :class:`~lightning_mixup.functional.PairTarget`, averaged."""
        logits = logits.float()
        if isinstance(target, PairTarget):
            labelled = torch.lerp(self._labelled(target.b), self._labelled(target.a), target.weight.float())
            return pair_loss(self.pixel_loss, logits, target, "sum") / labelled.sum().clamp_min(1.0)
        if target.is_floating_point():
            target = target.float()
            return F.cross_entropy(logits, target, reduction="sum") / target.sum().clamp_min(1.0)
        return F.cross_entropy(logits, target.long(), ignore_index=self._ce_ignore)

    def _labelled(self, mask: Tensor) -> Tensor:
        """1.0 where the class-index ``mask`` labels a pixel, 0.0 where it is ``ignore_index``."""
        return (mask != self._ce_ignore).float()

    def hard_labels(self, target: Tensor | PairTarget) -> Tensor:
        """A class-index mask ``[B, H, W]`` for any training target: the larger share of a pair, the most likely
        class of probabilities (``ignore_index`` where a row is all zero, if set)."""
        if isinstance(target, PairTarget):
            return torch.where(target.weight >= 0.5, target.a, target.b)
        if not target.is_floating_point():
            return target
        hard = target.argmax(dim=1)
        if self.ignore_index is not None:
            hard = torch.where(target.sum(dim=1) > 0, hard, self.ignore_index)
        return hard

    def _pixel_accuracy(self, logits: Tensor, hard: Tensor) -> Tensor:
        valid = hard != self._ce_ignore
        correct = (logits.argmax(dim=1) == hard) & valid
        return correct.sum() / valid.sum().clamp_min(1)

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        x, target = batch[self.input_key], batch[self.target_key]
        logits = self(x)
        loss = self.loss(logits, target)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        self.log("train/acc", self._pixel_accuracy(logits, self.hard_labels(target)), batch_size=x.shape[0])
        for name, extra in self._auxiliary_losses.items():
            self.log(f"train/{name}", extra, batch_size=x.shape[0])
            loss = loss + extra
        self._auxiliary_losses.clear()
        return loss

    def _evaluate(self, batch: Any, stage: str) -> None:
        x, target = batch[self.input_key], batch[self.target_key]
        logits = self(x).float()
        target = self.hard_labels(target)
        miou, acc = getattr(self, f"{stage}_miou"), getattr(self, f"{stage}_acc")
        miou(logits, target)
        acc(logits, target)
        loss = F.cross_entropy(logits, target, ignore_index=self._ce_ignore)
        self.log(f"{stage}/loss", loss, batch_size=x.shape[0], sync_dist=True)
        self.log(f"{stage}/miou", miou, prog_bar=True, batch_size=x.shape[0])
        self.log(f"{stage}/acc", acc, batch_size=x.shape[0])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        """The predicted mask ``[B, H, W]``."""
        return self(batch[self.input_key]).argmax(dim=1)

    def configure_optimizers(self) -> Any:
        return optimizers(self.parameters(), self.optimizer_factory, self.scheduler_factory)

"""Accuracy on mixed batches: the training accuracy of a mixup-family run, read against the mixed targets.

A mixed batch has no single true label per sample: sample ``i`` is ``λ·x_i + (1 − λ)·x_j`` and its target
``λ·onehot(y_i) + (1 − λ)·onehot(y_j)`` (or the pair ``(y_i, y_j, λ)``). :class:`MixedAccuracy` reads a
prediction against such targets in one of two ways:

- ``"weighted"``: ``λ·[pred = y_i] + (1 − λ)·[pred = y_j]``, the train accuracy of the mixup paper's code
  (Zhang et al., mixup: Beyond Empirical Risk Minimization, ICLR 2018; facebookresearch/mixup-cifar10's
  ``lam·correct(a) + (1 − lam)·correct(b)``) and torchbearer's ``MixupAcc`` (torchbearer.callbacks.mixup). For
  any probability row it is the mass the target puts on the predicted class(es), ``Σ_{c ∈ top-k} target[c]``:
  the expected accuracy if the label were drawn from the target.
- ``"dominant"``: plain accuracy against the label with the larger share (``argmax`` of the probabilities), what
  comparing ``argmax(logits)`` with ``argmax(target)`` gives; it ignores the minor label.

On clean targets (class indices, one-hot rows, or multi-hot rows) both are plain accuracy.

Why not torchmetrics' ``Accuracy`` on mixed targets: ``MulticlassAccuracy(preds [B, C], target [B, C])`` takes
same-shaped inputs as ``B·C`` separate label predictions and compares the logits to the probabilities entry by
entry, so it silently reads ~0 (it reads 1 only when ``preds`` equals ``target``); ``MultilabelAccuracy`` and
``BinaryAccuracy`` refuse targets that are not 0/1. Use them on validation batches, which are not mixed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from lightning_mixup.checks import check_choice, check_number, check_positive_int
from lightning_mixup.functional.targets import PairTarget, check_multilabel, check_num_classes, to_probs

MODES = ("weighted", "dominant")
METRIC_TASKS = ("multiclass", "multilabel")


class MixedAccuracy(Metric):
    """Accuracy of predictions against mixed (or clean) targets, averaged over samples (over samples × labels
    for ``task="multilabel"``); DDP-safe (a sum of credits and a count, summed across processes).

    Args:
        task: ``"multiclass"`` (one label per sample; ``preds`` are scores ``[B, C]``: logits or probabilities)
            or ``"multilabel"`` (``[B, C]`` independent labels; ``preds`` are logits or probabilities: as in
            torchmetrics, float predictions outside [0, 1] go through a sigmoid, then ``> threshold`` is a 1).
        num_classes: the number of classes (labels); checked against ``preds``' width. None: any width.
        mode: ``"weighted"``: each label counts with its share of the target, ``λ·[pred = a] + (1 − λ)·[pred = b]``
            (torchbearer's ``MixupAcc``), i.e. the target's probability mass on the predicted class (per label:
            ``t`` for a predicted 1, ``1 − t`` for a predicted 0); ``"dominant"``: plain accuracy against the
            label with the larger share (``argmax`` of a probability row, a multi-label entry ``≥ 0.5``; of a
            pair, ``a`` where ``weight ≥ 0.5`` else ``b``). At an exact tie (λ = 0.5) a pair counts its own label
            ``a`` and a probability row the lower class index.
        top_k: a sample counts as right if the label is among the ``top_k`` highest scores (multiclass only); with
            ``"weighted"`` the credit is the target's mass on those ``top_k`` classes.
        threshold: the probability above which a multi-label prediction is a 1.
        validate_args: check the targets' values too (labels in range, rows that sum to 1 and are non-negative,
            weights in [0, 1]), at the cost of a host-device sync per update; shapes are always checked.
        **kwargs: for :class:`torchmetrics.Metric` (``sync_on_compute``, ``dist_sync_on_step``, ...).

    ``update(preds, target)`` takes ``target`` as class indices ``[B]``, probabilities ``[B, C]`` (mixed or not),
    multi-label rows ``[B, C]`` in [0, 1], or a :class:`~lightning_mixup.functional.PairTarget` ``(a, b, weight)``
    with ``a`` and ``b`` in one of those forms and ``weight`` ``[B]``; a pair reads the same as its mixed rows.

    Why not torchmetrics' ``Accuracy``: given ``preds [B, C]`` and probability targets ``[B, C]``,
    ``MulticlassAccuracy`` reads both as ``B·C`` label predictions, compares logits to probabilities entry by
    entry and silently gives ~0; ``MultilabelAccuracy`` refuses values other than 0 and 1.

    Example:
        >>> logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 2.0]])
        >>> mixed = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.6, 0.4]])  # 0.7·class 0 + 0.3·class 1, ...
        >>> MixedAccuracy(num_classes=3)(logits, mixed)  # (0.7 + 0.4) / 2
        tensor(0.5500)
        >>> MixedAccuracy(num_classes=3, mode="dominant")(logits, mixed)  # class 0 right, class 1 wrong
        tensor(0.5000)
        >>> from lightning_mixup.functional import PairTarget
        >>> pair = PairTarget(torch.tensor([0, 1]), torch.tensor([1, 2]), torch.tensor([0.7, 0.6]))
        >>> MixedAccuracy(num_classes=3)(logits, pair)
        tensor(0.5500)
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    correct: Tensor
    total: Tensor

    def __init__(
        self,
        task: str = "multiclass",
        num_classes: int | None = None,
        mode: str = "weighted",
        top_k: int = 1,
        threshold: float = 0.5,
        validate_args: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.task = check_choice("task", task, METRIC_TASKS)
        self.num_classes = None if num_classes is None else check_num_classes(num_classes)
        self.mode = check_choice("mode", mode, MODES)
        self.top_k = check_positive_int("top_k", top_k)
        if task == "multilabel" and top_k != 1:
            raise ValueError(f"top_k applies to task='multiclass' only, got top_k={top_k!r} with task='multilabel'")
        if num_classes is not None and top_k > num_classes:
            raise ValueError(f"top_k must be <= num_classes={num_classes}, got {top_k!r}")
        self.threshold = check_number("threshold", threshold, 0.0, 1.0)
        self.validate_args = bool(validate_args)
        self.add_state("correct", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor | PairTarget) -> None:
        """Add a batch: ``preds`` ``[B, C]`` scores, ``target`` indices, rows or a pair (see the class)."""
        preds = self._check_preds(preds)
        credit = self._credit(preds, target)
        self.correct += credit.sum(dtype=torch.float32)
        self.total += credit.numel()

    def compute(self) -> Tensor:
        """The mean credit over every sample (and label) seen: NaN before any update."""
        return self.correct / self.total

    # ---- the credit of one batch ---------------------------------------------------------------

    def _credit(self, preds: Tensor, target: Tensor | PairTarget) -> Tensor:
        """Per-sample (multiclass ``[B]``) or per-entry (multilabel ``[B, C]``) credit in [0, 1]."""
        if isinstance(target, PairTarget):
            a, b, weight = self._check_pair(preds, target)
            if a.is_floating_point():  # rows: read as the mixed row (the same credit in both modes)
                return self._hits(preds, torch.lerp(b, a, weight.unsqueeze(1)))
            if self.mode == "dominant":  # class indices: the label with the larger share, a at a tie
                return self._hits(preds, torch.where(weight >= 0.5, a, b))
            return torch.lerp(self._hits(preds, b), self._hits(preds, a), weight)
        return self._hits(preds, self._check_target(preds, target, "target"))

    def _hits(self, preds: Tensor, target: Tensor) -> Tensor:
        """The credit against one checked target: class indices ``[B]`` or rows ``[B, C]`` of the task."""
        if self.task == "multilabel":
            predicted = self._binarise(preds)
            if self.mode == "dominant":
                target = (target >= 0.5).to(target.dtype)
            return torch.where(predicted, target, 1 - target)
        top = preds.topk(self.top_k, dim=1).indices
        if target.is_floating_point() and self.mode == "dominant":
            target = target.argmax(dim=1)
        if target.is_floating_point():
            return target.float().gather(1, top).sum(dim=1)
        return (top == target.unsqueeze(1)).any(dim=1).float()

    def _binarise(self, preds: Tensor) -> Tensor:
        """Multi-label predictions as bool: a sigmoid first where they are logits (values outside [0, 1])."""
        preds = preds.float()
        logits = ((preds < 0) | (preds > 1)).any()  # a tensor: no host-device sync
        return torch.where(logits, preds.sigmoid(), preds) > self.threshold

    # ---- checks --------------------------------------------------------------------------------

    def _check_preds(self, preds: object) -> Tensor:
        if not isinstance(preds, Tensor):
            raise TypeError(f"preds must be a tensor of scores [B, C], got {type(preds).__name__}")
        if preds.ndim != 2 or not preds.is_floating_point():
            raise ValueError(
                f"preds must be float scores (logits or probabilities) of shape [B, C], got {preds.dtype} shape "
                f"{list(preds.shape)}"
            )
        if self.num_classes is not None and preds.shape[1] != self.num_classes:
            raise ValueError(f"preds have {preds.shape[1]} columns but num_classes={self.num_classes}")
        if self.task == "multiclass" and self.top_k > preds.shape[1]:
            raise ValueError(f"top_k={self.top_k} is more than the {preds.shape[1]} classes of preds")
        return preds.detach()

    def _check_target(self, preds: Tensor, target: object, name: str) -> Tensor:
        """``target`` checked against ``preds`` ``[B, C]``: class indices ``[B]`` or rows ``[B, C]``."""
        if not isinstance(target, Tensor):
            raise TypeError(f"{name} must be a tensor or a PairTarget, got {type(target).__name__}")
        batch, width = preds.shape
        if self.task == "multilabel":
            if tuple(target.shape) != (batch, width):
                raise ValueError(
                    f"multi-label {name} must have the shape of preds {list(preds.shape)}, got {list(target.shape)}"
                )
            if self.validate_args:
                check_multilabel(target, width)
            return target.float()
        if target.is_floating_point():
            if tuple(target.shape) != (batch, width):
                raise ValueError(
                    f"probability {name} must have the shape of preds {list(preds.shape)}, got {list(target.shape)}; "
                    "class indices have shape [B]"
                )
        elif target.ndim != 1 or target.shape[0] != batch or target.dtype == torch.bool:
            raise ValueError(
                f"{name} must be class indices [B] (integer) or probabilities [B, C] (float) for preds of shape "
                f"{list(preds.shape)}, got {target.dtype} shape {list(target.shape)}"
            )
        if self.validate_args:
            to_probs(target, width)  # labels in range; rows non-negative and summing to 1
        return target

    def _check_pair(self, preds: Tensor, pair: PairTarget) -> tuple[Tensor, Tensor, Tensor]:
        a = self._check_target(preds, pair.a, "PairTarget.a")
        b = self._check_target(preds, pair.b, "PairTarget.b")
        if a.shape != b.shape or a.dtype.is_floating_point != b.dtype.is_floating_point:
            raise ValueError(
                f"PairTarget.a and .b must have the same form, got {a.dtype} shape {list(a.shape)} and {b.dtype} "
                f"shape {list(b.shape)}"
            )
        weight = pair.weight
        if not isinstance(weight, Tensor) or tuple(weight.shape) != (preds.shape[0],):
            shape = list(weight.shape) if isinstance(weight, Tensor) else type(weight).__name__
            raise ValueError(
                f"PairTarget.weight must be one weight per sample, shape [{preds.shape[0]}], got {shape}; per-pixel "
                "weights (segmentation) are not classification targets"
            )
        if self.validate_args and not bool(((weight >= 0) & (weight <= 1)).all()):
            raise ValueError(f"PairTarget.weight must lie in [0, 1], got {weight[:5].tolist()}")
        if a.is_floating_point():
            a, b = a.float(), b.float()
        return a, b, weight.float()

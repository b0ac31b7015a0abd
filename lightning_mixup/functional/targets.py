"""Targets of every task, read and mixed with the same partner, λ, mask and transport as the input.

By default a classification batch's class indices or probabilities come back as float probabilities
``[B, C]``, so ``F.cross_entropy(logits, probs)`` is the whole loss. :class:`Targets` describes any other
case: multi-label rows, regression values, segmentation masks (mixed pixel by pixel with the image's own
mask), and the pair form :class:`PairTarget` ``(a, b, weight)`` that any per-sample loss takes through
:func:`pair_loss`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.checks import check_choice, check_int
from lightning_mixup.functional.sampling import expand_lam, partners

SUM_TOLERANCE = 1e-3
TASKS = ("multiclass", "multilabel", "regression", "segmentation")
FORMS = ("mixed", "pair")

Move = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""A method's rearrangement of the two sources (PuzzleMix's transport), applied to dense targets ``[B, C', H, W]``."""


class PairTarget(NamedTuple):
    """Mixed targets in pair form: the batch's own targets ``a``, the partners' ``b`` (moved with their pixels
    where the method rearranges the image) and ``weight``, the share of ``a``: float ``[B]`` per sample, or
    ``[B, H, W]`` per pixel for segmentation. The mixed loss is ``weight·ℓ(out, a) + (1−weight)·ℓ(out, b)``
    (:func:`pair_loss`); ``a`` and ``b`` keep the form they came in (class indices stay class indices), but
    multi-label rows become float32.

    Example:
        >>> pair = PairTarget(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0.75, 0.25]))
        >>> pair.weight  # the share of a: sample 0 is 3/4 class 0, sample 1 is 3/4 class 0
        tensor([0.7500, 0.2500])
    """

    a: Tensor
    b: Tensor
    weight: Tensor


def check_num_classes(num_classes: object) -> int:
    """Return ``num_classes`` if it is an int ≥ 2, else raise with the bad value."""
    return check_int("num_classes", num_classes, 2)


@dataclass(frozen=True)
class Targets:
    """What a batch's targets are and which form the mixed targets take.

    Args:
        num_classes: the number of classes (needed for ``"multiclass"`` and ``"segmentation"``; checks the width
            of ``"multilabel"`` rows when given; unused for ``"regression"``).
        task: ``"multiclass"`` (class indices ``[B]`` or probabilities ``[B, C]``), ``"multilabel"`` (``[B, C]``
            in [0, 1], multi-hot or soft), ``"regression"`` (float ``[B]`` or ``[B, ...]``) or ``"segmentation"``
            (class indices ``[B, H, W]`` or per-pixel probabilities ``[B, C, H, W]``, the image's size).
        form: ``"mixed"``: one target tensor (``[B, C]`` probabilities, mixed multi-hot rows, mixed values; for
            segmentation hard labels where the mask is binary, else per-pixel probabilities ``[B, C, H, W]``);
            ``"pair"``: a :class:`PairTarget`.
        ignore_index: segmentation label of pixels to ignore (e.g. 255); such pixels stay ignored: the label where
            the pixel is kept whole, a zero probability row where it is blended.
        async_checks: check the target values (labels in range, rows summing to 1) on their device without waiting
            for it (``torch._assert_async``): no host synchronization, but a bad value fails with a ``RuntimeError``
            that does not name it, at the device's next synchronization (at once on the CPU), instead of the
            ``ValueError`` that does. The mixing callbacks check their first batch fully, then switch to this.
            Not part of equality: targets read under either are the same.

    Example:
        >>> spec = Targets(3, form="pair")
        >>> spec.read(torch.tensor([0, 2]), torch.zeros(2, 5)).mix(torch.tensor([1, 0]), torch.tensor(0.75))
        PairTarget(a=tensor([0, 2]), b=tensor([2, 0]), weight=tensor([0.7500, 0.7500]))
    """

    num_classes: int | None = None
    task: str = "multiclass"
    form: str = "mixed"
    ignore_index: int | None = None
    async_checks: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        check_choice("task", self.task, TASKS)
        check_choice("targets", self.form, FORMS)
        if self.num_classes is not None or self.task in ("multiclass", "segmentation"):
            if self.num_classes is None:
                raise ValueError(f"task={self.task!r} needs num_classes")
            check_num_classes(self.num_classes)
        if self.ignore_index is not None:
            check_int("ignore_index", self.ignore_index)
            if self.task != "segmentation":
                raise ValueError(f"ignore_index applies to task='segmentation' only, got task={self.task!r}")
            if 0 <= self.ignore_index < self.num_classes:
                raise ValueError(f"ignore_index={self.ignore_index} is a class in [0, {self.num_classes})")

    @property
    def dense(self) -> bool:
        """Whether the targets are per pixel (mixed with the image's mask)."""
        return self.task == "segmentation"

    def read(self, target: object, x: Tensor) -> TargetBatch:
        """Check ``target`` against this description and the input ``x`` (batch size, and image size for
        segmentation); raises with what was expected and what came. Targets already read under this description
        are returned as they are (a callback that reads them for its own use does not check them twice)."""
        if isinstance(target, TargetBatch) and target.spec == self:
            return target
        if not isinstance(target, Tensor):
            raise TypeError(f"targets must be a tensor, got {type(target).__name__}")
        if target.ndim == 0 or target.shape[0] != x.shape[0]:
            raise ValueError(f"input has batch size {x.shape[0]} but targets have shape {list(target.shape)}")
        if self.task == "multiclass":
            if self.form == "pair":  # checked as to_probs would, without building the rows it would throw away
                check_classes(target, self.num_classes, async_checks=self.async_checks)
                return TargetBatch(self, target)
            return TargetBatch(self, to_probs(target, self.num_classes, async_checks=self.async_checks))
        if self.task == "multilabel":
            return TargetBatch(self, check_multilabel(target, self.num_classes, async_checks=self.async_checks))
        if self.task == "regression":
            if not target.is_floating_point():
                raise TypeError(f"regression targets must be floating point, got dtype {target.dtype}")
            return TargetBatch(self, target)
        return TargetBatch(self, _check_dense(target, x, self.num_classes, self.ignore_index, self.async_checks))


@dataclass(frozen=True)
class TargetBatch:
    """One batch's checked targets under ``spec``; :meth:`mix` gives the mixed targets in ``spec.form``.

    ``value`` is the probabilities ``[B, C]`` (multiclass, mixed form), the targets as they came (pair form),
    float rows (multilabel) or values (regression), or the mask with a channel dim ``[B, 1, H, W]`` (class
    indices) or ``[B, C, H, W]`` (probabilities) for segmentation.

    Example:
        >>> batch = Targets(3).read(torch.tensor([0, 2]), torch.randn(2, 5))
        >>> batch.value  # class indices read as probability rows
        tensor([[1., 0., 0.],
                [0., 0., 1.]])
    """

    spec: Targets
    value: Tensor

    def mix(
        self, index: Tensor, lam: Tensor | float, mask: Tensor | None = None, move: Move | None = None
    ) -> Tensor | PairTarget:
        """The targets of ``x·w + x[index]·(1 − w)``: ``w`` is ``lam`` (``[]`` or ``[B]``, the share of each
        sample's own) for per-sample targets; per pixel, the image's ``mask`` (1 = own; bool where binary,
        ``[1 or B, 1, H, W]``) or ``lam`` without one, after ``move`` rearranges both sources' pixels."""
        value = self.value
        index = index.to(value.device)
        if not self.spec.dense:
            weight = torch.as_tensor(lam, dtype=torch.float32, device=value.device)
            if self.spec.form == "pair":  # a weight of its own memory: the module may change it in place
                return PairTarget(value, partners(value, index), weight.expand(value.shape[0]).clone())
            return torch.lerp(partners(value, index), value, expand_lam(weight, value))
        own, other = value, partners(value, index)
        if move is not None:
            own, other = move(own, other)
        batch, _, height, width = own.shape
        if mask is None:
            mask = torch.as_tensor(lam, dtype=torch.float32, device=value.device).reshape(-1, 1, 1, 1)
            mask = mask.expand(batch, 1, height, width)
        mask = mask.to(value.device)
        if self.spec.form == "pair":
            weight = mask.to(torch.float32).expand(batch, 1, height, width)[:, 0].contiguous()
            if own.is_floating_point():
                return PairTarget(own, other, weight)
            return PairTarget(own[:, 0], other[:, 0], weight)
        if mask.dtype == torch.bool:  # binary: every pixel has one source, hard labels stay hard
            mixed = torch.where(mask, own, other)
            return mixed if own.is_floating_point() else mixed[:, 0]
        if own.is_floating_point():
            return torch.lerp(other, own, mask.to(own.dtype))
        return self._blend_labels(own, other, mask.to(torch.float32).expand(batch, 1, height, width))

    def own(self) -> Tensor | PairTarget:
        """The batch's own targets in ``spec.form``, unmixed (a method that trains on the first label alone)."""
        index = torch.arange(self.value.shape[0], device=self.value.device)
        if self.spec.dense:
            return self.mix(index, 1.0, torch.ones((), dtype=torch.bool, device=self.value.device).expand(1, 1, 1, 1))
        return self.mix(index, 1.0)

    @property
    def output_shape(self) -> tuple[int, ...]:
        """The shape of the model output these targets train: ``[B, C]`` (classification), ``[B, C, H, W]``
        (segmentation) or the targets' own (regression)."""
        if self.spec.task == "multiclass":
            return (self.value.shape[0], self.spec.num_classes)
        if self.spec.dense:
            return (self.value.shape[0], self.spec.num_classes, *self.value.shape[2:])
        return tuple(self.value.shape)

    def loss(self, output: Tensor) -> Tensor:
        """The task's plain loss of ``output`` against these unmixed targets, averaged: cross-entropy (per pixel for
        segmentation, ignored pixels skipped), BCE with logits (multi-label), mean squared error (regression).
        What the saliency-guided mixers differentiate with respect to the input."""
        output, value = output.float(), self.value
        if self.spec.task == "multilabel":
            return F.binary_cross_entropy_with_logits(output, value)
        if self.spec.task == "regression":
            return F.mse_loss(output, value.float())
        if self.spec.dense and not value.is_floating_point():
            ignore = -100 if self.spec.ignore_index is None else self.spec.ignore_index
            return F.cross_entropy(output, value[:, 0].long(), ignore_index=ignore)
        return F.cross_entropy(output, value.float() if value.is_floating_point() else value)

    def _blend_labels(self, own: Tensor, other: Tensor, weight: Tensor) -> Tensor:
        """Per-pixel probabilities ``[B, C, H, W]``: ``weight`` on each pixel's own label, ``1 − weight`` on the
        other's, nothing on an ignored label (written straight into one float tensor: no one-hot per source)."""
        batch, _, height, width = own.shape
        probs = torch.zeros(batch, self.spec.num_classes, height, width, device=own.device)
        for labels, share in ((own, weight), (other, 1.0 - weight)):
            valid = (labels >= 0) & (labels < self.spec.num_classes)  # the checks let only ignore_index out
            probs.scatter_add_(1, torch.where(valid, labels, 0), share * valid)
        return probs


def as_targets(targets: int | Targets) -> Targets:
    """A :class:`Targets` from a number of classes (multiclass probabilities) or a :class:`Targets` itself."""
    if isinstance(targets, Targets):
        return targets
    return Targets(check_num_classes(targets))


def fill_(pending: Tensor | PairTarget, value: Tensor | PairTarget) -> None:
    """Write ``value`` into targets handed out before they were known (a hidden-state mixer's, NaN until its
    forward runs): the whole tensor, or the weight of a pair."""
    if isinstance(pending, PairTarget):
        pending.weight.copy_(value.weight)
    else:
        pending.copy_(value)


def pair_loss(
    loss_fn: Callable[[Tensor, Tensor], Tensor], output: Tensor, target: Tensor | PairTarget, reduction: str = "mean"
) -> Tensor:
    """``weight·ℓ(output, a) + (1 − weight)·ℓ(output, b)`` for a :class:`PairTarget`, ``ℓ(output, target)`` for a
    plain target, then ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``).

    ``loss_fn`` returns per-sample (or per-pixel) losses, i.e. ``reduction="none"``: e.g.
    ``nn.CrossEntropyLoss(reduction="none", label_smoothing=0.1)``, a focal loss, ``nn.MSELoss(reduction="none")``.
    Extra trailing dims of the loss (``[B, D]`` for regression) are kept; the weight ``[B]`` or ``[B, H, W]``
    broadcasts from the left. For cross-entropy this equals the soft-target loss of the mixed probabilities.

    Example:
        >>> ce = torch.nn.CrossEntropyLoss(reduction="none")
        >>> logits, weight = torch.randn(2, 3), torch.tensor([0.7, 0.4])
        >>> pair = PairTarget(torch.tensor([0, 1]), torch.tensor([2, 0]), weight)
        >>> soft = torch.lerp(torch.eye(3)[pair.b], torch.eye(3)[pair.a], weight[:, None])
        >>> bool(torch.allclose(pair_loss(ce, logits, pair), torch.nn.functional.cross_entropy(logits, soft)))
        True
    """
    check_choice("reduction", reduction, ("mean", "sum", "none"))
    if isinstance(target, PairTarget):
        first, second = loss_fn(output, target.a), loss_fn(output, target.b)
        weight = target.weight
        if first.ndim < weight.ndim or first.shape[: weight.ndim] != weight.shape:
            raise ValueError(
                f"loss_fn must return per-sample losses (reduction='none') whose leading dims are the weight's "
                f"{list(weight.shape)}, got shape {list(first.shape)}"
            )
        weight = weight.to(first.dtype).view(*weight.shape, *([1] * (first.ndim - weight.ndim)))
        loss = torch.lerp(second, first, weight)
    else:
        loss = loss_fn(output, target)
    if reduction == "mean":
        return loss.mean()
    return loss.sum() if reduction == "sum" else loss


def to_probs(
    target: Tensor, num_classes: int, dtype: torch.dtype = torch.float32, *, async_checks: bool = False
) -> Tensor:
    """Class indices ``[B]`` or probabilities ``[B, C]`` → validated probabilities ``[B, C]`` of ``dtype``.

    Raises on a label outside ``[0, num_classes)``, a width other than ``num_classes``, negative or NaN
    probabilities or rows that do not sum to 1 (tolerance 1e-3, or the machine epsilon of ``target``'s dtype
    if larger: 2⁻⁷ for bfloat16); with ``async_checks``, on the device without a host sync (see :class:`Targets`).

    Example:
        >>> to_probs(torch.tensor([0, 2]), 3)
        tensor([[1., 0., 0.],
                [0., 0., 1.]])
    """
    check_num_classes(num_classes)
    if not isinstance(target, Tensor):
        raise TypeError(f"targets must be a tensor, got {type(target).__name__}")
    if not target.is_floating_point():
        if target.ndim != 1 or target.dtype == torch.bool:
            raise ValueError(
                f"integer targets must be class indices of shape [B], "
                f"got dtype {target.dtype} shape {list(target.shape)}; for segmentation masks pass "
                "task='segmentation', for multi-hot rows task='multilabel'"
            )
        _check_labels(target, num_classes, async_checks=async_checks)
        return one_hot(target, num_classes, dtype)
    if target.ndim != 2:
        raise ValueError(
            f"float targets must be probabilities of shape [B, C], got shape {list(target.shape)}; "
            "integer class indices of shape [B] are accepted too (other tasks: task='multilabel', "
            "'regression' or 'segmentation')"
        )
    if target.shape[1] != num_classes:
        raise ValueError(f"probability targets have {target.shape[1]} columns but num_classes={num_classes}")
    _check_sums(target, 1, "row", "task='multilabel' takes rows that do not sum to 1", async_checks=async_checks)
    return target.to(dtype)


def one_hot(labels: Tensor, num_classes: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Rows ``[B, C]`` of ``dtype`` with a 1 at each label: ``F.one_hot`` without its range check, which reads the
    labels on the host (the labels are checked apart); a label outside ``[0, num_classes)`` gives a zero row.

    Example:
        >>> one_hot(torch.tensor([0, 2]), 3)
        tensor([[1., 0., 0.],
                [0., 0., 1.]])
    """
    return (labels.unsqueeze(-1) == torch.arange(num_classes, device=labels.device)).to(dtype)


def check_classes(target: Tensor, num_classes: int, *, async_checks: bool = False) -> None:
    """Raise unless ``target`` is class indices ``[B]`` in ``[0, num_classes)`` or probability rows ``[B, C]``: what
    :func:`to_probs` accepts, checked without building the rows."""
    if target.is_floating_point():
        to_probs(target, num_classes, async_checks=async_checks)  # probabilities: the rows are the target itself
        return
    check_num_classes(num_classes)
    if target.ndim != 1 or target.dtype == torch.bool:
        to_probs(target, num_classes)  # raises with its message
    _check_labels(target, num_classes, async_checks=async_checks)


def _check_labels(
    labels: Tensor, num_classes: int, ignore_index: int | None = None, hint: str = "", async_checks: bool = False
) -> None:
    """Raise unless every label is in ``[0, num_classes)`` or is ``ignore_index``."""
    bad = (labels < 0) | (labels >= num_classes)
    if ignore_index is not None:
        bad &= labels != ignore_index
    if async_checks or torch.compiler.is_compiling():
        _assert_none(bad, f"label out of range [0, {num_classes}); check num_classes on the mixer or the module{hint}")
    elif bool(bad.any()):
        raise ValueError(
            f"label out of range [0, {num_classes}): got {labels[bad][:5].tolist()}; "
            f"check num_classes on the mixer or the module{hint}"
        )


def _check_sums(
    probs: Tensor, dim: int, what: str, hint: str, allow_zero: bool = False, async_checks: bool = False
) -> None:
    """Raise unless ``probs`` is non-negative and sums to 1 (or 0 when ``allow_zero``) along ``dim``."""
    sums = probs.sum(dim=dim, dtype=torch.float32)
    # bfloat16 rounds each entry by up to eps/2 relative, so a valid row may sum to 1 ± eps/2
    tolerance = max(SUM_TOLERANCE, torch.finfo(probs.dtype).eps)
    # written as "not (ok)" so that NaN entries count as bad rather than slipping through
    ok = (sums - 1).abs() <= tolerance
    if allow_zero:
        ok |= sums.abs() <= tolerance
    bad = ~ok | ~(probs >= 0).all(dim=dim)
    if async_checks or torch.compiler.is_compiling():
        _assert_none(bad, f"probability targets must be non-negative and sum to 1 per {what}; {hint}")
    elif bool(bad.any()):
        where = tuple(int(i) for i in bad.nonzero()[0])
        lowest = probs.movedim(dim, -1)[where].min()
        at = where if len(where) > 1 else where[0]
        raise ValueError(
            f"probability targets must be non-negative and sum to 1 per {what}; {what} {at} "
            f"sums to {float(sums[where]):.6g} (min {float(lowest):.6g}); {hint}"
        )


def _assert_none(bad: Tensor, message: str) -> None:
    """Fail with ``message`` if any of ``bad`` is set, checked on its device without waiting for it: at once on the
    CPU (``RuntimeError``), as a device-side assert at the next synchronization on an accelerator. What the checks do
    with ``async_checks`` and under ``torch.compile`` (which cannot branch on a tensor's value without a graph
    break)."""
    torch._assert_async(bad.any().logical_not(), message)


def check_multilabel(target: Tensor, num_classes: int | None, *, async_checks: bool = False) -> Tensor:
    """Multi-label rows ``[B, C]`` (bool, integer 0/1 or float in [0, 1]) as float32."""
    if target.ndim != 2:
        raise ValueError(f"multi-label targets must have shape [B, C], got shape {list(target.shape)}")
    if num_classes is not None and target.shape[1] != num_classes:
        raise ValueError(f"multi-label targets have {target.shape[1]} columns but num_classes={num_classes}")
    rows = target.float()
    bad = ~((rows >= 0) & (rows <= 1))
    if async_checks or torch.compiler.is_compiling():
        _assert_none(bad, "multi-label targets must lie in [0, 1]")
    elif bool(bad.any()):
        raise ValueError(f"multi-label targets must lie in [0, 1], got {rows[bad][:5].tolist()}")
    return rows


def _check_dense(
    target: Tensor, x: Tensor, num_classes: int, ignore_index: int | None, async_checks: bool = False
) -> Tensor:
    """A segmentation mask of ``x``'s size as ``[B, 1, H, W]`` class indices or ``[B, C, H, W]`` probabilities."""
    if x.ndim != 4:
        raise ValueError(f"segmentation needs images [B, C, H, W], got input shape {list(x.shape)}")
    size = tuple(x.shape[2:])
    if target.is_floating_point():
        if target.ndim != 4 or target.shape[1] != num_classes:
            raise ValueError(
                f"float segmentation targets must be probabilities [B, {num_classes}, H, W], got shape "
                f"{list(target.shape)} {target.dtype}; class-index masks [B, H, W] must be an integer tensor"
            )
        if tuple(target.shape[2:]) != size:
            raise ValueError(f"the mask is {list(target.shape[2:])} but the image is {list(size)}: they must match")
        _check_sums(target, 1, "pixel", "ignored pixels may have all-zero rows", allow_zero=True,
                    async_checks=async_checks)  # fmt: skip
        return target
    if target.ndim != 3 or target.dtype == torch.bool:
        raise ValueError(
            f"segmentation targets must be class indices [B, H, W] (integer) or probabilities [B, C, H, W] "
            f"(float), got {target.dtype} shape {list(target.shape)}"
        )
    if tuple(target.shape[1:]) != size:
        raise ValueError(f"the mask is {list(target.shape[1:])} but the image is {list(size)}: they must match")
    hint = "" if ignore_index is not None else "; set ignore_index=... if a value marks pixels to skip"
    _check_labels(target, num_classes, ignore_index, hint, async_checks)
    return target.unsqueeze(1)


def mix_targets(probs: Tensor, index: Tensor, lam: Tensor | float) -> Tensor:
    """``λ·y + (1 − λ)·y[index]`` for probabilities ``[B, C]``; ``lam`` is a scalar or ``[B]``.

    Example:
        >>> y = torch.eye(2)
        >>> mix_targets(y, torch.tensor([1, 0]), 0.75)
        tensor([[0.7500, 0.2500],
                [0.2500, 0.7500]])
    """
    return torch.lerp(partners(probs, index), probs, expand_lam(lam, probs))

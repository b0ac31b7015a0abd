"""Remix: mixup's input, with the label weight pushed to the minority class of an imbalanced pair.

Chou, Chang, Pan, Wei, Juan. "Remix: Rebalanced Mixup", ECCV Workshops 2020, arXiv 2007.03943.

The input is mixup's, ``x̃ = λ·x_i + (1 − λ)·x_j`` with λ ~ Beta(α, α); the label is ``ỹ = λ_y·y_i + (1 − λ_y)·y_j``
with (the paper's equation for λ_y, ``n_c`` the number of training samples of class ``c``)::

    λ_y = 0   if n_i / n_j ≥ κ  and  λ < τ        (i is the majority of the pair and holds less than τ of the image)
    λ_y = 1   if n_i / n_j ≤ 1/κ  and  1 − λ < τ  (i is the minority and its partner holds less than τ)
    λ_y = λ   otherwise

Paper: κ = 3, τ = 0.5. No official code was released (Papers with Code lists none); the paper's equations are
followed exactly, as in the reimplementation of ntucllab/imbalanced-DL (``remix_data``: one λ per batch, a
random permutation, α = 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_mixup.checks import check_number
from lightning_mixup.functional.batch import MixedBatch, pair_up
from lightning_mixup.functional.mixup import mixup
from lightning_mixup.functional.sampling import sample_lam
from lightning_mixup.functional.targets import TargetBatch, Targets

KAPPA = 3.0
"""The paper's κ: a pair is rebalanced when one class has at least κ times the other's samples."""
TAU = 0.5
"""The paper's τ: the label goes all to the minority when the majority holds less than τ of the input."""


def check_kappa(kappa: object) -> float:
    """Return κ as a float if it is a finite number > 1, else raise with the bad value: with κ ≤ 1 a pair of equal
    counts (n_i / n_j = 1) would be both ``≥ κ`` and ``≤ 1/κ``, i.e. each class the other's majority."""
    return check_number(
        "kappa",
        kappa,
        1.0,
        open_low=True,
        what="a finite number > 1 (κ ≤ 1 would make a pair of equal counts both the majority and the minority "
        "of the other)",
    )


def check_tau(tau: object) -> float:
    """Return τ as a float if it is a number in the open interval (0, 1), else raise with the bad value."""
    what = "a number in (0, 1) (the share of the input below which the majority's label is dropped)"
    value = check_number("tau", tau, 0.0, 1.0, open_low=True, what=what)
    if value >= 1.0:
        raise ValueError(f"tau must be {what}, got {tau!r}")
    return value


def check_class_counts(class_counts: object, num_classes: int | None = None) -> tuple[float, ...]:
    """The per-class training counts as a tuple of floats: a sequence or 1-D tensor of finite numbers > 0, one per
    class (``num_classes`` of them when given). ``TypeError`` for anything but numbers, ``ValueError`` for a wrong
    length or a count ≤ 0; the message quotes the value.

    Example:
        >>> check_class_counts([500, 50, 5], 3)
        (500.0, 50.0, 5.0)
    """
    values = class_counts.tolist() if isinstance(class_counts, Tensor) else class_counts
    if isinstance(class_counts, Tensor) and class_counts.ndim != 1:
        raise ValueError(f"class_counts must be 1-D, one count per class, got shape {list(class_counts.shape)}")
    what = "a sequence of numbers > 0, one per class"
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
        raise TypeError(f"class_counts must be {what}, got {class_counts!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        raise TypeError(f"class_counts must be {what}, got {class_counts!r}")
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"class_counts must be {what} (finite, every class seen at least once), got {class_counts!r}")
    if len(values) < 2:
        raise ValueError(f"class_counts must be {what}, at least 2, got {class_counts!r}")
    if num_classes is not None and len(values) != num_classes:
        raise ValueError(f"class_counts must have one count per class ({num_classes}), got {len(values)}: {values!r}")
    return tuple(float(v) for v in values)


def class_labels(targets: TargetBatch) -> Tensor:
    """The class of each sample, ``[B]`` int64: the class indices, or the most probable class of probability
    rows (label-smoothed targets keep their class)."""
    value = targets.value
    return value.argmax(dim=1) if value.is_floating_point() else value.long()


def remix_label_weight(
    lam: Tensor | float,
    labels: Tensor,
    index: Tensor,
    class_counts: Sequence[float] | Tensor,
    kappa: float = KAPPA,
    tau: float = TAU,
) -> Tensor:
    """λ_y of each sample: the weight of its own label when ``λ`` (``[]`` or ``[B]``) of the input is its own and
    its partner is ``index``: 0 when its class has ≥ κ times its partner's count and ``λ < τ``, 1 when the
    partner's class has ≥ κ times its count (``n_i / n_j ≤ 1/κ``) and ``1 − λ < τ``, else λ. Float32 ``[B]`` on
    ``labels``' device; the comparisons are made in float64.

    Works with any mixer's λ (the paper pairs it with mixup's input).

    Example:
        >>> remix_label_weight(0.3, torch.tensor([0, 1]), torch.tensor([1, 0]), [90, 10])
        tensor([0.0000, 0.3000])
    """
    counts = check_class_counts(class_counts)
    kappa, tau = check_kappa(kappa), check_tau(tau)
    device = labels.device
    wide = torch.float32 if device.type == "mps" else torch.float64
    n = torch.tensor(counts, dtype=wide, device=device)
    index = index.to(device)
    ratio = n[labels] / n[labels[index]]  # n_i / n_j
    lam_wide = torch.as_tensor(lam, device=device).to(wide).expand(labels.shape[0])
    weight = torch.where(ratio >= kappa, torch.where(lam_wide < tau, 0.0, lam_wide), lam_wide)
    weight = torch.where((ratio <= 1.0 / kappa) & (1.0 - lam_wide < tau), 1.0, weight)
    return weight.to(torch.float32)


def remix_batch(
    x: Tensor,
    target: Tensor | TargetBatch,
    num_classes: int | Targets,
    alpha: float = 1.0,
    *,
    class_counts: Sequence[float] | Tensor,
    kappa: float = KAPPA,
    tau: float = TAU,
    per_sample: bool = False,
    partner: str = "perm",
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Remix a batch: a partner index and λ ~ Beta(α, α) (one per batch or one per sample) as for
    :func:`~lightning_mixup.functional.mixup_batch` (same draws from the same generator), the input mixed as
    mixup's, and the targets with the label weight :func:`remix_label_weight` instead of λ.

    ``class_counts``: the number of training samples of each class (``num_classes`` of them). ``num_classes``:
    the number of classes, or a multiclass :class:`~lightning_mixup.functional.Targets` (mixed or pair form).
    Inputs of any shape ``[B, ...]``. The returned ``lam`` is the input's (the share of the sample that is its
    own, the package's λ); the label weight λ_y is the pair form's ``weight``. No mask (mixup has none).
    With balanced counts (every ratio < κ) the result is :func:`~lightning_mixup.functional.mixup_batch`'s.

    Example:
        >>> x, y = torch.randn(8, 3, 4, 4), torch.arange(8) % 2
        >>> out = remix_batch(x, y, 2, class_counts=[300, 30], generator=torch.Generator().manual_seed(0))
        >>> out.input.shape, out.target.shape, out.lam.shape
        (torch.Size([8, 3, 4, 4]), torch.Size([8, 2]), torch.Size([]))
    """
    if isinstance(num_classes, Targets) and num_classes.task != "multiclass":
        raise ValueError(
            f"Remix rebalances class labels: it mixes task='multiclass' targets only, got {num_classes.task!r}"
        )
    targets, index = pair_up(x, target, num_classes, alpha, partner, generator, method="Remix")
    counts = check_class_counts(class_counts, targets.spec.num_classes)
    kappa, tau = check_kappa(kappa), check_tau(tau)
    lam = sample_lam(alpha, x.shape[0] if per_sample else None, generator=generator, device=x.device).to(x.device)
    weight = remix_label_weight(lam, class_labels(targets), index, counts, kappa, tau)
    return MixedBatch(mixup(x, index, lam, out), targets.mix(index, weight), lam, index=index)

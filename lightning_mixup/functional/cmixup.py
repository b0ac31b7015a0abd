"""C-Mixup: mixup for regression, each sample mixed with a partner of a close label.

Yao, Wang, Zhang, Zou, Finn. "C-Mixup: Improving Generalization in Regression", NeurIPS 2022, arXiv 2210.05775.
Official code: huaxiuyao/C-Mixup (``src/algorithm.py``: ``get_mixup_sample_rate``, ``train``).

Sample ``i`` draws its partner ``j`` with probability ``P(j | i) ∝ k(‖y_i − y_j‖)``, the kernel of the official
code's one-point kernel density (scikit-learn's ``KernelDensity``): Gaussian ``exp(−‖y_i − y_j‖² / (2σ²))`` (the
default) or top-hat ``1[‖y_i − y_j‖ < σ]``, with σ the bandwidth, in the units of the targets. The sample itself is
a candidate (at distance 0 it has the largest weight), as in the official code. Inputs and targets are then mixed
as in mixup with λ ~ Beta(α, α). ‖·‖ is the Euclidean distance between the targets flattened from dim 1 (a target
``[B]`` gives ``|y_i − y_j|``). σ = ∞ draws partners uniformly (with replacement): the official "random" mixup.

The official code draws partners from the whole training set (an ``N × N`` matrix of rates computed once before
training; its in-batch mode, ``batch_type=1``, draws among the batch and a second random batch); here partners are
drawn within the batch, one vectorised draw per batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_mixup.checks import check_choice
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.mixup import mixup
from lightning_mixup.functional.sampling import check_alpha, sample_lam
from lightning_mixup.functional.targets import TargetBatch, Targets
from lightning_mixup.functional.validation import check_input

KERNELS = ("gaussian", "tophat")
"""The official ``kde_type`` choices: scikit-learn's Gaussian and top-hat kernels."""


def check_bandwidth(bandwidth: object) -> float:
    """Return the kernel bandwidth σ as a float if it is a number > 0 (``math.inf``: uniform partners), else raise
    with the bad value."""
    what = "a number > 0 (math.inf: uniform partners)"
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)):
        raise TypeError(f"bandwidth must be {what}, got {bandwidth!r}")
    if math.isnan(bandwidth) or bandwidth <= 0:
        raise ValueError(f"bandwidth must be {what}, got {bandwidth!r}")
    return float(bandwidth)


def label_distances(target: Tensor) -> Tensor:
    """Euclidean distances ``[B, B]`` between the targets ``[B]`` or ``[B, ...]`` (flattened from dim 1), computed
    exactly (no matrix-product shortcut: the diagonal is exactly 0), in float64 (float32 on MPS).

    Example:
        >>> label_distances(torch.tensor([0.0, 1.0, 3.0]))
        tensor([[0., 1., 3.],
                [1., 0., 2.],
                [3., 2., 0.]], dtype=torch.float64)
    """
    dtype = torch.float32 if target.device.type == "mps" else torch.float64
    y = target.detach().reshape(target.shape[0], -1).to(dtype)
    return torch.cdist(y, y, compute_mode="donot_use_mm_for_euclid_dist")


def partner_probabilities(target: Tensor, bandwidth: float = 1.0, kernel: str = "gaussian") -> Tensor:
    """The C-Mixup sampling matrix ``[B, B]``: row ``i`` is ``P(j | i) ∝ k(‖y_i − y_j‖)``, Gaussian
    ``exp(−d² / (2σ²))`` or top-hat ``1[d < σ]`` (the official ``kde_type``), normalised over the batch (the
    sample itself included). Rows sum to 1; σ = ``math.inf`` gives uniform rows.

    Example:
        >>> probs = partner_probabilities(torch.tensor([0.0, 0.1, 5.0]), bandwidth=1.0)
        >>> probs.sum(dim=1)
        tensor([1., 1., 1.], dtype=torch.float64)
        >>> bool(probs[0, 1] > 0.49 and probs[0, 2] < 1e-5)
        True
    """
    sigma = check_bandwidth(bandwidth)
    check_choice("kernel", kernel, KERNELS)
    distance = label_distances(target)
    if kernel == "gaussian":  # a softmax of the log-kernel: the diagonal (0) is every row's largest, no underflow
        return torch.softmax(-0.5 * (distance / sigma).square(), dim=1)
    near = (distance < sigma).to(distance.dtype)  # the diagonal always counts: no empty row
    return near / near.sum(dim=1, keepdim=True)


def sample_partners(probs: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """One partner per row of the sampling matrix ``probs [B, B]`` (with replacement across rows), drawn on the
    generator's device in one op.

    Example:
        >>> sample_partners(torch.eye(3), torch.Generator().manual_seed(0))
        tensor([0, 1, 2])
    """
    device = generator.device if generator is not None else probs.device
    return torch.multinomial(probs.to(device), 1, generator=generator)[:, 0]


def _regression_targets(targets: object) -> Targets:
    """The description of the targets: a regression :class:`Targets` (None: mixed regression values)."""
    if targets is None:
        return Targets(task="regression")
    if not isinstance(targets, Targets) or targets.task != "regression":
        what = f"task={targets.task!r}" if isinstance(targets, Targets) else repr(targets)
        raise ValueError(
            f"C-Mixup mixes regression targets: pass targets=None or Targets(task='regression'), got {what}"
        )
    return targets


def cmixup_batch(
    x: Tensor,
    target: Tensor | TargetBatch,
    targets: Targets | None = None,
    alpha: float = 2.0,
    bandwidth: float = 1.0,
    *,
    kernel: str = "gaussian",
    per_sample: bool = False,
    generator: torch.Generator | None = None,
    out: Tensor | None = None,
) -> MixedBatch:
    """Draw each sample's partner by the closeness of their labels (:func:`partner_probabilities`), λ ~ Beta(α, α)
    (one per batch, as the official code, or one per sample), and mix inputs and targets as mixup does.

    Works on inputs of any shape ``[B, ...]`` (tabular ``[B, D]``, images). ``target``: float regression values
    ``[B]`` or ``[B, ...]``; an integer tensor (class indices) is refused. ``targets``: None (the mixed values) or
    ``Targets(task="regression", form=...)`` (``form="pair"`` gives a
    :class:`~lightning_mixup.functional.PairTarget`). ``bandwidth``: σ of the kernel, in the units of the targets.
    ``out``: see :func:`~lightning_mixup.functional.mixup`. The returned ``index`` holds each sample's partner; a
    sample drawn as its own partner comes back unchanged whatever its λ.

    Example:
        >>> x, y = torch.randn(8, 5), torch.linspace(0.0, 7.0, 8)
        >>> out = cmixup_batch(x, y, alpha=2.0, bandwidth=1.0, generator=torch.Generator().manual_seed(0))
        >>> out.input.shape, out.target.shape, out.lam.shape
        (torch.Size([8, 5]), torch.Size([8]), torch.Size([]))
        >>> bool(torch.allclose(out.target, out.lam * y + (1 - out.lam) * y[out.index]))
        True
    """
    check_alpha(alpha)
    check_input(x, method="C-Mixup")
    spec = _regression_targets(targets)
    raw = target.value if isinstance(target, TargetBatch) else target
    if isinstance(raw, Tensor) and not raw.is_floating_point():
        raise TypeError(
            f"C-Mixup mixes regression targets (float [B] or [B, ...]); got dtype {raw.dtype} shape "
            f"{list(raw.shape)}: class labels need a classification mixer (MixUp, CutMix, ...)"
        )
    batch = spec.read(target, x)
    probs = partner_probabilities(batch.value, bandwidth, kernel)
    index = sample_partners(probs, generator).to(x.device)
    lam = sample_lam(alpha, x.shape[0] if per_sample else None, generator=generator, device=x.device).to(x.device)
    return MixedBatch(mixup(x, index, lam, out), batch.mix(index, lam), lam, index=index)

"""Input-gradient saliency, shared by the saliency-guided mixers (PuzzleMix; later SaliencyMix- and Co-Mixup-like
methods): the gradient of the loss with respect to the input only, and its per-pixel magnitude.

Simonyan, Vedaldi, Zisserman. "Deep Inside Convolutional Networks: Visualising Image Classification Models and
Saliency Maps", arXiv 1312.6034; PuzzleMix (arXiv 2009.06962) uses it as its saliency.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from lightning_mixup.functional.targets import TargetBatch, Targets


def loss_input_grad(
    model: Callable[[Tensor], Tensor],
    x: Tensor,
    target: Tensor | TargetBatch,
    *,
    retain_graph: bool = False,
    source: str = "model(x)",
) -> tuple[Tensor, Tensor]:
    """Gradient of the loss of ``model(x)`` with respect to ``x`` only: ``(grad, loss)``. The loss is
    ``cross_entropy(model(x), probs)`` for probabilities ``[B, C]``, or the task's own for checked targets
    (:meth:`~lightning_mixup.functional.targets.TargetBatch.loss`: per-pixel cross-entropy for segmentation,
    BCE for multi-label, MSE for regression).

    ``torch.autograd.grad`` on the input alone, so no parameter's ``.grad`` is touched. ``retain_graph`` keeps
    the graph, so that ``loss`` can still be back-propagated to the parameters (PuzzleMix's clean loss).
    ``source`` names the model in the error raised when its output does not have the shape the targets need.

    Example:
        >>> model = torch.nn.Linear(3, 2)
        >>> grad, loss = loss_input_grad(model, torch.randn(4, 3), torch.eye(2)[[0, 1, 0, 1]])
        >>> grad.shape, grad.requires_grad, model.weight.grad is None
        (torch.Size([4, 3]), False, True)
    """
    if isinstance(target, Tensor):
        target = Targets(target.shape[-1]).read(target, x)
    with torch.enable_grad():
        x_var = x.detach().requires_grad_(True)
        output = model(x_var)
        if tuple(output.shape) != target.output_shape:
            raise ValueError(
                f"saliency is computed from {source}, which must return an output of shape "
                f"{list(target.output_shape)} for these {target.spec.task} targets; got shape {list(output.shape)}"
            )
        loss = target.loss(output)
        (grad,) = torch.autograd.grad(loss, x_var, retain_graph=retain_graph)
    return grad.detach(), loss


def input_saliency(grad: Tensor) -> Tensor:
    """``[B, H, W]`` saliency from the loss gradient w.r.t. the input ``[B, C, H, W]``: the root mean square
    over channels (PuzzleMix's official ``sqrt(mean(grad², dim=1))``).

    Example:
        >>> input_saliency(torch.full((1, 4, 2, 2), -3.0))[0]
        tensor([[3., 3.],
                [3., 3.]])
    """
    return grad.pow(2).mean(1).sqrt()

"""A fully connected classifier with named hidden blocks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lightning_mixup.checks import check_positive_int

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "leaky_relu": nn.LeakyReLU,
}


class MLP(nn.Module):
    """``depth`` hidden blocks (linear + activation, ``hidden`` units) and a linear head.

    Inputs with more than two dimensions are flattened from dim 1 on, so
    ``in_features`` must equal the product of the per-sample shape. Hidden
    blocks are ``layers.0`` ... ``layers.{depth-1}``; the output layer is ``head``.

    Example:
        >>> MLP(in_features=64, num_classes=10)(torch.randn(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(
        self,
        in_features: int = 2,
        num_classes: int = 2,
        hidden: int = 64,
        depth: int = 3,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        check_positive_int("in_features", in_features)
        check_positive_int("num_classes", num_classes)
        check_positive_int("hidden", hidden)
        check_positive_int("depth", depth)
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        widths = [in_features] + [hidden] * depth
        act = ACTIVATIONS[activation]
        self.layers = nn.Sequential(*(nn.Sequential(nn.Linear(i, o), act()) for i, o in zip(widths, widths[1:])))
        self.head = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Map inputs ``[B, ...]`` to logits ``[B, num_classes]``."""
        return self.head(self.layers(torch.flatten(x, 1)))

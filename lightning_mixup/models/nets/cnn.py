"""A small convolutional classifier for low-resolution images."""

from __future__ import annotations

from torch import Tensor, nn

from lightning_mixup.checks import check_dropout, check_positive_int


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU stages, global average pooling and a linear head.

    Works for any input of at least 2x2 pixels (e.g. 8x8 digits, 32x32 CIFAR).
    Named stages, in order: ``layer1`` (conv, ``width`` ch.), ``layer2``
    (conv, ``2*width`` ch., 2x2 max-pool), ``layer3`` (conv, ``4*width`` ch.),
    ``pool`` (global average) and ``head`` (flatten, dropout, linear).

    Example:
        >>> import torch
        >>> SmallCNN(num_classes=10)(torch.randn(4, 1, 8, 8)).shape
        torch.Size([4, 10])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        check_positive_int("width", width)
        check_dropout(dropout)
        self.layer1 = nn.Sequential(*_conv_bn_relu(in_channels, width))
        self.layer2 = nn.Sequential(*_conv_bn_relu(width, 2 * width), nn.MaxPool2d(2))
        self.layer3 = nn.Sequential(*_conv_bn_relu(2 * width, 4 * width))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(4 * width, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[B, C, H, W]`` to logits ``[B, num_classes]``."""
        return self.head(self.pool(self.layer3(self.layer2(self.layer1(x)))))

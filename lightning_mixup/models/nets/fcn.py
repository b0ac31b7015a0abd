"""A small fully-convolutional segmentation net: per-pixel logits at the input's resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_mixup.checks import check_positive_int


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallFCN(nn.Module):
    """A three-scale encoder-decoder (a tiny U-Net): 3x3 conv-BN-ReLU stages at full, half and quarter resolution
    (stride-2 convs down), then bilinear upsampling back, each scale concatenated with the encoder's features of
    the same scale, and a 1x1 head. The quarter scale sees about 30 pixels around each pixel: a whole 8x8 digit.

    Works for any input (odd sizes included). Named stages, in order: ``layer1`` (two convs, ``width`` ch., full
    resolution), ``layer2`` (stride-2 conv then conv, ``2*width`` ch., half), ``layer3`` (stride-2 conv then conv,
    ``4*width`` ch., quarter), ``up2`` (conv of upsampled ``layer3`` and ``layer2``, ``2*width`` ch., half),
    ``up1`` (conv of upsampled ``up2`` and ``layer1``, ``width`` ch., full) and ``head`` (1x1 conv to
    ``num_classes``).

    Example:
        >>> SmallFCN(num_classes=11)(torch.randn(4, 1, 24, 24)).shape
        torch.Size([4, 11, 24, 24])
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 11, width: int = 16) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        check_positive_int("width", width)
        self.num_classes = num_classes
        self.layer1 = nn.Sequential(*_conv_bn_relu(in_channels, width), *_conv_bn_relu(width, width))
        self.layer2 = nn.Sequential(*_conv_bn_relu(width, 2 * width, stride=2), *_conv_bn_relu(2 * width, 2 * width))
        self.layer3 = nn.Sequential(
            *_conv_bn_relu(2 * width, 4 * width, stride=2), *_conv_bn_relu(4 * width, 4 * width)
        )
        self.up2 = nn.Sequential(*_conv_bn_relu(6 * width, 2 * width))
        self.up1 = nn.Sequential(*_conv_bn_relu(3 * width, width))
        self.head = nn.Conv2d(width, num_classes, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[B, C, H, W]`` to logits ``[B, num_classes, H, W]``."""
        full = self.layer1(x)
        half = self.layer2(full)
        half = self.up2(torch.cat([half, _upsample(self.layer3(half), half)], dim=1))
        return self.head(self.up1(torch.cat([full, _upsample(half, full)], dim=1)))


def _upsample(x: Tensor, like: Tensor) -> Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)

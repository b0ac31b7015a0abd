"""Pre-activation ResNet for small (CIFAR-sized) images.

He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016.
PreActResNet-18 is the network of the mixup paper's CIFAR experiments
(Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_mixup.checks import check_positive_int


class PreActBlock(nn.Module):
    """Basic pre-activation residual block: BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus skip.

    When the shape changes (``stride != 1`` or a new channel count), the skip
    is a strided 1x1 convolution applied to the pre-activated input.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the residual block."""
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """Pre-activation ResNet with four stages of :class:`PreActBlock`.

    Named stages, in order: ``stem`` (3x3 conv, ``width`` ch.), ``layer1`` ..
    ``layer4`` (``width * (1, 2, 4, 8)`` ch., strides 1, 2, 2, 2), ``final``
    (BN-ReLU), ``pool`` (global average) and ``head`` (flatten, linear).

    Example:
        >>> import torch
        >>> PreActResNet((1, 1, 1, 1), num_classes=5, width=8)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        block_counts: Sequence[int] = (2, 2, 2, 2),
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 64,
    ) -> None:
        super().__init__()
        if len(block_counts) != 4:
            raise ValueError(f"block_counts must have 4 entries, got {tuple(block_counts)!r}")
        for count in block_counts:
            check_positive_int("each of block_counts", count)
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        check_positive_int("width", width)
        self.stem = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        channels = width
        for index, (count, stride) in enumerate(zip(block_counts, (1, 2, 2, 2)), start=1):
            out_channels = width * 2 ** (index - 1)
            blocks = [PreActBlock(channels, out_channels, stride)]
            blocks += [PreActBlock(out_channels, out_channels) for _ in range(count - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            channels = out_channels
        self.final = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[B, C, H, W]`` to logits ``[B, num_classes]``."""
        out = self.stem(x)
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.head(self.pool(self.final(out)))


class PreActResNet18(PreActResNet):
    """PreActResNet-18: two :class:`PreActBlock` per stage (about 11.17M parameters at width 64).

    Example:
        >>> import torch
        >>> PreActResNet18(num_classes=10)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 64) -> None:
        super().__init__((2, 2, 2, 2), in_channels=in_channels, num_classes=num_classes, width=width)

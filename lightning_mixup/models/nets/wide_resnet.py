"""Wide residual networks for CIFAR-sized images.

Zagoruyko, Komodakis, "Wide Residual Networks", BMVC 2016 (arXiv 1605.07146). WRN-28-10 is the wide network
of the CIFAR experiments of mixup (arXiv 1710.09412), Manifold Mixup (arXiv 1806.05236) and PatchUp
(arXiv 2006.07794).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_mixup.checks import check_dropout, check_positive_int
from lightning_mixup.models.nets.preact_resnet import PreActBlock


class WideBlock(PreActBlock):
    """The WRN basic block B(3,3): BN-ReLU-conv3x3, BN-ReLU-dropout-conv3x3, plus skip.

    A :class:`PreActBlock` with dropout between its two convolutions, as in the paper.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__(in_channels, out_channels, stride)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the residual block."""
        out = F.relu(self.bn1(x))
        skip = x if self.shortcut is None else self.shortcut(out)
        out = self.dropout(F.relu(self.bn2(self.conv1(out))))
        return self.conv2(out) + skip


class WideResNet(nn.Module):
    """WRN-``depth``-``widen_factor``: three stages of ``(depth - 4) / 6`` :class:`WideBlock` each.

    Named stages, in order: ``stem`` (3x3 conv, ``width`` ch.), ``layer1`` .. ``layer3``
    (``width * widen_factor * (1, 2, 4)`` ch., strides 1, 2, 2), ``final`` (BN-ReLU), ``pool`` (global
    average) and ``head`` (flatten, linear). The default is WRN-28-10 (36.5 M parameters on CIFAR-10);
    ``dropout`` is the paper's dropout between the convolutions of a block (0.3 in its best CIFAR runs; the
    mixup paper trains without). Convolutions start from He-normal weights, as in the official code.

    Example:
        >>> import torch
        >>> WideResNet(depth=10, widen_factor=1, width=4, num_classes=5)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        depth: int = 28,
        widen_factor: int = 10,
        dropout: float = 0.0,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 16,
    ) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ValueError(f"depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth!r}")
        check_positive_int("widen_factor", widen_factor)
        check_dropout(dropout)
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        check_positive_int("width", width)
        blocks_per_stage = (depth - 4) // 6
        self.stem = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        channels = width
        for index, stride in enumerate((1, 2, 2), start=1):
            out_channels = width * widen_factor * 2 ** (index - 1)
            blocks = [WideBlock(channels, out_channels, stride, dropout)]
            blocks += [WideBlock(out_channels, out_channels, 1, dropout) for _ in range(blocks_per_stage - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            channels = out_channels
        self.final = nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[B, C, H, W]`` to logits ``[B, num_classes]``."""
        out = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.head(self.pool(self.final(out)))

"""Pre-activation ResNet for small (CIFAR-sized) images.

He, Zhang, Ren, Sun, "Identity Mappings in Deep Residual Networks", ECCV 2016.
PreActResNet-18 is the network of the mixup paper's CIFAR experiments
(Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018).

By default the network is the official one of Manifold Mixup, PatchUp and PuzzleMix
(vikasverma1077/manifold_mixup, chandar-lab/PatchUp, snu-mllab/PuzzleMix ``models/preresnet.py``): a bare 3x3
conv stem, pre-activation blocks, and global average pooling straight after the last block — no BN-ReLU
before the pooling (11,171,146 parameters for CIFAR-10). The mixup paper's own code
(facebookresearch/mixup-cifar10 ``models/resnet.py``, ``ResNet18``) differs only in its stem, conv-BN-ReLU
(``stem_bn_relu=True``: 128 more parameters). ``final_bn_relu=True`` adds the BN-ReLU before pooling of He et
al.'s full pre-activation design (1,024 more parameters), which none of those four has.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from lightning_mixup.checks import check_bool, check_positive_int


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


def _bn_relu(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(channels), nn.ReLU(inplace=True))


class PreActResNet(nn.Module):
    """Pre-activation ResNet with four stages of :class:`PreActBlock`.

    Named stages, in order: ``stem`` (3x3 conv, ``width`` ch.), ``stem_act`` (BN-ReLU with
    ``stem_bn_relu``, else identity), ``layer1`` .. ``layer4`` (``width * (1, 2, 4, 8)`` ch., strides
    1, 2, 2, 2), ``final`` (BN-ReLU with ``final_bn_relu``, else identity), ``pool`` (global average)
    and ``head`` (flatten, linear). The defaults are the official mixup-family form (see the module's
    docstring).

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
        final_bn_relu: bool = False,
        stem_bn_relu: bool = False,
    ) -> None:
        super().__init__()
        check_bool("final_bn_relu", final_bn_relu)
        check_bool("stem_bn_relu", stem_bn_relu)
        if len(block_counts) != 4:
            raise ValueError(f"block_counts must have 4 entries, got {tuple(block_counts)!r}")
        for count in block_counts:
            check_positive_int("each of block_counts", count)
        check_positive_int("in_channels", in_channels)
        check_positive_int("num_classes", num_classes)
        check_positive_int("width", width)
        self.stem = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.stem_act = _bn_relu(width) if stem_bn_relu else nn.Identity()
        channels = width
        for index, (count, stride) in enumerate(zip(block_counts, (1, 2, 2, 2)), start=1):
            out_channels = width * 2 ** (index - 1)
            blocks = [PreActBlock(channels, out_channels, stride)]
            blocks += [PreActBlock(out_channels, out_channels) for _ in range(count - 1)]
            self.add_module(f"layer{index}", nn.Sequential(*blocks))
            channels = out_channels
        self.final = _bn_relu(channels) if final_bn_relu else nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x: Tensor) -> Tensor:
        """Map images ``[B, C, H, W]`` to logits ``[B, num_classes]``."""
        out = self.stem_act(self.stem(x))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.head(self.pool(self.final(out)))


class PreActResNet18(PreActResNet):
    """PreActResNet-18: two :class:`PreActBlock` per stage (11,171,146 parameters at width 64 for 10 classes, as
    the official Manifold Mixup / PatchUp / PuzzleMix net; see :class:`PreActResNet` for the options).

    Example:
        >>> import torch
        >>> PreActResNet18(num_classes=10)(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        width: int = 64,
        final_bn_relu: bool = False,
        stem_bn_relu: bool = False,
    ) -> None:
        super().__init__(
            (2, 2, 2, 2),
            in_channels=in_channels,
            num_classes=num_classes,
            width=width,
            final_bn_relu=final_bn_relu,
            stem_bn_relu=stem_bn_relu,
        )

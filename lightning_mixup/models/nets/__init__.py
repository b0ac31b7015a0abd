"""Backbone networks returning logits ``[B, num_classes]`` (``SmallFCN``: per-pixel logits ``[B, num_classes, H, W]``);
stages are named submodules."""

from lightning_mixup.models.nets.cnn import SmallCNN
from lightning_mixup.models.nets.fcn import SmallFCN
from lightning_mixup.models.nets.gan_nets import ConvDiscriminator, ConvGenerator
from lightning_mixup.models.nets.mlp import MLP
from lightning_mixup.models.nets.vit import ViT
from lightning_mixup.models.nets.preact_resnet import PreActBlock, PreActResNet, PreActResNet18
from lightning_mixup.models.nets.wide_resnet import WideBlock, WideResNet

__all__ = [
    "MLP",
    "ConvDiscriminator",
    "ConvGenerator",
    "PreActBlock",
    "PreActResNet",
    "PreActResNet18",
    "SmallCNN",
    "SmallFCN",
    "ViT",
    "WideBlock",
    "WideResNet",
]

"""LightningModules: the generic :class:`Classifier`, the :class:`GANModule`, and networks in
:mod:`lightning_mixup.models.nets`."""

from lightning_mixup.models.classifier import Classifier
from lightning_mixup.models.gan import GANModule, plain_discriminator_batch

__all__ = ["Classifier", "GANModule", "plain_discriminator_batch"]

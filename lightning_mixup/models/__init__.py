"""LightningModules: the generic :class:`Classifier`, the :class:`GANModule`, and networks in
:mod:`lightning_mixup.models.nets`."""

from lightning_mixup.models.classifier import Classifier
from lightning_mixup.models.gan import GANModule, plain_discriminator_batch
from lightning_mixup.models.segmenter import Segmenter

__all__ = ["Classifier", "GANModule", "Segmenter", "plain_discriminator_batch"]

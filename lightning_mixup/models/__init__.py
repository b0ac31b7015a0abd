"""LightningModules: the generic :class:`Classifier`, :class:`Regressor` and :class:`Segmenter`, the
:class:`GANModule`, and networks in :mod:`lightning_mixup.models.nets`."""

from lightning_mixup.models.classifier import Classifier
from lightning_mixup.models.gan import GANModule, plain_discriminator_batch
from lightning_mixup.models.regressor import Regressor
from lightning_mixup.models.segmenter import Segmenter

__all__ = ["Classifier", "GANModule", "Regressor", "Segmenter", "plain_discriminator_batch"]

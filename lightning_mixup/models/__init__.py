"""LightningModules: the generic :class:`Classifier` and its networks in :mod:`lightning_mixup.models.nets`."""

from lightning_mixup.models.classifier import Classifier

__all__ = ["Classifier"]

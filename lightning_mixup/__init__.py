"""lightning_mixup: the mixup family of data augmentations as PyTorch Lightning callbacks."""

from lightning_mixup.callbacks import (
    CutMix,
    DiscriminatorMixup,
    FMix,
    GANMonitor,
    HiddenStateMixer,
    ManifoldMixup,
    MixedBatchLogger,
    Mixer,
    MixingCallback,
    MixUp,
    PatchUp,
    PuzzleMix,
    RandomChoice,
)
from lightning_mixup.models import Classifier, GANModule

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "CutMix",
    "DiscriminatorMixup",
    "FMix",
    "GANModule",
    "GANMonitor",
    "HiddenStateMixer",
    "ManifoldMixup",
    "MixedBatchLogger",
    "MixUp",
    "Mixer",
    "MixingCallback",
    "PatchUp",
    "PuzzleMix",
    "RandomChoice",
    "__version__",
]

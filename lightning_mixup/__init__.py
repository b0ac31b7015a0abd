"""lightning_mixup: the mixup family of data augmentations as PyTorch Lightning callbacks."""

from lightning_mixup.callbacks import (
    CutMix,
    FMix,
    HiddenStateMixer,
    ManifoldMixup,
    Mixer,
    MixingCallback,
    MixUp,
    PatchUp,
    RandomChoice,
)
from lightning_mixup.models import Classifier

__version__ = "0.1.0"

__all__ = [
    "Classifier",
    "CutMix",
    "FMix",
    "HiddenStateMixer",
    "ManifoldMixup",
    "MixUp",
    "Mixer",
    "MixingCallback",
    "PatchUp",
    "RandomChoice",
    "__version__",
]

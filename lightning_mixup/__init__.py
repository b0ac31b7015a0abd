"""lightning_mixup: the mixup family of data augmentations as PyTorch Lightning callbacks.

The top-level names are imported on first use (PEP 562), so that ``import lightning_mixup.functional`` needs
torch alone.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_HOMES = {
    "lightning_mixup.callbacks": (
        "AlignMix", "CMixup", "CoMixup", "CutMix", "DiscriminatorMixup", "FMix", "GANMonitor", "GridMix",
        "HiddenStateMixer", "ManifoldMixup", "MixedBatchLogger", "Mixer", "MixingCallback", "MixStep", "MixUp",
        "PatchUp", "PuzzleMix", "RandomChoice", "RegMixup", "Remix", "ResizeMix", "SaliencyMix", "SmoothMix",
        "SnapMix", "TransMix",
    ),
    "lightning_mixup.metrics": ("MixedAccuracy",),
    "lightning_mixup.models": ("Classifier", "GANModule", "Regressor", "Segmenter"),
}  # fmt: skip
_HOME_OF = {name: module for module, exported in _HOMES.items() for name in exported}

__all__ = [  # what `from lightning_mixup import *` and IDEs see: the names of _HOMES (a test keeps them equal)
    "AlignMix", "Classifier", "CMixup", "CoMixup", "CutMix", "DiscriminatorMixup", "FMix", "GANModule", "GANMonitor",
    "GridMix", "HiddenStateMixer", "ManifoldMixup", "MixedAccuracy", "MixedBatchLogger", "Mixer", "MixingCallback",
    "MixStep", "MixUp", "PatchUp", "PuzzleMix", "RandomChoice", "RegMixup", "Regressor", "Remix", "ResizeMix",
    "SaliencyMix", "Segmenter", "SmoothMix", "SnapMix", "TransMix", "__version__",
]  # fmt: skip

if TYPE_CHECKING:
    from lightning_mixup.callbacks import (
        AlignMix,
        CMixup,
        CoMixup,
        CutMix,
        DiscriminatorMixup,
        FMix,
        GANMonitor,
        GridMix,
        HiddenStateMixer,
        ManifoldMixup,
        MixedBatchLogger,
        Mixer,
        MixingCallback,
        MixStep,
        MixUp,
        PatchUp,
        PuzzleMix,
        RandomChoice,
        RegMixup,
        Remix,
        ResizeMix,
        SaliencyMix,
        SmoothMix,
        SnapMix,
        TransMix,
    )
    from lightning_mixup.metrics import MixedAccuracy
    from lightning_mixup.models import Classifier, GANModule, Regressor, Segmenter


def __getattr__(name: str) -> Any:
    if name in _HOME_OF:
        value = getattr(importlib.import_module(_HOME_OF[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lightning_mixup' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME_OF})

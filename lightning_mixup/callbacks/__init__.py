"""Mixing callbacks: add one to ``Trainer(callbacks=[...])`` and the training batches are mixed."""

from lightning_mixup.callbacks.alignmix import AlignMix
from lightning_mixup.callbacks.base import Mixer, MixingCallback, MixStep, SeededCallback
from lightning_mixup.callbacks.batch_logger import MixedBatchLogger
from lightning_mixup.callbacks.cmixup import CMixup
from lightning_mixup.callbacks.comixup import CoMixup
from lightning_mixup.callbacks.cutmix import CutMix
from lightning_mixup.callbacks.fmix import FMix
from lightning_mixup.callbacks.gan_mixup import DiscriminatorMixup
from lightning_mixup.callbacks.gan_monitor import GANMonitor
from lightning_mixup.callbacks.gridmix import GridMix
from lightning_mixup.callbacks.hidden import HiddenStateMixer
from lightning_mixup.callbacks.manifold_mixup import ManifoldMixup
from lightning_mixup.callbacks.mixup import MixUp
from lightning_mixup.callbacks.patchup import PatchUp
from lightning_mixup.callbacks.progress import EpochSummary
from lightning_mixup.callbacks.puzzlemix import PuzzleMix
from lightning_mixup.callbacks.random_choice import RandomChoice
from lightning_mixup.callbacks.regmixup import RegMixup
from lightning_mixup.callbacks.remix import Remix
from lightning_mixup.callbacks.resizemix import ResizeMix
from lightning_mixup.callbacks.saliency_pass import AcceptsAuxiliaryLoss, SaliencyPassMixer
from lightning_mixup.callbacks.saliencymix import SaliencyMix
from lightning_mixup.callbacks.smoothmix import SmoothMix
from lightning_mixup.callbacks.snapmix import SnapMix
from lightning_mixup.callbacks.transmix import TransMix

__all__ = [
    "AcceptsAuxiliaryLoss",
    "AlignMix",
    "CMixup",
    "CoMixup",
    "CutMix",
    "DiscriminatorMixup",
    "EpochSummary",
    "FMix",
    "GANMonitor",
    "GridMix",
    "HiddenStateMixer",
    "ManifoldMixup",
    "MixedBatchLogger",
    "Mixer",
    "MixingCallback",
    "MixStep",
    "MixUp",
    "PatchUp",
    "PuzzleMix",
    "RandomChoice",
    "RegMixup",
    "Remix",
    "ResizeMix",
    "SaliencyMix",
    "SaliencyPassMixer",
    "SeededCallback",
    "SmoothMix",
    "SnapMix",
    "TransMix",
]

"""Lightning datamodules: bundled handwritten digits (and digit masks for segmentation), the bundled diabetes
regression data, synthetic 2-D toy sets and
2-D Gaussian mixtures."""

from lightning_mixup.data.diabetes import DiabetesDataModule, load_diabetes
from lightning_mixup.data.digit_masks import DigitMasksDataModule
from lightning_mixup.data.digits import DigitsDataModule, load_digits
from lightning_mixup.data.gaussians import (
    MIXTURES,
    GaussianMixtureDataModule,
    ModeCoverage,
    mixture_modes,
    mode_coverage,
    sample_mixture,
)
from lightning_mixup.data.toy2d import TOY2D_NAMES, Toy2DDataModule, make_toy2d

__all__ = [
    "MIXTURES",
    "TOY2D_NAMES",
    "DiabetesDataModule",
    "DigitMasksDataModule",
    "DigitsDataModule",
    "GaussianMixtureDataModule",
    "ModeCoverage",
    "Toy2DDataModule",
    "load_diabetes",
    "load_digits",
    "make_toy2d",
    "mixture_modes",
    "mode_coverage",
    "sample_mixture",
]

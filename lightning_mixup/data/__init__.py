"""Lightning datamodules: bundled handwritten digits and synthetic 2-D toy sets."""

from lightning_mixup.data.digits import DigitsDataModule, load_digits
from lightning_mixup.data.toy2d import TOY2D_NAMES, Toy2DDataModule, make_toy2d

__all__ = ["TOY2D_NAMES", "DigitsDataModule", "Toy2DDataModule", "load_digits", "make_toy2d"]

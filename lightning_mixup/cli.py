"""LightningCLI entry point: ``python -m lightning_mixup.cli fit --config examples/cli/digits_cutmix.yaml``.

The package's classes work with Lightning's own ``LightningCLI`` (needs the ``cli`` extra, jsonargparse):
the model is :class:`~lightning_mixup.Classifier`, the data any ``LightningDataModule`` given by class path, and
mixers are trainer callbacks::

    python -m lightning_mixup.cli fit --model.net=lightning_mixup.models.nets.SmallCNN --model.net.in_channels=1 \\
        --model.num_classes=10 --data=lightning_mixup.data.DigitsDataModule \\
        --trainer.callbacks+=lightning_mixup.CutMix --trainer.callbacks.alpha=1.0 \\
        --model.scheduler=torch.optim.lr_scheduler.CosineAnnealingLR --model.scheduler.T_max=10

Also installed as ``lightning-mixup-cli``. The Hydra entry point (``python -m lightning_mixup.train``) is the
other way to compose runs.
"""

from __future__ import annotations

import importlib.util
from typing import Any

import lightning.pytorch as pl

from lightning_mixup.models import Classifier

INSTALL_HINT = 'pip install "lightning-mixup[cli]" (from a clone: pip install ".[cli]")'


def main(args: Any = None, run: bool = True, **kwargs: Any) -> Any:
    """Run ``LightningCLI(Classifier, LightningDataModule, subclass_mode_data=True)`` on ``args`` (None: the
    command line); ``run=False`` only builds the model, data and trainer (``cli.model``, ``cli.trainer``, ...).
    ``kwargs`` go to ``LightningCLI``. Returns the ``LightningCLI`` instance."""
    if importlib.util.find_spec("jsonargparse") is None or importlib.util.find_spec("docstring_parser") is None:
        raise ModuleNotFoundError(f"the LightningCLI entry point needs jsonargparse[signatures]: {INSTALL_HINT}")
    from lightning.pytorch.cli import LightningCLI

    options: dict[str, Any] = {"subclass_mode_data": True, "save_config_kwargs": {"overwrite": True}, **kwargs}
    return LightningCLI(Classifier, pl.LightningDataModule, args=args, run=run, **options)


if __name__ == "__main__":
    main()

"""Run by tests/test_gan.py: fit a small GAN with 2 CPU processes (gloo): plain, with DiscriminatorMixup, and
resumed from the mixup run's first-epoch checkpoint; save each rank's discriminator targets, final weights and
metrics. Also home of the recording GAN the tests share.

A GAN step leaves one net out of each backward (the generator in the discriminator's step, and the other way
round), so DDP needs ``strategy="ddp_find_unused_parameters_true"`` (``trainer=ddp_gan`` in the configs).

Usage: python tests/ddp_gan_fit.py OUT_DIR
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import Tensor

from lightning_mixup.callbacks.gan_mixup import DiscriminatorMixup
from lightning_mixup.callbacks.gan_monitor import GANMonitor
from lightning_mixup.data import GaussianMixtureDataModule
from lightning_mixup.models.gan import GANModule
from lightning_mixup.models.nets import MLP
from lightning_mixup.train import end_distributed


class RecordingGAN(GANModule):
    """A GANModule that keeps ``(real, fake, inputs, targets)`` of every discriminator step."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.records: list[list[Tensor]] = []

    def discriminator_batch(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        inputs, targets = super().discriminator_batch(real, fake)
        self.records.append([t.detach().clone() for t in (real, fake, inputs, targets)])
        return inputs, targets


def small_gan(n_critic: int = 2, hidden: int = 16, noise_seed: int | None = 5) -> RecordingGAN:
    """The paper's MLP pair, narrow: 2-D noise, two hidden layers of ``hidden`` ReLU units; Adam."""
    torch.manual_seed(0)
    adam = partial(torch.optim.Adam, lr=1e-3)
    return RecordingGAN(
        MLP(2, 2, hidden=hidden, depth=2),
        MLP(2, 1, hidden=hidden, depth=2),
        latent_dim=2,
        g_optimizer=adam,
        d_optimizer=adam,
        n_critic=n_critic,
        noise_seed=noise_seed,
    )


def fit(out: Path, name: str, mixup: bool, epochs: int, ckpt_path: str | None = None, checkpoint: bool = False) -> None:
    """Fit on 8 batches an epoch (4 a rank), n_critic 2; save the rank's targets, weights, steps and metrics."""
    pl.seed_everything(0)
    module = small_gan(noise_seed=None)
    callbacks: list[pl.Callback] = [GANMonitor(n_samples=100, dirpath=out / "samples")]
    if mixup:
        callbacks.append(DiscriminatorMixup(alpha=0.2, per_sample=True))
    if checkpoint:
        callbacks.append(ModelCheckpoint(dirpath=out / "checkpoints", every_n_epochs=1, save_top_k=-1))
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_find_unused_parameters_true",
        max_epochs=epochs,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=checkpoint,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, datamodule=GaussianMixtureDataModule(batch_size=16, batches_per_epoch=8), ckpt_path=ckpt_path)
    result = {
        "targets": torch.stack([targets for *_, targets in module.records]),
        "state": module.state_dict(),
        "steps": (module.d_steps, module.g_steps),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items()},
    }
    torch.save(result, out / f"{name}-rank{trainer.global_rank}.pt")


def main(out: Path) -> None:
    fit(out, "plain", mixup=False, epochs=1)
    fit(out, "mixup", mixup=True, epochs=2, checkpoint=True)
    fit(out, "resumed", mixup=True, epochs=2, ckpt_path=str(out / "checkpoints" / "epoch=0-step=6.ckpt"))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    end_distributed()  # gloo: a group left to interpreter exit can abort a finished run

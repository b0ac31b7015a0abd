"""Run by tests/test_ddp.py: fit every mixer with 2 CPU processes (gloo) and save each rank's targets.

Usage: python tests/ddp_fit.py OUT_DIR
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_mixup import Classifier, CutMix, FMix, MixingCallback, MixUp, RandomChoice, TransMix
from lightning_mixup.data import DigitsDataModule
from lightning_mixup.functional import PairTarget
from lightning_mixup.methods import get, names
from lightning_mixup.models.nets import SmallCNN, ViT
from lightning_mixup.train import end_distributed


NAMES = names("input", "hidden", "saliency", task="multiclass")  # every classifier mixer (GANs: ddp_gan_fit.py)
DDP_OPTIONS = {"puzzlemix": {"adv_p": 0.5, "clean_lam": 1.0}}  # also the adversarial and clean-loss paths


class SaveTargets(pl.Callback):
    def __init__(self) -> None:
        self.targets: list[torch.Tensor] = []

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        target = batch[1]  # after the forward, where PatchUp fills its targets in
        if isinstance(target, PairTarget):  # the pair form, saved as the probabilities it stands for
            a, b = (torch.nn.functional.one_hot(t, 10).float() for t in (target.a, target.b))
            target = torch.lerp(b, a, target.weight[:, None])
        self.targets.append(target.clone())


def record_lam(mixer: MixingCallback, lams: list[torch.Tensor], rows: int = 32) -> None:
    """Wrap the mixer's ``mix`` so that every λ it returns (for ``rows`` samples) is kept."""
    mix = mixer.mix

    def recording(*args):
        out = mix(*args)
        lams.append(torch.full((rows,), -1.0) if out is None else out.lam.expand(rows).clone())
        return out

    mixer.mix = recording


def fit(
    callbacks: list[pl.Callback],
    ckpt_path: str | None = None,
    vit: bool = False,
    task: tuple[pl.LightningModule, pl.LightningDataModule] | None = None,
    **trainer_kwargs: object,
) -> pl.Trainer:
    """One epoch with 2 CPU processes (ddp, gloo): of ``task`` (a module and its data), by default a small classifier
    (a ViT with ``vit``) on the digits."""
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=1,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **{"enable_checkpointing": False, **trainer_kwargs},
    )
    if task is None:
        net = ViT(image_size=8, patch_size=2, dim=16, depth=2, heads=2) if vit else SmallCNN(width=8)
        task = Classifier(net, num_classes=10, optimizer=partial(torch.optim.SGD, lr=0.05)), DigitsDataModule(32)
    model, datamodule = task
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer


def main(out: Path) -> None:
    mixers = {name: get(name).make(per_sample=True, **DDP_OPTIONS.get(name, {})) for name in NAMES}
    mixers["random_choice"] = RandomChoice([MixUp(), CutMix(), FMix()])
    mixers["cutmix_pair"] = CutMix(per_sample=True, targets="pair")
    mixers["transmix"] = TransMix(attention_layer="net.blocks.1.attn.attn_drop", per_sample=True)  # on a ViT
    for name, mixer in mixers.items():
        pl.seed_everything(0)
        saver, lams = SaveTargets(), []
        record_lam(mixer, lams)
        trainer = fit([mixer, saver], vit=name == "transmix", limit_train_batches=3, limit_val_batches=2)
        result = {"targets": torch.stack(saver.targets), "lam": torch.stack(lams)}
        torch.save(result, out / f"{name}-rank{trainer.global_rank}.pt")


def resume(out: Path, partner_scope: str = "local") -> None:
    """Fit 4 steps with a checkpoint at step 2, then resume from it: each rank must redraw its own λ (with
    ``partner_scope="global"``: the sequence shared by the ranks, λ of the 64 rows of the global batch)."""
    for phase, ckpt in (("full", None), ("resumed", str(out / "ckpt" / "epoch=0-step=2.ckpt"))):
        pl.seed_everything(0)
        mixer, lams = MixUp(per_sample=True, seed=5, partner_scope=partner_scope), []
        record_lam(mixer, lams, rows=64 if partner_scope == "global" else 32)
        callbacks: list[pl.Callback] = [mixer]
        if ckpt is None:
            callbacks.append(pl.callbacks.ModelCheckpoint(dirpath=out / "ckpt", every_n_train_steps=2, save_top_k=-1))
        trainer = fit(callbacks, ckpt, limit_train_batches=4, limit_val_batches=0, enable_checkpointing=ckpt is None)
        torch.save(torch.stack(lams), out / f"resume-{phase}-rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    resume(Path(sys.argv[1]))
    end_distributed()  # gloo: a group left to interpreter exit can abort a finished run

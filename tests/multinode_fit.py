"""Run by tests/test_multinode.py under ``torchrun --nnodes=2 --nproc_per_node=1``: one process per simulated node.

A plain ``Trainer`` script, as a user writes it: ``num_nodes=2`` and ``devices=1`` match torchrun's world; each rank
saves what it saw. Usage: ``torchrun ... tests/multinode_fit.py OUT_DIR``.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_mixup import Classifier, CutMix
from lightning_mixup.data import DigitsDataModule
from lightning_mixup.models.nets import SmallCNN
from lightning_mixup.train import end_distributed


class Record(pl.Callback):
    def __init__(self) -> None:
        self.lam: list[torch.Tensor] = []
        self.sums: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int) -> None:
        self.sums.append(batch[1].sum(dim=1))  # after the mixer (registered first): its probability targets
        self.lam.append(trainer.callback_metrics.get("mix/lam_step", torch.tensor(float("nan"))).clone())


def main(out: Path) -> None:
    pl.seed_everything(0)
    record = Record()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        num_nodes=2,
        strategy="ddp",
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        callbacks=[CutMix(per_sample=True, seed=3), record],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    model = Classifier(SmallCNN(width=8), num_classes=10, optimizer=partial(torch.optim.SGD, lr=0.05))
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=32))
    torch.save(
        {
            "world_size": trainer.world_size,
            "node_rank": trainer.node_rank,
            "sums": torch.stack(record.sums),
            "generator": trainer.callbacks[0].state_dict(),
            "weight": next(model.parameters()).detach().clone(),
        },
        out / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    end_distributed()  # gloo: a group left to interpreter exit can abort a finished run

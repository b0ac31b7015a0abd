"""Run by tests/test_global_partners.py: 2 CPU processes (gloo) mixing with ``partner_scope="global"``.

Each rank saves, for every step, its batch before and after the mixer; the test recomputes the mix of the
concatenated global batch in one process. Also: a mid-epoch resume, and an uneven batch refused on both ranks.
Usage: python tests/ddp_global_fit.py OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch

from conftest import Recorder
from ddp_fit import fit, resume
from global_mixers import GLOBAL_MIXERS, MODEL_MIXERS, SEED
from lightning_mixup import CMixup, MixingCallback, Regressor
from lightning_mixup.data import DiabetesDataModule
from lightning_mixup.models.nets import MLP
from lightning_mixup.ranks import gather_rows
from lightning_mixup.train import end_distributed


def main(out: Path) -> None:
    for name, make in GLOBAL_MIXERS.items():
        pl.seed_everything(0)
        before, after = Recorder(), Recorder()
        mixer: MixingCallback = make()
        trainer = fit([before, mixer, after], limit_train_batches=3, limit_val_batches=0)
        torch.save({"before": before.batches, "after": after.batches}, out / f"{name}-rank{trainer.global_rank}.pt")
    for name, make in MODEL_MIXERS.items():
        pl.seed_everything(0)
        after_forward = Recorder(at_end=True)
        trainer = fit([make(), after_forward], limit_train_batches=2, limit_val_batches=0)
        torch.save(after_forward.batches, out / f"{name}-rank{trainer.global_rank}.pt")
    rank = trainer.global_rank
    try:  # ranks with different batch sizes: both must refuse (no hang)
        gather_rows([torch.zeros(3 + rank, 2)], 2, "Test")
        message = ""
    except ValueError as err:
        message = str(err)
    (out / f"uneven-rank{rank}.txt").write_text(message)


def regression(out: Path) -> None:
    """C-Mixup on the diabetes data: partners by label distance over the global batch of 2 × 16."""
    pl.seed_everything(0)
    before, after = Recorder(), Recorder()
    task = Regressor(MLP(in_features=10, num_classes=1, hidden=8, depth=1)), DiabetesDataModule(16)
    mixer = CMixup(per_sample=True, seed=SEED, partner_scope="global")
    trainer = fit([before, mixer, after], task=task, limit_train_batches=3, limit_val_batches=0)
    torch.save({"before": before.batches, "after": after.batches}, out / f"cmixup-rank{trainer.global_rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
    regression(Path(sys.argv[1]))
    resume(Path(sys.argv[1]), partner_scope="global")
    end_distributed()  # gloo: a group left to interpreter exit can abort a finished run

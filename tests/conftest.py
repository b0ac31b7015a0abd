"""Fixtures shared by the callback, resume, DDP and Hydra tests: a user's own module, data and a recorder."""

from __future__ import annotations

import os
import socket
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

os.environ.setdefault("PL_DISABLE_FORK", "1")
torch.set_num_threads(1)  # pytest -n 2 runs two workers on two cores: one thread each avoids oversubscription

NUM_CLASSES = 4


class UserModule(pl.LightningModule):
    """A LightningModule as a user writes it: nothing from lightning_mixup, cross-entropy on whatever targets come."""

    def __init__(self, num_classes: int | None = NUM_CLASSES, channels: int = 3) -> None:
        super().__init__()
        if num_classes is not None:
            self.num_classes = num_classes
        self.net = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, NUM_CLASSES),
        )
        self.seen: dict[str, list[Any]] = {"train": [], "val": [], "test": [], "predict": []}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def _record(self, stage: str, batch: Any) -> None:
        self.seen[stage].append([t.detach().clone() for t in batch])

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        self._record("train", batch)  # after the forward: what the loss sees (PatchUp fills targets in it)
        return F.cross_entropy(logits, y)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._record("val", batch)
        self.log("val_loss", F.cross_entropy(self(batch[0]), batch[1]))

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._record("test", batch)

    def predict_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self._record("predict", batch)
        return self(batch[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


class Recorder(Callback):
    """Keeps a copy of every training batch as it stands when this callback's hook runs: at batch start
    (after the callbacks before it), or at batch end (``at_end``: after the forward, where PatchUp fills
    its targets in)."""

    def __init__(self, at_end: bool = False) -> None:
        self.at_end = at_end
        self.batches: list[list[torch.Tensor]] = []

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self.at_end:
            self.batches.append([copy(t) for t in batch])

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.at_end:
            self.batches.append([copy(t) for t in batch])


def copy(value: Any) -> Any:
    """A detached copy of a batch entry: a tensor, or a tuple of tensors such as a ``PairTarget``."""
    if isinstance(value, tuple):
        return type(value)(*(copy(v) for v in value))
    return value.detach().clone()


def same(first: Any, second: Any) -> bool:
    """Whether two batch entries (tensors or tuples of tensors) are exactly equal."""
    if isinstance(first, tuple):
        return type(first) is type(second) and all(same(a, b) for a, b in zip(first, second))
    return torch.equal(first, second)


def make_loader(n: int = 32, batch_size: int = 8, shape: tuple[int, ...] = (3, 8, 8), seed: int = 0) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def free_port() -> int:
    """A TCP port nobody listens on now, for a DDP test's MASTER_PORT."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_trainer(callbacks: list[Callback], **kwargs: Any) -> pl.Trainer:
    defaults: dict[str, Any] = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    defaults.update(kwargs)
    return pl.Trainer(callbacks=callbacks, **defaults)


@pytest.fixture
def loader() -> DataLoader:
    return make_loader()

"""Stop mid-epoch at a checkpoint, resume, and get exactly the uninterrupted run: same λ, same weights."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from conftest import Recorder, make_trainer, same
from lightning_mixup import Classifier, CutMix, MixUp, RandomChoice, TransMix
from lightning_mixup.data import DigitsDataModule
from lightning_mixup.methods import get, names
from lightning_mixup.models.nets import SmallCNN, ViT

STEPS_PER_EPOCH = 10  # 1258 training digits / batch 128
CHECKPOINT_STEP = 13  # epoch 1, batch 3


def _model(vit: bool = False) -> Classifier:
    torch.manual_seed(0)
    net = ViT(image_size=8, patch_size=2, dim=16, depth=2, heads=2) if vit else SmallCNN(width=8)
    return Classifier(net, num_classes=10, optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9))


def _run(
    mixer: pl.Callback, root: Path, ckpt_path: str | None = None, checkpoint: bool = False
) -> tuple[Any, list[Any]]:
    recorder = Recorder(at_end=True)
    callbacks: list[pl.Callback] = [mixer, recorder]
    if checkpoint:
        callbacks.append(ModelCheckpoint(dirpath=root, every_n_train_steps=CHECKPOINT_STEP, save_top_k=-1))
    trainer = make_trainer(
        callbacks,
        max_epochs=2,
        deterministic=True,
        enable_checkpointing=checkpoint,
        default_root_dir=root,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )
    model = _model(vit=isinstance(mixer, TransMix))
    trainer.fit(model, datamodule=DigitsDataModule(batch_size=128, shuffle_seed=1), ckpt_path=ckpt_path)
    return model, recorder.batches


OPTIONS = {  # each method from the registry's example, with these changes: the paths that draw the most
    "mixup": {"alpha": 0.4, "per_sample": True, "p": 0.7},
    "manifold_mixup": {"per_sample": True},
    "patchup": {"mode": "hard"},
    "puzzlemix": {"grids": (2, 4, 8), "adv_p": 0.5, "clean_lam": 0.5},
}
MIXERS = {
    name: partial(get(name).make, seed=11, **OPTIONS.get(name, {}))
    for name in names("input", "hidden", "saliency", task="multiclass")
}
MIXERS["transmix"] = lambda: TransMix(attention_layer="net.blocks.1.attn.attn_drop", per_sample=True, seed=11)  # a ViT
MIXERS["cutmix_pair"] = lambda: CutMix(per_sample=True, targets="pair", seed=11)  # the pair form resumes too
MIXERS["random_choice"] = lambda: RandomChoice(
    [MixUp(alpha=0.8), CutMix(per_sample=True)], weights=[0.3, 0.7], p=0.8, seed=11
)


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_resume_mid_epoch_reproduces_the_uninterrupted_run(name: str, tmp_path: Path) -> None:
    full_model, full_batches = _run(MIXERS[name](), tmp_path / "full", checkpoint=True)
    assert len(full_batches) == 2 * STEPS_PER_EPOCH
    ckpt = tmp_path / "full" / f"epoch=1-step={CHECKPOINT_STEP}.ckpt"
    assert ckpt.is_file(), sorted(p.name for p in (tmp_path / "full").iterdir())

    resumed_model, resumed_batches = _run(MIXERS[name](), tmp_path / "resumed", ckpt_path=str(ckpt))
    assert len(resumed_batches) == 2 * STEPS_PER_EPOCH - CHECKPOINT_STEP
    for (x_full, y_full), (x_res, y_res) in zip(full_batches[CHECKPOINT_STEP:], resumed_batches):
        assert same(y_full, y_res)  # same data, same partners, same λ
        assert torch.equal(x_full, x_res)
    for (pname, p_full), p_res in zip(full_model.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(p_full, p_res), pname

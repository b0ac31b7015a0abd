"""The segmentation example: digit masks, the Segmenter and its net, mixed by the mixers with task="segmentation"."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from conftest import make_trainer
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from lightning_mixup.callbacks import CutMix, MixUp
from lightning_mixup.data.digit_masks import DigitMasksDataModule, place_digits
from lightning_mixup.data.digits import load_digits
from lightning_mixup.data.in_memory import split_indices
from lightning_mixup.functional import PairTarget, Targets
from lightning_mixup.models.nets.fcn import SmallFCN
from lightning_mixup.models.segmenter import Segmenter
from lightning_mixup.train import config_dir, train

CLASSES = 11


@pytest.fixture(scope="module")
def datamodule() -> DigitMasksDataModule:
    dm = DigitMasksDataModule(batch_size=16)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def raw() -> DigitMasksDataModule:
    dm = DigitMasksDataModule(normalize=False)
    dm.setup("fit")
    return dm


def _model(**kwargs: Any) -> Segmenter:
    torch.manual_seed(0)
    return Segmenter(SmallFCN(num_classes=CLASSES, width=4), num_classes=CLASSES, **kwargs)


# ---- data ------------------------------------------------------------------------------------------------------


def test_batches_are_dicts_of_normalised_images_and_long_masks(datamodule: DigitMasksDataModule) -> None:
    batch = next(iter(datamodule.train_dataloader()))
    assert set(batch) == {"image", "mask"}
    assert batch["image"].shape == (16, 1, 24, 24) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (16, 24, 24) and batch["mask"].dtype == torch.int64
    train = datamodule.train_set.tensors["image"]
    assert abs(float(train.mean())) < 1e-4 and abs(float(train.std()) - 1) < 1e-4
    assert datamodule.input_shape == (1, 24, 24) and datamodule.num_classes == CLASSES


def test_splits_follow_the_digits_split_and_every_class_occurs(datamodule: DigitMasksDataModule) -> None:
    _, labels = load_digits()
    parts = split_indices(labels, 0.1, 0.2, 0)
    sets = (datamodule.train_set, datamodule.val_set, datamodule.test_set)
    assert [len(s) for s in sets] == [len(p) for p in parts]
    for split in sets:
        masks = split.tensors["mask"]
        assert int(masks.min()) == 0 and int(masks.max()) == CLASSES - 1
        assert len(masks.unique()) == CLASSES
        assert all(len(m.unique()) <= 3 for m in masks)  # background and at most two digits


def test_each_canvas_holds_its_own_digit(raw: DigitMasksDataModule) -> None:
    _, labels = load_digits()
    test_labels = labels[split_indices(labels, 0.1, 0.2, 0)[2]].long()
    masks = raw.test_set.tensors["mask"]
    present = torch.stack([torch.bincount(m.flatten(), minlength=CLASSES) for m in masks]) > 0
    assert bool(present[torch.arange(len(masks)), 1 + test_labels].all())


def test_masks_are_the_thresholded_strokes(raw: DigitMasksDataModule) -> None:
    for split in (raw.train_set, raw.val_set, raw.test_set):
        image, mask = split.tensors["image"][:, 0], split.tensors["mask"]
        assert torch.equal(mask > 0, image > raw.threshold)
        assert float(image.min()) == 0.0 and float(image.max()) <= 1.0


def test_layout_is_deterministic_and_seeded(datamodule: DigitMasksDataModule) -> None:
    again = DigitMasksDataModule(batch_size=16)
    again.setup("fit")
    for name in ("image", "mask"):
        assert torch.equal(again.train_set.tensors[name], datamodule.train_set.tensors[name])
        assert torch.equal(again.test_set.tensors[name], datamodule.test_set.tensors[name])
    other = DigitMasksDataModule(layout_seed=1)
    other.setup("fit")
    assert not torch.equal(other.train_set.tensors["mask"], datamodule.train_set.tensors["mask"])


def test_one_digit_per_canvas_and_other_sizes() -> None:
    dm = DigitMasksDataModule(canvas_size=16, digits_per_image=1, val_fraction=0.2, test_fraction=0.2)
    dm.setup("fit")
    masks = dm.val_set.tensors["mask"]
    assert masks.shape[1:] == (16, 16) and all(len(m.unique()) == 2 for m in masks)


def test_digits_never_overlap() -> None:
    digits = torch.ones(50, 8, 8)
    _, masks = place_digits(digits, torch.arange(50) % 10, 3, 24, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal((masks > 0).sum(dim=(1, 2)), torch.full((50,), 3 * 64))  # three whole, disjoint boxes
    with pytest.raises(ValueError, match="cannot place 3 digits apart on a 12x12 canvas"):
        place_digits(digits, torch.arange(50) % 10, 3, 12, 0.5, torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"canvas_size": 6}, ValueError, "canvas_size must be an int >= 8, got 6"),
        ({"digits_per_image": 0}, ValueError, "digits_per_image must be a positive int, got 0"),
        ({"threshold": 1.0}, ValueError, r"threshold must be a number in \[0, 1\), got 1.0"),
        ({"threshold": "high"}, TypeError, "threshold must be .*, got 'high'"),
        ({"layout_seed": 0.5}, TypeError, "layout_seed must be an int, got 0.5"),
    ],
)
def test_datamodule_quotes_bad_arguments(kwargs: dict[str, Any], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        DigitMasksDataModule(**kwargs)


# ---- net and module --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(8, 8), (24, 24), (13, 17)])
def test_small_fcn_keeps_the_resolution(size: tuple[int, int]) -> None:
    assert SmallFCN(in_channels=3, num_classes=5, width=4)(torch.randn(2, 3, *size)).shape == (2, 5, *size)


def test_segmenter_quotes_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"ignore_index must not be a class in \[0, 11\), got 3"):
        _model(ignore_index=3)
    with pytest.raises(TypeError, match="ignore_index must be an int, got 'x'"):
        _model(ignore_index="x")
    with pytest.raises(TypeError, match="net must be an nn.Module, got str"):
        Segmenter("net", num_classes=CLASSES)  # type: ignore[arg-type]


@pytest.mark.parametrize("ignore_index", [None, 255])
def test_loss_of_a_mask_is_cross_entropy(ignore_index: int | None) -> None:
    model = _model(ignore_index=ignore_index)
    logits, mask = torch.randn(3, CLASSES, 5, 5), torch.randint(CLASSES, (3, 5, 5))
    if ignore_index is not None:
        mask[:, 0] = ignore_index
    expected = F.cross_entropy(logits, mask, ignore_index=-100 if ignore_index is None else ignore_index)
    torch.testing.assert_close(model.loss(logits, mask), expected)
    torch.testing.assert_close(model.loss(logits.bfloat16(), mask), expected, atol=0.05, rtol=0.05)


@pytest.mark.parametrize("ignore_index", [None, 255])
def test_pair_loss_equals_the_loss_of_the_mixed_probabilities(ignore_index: int | None) -> None:
    model = _model(ignore_index=ignore_index)
    generator = torch.Generator().manual_seed(0)
    x, mask = torch.randn(4, 1, 6, 6), torch.randint(CLASSES, (4, 6, 6), generator=generator)
    if ignore_index is not None:
        mask[0, :2] = ignore_index
    index, logits = torch.tensor([2, 0, 3, 1]), torch.randn(4, CLASSES, 6, 6)
    blend = torch.rand(4, 1, 6, 6, generator=generator)  # a soft mask; a scalar lambda is the mixup case
    for lam, image_mask in ((torch.tensor(0.3), None), (torch.tensor(0.5), blend)):
        spec = {"num_classes": CLASSES, "task": "segmentation", "ignore_index": ignore_index}
        pair = Targets(**spec, form="pair").read(mask, x).mix(index, lam, image_mask)
        soft = Targets(**spec, form="mixed").read(mask, x).mix(index, lam, image_mask)
        assert isinstance(pair, PairTarget) and soft.shape == (4, CLASSES, 6, 6)
        torch.testing.assert_close(model.loss(logits, pair), model.loss(logits, soft))
        labelled = soft.sum()  # the labelled share of the pixels: the loss has the scale of an unmixed batch's
        torch.testing.assert_close(model.loss(logits, soft), F.cross_entropy(logits, soft, reduction="sum") / labelled)
    own = Targets(CLASSES, task="segmentation", form="pair", ignore_index=ignore_index).read(mask, x).own()
    ignore = -100 if ignore_index is None else ignore_index
    torch.testing.assert_close(model.loss(logits, own), F.cross_entropy(logits, mask, ignore_index=ignore))


def test_hard_labels_of_every_target_form() -> None:
    model = _model(ignore_index=255)
    a, b = torch.zeros(1, 2, 2, dtype=torch.long), torch.ones(1, 2, 2, dtype=torch.long)
    weight = torch.tensor([[[0.7, 0.2], [0.5, 0.0]]])
    assert model.hard_labels(PairTarget(a, b, weight)).tolist() == [[[0, 1], [0, 1]]]
    probs = torch.zeros(1, CLASSES, 2, 2)
    probs[0, 4] = torch.tensor([[1.0, 0.0], [0.6, 1.0]])
    assert model.hard_labels(probs).tolist() == [[[4, 255], [4, 4]]]


# ---- fitting with the mixers -----------------------------------------------------------------------------------


class Recorder(Callback):
    """Keeps the targets of every training step (as the loss sees them) and the validation batches."""

    def __init__(self) -> None:
        self.train: list[Any] = []
        self.val: list[dict[str, Tensor]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.train.append(args[1]["mask"])

    def on_validation_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.val.append({k: v.clone() for k, v in args[0].items()})


KEYS = {"task": "segmentation", "input_key": "image", "target_key": "mask"}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("mixer", "kind"),
    [
        (CutMix(**KEYS), "hard"),
        (MixUp(**KEYS), "soft"),
        (MixUp(**KEYS, targets="pair"), "pair"),
    ],
    ids=["cutmix", "mixup", "mixup_pair"],
)
def test_one_epoch_with_a_mixer_logs_miou_and_leaves_validation_alone(
    mixer: Callback, kind: str, datamodule: DigitMasksDataModule
) -> None:
    recorder = Recorder()
    trainer = make_trainer([mixer, recorder], limit_train_batches=3, limit_val_batches=3, num_sanity_val_steps=0)
    trainer.fit(_model(), datamodule=datamodule)
    metrics = trainer.callback_metrics
    assert 0.0 <= float(metrics["val/miou"]) <= 1.0 and 0.0 <= float(metrics["val/acc"]) <= 1.0
    assert float(metrics["mix/applied"]) == 1.0 and torch.isfinite(metrics["train/loss"])
    for target in recorder.train:
        if kind == "pair":
            assert isinstance(target, PairTarget) and target.a.shape == target.weight.shape == (16, 24, 24)
        elif kind == "hard":
            assert target.dtype == torch.int64 and target.shape == (16, 24, 24)
        else:
            assert target.shape == (16, CLASSES, 24, 24) and torch.allclose(target.sum(1), torch.ones(1))
    loader = iter(datamodule.val_dataloader())
    assert len(recorder.val) == 3
    for seen in recorder.val:
        expected = next(loader)
        assert torch.equal(seen["image"], expected["image"]) and torch.equal(seen["mask"], expected["mask"])


@pytest.mark.slow
def test_the_segment_config_trains_and_tests_with_cutmix(tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    overrides = [
        f"paths.output_dir={tmp_path}",
        "mix=cutmix",
        "trainer.fast_dev_run=true",
        "trainer.enable_progress_bar=false",
        "net.width=4",
        "data.batch_size=8",
    ]
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("segment", overrides=overrides)
    assert (cfg.mix.task, cfg.mix.input_key, cfg.mix.target_key) == ("segmentation", "image", "mask")
    metrics = train(cfg)
    assert 0.0 <= metrics["test/miou"] <= 1.0 and 0.0 <= metrics["test/acc"] <= 1.0
    assert metrics["mix/applied"] == 1.0


def test_the_segment_config_has_no_mixer_by_default(tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("segment", overrides=[f"paths.output_dir={tmp_path}"])
    assert "_target_" not in cfg.mix and cfg.model._target_.endswith("Segmenter")
    assert cfg.callbacks.model_checkpoint.monitor == "val/miou"


def test_module_with_a_net_of_its_own() -> None:
    net = nn.Conv2d(1, CLASSES, 1)
    model = Segmenter(net, num_classes=CLASSES)
    batch = {"image": torch.randn(2, 1, 4, 4), "mask": torch.randint(CLASSES, (2, 4, 4))}
    assert model.predict_step(batch, 0).shape == (2, 4, 4)
    assert isinstance(model.configure_optimizers(), torch.optim.AdamW)

"""Targets of every task, through every method of the registry: pair vs mixed form, multi-label, regression and
segmentation masks against per-sample and per-pixel oracles, and the errors that name what came."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from conftest import UserModule, make_loader, make_trainer
from lightning_mixup import CutMix, FMix, ManifoldMixup, MixedBatchLogger, MixUp, PatchUp, PuzzleMix, RandomChoice
from lightning_mixup.functional import PairTarget, Targets, pair_loss
from lightning_mixup.functional.puzzlemix import PuzzleMixParams
from lightning_mixup.functional.targets import one_hot
from lightning_mixup.methods import get, names

C = 5
B = 8
# every method whose targets mix two labels (GAN mixup's target is λ itself; SnapMix's CAM weights need not sum to 1)
PER_SAMPLE = [  # RegMixup's doubled batch: tests/test_regmixup.py
    name
    for name in names("input", "hidden", "saliency", task="multiclass")
    if "pair" in get(name).callback.FORMS and get(name).callback.OUTPUT_ROWS == 1
]
DENSE = ["mixup", "cutmix", "fmix", "puzzlemix"]  # the methods that mix segmentation masks: all but PatchUp
OPS: dict[str, dict[str, Any]] = {  # options of each batch_op for these tests
    "patchup": {"block_size": 3, "gamma": 0.5},
    "puzzlemix": {"params": PuzzleMixParams(grids=(2, 4))},
    "remix": {"class_counts": (40, 20, 10, 5, 1)},
}


def run_op(name: str, x: torch.Tensor, target: torch.Tensor, targets: Targets | int, seed: int = 0, **kw: Any):
    """The registry's functional op of ``name`` on ``(x, target)``; the same seed gives the same mix."""
    options = {**OPS.get(name, {}), **kw, "generator": torch.Generator().manual_seed(seed)}
    if get(name).kind == "saliency":
        options["saliency"] = x.abs().mean(1) + 1e-3
    return get(name).batch_op(x, target, targets, **options)


def images(seed: int = 0, channels: int = 3, side: int = 8) -> torch.Tensor:
    return torch.randn(B, channels, side, side, generator=torch.Generator().manual_seed(seed))


def labels(seed: int = 0) -> torch.Tensor:
    return torch.randint(0, C, (B,), generator=torch.Generator().manual_seed(seed + 1))


# ---- pair form == mixed form ---------------------------------------------------------------------------------


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", PER_SAMPLE)
def test_pair_form_with_index_cross_entropy_equals_the_soft_target_loss(name: str, per_sample: bool) -> None:
    x, y = images(), labels()
    mixed = run_op(name, x, y, C, per_sample=per_sample)
    pair = run_op(name, x, y, Targets(C, form="pair"), per_sample=per_sample)
    assert isinstance(pair.target, PairTarget) and torch.equal(pair.input, mixed.input)
    assert torch.equal(pair.target.a, y) and torch.equal(pair.target.b, y[pair.index])
    assert pair.target.weight.shape == (B,)
    logits = torch.randn(B, C, generator=torch.Generator().manual_seed(3))
    for smoothing in (0.0, 0.1):
        ce = nn.CrossEntropyLoss(reduction="none", label_smoothing=smoothing)
        dense = F.cross_entropy(logits, mixed.target, label_smoothing=smoothing)
        torch.testing.assert_close(pair_loss(ce, logits, pair.target), dense, rtol=0, atol=1e-6)


def test_pair_loss_reductions_and_plain_targets() -> None:
    logits, y = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    pair = PairTarget(y, y.flip(0), torch.tensor([1.0, 0.5, 0.25, 0.0]))
    ce = nn.CrossEntropyLoss(reduction="none")
    per_sample = pair_loss(ce, logits, pair, reduction="none")
    expected = torch.stack([0.5 * ce(logits, y)[1] + 0.5 * ce(logits, y.flip(0))[1]])
    torch.testing.assert_close(per_sample[1:2], expected)
    torch.testing.assert_close(per_sample[0], ce(logits, y)[0])
    torch.testing.assert_close(per_sample[3], ce(logits, y.flip(0))[3])
    torch.testing.assert_close(pair_loss(ce, logits, pair, "sum"), per_sample.sum())
    torch.testing.assert_close(pair_loss(ce, logits, y), ce(logits, y).mean())  # an unmixed batch


def test_pair_loss_refuses_a_reduced_loss() -> None:
    pair = PairTarget(torch.tensor([0, 1]), torch.tensor([1, 0]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"reduction='none'.*\[2\], got shape \[\]"):
        pair_loss(nn.CrossEntropyLoss(), torch.randn(2, 2), pair)
    with pytest.raises(ValueError, match="reduction must be one of"):
        pair_loss(nn.CrossEntropyLoss(reduction="none"), torch.randn(2, 2), pair, reduction="avg")


def test_fmix_reformulated_pair_is_the_first_label_alone() -> None:
    x, y = images(), labels()
    out = run_op("fmix", x, y, Targets(C, form="pair"), reformulate=True, per_sample=True)
    assert torch.equal(out.target.a, y) and torch.equal(out.target.weight, torch.ones(B))


# ---- multi-label and regression: per-sample oracles ---------------------------------------------------------


def _oracle(value: torch.Tensor, index: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """A slow per-sample reference: row i is λ_i·y_i + (1 − λ_i)·y_index[i]."""
    lam = lam.expand(value.shape[0])
    return torch.stack([lam[i] * value[i] + (1 - lam[i]) * value[index[i]] for i in range(value.shape[0])])


@pytest.mark.parametrize("name", [n for n in PER_SAMPLE if "multilabel" in get(n).callback.TASKS])
def test_multilabel_rows_are_mixed_with_the_images_lambda(name: str) -> None:
    x = images()
    y = (torch.rand(B, C, generator=torch.Generator().manual_seed(5)) > 0.5).long()  # multi-hot, rows ≠ 1
    out = run_op(name, x, y, Targets(C, task="multilabel"), per_sample=True)
    share = out.target  # PatchUp's targets weigh its own label by more than the mask's λ: compare the share
    if name != "patchup":
        torch.testing.assert_close(out.target, _oracle(y.float(), out.index, out.lam))
    assert ((share >= 0) & (share <= 1)).all()
    pair = run_op(name, x, y, Targets(C, task="multilabel", form="pair"), per_sample=True)
    torch.testing.assert_close(torch.lerp(pair.target.b, pair.target.a, pair.target.weight[:, None]), out.target)


@pytest.mark.parametrize("shape", [(B,), (B, 3)])
@pytest.mark.parametrize("name", ["mixup", "cutmix", "manifold_mixup"])
def test_regression_values_are_mixed_linearly(name: str, shape: tuple[int, ...]) -> None:
    x, y = images(), torch.randn(shape, generator=torch.Generator().manual_seed(7))
    out = run_op(name, x, y, Targets(task="regression"), per_sample=True)
    torch.testing.assert_close(out.target, _oracle(y, out.index, out.lam))
    # MSE is not affine in its target, but the pair form has the same gradient (they differ by λ(1−λ)(a−b)²)
    pair = run_op(name, x, y, Targets(task="regression", form="pair"), per_sample=True)
    pred = torch.randn(shape, requires_grad=True)
    (g_pair,) = torch.autograd.grad(pair_loss(nn.MSELoss(reduction="none"), pred, pair.target), pred)
    (g_mixed,) = torch.autograd.grad(F.mse_loss(pred, out.target), pred)
    torch.testing.assert_close(g_pair, g_mixed)


def test_invalid_rows_still_fail_with_a_message() -> None:
    x = images()
    with pytest.raises(ValueError, match=r"sum to 1 per row.*task='multilabel'"):
        run_op("mixup", x, torch.ones(B, C), C)
    with pytest.raises(ValueError, match=r"multi-label targets must lie in \[0, 1\], got \[2.0"):
        run_op("mixup", x, torch.full((B, C), 2.0), Targets(C, task="multilabel"))
    with pytest.raises(ValueError, match="multi-label targets have 4 columns but num_classes=5"):
        run_op("mixup", x, torch.zeros(B, 4), Targets(C, task="multilabel"))
    with pytest.raises(TypeError, match="regression targets must be floating point, got dtype torch.int64"):
        run_op("mixup", x, labels(), Targets(task="regression"))


# ---- segmentation: per-pixel oracles ---------------------------------------------------------------------------

IGNORE = 255


def label_images(seed: int = 0, side: int = 16, ignore: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Masks ``[B, H, W]`` (a few pixels ignored) and images whose first channel *is* the mask: wherever a method
    moves or pastes pixels, the first channel of the mix says which label each pixel must have."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.randint(0, C, (B, side // 4, side // 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    if ignore:
        mask[torch.rand(mask.shape, generator=g) < 0.1] = IGNORE
    x = torch.cat([mask[:, None].float(), torch.rand(B, 2, side, side, generator=g)], dim=1)
    return x, mask


HARD = {  # methods with binary masks: the mixed mask is hard, each pixel labelled as its source pixel
    "cutmix": {},
    "fmix": {},
    "puzzlemix": {"params": PuzzleMixParams(grids=(2, 4), n_labels=2, t_eps=0.01)},
}


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", sorted(HARD))
def test_binary_masks_give_each_pixel_the_label_of_its_source(name: str, per_sample: bool) -> None:
    x, mask = label_images()
    spec = Targets(C, task="segmentation", ignore_index=IGNORE)
    out = run_op(name, x, mask, spec, per_sample=per_sample, **HARD[name])
    assert out.target.dtype == torch.int64 and out.target.shape == mask.shape
    assert torch.equal(out.target, out.input[:, 0].round().long())  # ignored pixels stay ignored, too
    pair = run_op(name, x, mask, Targets(C, task="segmentation", form="pair", ignore_index=IGNORE),
                  per_sample=per_sample, **HARD[name])  # fmt: skip
    assert torch.equal(torch.where(pair.target.weight > 0.5, pair.target.a, pair.target.b), out.target)
    torch.testing.assert_close(pair.target.weight.mean(dim=(1, 2)), out.lam.expand(B))


def test_puzzlemix_blended_pixels_are_per_pixel_mixtures_of_the_transported_labels() -> None:
    x, mask = label_images(ignore=False)
    spec = Targets(C, task="segmentation")
    params = PuzzleMixParams(grids=(2, 4), n_labels=3, t_eps=0.01)  # blocks move for little saliency
    out = run_op("puzzlemix", x, mask, spec, per_sample=True, params=params)
    own, other = (s[:, 0].round().long() for s in out.sources)  # the transported images carry their labels
    assert not torch.equal(own, mask)  # the transport moved blocks, and the labels with them
    m = out.mask[:, 0]
    expected = m[:, None] * F.one_hot(own, C).permute(0, 3, 1, 2) + (1 - m[:, None]) * F.one_hot(other, C).permute(
        0, 3, 1, 2
    )
    torch.testing.assert_close(out.target, expected.float())
    torch.testing.assert_close(out.target.sum(1), torch.ones(B, 16, 16))


def test_mixup_gives_per_pixel_mixtures_and_zero_rows_where_both_pixels_are_ignored() -> None:
    x, mask = label_images()
    out = run_op("mixup", x, mask, Targets(C, task="segmentation", ignore_index=IGNORE), per_sample=True)
    partner = mask[out.index]
    lam = out.lam.view(B, 1, 1)
    for c in range(C):
        expected = lam * (mask == c) + (1 - lam) * (partner == c)
        torch.testing.assert_close(out.target[:, c], expected.float())
    both = (mask == IGNORE) & (partner == IGNORE)
    assert both.any() and (out.target.sum(1)[both] == 0).all()
    pair = run_op("mixup", x, mask, Targets(C, task="segmentation", form="pair", ignore_index=IGNORE), per_sample=True)
    assert pair.target.weight.shape == (B, 16, 16) and torch.equal(pair.target.b, partner)
    ce = nn.CrossEntropyLoss(reduction="none", ignore_index=IGNORE)
    logits = torch.randn(B, C, 16, 16)
    dense = F.cross_entropy(logits, out.target, reduction="none")  # zero rows: the ignored share contributes 0
    torch.testing.assert_close(pair_loss(ce, logits, pair.target, "none"), dense, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["cutmix", "fmix", "mixup"])
def test_soft_masks_are_mixed_like_the_image(name: str) -> None:
    x, mask = label_images(ignore=False)
    probs = F.one_hot(mask, C).permute(0, 3, 1, 2).float()
    hard = run_op(name, x, mask, Targets(C, task="segmentation"), per_sample=True)
    soft = run_op(name, x, probs, Targets(C, task="segmentation"), per_sample=True)
    expected = hard.target if hard.target.is_floating_point() else F.one_hot(hard.target, C).permute(0, 3, 1, 2)
    torch.testing.assert_close(soft.target, expected.float())


def test_segmentation_errors_quote_what_came() -> None:
    x, mask = label_images(ignore=False)
    spec = Targets(C, task="segmentation")
    with pytest.raises(ValueError, match=r"the mask is \[8, 8\] but the image is \[16, 16\]"):
        run_op("cutmix", x, mask[:, :8, :8], spec)
    with pytest.raises(ValueError, match=r"class-index masks \[B, H, W\] must be an integer tensor"):
        run_op("cutmix", x, mask.float(), spec)
    with pytest.raises(ValueError, match=r"label out of range \[0, 5\): got \[255.*set ignore_index"):
        run_op("cutmix", *label_images(), spec)
    with pytest.raises(ValueError, match=r"needs images \[B, C, H, W\]"):
        Targets(C, task="segmentation").read(mask, torch.randn(B, 16))
    with pytest.raises(ValueError, match="PatchUp mixes per-sample targets only"):
        run_op("patchup", x, mask, spec)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"task": "detection"}, ValueError, "task must be one of"),
        ({"form": "dense"}, ValueError, "targets must be one of"),
        ({"task": "multiclass", "num_classes": None}, ValueError, "task='multiclass' needs num_classes"),
        ({"ignore_index": 255}, ValueError, "ignore_index applies to task='segmentation' only"),
        ({"task": "segmentation", "ignore_index": 2}, ValueError, r"ignore_index=2 is a class in \[0, 5\)"),
        ({"task": "segmentation", "ignore_index": 2.5}, TypeError, "ignore_index must be an int"),
    ],
)
def test_bad_target_descriptions(kwargs: dict[str, Any], error: type, message: str) -> None:
    kwargs = {"num_classes": C, **kwargs}
    with pytest.raises(error, match=message):
        Targets(kwargs.pop("num_classes"), **kwargs)


# ---- in a Trainer: the callbacks, hidden-state mixers, RandomChoice, bf16, the batch logger ---------------------


class SegModule(pl.LightningModule):
    """A user's segmentation module: dict batches, per-pixel cross-entropy on hard masks, soft masks or pairs."""

    def __init__(self) -> None:
        super().__init__()
        self.num_classes = C
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, C, 1)
        self.seen: dict[str, list[Any]] = {"train": [], "val": []}
        self.ce = nn.CrossEntropyLoss(reduction="none", ignore_index=IGNORE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stem(x))

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self(batch["image"])
        self.seen["train"].append(copy_batch(batch))
        target = batch["mask"]
        if isinstance(target, torch.Tensor) and target.is_floating_point():
            return F.cross_entropy(logits, target)
        return pair_loss(self.ce, logits, target)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self.seen["val"].append(copy_batch(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def copy_batch(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: PairTarget(*(t.detach().clone() for t in v)) if isinstance(v, PairTarget) else v.detach().clone()
            for k, v in batch.items()}  # fmt: skip


def seg_loader(n: int = 16) -> DataLoader:
    x, mask = label_images(ignore=True)
    data = [{"image": x[i % B], "mask": mask[i % B]} for i in range(n)]
    return DataLoader(data, batch_size=8)


SEG = {"task": "segmentation", "ignore_index": IGNORE, "input_key": "image", "target_key": "mask", "seed": 0}
SEG_MIXERS = {
    "mixup": lambda **kw: MixUp(**SEG, **kw),
    "cutmix": lambda **kw: CutMix(per_sample=True, **SEG, **kw),
    "fmix": lambda **kw: FMix(**SEG, **kw),
    "puzzlemix": lambda **kw: PuzzleMix(grids=(2, 4), **SEG, **kw),
    "manifold_mixup": lambda **kw: ManifoldMixup(["stem"], **SEG, **kw),
    "random_choice": lambda **kw: RandomChoice([MixUp(), CutMix()], **SEG, **kw),
}


@pytest.mark.parametrize("form", ["mixed", "pair"])
@pytest.mark.parametrize("name", sorted(SEG_MIXERS))
def test_segmentation_batches_train_with_every_method(name: str, form: str) -> None:
    module = SegModule()
    make_trainer([SEG_MIXERS[name](targets=form)], max_epochs=1, limit_val_batches=1).fit(
        module, seg_loader(), seg_loader()
    )
    _, raw = label_images()
    for batch in module.seen["train"]:
        target = batch["mask"]
        if form == "pair":
            assert isinstance(target, PairTarget) and target.weight.shape == (B, 16, 16)
            assert ((target.weight >= 0) & (target.weight <= 1)).all()
        elif target.is_floating_point():  # blends: per-pixel probabilities, less the share of ignored pixels
            sums = target.sum(1)
            assert (target >= 0).all() and (sums <= 1 + 1e-6).all() and ((sums - 1).abs() < 1e-6).float().mean() > 0.5
        else:  # binary masks: hard labels, each pixel that of the image it came from
            assert torch.equal(target, batch["image"][:, 0].round().long()) or name == "random_choice"
    assert all(torch.equal(b["mask"], raw) for b in module.seen["val"])  # validation untouched


class PairModule(UserModule):
    """The user's module with a per-sample loss through :func:`pair_loss`."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, target = batch
        logits = self(x)
        self.seen["train"].append([x.detach().clone(), PairTarget(*(t.detach().clone() for t in target))])
        return pair_loss(nn.CrossEntropyLoss(reduction="none"), logits, target)


def test_patchup_pair_weights_are_filled_in_by_the_forward_and_refuse_masks() -> None:
    module = PairModule()
    make_trainer([PatchUp(["net.0"], block_size=3, include_input=False, targets="pair", seed=0)]).fit(
        module, make_loader()
    )
    for _, target in module.seen["train"]:
        assert isinstance(target, PairTarget) and torch.isfinite(target.weight).all()
        assert ((target.weight > 0) & (target.weight <= 1)).all()
    with pytest.raises(ValueError, match=r"PatchUp cannot mix task='segmentation' targets; it mixes \['multiclass'"):
        PatchUp(["net.0"], task="segmentation")
    with pytest.raises(ValueError, match="PatchUp cannot mix task='segmentation'"):
        RandomChoice([MixUp(), PatchUp(["net.0"])], task="segmentation")


def test_bf16_and_the_batch_logger_with_segmentation_pairs(tmp_path: Path) -> None:
    module = SegModule()
    logger = MixedBatchLogger(every_n_steps=1, max_images=4, input_key="image", dirpath=tmp_path)
    trainer = make_trainer([CutMix(targets="pair", **SEG), logger], precision="bf16-mixed", limit_val_batches=0)
    trainer.fit(module, seg_loader())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000000.png", "step_000001.png"]
    assert all(isinstance(b["mask"], PairTarget) for b in module.seen["train"])


def test_a_missing_mask_key_and_a_method_without_the_pair_form_fail_clearly() -> None:
    batch = {"image": torch.randn(B, 3, 16, 16), "label": labels()}
    mixer = CutMix(task="segmentation", input_key="image", target_key="mask", num_classes=C, seed=0)
    with pytest.raises(KeyError, match=r"CutMix: the batch dict has no key 'mask'; its keys are \['image', 'label'\]"):
        make_trainer([mixer]).fit(SegModule(), DataLoader([{k: v[i] for k, v in batch.items()} for i in range(B)], 8))

    class MixedOnly(MixUp):
        FORMS = ("mixed",)

    with pytest.raises(ValueError, match=r"MixedOnly cannot give targets='pair'; it gives \['mixed'\]"):
        MixedOnly(targets="pair")


# ---- the checks without a host sync: after a callback's first batch ---------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.uint8])
def test_one_hot_equals_torch_one_hot(dtype: torch.dtype) -> None:
    labels = torch.tensor([0, 4, 2, 2, 1]).to(dtype)
    assert torch.equal(one_hot(labels, C), F.one_hot(labels.long(), C).float())
    assert torch.equal(one_hot(labels, C, torch.bfloat16), F.one_hot(labels.long(), C).to(torch.bfloat16))


VALID = [  # (description, target) of every task, read under both checks
    ({}, torch.tensor([0, 4, 2, 1, 3, 0, 1, 2])),
    ({}, torch.softmax(torch.randn(B, C), 1)),
    ({"form": "pair"}, torch.tensor([0, 4, 2, 1, 3, 0, 1, 2])),
    ({"task": "multilabel"}, (torch.rand(B, C) > 0.5).float()),
    ({"task": "segmentation", "ignore_index": 255}, torch.randint(0, C, (B, 4, 4)).masked_fill(torch.eye(4) > 0, 255)),
    ({"task": "segmentation"}, torch.softmax(torch.randn(B, C, 4, 4), 1)),
]


@pytest.mark.parametrize(("kwargs", "target"), VALID)
def test_async_checks_read_the_same_targets(kwargs: dict[str, Any], target: torch.Tensor) -> None:
    x = torch.randn(B, 3, 4, 4)
    sync, deferred = Targets(C, **kwargs), Targets(C, **kwargs, async_checks=True)
    assert sync == deferred  # the checks are not part of what the targets are
    assert torch.equal(sync.read(target, x).value, deferred.read(target, x).value)


INVALID = [  # (description, bad target, what the message says)
    ({}, torch.tensor([0, 5, 2, 1, 3, 0, 1, 2]), r"label out of range \[0, 5\)"),
    ({"form": "pair"}, torch.tensor([0, -1, 2, 1, 3, 0, 1, 2]), r"label out of range \[0, 5\)"),
    ({}, torch.full((B, C), 0.3), "sum to 1 per row"),
    ({"task": "multilabel"}, torch.full((B, C), 2.0), r"multi-label targets must lie in \[0, 1\]"),
    ({"task": "segmentation"}, torch.full((B, 4, 4), 7), r"label out of range \[0, 5\)"),
    ({"task": "segmentation"}, torch.full((B, C, 4, 4), 0.5), "sum to 1 per pixel"),
]


@pytest.mark.parametrize(("kwargs", "target", "message"), INVALID)
def test_async_checks_still_fail_on_bad_values(kwargs: dict[str, Any], target: torch.Tensor, message: str) -> None:
    """On the CPU at once; on an accelerator as a device-side assert at the next synchronization."""
    x = torch.randn(B, 3, 4, 4)
    with pytest.raises(ValueError, match=message):
        Targets(C, **kwargs).read(target, x)
    with pytest.raises(RuntimeError, match=message):
        Targets(C, **kwargs, async_checks=True).read(target, x)


def test_a_callback_checks_its_first_batch_in_full_and_the_next_ones_on_the_device() -> None:
    cb, module = MixUp(num_classes=C, seed=0), SimpleNamespace(log=lambda *a, **k: None)
    trainer = SimpleNamespace(current_epoch=0, global_rank=0)
    cb.setup(trainer, module, "fit")
    x, good, bad = torch.randn(B, 3, 4, 4), torch.arange(B) % C, torch.full((B,), C)
    with pytest.raises(ValueError, match=r"label out of range \[0, 5\): got \[5, 5"):  # names the values
        cb.on_train_batch_start(trainer, module, [x, bad], 0)
    cb.on_train_batch_start(trainer, module, [x, good], 0)
    assert cb._targets.async_checks
    with pytest.raises(RuntimeError, match=r"label out of range \[0, 5\)"):
        cb.on_train_batch_start(trainer, module, [x, bad], 1)
    cb.setup(trainer, module, "fit")  # a new fit checks its first batch in full again
    assert not cb._targets.async_checks


def test_checks_compile_without_a_graph_break() -> None:
    """Under ``torch.compile`` the checks run on the device (no branch on a tensor's value): good labels are read as
    in eager mode, bad ones still fail."""
    torch._dynamo.reset()
    read = torch.compile(lambda y, x: Targets(C).read(y, x).value, fullgraph=True, backend="aot_eager")
    x, y = torch.randn(B, 3), torch.arange(B) % C
    assert torch.equal(read(y, x), F.one_hot(y, C).float())
    with pytest.raises(RuntimeError, match=r"label out of range \[0, 5\)"):
        read(torch.full((B,), C), x)

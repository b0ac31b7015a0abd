"""Tests of SnapMix: the CAMs against the official ``get_spm`` steps, ``snapmix_batch`` against a slow per-sample
reference of the official ``snapmix`` (resize of the partner's box, CAM-mass label weights), and the callback."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import NUM_CLASSES, UserModule, make_loader, make_trainer
from lightning_mixup.callbacks.snapmix import SnapMix
from lightning_mixup.functional import Targets
from lightning_mixup.functional.cutmix import sample_boxes
from lightning_mixup.functional.sampling import partner_index, sample_lam
from lightning_mixup.functional.snapmix import class_activation_maps, paste_resized, snapmix_batch
from strategies import gen

# ------------------------------------------------------------------------------------- slow references


def cams_ref(features, weight, bias, labels, size):
    """The official get_spm: relu, 1x1 conv with the classifier, the label's map, bilinear, min-shift, /sum."""
    maps = F.conv2d(F.relu(features), weight[:, :, None, None], bias=bias)
    out = []
    for i in range(features.shape[0]):
        m = F.interpolate(maps[i : i + 1, labels[i] : labels[i] + 1], size, mode="bilinear", align_corners=False)[0, 0]
        m = m - m.min()
        out.append(m / m.sum())
    return torch.stack(out)


def snapmix_ref(x, y, cams, alpha, per_sample, seed):
    """One sample at a time, with the draws of snapmix_batch (index, λ, λ′, box, box′ in that order)."""
    g = gen(seed)
    b, _, h, w = x.shape
    index = partner_index(b, "perm", generator=g)
    size = b if per_sample else None
    lam, lam1 = sample_lam(alpha, size, generator=g), sample_lam(alpha, size, generator=g)
    boxes, _ = sample_boxes(lam, h, w, generator=g)
    boxes1, _ = sample_boxes(lam1, h, w, generator=g)
    boxes, boxes1 = boxes.reshape(-1, 4).expand(b, 4), boxes1.reshape(-1, 4).expand(b, 4)
    out, la, lb = x.clone(), torch.ones(b), torch.zeros(b)
    for i in range(b):
        y1, y2, x1, x2 = boxes[i].tolist()
        u1, u2, v1, v2 = boxes1[i].tolist()
        j = int(index[i])
        if (y2 - y1) * (x2 - x1) > 0 and (u2 - u1) * (v2 - v1) > 0:
            patch = x[j : j + 1, :, u1:u2, v1:v2]
            out[i, :, y1:y2, x1:x2] = F.interpolate(patch, (y2 - y1, x2 - x1), mode="bilinear", align_corners=True)[0]
            la[i] = 1 - cams[i, y1:y2, x1:x2].sum() / (cams[i].sum() + 1e-8)
            lb[i] = cams[j, u1:u2, v1:v2].sum() / (cams[j].sum() + 1e-8)
    target = torch.zeros(b, NUM_CLASSES)
    for i in range(b):
        j = int(index[i])
        wa, wb = (la[i] + lb[i], la[i] + lb[i]) if y[i] == y[j] else (la[i], lb[i])
        target[i, y[i]] += wa
        target[i, y[j]] += wb
    return out, target, la, index


def random_cams(b, h, w, seed):
    c = torch.rand(b, h, w, generator=gen(seed)) ** 3
    return c / c.sum((1, 2), keepdim=True)


# ------------------------------------------------------------------------------------- the functional op


@pytest.mark.parametrize("size", [(8, 8), (7, 12)])
def test_cams_match_the_official_get_spm(size) -> None:
    g = gen(1)
    features, weight, bias = torch.randn(5, 6, 3, 4, generator=g), torch.randn(4, 6, generator=g), torch.randn(4)
    labels = torch.tensor([0, 3, 1, 2, 3])
    got = class_activation_maps(features, weight, bias, labels, size)
    torch.testing.assert_close(got, cams_ref(features, weight, bias, labels, size))
    constant = class_activation_maps(torch.zeros(2, 6, 3, 3), weight, bias, labels[:2], size)
    assert torch.equal(constant, torch.zeros(2, *size))  # no mass: snapmix_batch falls back to the box areas


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
@pytest.mark.parametrize("shape", [(6, 2, 12, 12), (5, 1, 9, 14)])
def test_matches_the_slow_per_sample_reference(per_sample, seed, shape) -> None:
    b, _, h, w = shape
    x = torch.randn(*shape, generator=gen(seed + 100), dtype=torch.float64)
    y = torch.randint(0, NUM_CLASSES, (b,), generator=gen(seed + 200))
    cams = random_cams(b, h, w, seed)
    out = snapmix_batch(x, y, NUM_CLASSES, 2.0, cams=cams, per_sample=per_sample, generator=gen(seed))
    ref_x, ref_t, ref_la, ref_index = snapmix_ref(x, y, cams, 2.0, per_sample, seed)
    assert torch.equal(out.index, ref_index)
    torch.testing.assert_close(out.input, ref_x)
    torch.testing.assert_close(out.target, ref_t)
    torch.testing.assert_close(out.lam, ref_la)
    assert out.mask.dtype == torch.bool
    torch.testing.assert_close(out.input, torch.where(out.mask, *out.sources))


def test_uniform_cams_give_the_box_areas_and_resized_content() -> None:
    x, y = torch.randn(8, 3, 16, 16, generator=gen(0)), torch.arange(8) % NUM_CLASSES
    out = snapmix_batch(x, y, NUM_CLASSES, 1.0, cams=torch.full((8, 16, 16), 1 / 256), generator=gen(3))
    own = out.mask.float().mean((1, 2, 3))
    torch.testing.assert_close(out.lam, own)  # uniform CAM: λ_a is the kept area
    rows = out.target.sum(1)
    assert (rows >= 0).all() and (rows <= 2 * 2 + 1e-5).all()


def test_paste_resized_equals_interpolate_of_the_box() -> None:
    x = torch.randn(4, 2, 10, 10, generator=gen(5))
    index = torch.tensor([2, 3, 0, 1])
    boxes = torch.tensor([[1, 7, 2, 5], [0, 1, 0, 10], [3, 4, 3, 9], [0, 10, 0, 10]])
    boxes_from = torch.tensor([[0, 3, 4, 10], [2, 9, 5, 6], [1, 5, 0, 1], [4, 6, 4, 6]])
    got = paste_resized(x, index, boxes, boxes_from)
    for i in range(4):
        y1, y2, x1, x2 = boxes[i].tolist()
        u1, u2, v1, v2 = boxes_from[i].tolist()
        patch = x[index[i] : index[i] + 1, :, u1:u2, v1:v2]
        want = F.interpolate(patch, (y2 - y1, x2 - x1), mode="bilinear", align_corners=True)[0]
        torch.testing.assert_close(got[i, :, y1:y2, x1:x2], want)


def test_constant_cams_fall_back_to_the_areas_and_same_labels_add_up() -> None:
    x, y = torch.randn(6, 1, 8, 8), torch.zeros(6, dtype=torch.long)  # every pair has the same label
    out = snapmix_batch(x, y, NUM_CLASSES, 1.0, cams=torch.zeros(6, 8, 8), generator=gen(7))
    kept = out.mask.float().mean((1, 2, 3))
    torch.testing.assert_close(out.lam, kept)
    if (kept < 1).all():  # both weights λ_a + λ_b = lam + (1 − lam) = 1: the row sums to 2 (official)
        torch.testing.assert_close(out.target[:, 0], torch.full((6,), 2.0))


def test_refuses_other_tasks_forms_and_bad_cams() -> None:
    x, y = torch.randn(4, 3, 8, 8), torch.arange(4)
    cams = torch.full((4, 8, 8), 1 / 64)
    with pytest.raises(ValueError, match="'pair'"):
        snapmix_batch(x, y, Targets(4, form="pair"), cams=cams)
    with pytest.raises(ValueError, match="'multilabel'"):
        snapmix_batch(x, torch.ones(4, 4), Targets(4, task="multilabel"), cams=cams)
    with pytest.raises(ValueError, match=r"\[4, 7, 8\]"):
        snapmix_batch(x, y, 4, cams=torch.ones(4, 7, 8))
    with pytest.raises(ValueError, match="-1"):
        snapmix_batch(x, y, 4, -1.0, cams=cams)
    for task, form in [("multilabel", "mixed"), ("multiclass", "pair")]:
        with pytest.raises(ValueError, match=repr(task if task != "multiclass" else form)):
            SnapMix(task=task, targets=form)


# ------------------------------------------------------------------------------------- the callback


class CamModule(UserModule):
    """A module with a feature map before pooling: ``features`` (conv-ReLU) then ``pool`` and ``fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, NUM_CLASSES)
        del self.net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean((2, 3)))


@pytest.mark.parametrize(
    "module, layers",
    [(CamModule, ("features", "fc")), (UserModule, ("net.1", "net.4"))],
)
def test_callback_trains_and_leaves_validation_alone(module, layers) -> None:
    module = module()
    loader = make_loader()
    callback = SnapMix(alpha=5.0, feature_layer=layers[0], classifier_layer=layers[1], seed=0)
    make_trainer([callback], limit_val_batches=2, num_sanity_val_steps=0).fit(module, loader, loader)
    assert module.seen["train"] and "feature_layer" in callback.state_key
    for (x, target), (cx, y) in zip(module.seen["train"], loader):
        assert target.shape == (x.shape[0], NUM_CLASSES) and (target >= 0).all()
        assert not torch.equal(x, cx)
        assert (target.sum(1) <= 4 + 1e-5).all()
    for (x, y), (vx, vy) in zip(module.seen["val"], loader):
        assert torch.equal(x, vx) and torch.equal(y, vy)


def test_setup_refuses_missing_or_wrong_layers() -> None:
    loader = make_loader(n=8)
    with pytest.raises(ValueError, match="'net.layer4'.*no such submodule.*'net.4'"):
        make_trainer([SnapMix(feature_layer="net.layer4", classifier_layer="net.4")]).fit(UserModule(), loader)
    with pytest.raises(ValueError, match="'net.fc'.*no such submodule"):
        make_trainer([SnapMix(feature_layer="net.1", classifier_layer="net.fc")]).fit(UserModule(), loader)
    with pytest.raises(TypeError, match=r"nn.Linear.*\['net.4'\]"):
        make_trainer([SnapMix(feature_layer="net.1", classifier_layer="net.0")]).fit(UserModule(), loader)
    with pytest.raises(TypeError, match="feature_layer"):
        SnapMix(feature_layer=3)


def test_saliency_is_an_alias_of_cams() -> None:
    x, y, cams = torch.randn(4, 1, 8, 8), torch.arange(4), random_cams(4, 8, 8, 0)
    a = snapmix_batch(x, y, 4, cams=cams, generator=gen(1))
    b = snapmix_batch(x, y, 4, saliency=cams, generator=gen(1))
    assert torch.equal(a.input, b.input) and torch.equal(a.target, b.target)
    with pytest.raises(ValueError, match="exactly one"):
        snapmix_batch(x, y, 4, generator=gen(1))

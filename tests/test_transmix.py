"""TransMix: the functional ops against a per-sample oracle of the official ``transmix_label``, the small ViT, and
the callback's attention hook inside a real Trainer."""

from __future__ import annotations

from functools import partial
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from conftest import NUM_CLASSES, Recorder, UserModule, copy, make_loader, make_trainer
from strategies import SEEDS, draw_images, gen
from lightning_mixup.callbacks.transmix import TransMix
from lightning_mixup.functional import PairTarget, Targets, cutmix_batch, mixup_batch, pair_loss
from lightning_mixup.functional.transmix import (
    attention_lam,
    class_attention,
    patch_grid,
    patch_mask,
    transmix_batch,
    transmix_lam,
    transmix_targets,
)
from lightning_mixup.models import Classifier
from lightning_mixup.models.nets.vit import ViT

LAYER = "net.blocks.1.attn.attn_drop"


def small_vit(channels: int = 3, patch_size: int = 2, **kwargs: Any) -> ViT:
    return ViT(channels, NUM_CLASSES, image_size=8, patch_size=patch_size, dim=16, depth=2, heads=2, **kwargs)


def random_attention(seed: int, batch: int, heads: int, tokens: int) -> Tensor:
    return torch.softmax(3 * torch.randn(batch, heads, tokens, tokens, generator=gen(seed)), dim=-1)


def official_own_lam(attention: Tensor, own: Tensor, ratio: float = 0.5) -> Tensor:
    """The official ``transmix_label`` one sample and one patch at a time, in its own terms (the partner's box
    ``mask``, ``lam0`` its area, ``lam1 = w2 / (w1 + w2)``, ``lam = (lam0 + lam1) / 2`` the partner's share), turned
    into the share of the sample's own label ``1 − lam``; ``ratio`` generalises its 0.5 (our ``area_weight``)."""
    batch, heads, tokens, _ = attention.shape
    height, width = own.shape[-2:]
    side = int((tokens - 1) ** 0.5)
    out = []
    for b in range(batch):
        box = ~own[b if own.shape[0] > 1 else 0, 0]
        lam0 = float(box.double().mean())
        w1 = w2 = 0.0
        for k in range(tokens - 1):
            i, j = divmod(k, side)
            a = sum(float(attention[b, h, 0, 1 + k]) for h in range(heads)) / heads
            if box[i * height // side, j * width // side]:  # nearest: the patch's top-left pixel
                w2 += a
            else:
                w1 += a
        lam = ratio * lam0 + (1 - ratio) * w2 / (w1 + w2)
        out.append(1 - lam)
    return torch.tensor(out, dtype=torch.float32)


# ------------------------------------------------------------------------------------- the functional ops


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS, per_sample=st.booleans(), patch=st.sampled_from([1, 2, 4]), heads=st.integers(1, 3),
       area_weight=st.sampled_from([0.0, 0.5, 1.0, 0.3]))  # fmt: skip
def test_lam_is_the_official_attention_share(
    seed: int, per_sample: bool, patch: int, heads: int, area_weight: float
) -> None:
    x = draw_images(seed, 5, 1, 8, 8, torch.float32)
    mixed = cutmix_batch(x, torch.arange(5) % 3, 3, per_sample=per_sample, generator=gen(seed + 1))
    tokens = (8 // patch) ** 2 + 1
    attention = random_attention(seed + 2, 5, heads, tokens)
    lam, lam_attn = transmix_lam(attention, mixed.mask, mixed.lam, area_weight=area_weight)
    torch.testing.assert_close(lam, official_own_lam(attention, mixed.mask, area_weight), atol=1e-5, rtol=0)
    torch.testing.assert_close(lam_attn, official_own_lam(attention, mixed.mask, 0.0), atol=1e-5, rtol=0)
    assert lam.shape == (5,) and bool(((lam >= 0) & (lam <= 1)).all())


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, per_sample=st.booleans())
def test_uniform_attention_gives_the_area_lam_of_cutmix(seed: int, per_sample: bool) -> None:
    x = draw_images(seed, 6, 2, 8, 8, torch.float32)
    mixed = cutmix_batch(x, torch.arange(6) % 4, 4, per_sample=per_sample, generator=gen(seed))
    # one patch per pixel: the patch grid is the image, so the attention share of uniform attention is the area
    uniform = torch.full((6, 2, 65, 65), 1 / 65)
    for area_weight in (0.0, 0.5):
        lam, lam_attn = transmix_lam(uniform, mixed.mask, mixed.lam, area_weight=area_weight)
        torch.testing.assert_close(lam_attn, mixed.lam.expand(6), atol=1e-6, rtol=0)
        torch.testing.assert_close(lam, mixed.lam.expand(6), atol=1e-6, rtol=0)
    # 2x2 patches: the share of the patches whose top-left pixel is the sample's own (nearest, official)
    lam, lam_attn = transmix_lam(torch.full((6, 2, 17, 17), 1 / 17), mixed.mask, mixed.lam, area_weight=0.0)
    own = mixed.mask.expand(6, 1, 8, 8)[:, 0, ::2, ::2].float().mean(dim=(1, 2))
    torch.testing.assert_close(lam_attn, own, atol=1e-6, rtol=0)


def test_patch_helpers() -> None:
    mask = torch.ones(2, 1, 4, 6, dtype=torch.bool)
    mask[0, 0, 0:2, 0:3] = False  # exactly patch (0, 0) of a 2x3 grid of 2x2 patches
    mask[1, 0, 1, 1] = False  # not a top-left pixel: nearest keeps the patch
    assert patch_mask(mask, (2, 3)).tolist() == [[False, False, True, True, True, True], [True] * 6]
    assert patch_grid(6, 4, 6) == (2, 3) and patch_grid(64, 32, 32) == (8, 8)
    with pytest.raises(ValueError, match="7 patch tokens"):
        patch_grid(7, 8, 8)
    attention = torch.zeros(1, 2, 3, 3)
    attention[0, 0, 0] = torch.tensor([0.5, 0.2, 0.3])
    attention[0, 1, 0] = torch.tensor([0.0, 0.4, 0.6])
    torch.testing.assert_close(class_attention(attention), torch.tensor([[0.3, 0.45]]))
    torch.testing.assert_close(class_attention(attention[:, 0]), torch.tensor([[0.2, 0.3]]))  # [B, N, N]: no heads
    torch.testing.assert_close(attention_lam(torch.tensor([[0.3, 0.45]]), torch.tensor([[True, False]])),
                               torch.tensor([0.4]))  # fmt: skip
    assert attention_lam(torch.zeros(1, 2), torch.tensor([[True, False]])).item() == 0.5
    with pytest.raises(ValueError, match=r"\[B, heads, N, N\]"):
        class_attention(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="no patch token"):
        class_attention(torch.zeros(2, 1, 1))


@settings(max_examples=15, deadline=None)
@given(seed=SEEDS, per_sample=st.booleans())
def test_the_switch_is_cutmix_or_mixup_with_their_own_draws(seed: int, per_sample: bool) -> None:
    x, y = draw_images(seed, 6, 3, 8, 8, torch.float32), torch.arange(6) % 4
    both = {"per_sample": per_sample, "partner": "perm"}
    cut = transmix_batch(x, y, 4, 1.0, switch_prob=1.0, generator=gen(seed), **both)
    ref = cutmix_batch(x, y, 4, 1.0, generator=gen(seed), **both)
    for a, b in zip(cut, ref):
        assert (a is None and b is None) or torch.equal(a, b)
    mix = transmix_batch(x, y, 4, 1.0, mixup_alpha=0.4, switch_prob=0.0, generator=gen(seed), **both)
    ref = mixup_batch(x, y, 4, 0.4, generator=gen(seed), **both)
    assert mix.mask is None and torch.equal(mix.input, ref.input) and torch.equal(mix.lam, ref.lam)
    only_cutmix = transmix_batch(x, y, 4, mixup_alpha=0.0, switch_prob=0.0, generator=gen(seed), **both)
    assert only_cutmix.mask is not None  # mixup off: CutMix every batch


def test_switch_frequency_and_lam_is_the_mask_mean() -> None:
    x, y, g = torch.randn(4, 1, 8, 8), torch.arange(4), gen(0)
    draws = [transmix_batch(x, y, 4, switch_prob=0.8, generator=g) for _ in range(400)]
    share = sum(m.mask is not None for m in draws) / len(draws)
    assert 0.74 < share < 0.86
    for m in draws[:50]:
        if m.mask is not None:
            torch.testing.assert_close(m.lam, m.mask.float().mean(), atol=1e-6, rtol=0)


def test_reweighted_targets_sum_to_one_and_pair_form_is_the_mixed_form() -> None:
    x, y = torch.randn(8, 1, 8, 8), torch.arange(8) % 4
    attention = random_attention(0, 8, 2, 17)
    for per_sample in (False, True):
        mixed = transmix_batch(x, y, 4, switch_prob=1.0, per_sample=per_sample, generator=gen(3))
        out = transmix_targets(mixed, y, 4, attention)
        torch.testing.assert_close(out.target.sum(dim=1), torch.ones(8))
        lam, _ = transmix_lam(attention, mixed.mask, mixed.lam)
        torch.testing.assert_close(out.lam, lam)
        own = out.target[torch.arange(8), y]
        other = out.target[torch.arange(8), y[out.index]]
        differ = y != y[out.index]
        torch.testing.assert_close(own[differ], lam[differ])
        torch.testing.assert_close(other[differ], 1 - lam[differ])
        pair = transmix_targets(
            transmix_batch(x, y, Targets(4, form="pair"), switch_prob=1.0, per_sample=per_sample, generator=gen(3)),
            y, Targets(4, form="pair"), attention,
        )  # fmt: skip
        assert isinstance(pair.target, PairTarget)
        logits = torch.randn(8, 4)
        ce = partial(F.cross_entropy, reduction="none")
        torch.testing.assert_close(pair_loss(ce, logits, pair.target), F.cross_entropy(logits, out.target))
    mixup = transmix_batch(x, y, 4, switch_prob=0.0, generator=gen(3))
    assert transmix_targets(mixup, y, 4, attention) is mixup  # mixup keeps its λ (official)


def test_own_image_everywhere_is_the_identity() -> None:
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4)
    mixed = transmix_batch(x, y, 4, switch_prob=1.0, partner="flip", generator=gen(0))
    full = mixed._replace(mask=torch.ones(1, 1, 8, 8, dtype=torch.bool), lam=torch.tensor(1.0))
    out = transmix_targets(full, y, 4, random_attention(1, 4, 2, 17))
    torch.testing.assert_close(out.lam, torch.ones(4))
    torch.testing.assert_close(out.target, torch.eye(4))


@pytest.mark.parametrize("switch_prob", [0.0, 1.0])
def test_segmentation_masks_follow_the_image(switch_prob: float) -> None:
    labels = torch.randint(0, 4, (6, 8, 8), generator=gen(0))
    x = torch.cat([labels[:, None].float(), torch.randn(6, 2, 8, 8, generator=gen(1))], dim=1)
    seg = Targets(4, task="segmentation")
    mixed = transmix_batch(x, labels, seg, switch_prob=switch_prob, generator=gen(2))
    if switch_prob == 1.0:
        assert torch.equal(mixed.target, mixed.input[:, 0].long())
        with pytest.raises(ValueError, match="segmentation"):
            transmix_targets(mixed, labels, seg, random_attention(0, 6, 1, 17))
    else:
        assert mixed.target.shape == (6, 4, 8, 8)  # mixup blends per-pixel probabilities


@pytest.mark.parametrize(
    ("kwargs", "error", "quoted"),
    [
        ({"mixup_alpha": -0.1}, ValueError, "-0.1"),
        ({"mixup_alpha": "0.8"}, TypeError, "'0.8'"),
        ({"switch_prob": 1.5}, ValueError, "1.5"),
        ({"switch_prob": True}, TypeError, "True"),
        ({"alpha": 0.0}, ValueError, "0.0"),
        ({"per_sample": 1}, TypeError, "1"),
    ],
)
def test_bad_options_are_quoted(kwargs: dict[str, Any], error: type[Exception], quoted: str) -> None:
    x, y = torch.randn(4, 1, 8, 8), torch.arange(4)
    if "per_sample" not in kwargs:
        with pytest.raises(error, match=quoted):
            transmix_batch(x, y, 4, generator=gen(0), **kwargs)
    with pytest.raises(error, match=quoted):
        TransMix(LAYER, **kwargs)


def test_bad_callback_options_and_input_are_quoted() -> None:
    with pytest.raises(ValueError, match="1.5"):
        TransMix(LAYER, area_weight=1.5)
    with pytest.raises(ValueError, match="0"):
        TransMix(LAYER, num_prefix_tokens=0)
    with pytest.raises(TypeError, match="3"):
        TransMix(3)
    with pytest.raises(ValueError, match="net_layers.transmix"):
        TransMix(None)
    with pytest.raises(ValueError, match="segmentation"):
        TransMix(LAYER, task="segmentation")
    with pytest.raises(ValueError, match=r"\[2, 3, 4\]"):
        transmix_batch(torch.randn(2, 3, 4), torch.arange(2), 4)
    with pytest.raises(ValueError, match="area_weight"):
        transmix_lam(random_attention(0, 1, 1, 17), torch.ones(1, 1, 8, 8, dtype=torch.bool), 1.0, area_weight=2.0)


# ------------------------------------------------------------------------------------- the ViT


def test_vit_exposes_its_attention() -> None:
    net = small_vit(channels=1)
    captured: list[Tensor] = []
    net.get_submodule(net.last_attention_layer).register_forward_hook(lambda m, args, out: captured.append(args[0]))
    net.blocks[-1].attn.keep_attention = True
    logits = net(torch.randn(3, 1, 8, 8))
    assert logits.shape == (3, NUM_CLASSES) and captured[0].shape == (3, 2, 17, 17)
    torch.testing.assert_close(captured[0].sum(dim=-1), torch.ones(3, 2, 17))
    torch.testing.assert_close(net.blocks[-1].attn.attention, captured[0].detach())
    assert ViT(3, 10, image_size=32, patch_size=4, dim=24, depth=1, heads=3).grid == (8, 8)
    with pytest.raises(ValueError, match="multiple of patch_size"):
        ViT(image_size=8, patch_size=3)
    with pytest.raises(ValueError, match="heads"):
        ViT(dim=10, heads=4)
    with pytest.raises(ValueError, match=r"\[8, 8\]"):
        net(torch.randn(1, 1, 16, 16))


# ------------------------------------------------------------------------------------- the callback


class Watcher(Classifier):
    """A Classifier that keeps, per training step, the batch as the loss sees it and the last block's attention."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(small_vit(), NUM_CLASSES, optimizer=partial(torch.optim.SGD, lr=0.05), **kwargs)
        self.net.blocks[-1].attn.keep_attention = True
        self.steps: list[tuple[Tensor, Tensor, Tensor]] = []
        self.validated: list[Tensor] = []

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        loss = super().training_step(batch, batch_idx)
        x, y = batch
        self.steps.append((x.clone(), copy(y), self.net.blocks[-1].attn.attention.clone()))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.validated.append(batch[0].clone())
        super().validation_step(batch, batch_idx)


@pytest.mark.parametrize("area_weight", [0.0, 0.5])
def test_fit_targets_are_the_attention_share_of_the_captured_attention(area_weight: float) -> None:
    loader = make_loader(n=48)
    module, before, after = Watcher(), Recorder(), Recorder(at_end=True)
    mixer = TransMix(LAYER, switch_prob=1.0, partner="flip", area_weight=area_weight, seed=0)
    make_trainer([before, mixer, after]).fit(module, loader, loader)
    assert len(module.steps) == len(before.batches) == 6
    for (raw, labels), (x, y, attention), (_, y_end) in zip(before.batches, module.steps, after.batches):
        assert torch.equal(y, y_end)  # what the loss read is what the batch holds at batch end
        own = (x == raw)[:1, :1]  # one box for the batch; random pixels differ from their partner's
        torch.testing.assert_close(x, torch.where(own, raw, raw.flip(0)))
        cls = attention[:, :, 0, 1:].mean(dim=1)
        own_patches = own[0, 0, ::2, ::2].flatten()  # nearest: each 2x2 patch's top-left pixel
        oracle = area_weight * own.float().mean() + (1 - area_weight) * cls[:, own_patches].sum(1) / cls.sum(1)
        torch.testing.assert_close(y.sum(dim=1), torch.ones(8))
        differ = labels != labels.flip(0)
        rows = torch.arange(8)
        torch.testing.assert_close(y[rows, labels][differ], oracle[differ], atol=1e-5, rtol=0)
        torch.testing.assert_close(y[rows, labels.flip(0)][differ], 1 - oracle[differ], atol=1e-5, rtol=0)


def test_fit_with_mixup_and_cutmix_leaves_validation_untouched() -> None:
    loader = make_loader(n=64)
    module, after = Watcher(label_smoothing=0.1), Recorder(at_end=True)
    trainer = make_trainer([TransMix(LAYER, seed=1, per_sample=True), after], num_sanity_val_steps=1)
    trainer.fit(module, loader, loader)
    assert trainer.callback_metrics["mix/cutmix"] > 0
    for _, y in after.batches:
        assert torch.isfinite(y).all()
        torch.testing.assert_close(y.sum(dim=1), torch.ones(8))
    data = torch.cat([x for x, _ in loader])
    seen = torch.cat([step[0] for step in module.steps])
    assert not torch.equal(seen, data)  # training was mixed
    assert torch.equal(torch.cat(module.validated[1:]), data)  # after the sanity check's batch
    module.validated.clear()
    trainer.validate(module, loader, verbose=False)
    assert torch.equal(torch.cat(module.validated), data)


def test_pair_targets_are_filled_in_the_forward() -> None:
    module, after = Watcher(), Recorder(at_end=True)
    make_trainer([TransMix(LAYER, switch_prob=1.0, targets="pair", seed=2), after]).fit(module, make_loader())
    for _, pair in after.batches:
        assert isinstance(pair, PairTarget) and torch.isfinite(pair.weight).all()
        assert ((pair.weight >= 0) & (pair.weight <= 1)).all()


def test_a_missing_layer_fails_in_setup_with_the_attention_names() -> None:
    with pytest.raises(ValueError, match=r"net.blocks.7.attn.attn_drop.*net.blocks.1.attn.attn_drop"):
        make_trainer([TransMix("net.blocks.7.attn.attn_drop")]).fit(Watcher(), make_loader())
    with pytest.raises(ValueError, match=r"'net.5'.*its modules are \['net', 'net.0'"):
        make_trainer([TransMix("net.5")]).fit(UserModule(), make_loader())


def test_a_layer_without_attention_weights_fails_on_the_first_batch() -> None:
    with pytest.raises(ValueError, match=r"'net.blocks.1.mlp.1'.*GELU gave a tensor of shape \[8, 17, 32\]"):
        make_trainer([TransMix("net.blocks.1.mlp.1")]).fit(Watcher(), make_loader())
    with pytest.raises(ValueError, match=r"'net.0'.*Conv2d gave a tensor of shape \[8, 8, 8, 8\].*rows sum"):
        make_trainer([TransMix("net.0")]).fit(UserModule(), make_loader())


class FusedAttention(nn.Module):
    fused_attn = True

    def __init__(self) -> None:
        super().__init__()
        self.attn_drop = nn.Dropout(0.0)


def test_fused_attention_is_refused_in_setup() -> None:
    module = UserModule()
    module.attn = FusedAttention()
    with pytest.raises(ValueError, match="fused_attn=True"):
        make_trainer([TransMix("attn.attn_drop")]).fit(module, make_loader())


class MHAModule(UserModule):
    """Attention from an ``nn.MultiheadAttention`` over 2x2 patches, with or without its weights."""

    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 8, 2, stride=2)
        self.cls = nn.Parameter(torch.zeros(1, 1, 8))
        self.mha = nn.MultiheadAttention(8, 2, batch_first=True)
        self.fc = nn.Linear(8, NUM_CLASSES)
        self.need_weights = need_weights

    def forward(self, x: Tensor) -> Tensor:
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), self.embed(x).flatten(2).transpose(1, 2)], 1)
        out, _ = self.mha(tokens, tokens, tokens, need_weights=self.need_weights)
        return self.fc(out[:, 0])


def test_multihead_attention_weights_are_read_and_a_missing_weight_is_explained() -> None:
    after = Recorder(at_end=True)
    make_trainer([TransMix("mha", switch_prob=1.0, seed=0), after]).fit(MHAModule(True), make_loader())
    assert all(torch.isfinite(y).all() for _, y in after.batches)
    with pytest.raises(ValueError, match="need_weights=False"):
        make_trainer([TransMix("mha")]).fit(MHAModule(False), make_loader())


class SkipsLayer(pl.Callback):
    """Makes the attention layer skip the forward from the second training batch on."""

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if batch_idx == 1:
            pl_module.net.blocks[-1].attn = nn.Identity()


def test_an_attention_layer_the_forward_skips_fails_the_step() -> None:
    with pytest.raises(RuntimeError, match="never re-weighted"):
        module = Classifier(small_vit(), NUM_CLASSES)
        make_trainer([SkipsLayer(), TransMix(LAYER, switch_prob=1.0)]).fit(module, make_loader())

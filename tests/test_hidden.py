"""Manifold Mixup and PatchUp through forward hooks on a user's own network."""

from __future__ import annotations

import importlib
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import NUM_CLASSES, Recorder, UserModule, make_loader, make_trainer
from lightning_mixup import ManifoldMixup, PatchUp, RandomChoice
from lightning_mixup.callbacks import manifold_mixup as manifold_module
from lightning_mixup.callbacks.base import MixStep
from lightning_mixup.functional import block_masks, mixup_batch, patchup_batch, patchup_hidden, sample_lam
from lightning_mixup.functional.patchup import patchup_loss_targets, unchanged_fraction
from lightning_mixup.models.classifier import softmax_bce

patchup_module = importlib.import_module("lightning_mixup.functional.patchup")  # the package exports a patchup()
patchup_callback_module = importlib.import_module("lightning_mixup.callbacks.patchup")


class Custom(nn.Module):
    """A user's own network with named stages (not an nn.Sequential)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.block = nn.Sequential(nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, NUM_CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


def sequential() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, NUM_CLASSES),
    )


def module_with(net: nn.Module) -> UserModule:
    module = UserModule()
    module.net = net
    return module


def _split(net: nn.Module, layer: str) -> tuple[Any, Any]:
    """head and tail of the network at the named layer, by hand."""
    if isinstance(net, nn.Sequential):
        k = int(layer) + 1
        return net[:k], net[k:]
    if layer == "stem":
        return net.stem, lambda h: net.head(net.block(h))
    return (lambda x: net.block(net.stem(x))), net.head


class Spy:
    """Wraps a functional op to keep the arguments of its last call."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.calls = fn, []

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.fn(*args)


def _setup(cb: Any, module: UserModule) -> torch.Generator:
    cb.setup(SimpleNamespace(global_rank=0), module, "fit")
    return torch.Generator().manual_seed(0)


CASES = [(sequential, "0"), (sequential, "2"), (Custom, "stem"), (Custom, "block")]


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("make_net", "layer"), CASES)
def test_manifold_mixup_equals_tail_of_mixed_head(
    make_net: Any, layer: str, per_sample: bool, monkeypatch: Any
) -> None:
    torch.manual_seed(0)
    net = make_net()
    module = module_with(net)
    cb = ManifoldMixup(layers=[f"net.{layer}"], include_input=False, per_sample=per_sample, num_classes=NUM_CLASSES)
    spy = Spy(manifold_module.mixup)
    monkeypatch.setattr(manifold_module, "mixup", spy)
    g = _setup(cb, module)
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % NUM_CLASSES
    mixed = cb.mix(MixStep(x, y, NUM_CLASSES, g))
    out = module(x)
    ((_, index, lam),) = spy.calls
    head, tail = _split(net, layer)
    h = head(x)
    lam_b = lam.view(-1, 1, 1, 1) if lam.ndim else lam
    torch.testing.assert_close(out, tail(lam_b * h + (1 - lam_b) * h[index]))
    one_hot = F.one_hot(y, NUM_CLASSES).float()
    lam_y = lam.view(-1, 1) if lam.ndim else lam
    torch.testing.assert_close(mixed.target, lam_y * one_hot + (1 - lam_y) * one_hot[index])
    torch.testing.assert_close(module(x), net(x))  # disarmed after one forward
    cb.teardown(None, module, "fit")


@pytest.mark.parametrize("shared_mask", [False, True])
@pytest.mark.parametrize("mode", ["soft", "hard"])
@pytest.mark.parametrize(("make_net", "layer"), CASES)
def test_patchup_equals_tail_of_patched_head(
    make_net: Any, layer: str, mode: str, shared_mask: bool, monkeypatch: Any
) -> None:
    torch.manual_seed(0)
    net = make_net()
    module = module_with(net)
    cb = PatchUp(
        layers=[f"net.{layer}"],
        mode=mode,
        block_size=3,
        gamma=0.5,
        include_input=False,
        shared_mask=shared_mask,
        num_classes=NUM_CLASSES,
    )
    spy = Spy(patchup_module.patchup)
    monkeypatch.setattr(patchup_callback_module, "patchup", spy)  # the functional op the hook calls
    g = _setup(cb, module)
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % NUM_CLASSES
    mixed = cb.mix(MixStep(x, y, NUM_CLASSES, g))
    assert torch.isnan(mixed.target).all()  # filled in by the forward
    out = module(x)
    ((_, index, lam, own, _mode),) = spy.calls
    holes = 1 - own.float()  # the mask is True on the sample's own features
    assert holes.shape == ((1,) if shared_mask else (6,)) + (8, 8, 8)
    assert set(holes.unique().tolist()) <= {0.0, 1.0}
    head, tail = _split(net, layer)
    h = head(x)
    partner = h[index] if mode == "hard" else lam * h + (1 - lam) * h[index]
    torch.testing.assert_close(out, tail((1 - holes) * h + holes * partner))
    unchanged = 1 - holes.flatten(1).mean(1)
    torch.testing.assert_close(unchanged_fraction(own), unchanged)
    one_hot = F.one_hot(y, NUM_CLASSES).float()
    y_b = one_hot[index] if mode == "hard" else lam * one_hot + (1 - lam) * one_hot[index]
    p_u = unchanged.view(-1, 1)
    torch.testing.assert_close(mixed.target, p_u * one_hot + (1 - p_u) * y_b)
    torch.testing.assert_close(mixed.target.sum(1), torch.ones(6))
    cb.teardown(None, module, "fit")


def _hook_count(module: nn.Module) -> int:
    return sum(len(m._forward_hooks) for m in module.modules())


MIXERS = {
    "manifold": lambda **kw: ManifoldMixup(layers=["net.0", "net.2"], **kw),
    "patchup_soft": lambda **kw: PatchUp(layers=["net.0", "net.2"], block_size=3, **kw),
    "patchup_hard": lambda **kw: PatchUp(layers=["net.0", "net.2"], mode="hard", block_size=3, **kw),
    "random_choice": lambda **kw: RandomChoice(
        [
            ManifoldMixup(layers=["net.0"], include_input=False),
            PatchUp(layers=["net.2"], block_size=3, p=1.0, include_input=False),
        ],
        **kw,
    ),
}


@pytest.mark.parametrize("name", sorted(MIXERS))
def test_fires_once_per_training_step_never_in_evaluation_and_leaves_no_hook(name: str) -> None:
    module = module_with(sequential())
    loader = make_loader()
    kwargs = {} if name == "random_choice" else {"include_input": False, "p": 1.0}
    cb = MIXERS[name](**kwargs)
    after = Recorder()
    trainer = make_trainer([cb, after], max_epochs=2, num_sanity_val_steps=2)
    trainer.fit(module, loader, loader)
    fired = sum(c._fired for c in cb.mixers) if name == "random_choice" else cb._fired
    assert fired == trainer.global_step == 2 * len(loader)
    assert _hook_count(module) == 0
    for _, y in module.seen["train"]:
        assert y.shape == (8, NUM_CLASSES) and torch.isfinite(y).all()
        torch.testing.assert_close(y.sum(1), torch.ones(8))
    # evaluation: outputs are the plain network's
    trainer.validate(module, loader, verbose=False)
    trainer.test(module, loader, verbose=False)
    preds = trainer.predict(module, loader)
    assert fired == (sum(c._fired for c in cb.mixers) if name == "random_choice" else cb._fired)
    torch.testing.assert_close(torch.cat(preds), module(torch.cat([x for x, _ in loader])))
    assert _hook_count(module) == 0
    for stage in ("val", "test", "predict"):
        assert all(y.dtype == torch.int64 for _, y in module.seen[stage])


def test_no_hook_remains_after_an_exception_in_training_step() -> None:
    class Failing(UserModule):
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if batch_idx == 1:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    module = Failing()
    module.net = sequential()
    with pytest.raises(RuntimeError, match="boom"):
        make_trainer([PatchUp(layers=["net.0"], block_size=3, p=1.0)]).fit(module, make_loader())
    assert _hook_count(module) == 0


def test_include_input_mixes_the_input_sometimes() -> None:
    before, after = Recorder(), Recorder()
    cb = ManifoldMixup(layers=["net.0"], include_input=True, seed=0)
    module = module_with(sequential())
    make_trainer([before, cb, after], max_epochs=5).fit(module, make_loader())
    changed = sum(not torch.equal(a[0], b[0]) for a, b in zip(before.batches, after.batches))
    assert 0 < changed < len(before.batches)
    assert cb._fired + changed == len(before.batches)


def test_patchup_input_is_cutmix() -> None:
    before, after = Recorder(), Recorder()
    cb = PatchUp(layers=["net.0"], block_size=3, include_input=True, p=1.0, seed=1)
    make_trainer([before, cb, after], max_epochs=5).fit(module_with(sequential()), make_loader())
    for (x, _), (mx, _) in zip(before.batches, after.batches):
        if not torch.equal(x, mx):  # every pixel from one of the two images: a box pasted
            assert ((mx[:, None] == x[None]).all(dim=2).any(dim=1)).all()


def test_patchup_logs_the_unchanged_fraction() -> None:
    trainer = make_trainer([PatchUp(layers=["net.2"], block_size=3, include_input=False, p=1.0, gamma=0.5)])
    trainer.fit(module_with(sequential()), make_loader())
    assert 0.0 < float(trainer.callback_metrics["mix/unchanged"]) < 1.0


def test_bf16_autocast_and_channels_last() -> None:
    class ChannelsLast(UserModule):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.contiguous(memory_format=torch.channels_last))

    formats = []

    def check(module: nn.Module, args: Any, output: torch.Tensor) -> None:
        formats.append((output.dtype, output.is_contiguous(memory_format=torch.channels_last)))

    for make in (
        lambda: ManifoldMixup(layers=["net.0"], include_input=False),
        lambda: PatchUp(layers=["net.0"], block_size=3, include_input=False, p=1.0),
    ):
        module = ChannelsLast()
        module.net = sequential().to(memory_format=torch.channels_last)
        module.net[1].register_forward_hook(check)
        trainer = make_trainer([make()], precision="bf16-mixed", max_epochs=1)
        trainer.fit(module, make_loader())
        assert all(torch.isfinite(p).all() for p in module.parameters())
    assert formats and all(cl for _, cl in formats)
    assert {dtype for dtype, _ in formats} == {torch.bfloat16}


def test_layer_that_does_not_return_a_tensor() -> None:
    class TupleOut(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x, x

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pair = TupleOut()
            self.rest = sequential()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.rest(self.pair(x)[0])

    with pytest.raises(TypeError, match="layer 'net.pair' returned tuple, not a tensor"):
        make_trainer([ManifoldMixup(layers=["net.pair"], include_input=False)]).fit(module_with(Net()), make_loader())


def test_layer_not_called_in_forward() -> None:
    module = module_with(sequential())
    module.unused = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="layer 'unused' was not called during the training forward"):
        make_trainer([ManifoldMixup(layers=["unused"], include_input=False)]).fit(module, make_loader())


def test_unknown_layer_lists_the_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown layer\(s\) \['net.layer9'\]; valid names are \['net', 'net.0'"):
        make_trainer([ManifoldMixup(layers=["net.layer9"])]).fit(module_with(sequential()), make_loader())


def test_block_larger_than_the_feature_map() -> None:
    with pytest.raises(ValueError, match="block_size=9 is larger than the 8x8 feature map"):
        make_trainer([PatchUp(layers=["net.0"], block_size=9, include_input=False, p=1.0)]).fit(
            module_with(sequential()), make_loader()
        )


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ManifoldMixup(layers=[]), "layers is empty"),
        (lambda: ManifoldMixup(layers="net.0"), "layers must be a list of module names, got 'net.0'"),
        (lambda: ManifoldMixup(layers=["net.0"], alpha=0.0), "alpha must be a finite number > 0, got 0.0"),
        (lambda: PatchUp(layers=["net.0"], alpha=-2), "alpha must be a finite number > 0, got -2"),
        (lambda: PatchUp(layers=["net.0"], gamma=0.0), r"gamma must be in \(0, 1\], got 0.0"),
        (lambda: PatchUp(layers=["net.0"], gamma=1.5), r"gamma must be in \(0, 1\], got 1.5"),
        (lambda: PatchUp(layers=["net.0"], mode="medium"), "mode must be one of .*got 'medium'"),
        (lambda: PatchUp(layers=["net.0"], block_size=0), "block_size must be an int >= 1, got 0"),
    ],
)
def test_bad_hyper_parameters(make: Any, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_patchup_paper_defaults_by_mode() -> None:
    soft, hard = PatchUp(layers=["a"]), PatchUp(layers=["a"], mode="hard")
    assert (soft.alpha, soft.block_size, soft.gamma, soft.p) == (2.0, 7, 0.75, 1.0)
    assert (hard.gamma, hard.p) == (0.5, 0.7)


def test_validate_alone_registers_no_hook() -> None:
    module = module_with(sequential())
    cb = ManifoldMixup(layers=["net.0"])
    trainer = make_trainer([cb])
    trainer.validate(module, make_loader(), verbose=False)
    assert _hook_count(module) == 0 and cb._fired == 0


# ---- the functional ops: patchup_batch (patchup_hidden) and mixup_batch of a hidden state ----------------------


@pytest.mark.parametrize("shared_mask", [False, True])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_patchup_batch_equals_a_per_sample_oracle(mode: str, per_sample: bool, shared_mask: bool) -> None:
    h, y = torch.randn(6, 4, 9, 9), torch.arange(6) % NUM_CLASSES
    out = patchup_batch(
        h, y, NUM_CLASSES, 2.0, mode, 3, 0.5, shared_mask=shared_mask, per_sample=per_sample,
        generator=torch.Generator().manual_seed(4),
    )  # fmt: skip
    g = torch.Generator().manual_seed(4)  # the same draws, in the op's order: partner, λ, masks
    index = torch.randperm(6, generator=g)
    lam = sample_lam(2.0, 6 if per_sample else None, generator=g).expand(6)
    masks = block_masks(1 if shared_mask else 6, 4, 9, 9, 3, 0.5, generator=g).expand(6, -1, -1, -1)
    one_hot = F.one_hot(y, NUM_CLASSES).float()
    for i in range(6):
        j, m, lam_i = int(index[i]), masks[i], float(lam[i])
        partner = h[j] if mode == "hard" else lam_i * h[i] + (1 - lam_i) * h[j]
        torch.testing.assert_close(out.input[i], m * h[i] + (1 - m) * partner)
        p_u = float(m.mean())
        y_b = one_hot[j] if mode == "hard" else lam_i * one_hot[i] + (1 - lam_i) * one_hot[j]
        torch.testing.assert_close(out.target[i], p_u * one_hot[i] + (1 - p_u) * y_b)
        own = m if mode == "hard" else m + (1 - m) * lam_i  # the share of each feature that is the sample's own
        torch.testing.assert_close(out.mask.expand_as(h)[i], own)
        torch.testing.assert_close(out.lam[i], own.mean())  # λ is the mask's mean


@pytest.mark.parametrize("block_size", [1, 2, 3, 4, 7, 9])
def test_grow_blocks_equals_dropblock_max_pool(block_size: int) -> None:
    """The running OR of shifted copies is DropBlock's max-pool of the seeds, exactly (odd and even blocks)."""
    seeds = (torch.rand(3, 2, 9, 13, generator=torch.Generator().manual_seed(block_size)) < 0.08).float()
    before, after = block_size // 2, block_size - 1 - block_size // 2
    pooled = F.max_pool2d(F.pad(seeds, (before, after, before, after)), block_size, stride=1)
    assert torch.equal(patchup_module.grow_blocks(seeds, block_size), pooled)
    assert torch.equal(patchup_module.grow_blocks(seeds.bool(), block_size), pooled.bool())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("shared_mask", [False, True])
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_bool_masks_give_the_float_masks_results(mode: str, shared_mask: bool, per_sample: bool, dtype: Any) -> None:
    """The callback's fast path (bool masks: one-pass weights, byte counts) is bit-identical to the float masks."""
    n = 1 if shared_mask else 6
    own = block_masks(n, 4, 9, 9, 3, 0.5, dtype=torch.bool, generator=torch.Generator().manual_seed(1))
    mask = block_masks(n, 4, 9, 9, 3, 0.5, generator=torch.Generator().manual_seed(1))
    assert own.dtype == torch.bool and torch.equal(own.float(), mask)
    assert torch.equal(unchanged_fraction(own), unchanged_fraction(mask))
    lam = sample_lam(0.3, 6 if per_sample else None, generator=torch.Generator().manual_seed(2))
    assert torch.equal(patchup_module.own_weight(own, lam, mode), patchup_module.own_weight(mask, lam, mode))
    h, index, grad = torch.randn(6, 4, 9, 9).to(dtype), torch.randperm(6), torch.randn(6, 4, 9, 9).to(dtype)
    outputs = []
    for m in (mask, own):
        leaf = h.clone().requires_grad_()
        out = patchup_module.patchup(leaf, index, lam, m, mode)
        out.backward(grad)
        outputs.append((out, leaf.grad))
    assert torch.equal(outputs[0][0], outputs[1][0]) and torch.equal(outputs[0][1], outputs[1][1])


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("shared_mask", [False, True])
@pytest.mark.parametrize("mode", ["soft", "hard"])
def test_patchup_callback_equals_patchup_hidden(
    mode: str, shared_mask: bool, per_sample: bool, monkeypatch: Any
) -> None:
    """The hook's mixed hidden state and the targets it fills are patchup_hidden's, bit for bit."""
    net = sequential()
    module = module_with(net)
    cb = PatchUp(
        layers=["net.0"], mode=mode, block_size=3, gamma=0.5, include_input=False, shared_mask=shared_mask,
        per_sample=per_sample, num_classes=NUM_CLASSES,
    )  # fmt: skip
    states, spy = [], Spy(patchup_callback_module.patchup)
    draw_masks = patchup_callback_module.block_masks
    monkeypatch.setattr(patchup_callback_module, "patchup", spy)

    def recording(*args: Any, **kwargs: Any) -> torch.Tensor:
        states.append(kwargs["generator"].get_state())  # the state the masks are drawn from
        return draw_masks(*args, **kwargs)

    monkeypatch.setattr(patchup_callback_module, "block_masks", recording)
    g = _setup(cb, module)
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % NUM_CLASSES
    mixed = cb.mix(MixStep(x, y, NUM_CLASSES, g))
    module(x)
    ((h, index, lam, _own, _mode),) = spy.calls
    generator = torch.Generator()
    generator.set_state(states[0])
    probs = F.one_hot(y, NUM_CLASSES).float()
    expected, _ = patchup_hidden(h, probs, index, lam, mode, 3, 0.5, shared_mask=shared_mask, generator=generator)
    assert torch.equal(spy.fn(*spy.calls[0]), expected.input)
    assert torch.equal(mixed.target, expected.target)
    cb.teardown(None, module, "fit")


def test_soft_patchup_with_lam_one_is_the_identity() -> None:
    h, probs = torch.randn(4, 2, 8, 8), torch.eye(4)
    out, _ = patchup_hidden(h, probs, torch.tensor([3, 2, 1, 0]), 1.0, "soft", 3, 0.9, generator=torch.Generator())
    assert torch.equal(out.input, h) and torch.equal(out.target, probs)


def test_patchup_batch_errors() -> None:
    with pytest.raises(ValueError, match=r"PatchUp needs a \[B, C, H, W\] feature map, got shape \[4, 8\]"):
        patchup_hidden(torch.randn(4, 8), torch.eye(4), torch.arange(4), 0.5)
    with pytest.raises(ValueError, match="block_size=9 is larger than the 8x8 feature map"):
        patchup_batch(torch.randn(4, 2, 8, 8), torch.arange(4), 4, block_size=9)


def test_mixup_batch_mixes_any_hidden_state_like_a_per_sample_loop() -> None:
    """Manifold Mixup's op: mixup of a token sequence ``[B, T, D]``, one λ per sample."""
    h, y = torch.randn(5, 7, 3), torch.arange(5) % NUM_CLASSES
    out = mixup_batch(h, y, NUM_CLASSES, 2.0, per_sample=True, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    index = torch.randperm(5, generator=g)
    lam = sample_lam(2.0, 5, generator=g)
    for i in range(5):
        j = int(index[i])
        torch.testing.assert_close(out.input[i], lam[i] * h[i] + (1 - lam[i]) * h[j])
    assert out.mask is None  # mixup's weight is λ everywhere


# ---- fidelity to the official PatchUp code (chandar-lab/PatchUp) -----------------------------------------------


@pytest.mark.parametrize("loss", ["ce", "softmax_bce"])
@pytest.mark.parametrize("loss_params", [(1.0, 1.0), (1.0, 0.0), (2.0, 1.0), (0.5, 3.0)])
def test_official_patchup_loss_is_weight_times_the_loss_on_our_targets(loss: str, loss_params: tuple) -> None:
    """``a·p_u·ℓ(ŷ, y_a) + (1−p_u)·ℓ(ŷ, y_b) + b·ℓ(ŷ, ỹ)`` (official main.py) == ``weight·ℓ(ŷ, targets)``."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g)
    y_a = F.one_hot(torch.arange(8) % 5, 5).float()
    y_b = torch.softmax(torch.randn(8, 5, generator=g), 1)
    p_u = torch.tensor(0.3)
    y_tilde = p_u * y_a + (1 - p_u) * y_b
    ell = (lambda t: F.cross_entropy(logits, t)) if loss == "ce" else (lambda t: softmax_bce(logits, t))
    a, b = loss_params
    official = a * p_u * ell(y_a) + (1 - p_u) * ell(y_b) + b * ell(y_tilde)
    targets, weight = patchup_loss_targets(y_a, y_tilde, p_u, loss_params)
    torch.testing.assert_close(weight * ell(targets), official)
    torch.testing.assert_close(targets.sum(1), torch.ones(8))
    assert (targets >= 0).all()


def test_patchup_scales_the_gradient_of_mixed_batches_by_the_official_weight() -> None:
    grads = {}
    for loss_params in [(1.0, 0.0), (1.0, 1.0)]:

        class Grad(Recorder):
            def on_after_backward(self, trainer: Any, pl_module: Any) -> None:
                grads.setdefault(loss_params, pl_module.net[0].weight.grad.clone())

        torch.manual_seed(0)
        module = module_with(sequential())
        cb = PatchUp(layers=["net.2"], block_size=3, include_input=False, p=1.0, seed=0, loss_params=loss_params)
        trainer = make_trainer([cb, Grad()], max_steps=1)
        trainer.fit(module, make_loader())
        assert float(trainer.callback_metrics["mix/loss_weight"]) == 1.0 + loss_params[1]
    torch.testing.assert_close(grads[(1.0, 1.0)], 2 * grads[(1.0, 0.0)])  # the official [1, 1]: twice a clean batch


def test_patchup_input_cutmix_has_its_own_alpha(monkeypatch: Any) -> None:
    seen = []
    original = patchup_callback_module.cutmix_batch
    monkeypatch.setattr(patchup_callback_module, "cutmix_batch", lambda *a, **k: seen.append(a[3]) or original(*a, **k))
    cb = PatchUp(layers=["net.0"], include_input=True, alpha=2.0, p=1.0, num_classes=NUM_CLASSES, block_size=3)
    g = _setup(cb, module_with(sequential()))
    for _ in range(20):
        cb.mix(MixStep(torch.randn(4, 3, 8, 8), torch.arange(4), NUM_CLASSES, g))
        cb._step = None
    assert seen and set(seen) == {1.0}  # official: CutMix(beta=1.) whatever --alpha


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"loss_params": (1.0,)}, TypeError, r"loss_params must be two numbers \(a, b\), got \(1.0,\)"),
        ({"loss_params": (1.0, -1.0)}, ValueError, r"loss_params\[1\] must be a finite number >= 0, got -1.0"),
        ({"loss_params": (2.0, 1.0)}, ValueError, "use shared_mask=True and per_sample=False"),
        ({"input_alpha": 0.0}, ValueError, "input_alpha must be a finite number > 0, got 0.0"),
    ],
)
def test_patchup_official_options_are_checked(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        PatchUp(layers=["net.0"], **kwargs)

"""Tests for the backbone networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_mixup.models.nets import MLP, PreActResNet, PreActResNet18, SmallCNN


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def resnet18() -> PreActResNet18:
    torch.manual_seed(0)
    return PreActResNet18(num_classes=10)


@pytest.mark.parametrize("size", [8, 16, 32])
def test_small_cnn_output_shapes(size: int) -> None:
    model = SmallCNN(in_channels=1, num_classes=10, width=8)
    assert model(torch.randn(3, 1, size, size)).shape == (3, 10)


def test_small_cnn_rgb_and_dropout() -> None:
    model = SmallCNN(in_channels=3, num_classes=4, width=8, dropout=0.5).eval()
    x = torch.randn(2, 3, 12, 12)
    assert model(x).shape == (2, 4)
    assert torch.equal(model(x), model(x))


def test_mlp_output_shapes_and_flattening() -> None:
    assert MLP()(torch.randn(5, 2)).shape == (5, 2)
    model = MLP(in_features=64, num_classes=10, hidden=16, depth=2, activation="gelu")
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, 10)
    assert len(model.layers) == 2


def test_preact_resnet18_output_shape(resnet18: PreActResNet18) -> None:
    assert resnet18(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_preact_resnet_generic_small_inputs() -> None:
    model = PreActResNet((1, 1, 1, 1), in_channels=1, num_classes=10, width=8)
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def _official_preact_resnet18_count(width: int = 64, classes: int = 10, in_channels: int = 3) -> int:
    """The parameters of the official PreActResNet-18 (Manifold Mixup, PatchUp, PuzzleMix ``preresnet.py``),
    counted by hand: a bias-free 3x3 conv stem; per block BN(in), 3x3 conv in->out, BN(out), 3x3 conv out->out and
    a bias-free 1x1 conv shortcut when the shape changes; no BN before pooling; a linear head."""
    total = in_channels * width * 9
    channels = width
    for stage in range(4):
        out = width * 2**stage
        for block in range(2):
            stride = 2 if stage and not block else 1
            total += 2 * channels + channels * out * 9 + 2 * out + out * out * 9
            total += channels * out if stride != 1 or channels != out else 0
            channels = out
    return total + channels * classes + classes


def test_preact_resnet18_parameter_count_is_the_official_one(resnet18: PreActResNet18) -> None:
    official = _official_preact_resnet18_count()
    assert official == 11_171_146
    assert _n_params(resnet18) == official
    assert _n_params(PreActResNet18(num_classes=100)) == _official_preact_resnet18_count(classes=100)
    # facebookresearch/mixup-cifar10's ResNet18: the same with a conv-BN-ReLU stem (BN of 64 channels)
    assert _n_params(PreActResNet18(stem_bn_relu=True)) == official + 2 * 64
    # He et al.'s full pre-activation design adds BN-ReLU before the pooling (512 channels), none of the four has
    assert _n_params(PreActResNet18(final_bn_relu=True)) == official + 2 * 512


def test_preact_resnet18_pools_the_last_block_directly(resnet18: PreActResNet18) -> None:
    resnet18.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features = resnet18.layer4(resnet18.layer3(resnet18.layer2(resnet18.layer1(resnet18.stem(x)))))
        expected = resnet18.head(features.mean(dim=(2, 3), keepdim=True))
        torch.testing.assert_close(resnet18(x), expected)
    assert isinstance(resnet18.final, nn.Identity) and isinstance(resnet18.stem_act, nn.Identity)
    with pytest.raises(TypeError, match="final_bn_relu must be a bool, got 1"):
        PreActResNet18(final_bn_relu=1)


@pytest.mark.parametrize(
    ("model", "x"),
    [
        (SmallCNN(width=8), torch.randn(2, 1, 8, 8)),
        (MLP(), torch.randn(2, 2)),
        (PreActResNet((1, 1, 1, 1), width=8), torch.randn(2, 3, 16, 16)),
    ],
)
def test_gradient_flows_to_input_and_all_parameters(model: nn.Module, x: torch.Tensor) -> None:
    x.requires_grad_(True)
    model(x).logsumexp(dim=1).sum().backward()
    assert x.grad is not None and bool(x.grad.abs().sum() > 0)
    for name, p in model.named_parameters():
        assert p.grad is not None, name


@pytest.mark.parametrize(
    ("model", "names"),
    [
        (SmallCNN(), ["layer1", "layer2", "layer3", "pool", "head"]),
        (MLP(depth=3), ["layers", "layers.0", "layers.1", "layers.2", "head"]),
        (
            PreActResNet18(width=8),
            ["stem", "layer1", "layer2", "layer3", "layer4", "final", "pool", "head"],
        ),
    ],
)
def test_named_layers_exist(model: nn.Module, names: list[str]) -> None:
    modules = dict(model.named_modules())
    for name in names:
        assert name in modules, name


def test_forward_hook_on_named_layer_sees_hidden_state() -> None:
    model = PreActResNet18(width=8)
    seen: list[torch.Size] = []
    layer2 = model.get_submodule("layer2")
    handle = layer2.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    model(torch.randn(2, 3, 32, 32))
    handle.remove()
    assert seen == [torch.Size([2, 16, 16, 16])]


def test_channels_last_input_matches_contiguous() -> None:
    torch.manual_seed(0)
    model = PreActResNet((1, 1, 1, 1), width=8).eval()
    cnn = SmallCNN(in_channels=3, width=8).eval()
    x = torch.randn(2, 3, 32, 32)
    x_cl = x.to(memory_format=torch.channels_last)
    for net in (model, cnn):
        expected = net(x)
        assert torch.allclose(net(x_cl), expected, atol=1e-5)
        assert torch.allclose(net.to(memory_format=torch.channels_last)(x_cl), expected, atol=1e-5)


@pytest.mark.parametrize(
    ("factory", "error", "bad"),
    [
        (lambda: SmallCNN(in_channels=0), ValueError, "0"),
        (lambda: SmallCNN(width=-4), ValueError, "-4"),
        (lambda: SmallCNN(dropout=1.0), ValueError, "1.0"),
        (lambda: MLP(hidden=0), ValueError, "0"),
        (lambda: MLP(depth=2.0), TypeError, "2.0"),
        (lambda: MLP(activation="swish"), ValueError, "'swish'"),
        (lambda: PreActResNet18(num_classes=0), ValueError, "0"),
        (lambda: PreActResNet18(width=True), TypeError, "True"),
        (lambda: PreActResNet(block_counts=(2, 2, 2)), ValueError, r"\(2, 2, 2\)"),
        (lambda: PreActResNet(block_counts=(2, 0, 2, 2)), ValueError, "0"),
    ],
)
def test_bad_args_raise_with_value(factory, error: type[Exception], bad: str) -> None:
    with pytest.raises(error, match=f"got {bad}"):
        factory()

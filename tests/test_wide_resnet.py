"""WRN-28-10 and its smaller siblings: size, named stages, dropout, argument checks."""

from __future__ import annotations

import pytest
import torch

from lightning_mixup.models.nets import WideBlock, WideResNet


def test_wrn_28_10_has_the_papers_parameter_count() -> None:
    model = WideResNet(depth=28, widen_factor=10, num_classes=10)
    # 36.5 M in the WRN paper's Table 2; 36,479,194 is the count of the official PyTorch code (bias-free convs).
    assert sum(p.numel() for p in model.parameters()) == 36_479_194
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [4, 4, 4]


def test_named_stages_and_their_shapes() -> None:
    model = WideResNet(depth=10, widen_factor=2, width=4, num_classes=7)
    names = [name for name, _ in model.named_children()]
    assert names == ["stem", "layer1", "layer2", "layer3", "final", "pool", "head"]
    shapes = {}
    for name in ("stem", "layer1", "layer2", "layer3"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape)))
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert shapes == {
        "stem": (2, 4, 32, 32),
        "layer1": (2, 8, 32, 32),
        "layer2": (2, 16, 16, 16),
        "layer3": (2, 32, 8, 8),
    }


def test_dropout_acts_in_training_only() -> None:
    torch.manual_seed(0)
    model = WideResNet(depth=10, widen_factor=1, width=4, dropout=0.5)
    assert isinstance(model.layer1[0], WideBlock) and model.layer1[0].dropout.p == 0.5
    x = torch.randn(4, 3, 16, 16)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"depth": 27}, ValueError, r"depth must be 6n \+ 4 with n >= 1 \(10, 16, 22, 28, ...\), got 27"),
        ({"depth": 4}, ValueError, "got 4"),
        ({"widen_factor": 0}, ValueError, "widen_factor must be a positive int, got 0"),
        ({"dropout": 1.0}, ValueError, r"dropout must be a float in \[0, 1\), got 1.0"),
        ({"width": 2.5}, TypeError, "width must be a positive int, got 2.5"),
    ],
)
def test_bad_arguments_are_quoted(kwargs: dict[str, object], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        WideResNet(**kwargs)

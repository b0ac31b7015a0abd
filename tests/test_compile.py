"""The functional ops trace whole under ``torch.compile(fullgraph=True)``: no graph break, no host sync.

``aot_eager`` runs Dynamo's tracing and AOTAutograd without generating code, so these tests check what a user's
``torch.compile`` needs in a few seconds, and that the compiled op gives the eager op's values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from lightning_mixup.functional import (
    cutmix,
    cutmix_batch,
    fmix,
    fmix_batch,
    mixup,
    mixup_batch,
    partner_index,
    sample_boxes,
    sample_lam,
    sample_masks,
)

BATCH_OPS: dict[str, Callable[..., Any]] = {"mixup": mixup_batch, "cutmix": cutmix_batch, "fmix": fmix_batch}


def _compiled(fn: Callable[..., Any]) -> Callable[..., Any]:
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, backend="aot_eager")


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", ["mixup", "cutmix", "fmix"])
def test_apply_ops_compile_whole_and_equal_eager(name: str, per_sample: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 10, 12, generator=g)
    index = partner_index(6, generator=g)
    lam = sample_lam(1.0, 6 if per_sample else None, generator=g)
    param = {
        "mixup": lambda: lam,
        "cutmix": lambda: sample_boxes(lam, 10, 12, generator=g)[0],
        "fmix": lambda: sample_masks(lam, 10, 12, generator=g)[0],
    }[name]()
    op = {"mixup": mixup, "cutmix": cutmix, "fmix": fmix}[name]
    assert torch.equal(_compiled(op)(x, index, param), op(x, index, param))
    out, compiled_out = torch.empty_like(x), torch.empty_like(x)  # the reused buffer: one pass when compiled
    assert _compiled(op)(x, index, param, out=compiled_out) is compiled_out
    assert torch.equal(compiled_out, op(x, index, param, out=out))


def test_inductor_fuses_the_blend_into_the_buffer() -> None:
    """The real compiler (C++ code on a CPU): one kernel reads ``x`` and ``x[index]`` and writes ``out``; its
    arithmetic may round the last bit differently from eager ``torch.lerp``."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 6, 6, generator=g)
    index, lam = partner_index(4, generator=g), sample_lam(1.0, 4, generator=g)
    torch._dynamo.reset()
    compiled = torch.compile(mixup, fullgraph=True, dynamic=False)
    out = torch.empty_like(x)
    assert compiled(x, index, lam, out=out) is out
    torch.testing.assert_close(out, mixup(x, index, lam), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["cutmix", "fmix"])
def test_samplers_compile_whole(name: str) -> None:
    lam = torch.tensor([0.0, 0.3, 0.5, 0.9, 1.0])
    sampler = {"cutmix": sample_boxes, "fmix": sample_masks}[name]
    params, lam_out = _compiled(lambda lam: sampler(lam, 9, 11))(lam)
    assert params.shape[0] == 5 and lam_out.shape == (5,)
    if name == "fmix":  # λ is the mask's mean, compiled too
        assert torch.allclose(params.mean(dim=(1, 2, 3)), lam_out)


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", sorted(BATCH_OPS))
def test_batch_ops_compile_whole(name: str, per_sample: bool) -> None:
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % 3
    out = _compiled(lambda x, y: BATCH_OPS[name](x, y, 3, per_sample=per_sample))(x, y)
    assert out.input.shape == x.shape and torch.allclose(out.target.sum(1), torch.ones(6))
    own = out.target.gather(1, y.view(6, 1)).squeeze(1)  # at least λ on the sample's own class
    assert (own >= out.lam.expand(6) - 1e-6).all()

"""The fast paths (writing into a reused buffer) give exactly the plain results; the benchmark runs."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from conftest import Recorder, UserModule, make_loader, make_trainer
from lightning_mixup import MixUp
from lightning_mixup import bench
from lightning_mixup.bench import METHODS, main, run
from lightning_mixup.bench.timm_style import timm_style_cutmix, timm_style_mixup
from lightning_mixup.functional import mixup_batch, partners
from lightning_mixup.methods import get, names

BATCH_FNS = {name: get(name).batch_op for name in names("input", task="multiclass")}  # these write into out=
OPS = {"remix": {"class_counts": (16, 8, 4, 2, 1)}}  # options of the ops that need more than the batch


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", sorted(BATCH_FNS))
def test_out_path_equals_the_plain_path(name: str, per_sample: bool, channels_last: bool) -> None:
    x = torch.randn(16, 3, 12, 10)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.arange(16) % 5
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    plain = BATCH_FNS[name](x, y, 5, per_sample=per_sample, generator=g, **OPS.get(name, {}))
    g.set_state(state)
    out = torch.empty_like(plain.input)  # RegMixup: 2B rows
    fast = BATCH_FNS[name](x, y, 5, per_sample=per_sample, generator=g, out=out, **OPS.get(name, {}))
    assert fast.input.data_ptr() == out.data_ptr()
    assert torch.equal(fast.input, plain.input) and torch.equal(fast.target, plain.target)
    assert torch.equal(fast.lam, plain.lam)


@pytest.mark.parametrize(
    ("out", "x", "message"),
    [
        (torch.empty(4, 3), torch.randn(4, 2), "out must match the input"),
        (torch.empty(4, 2, dtype=torch.float64), torch.randn(4, 2), "out must match the input"),
    ],
)
def test_bad_out_buffers(out: torch.Tensor, x: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mixup_batch(x, torch.arange(4) % 2, 2, out=out)


def test_out_may_not_alias_or_need_grad() -> None:
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match="must not share memory"):
        mixup_batch(x, torch.arange(4) % 2, 2, out=x)
    with pytest.raises(ValueError, match="requires grad"):
        mixup_batch(x.requires_grad_(), torch.arange(4) % 2, 2, out=torch.empty(4, 2))


@pytest.mark.parametrize("name", names("input", task="multiclass"))
def test_callback_reuses_one_buffer_and_matches_the_unbuffered_run(name: str) -> None:
    runs: dict[bool, list[Any]] = {}
    options = {"remix": {"class_counts": (40, 20, 10, 5)}}.get(name, {})  # UserModule's 4 classes
    for reuse in (True, False):
        after = Recorder()
        mixer = get(name).callback(per_sample=True, seed=2, reuse_buffer=reuse, **options)
        pointers, in_buffer = [], []

        class Pointer(Recorder):
            def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
                pointers.append(batch[0].data_ptr())
                in_buffer.append(mixer._buffer is not None and batch[0].data_ptr() == mixer._buffer.data_ptr())

        make_trainer([mixer, after, Pointer()], max_epochs=2).fit(UserModule(), make_loader())
        runs[reuse] = after.batches
        # fresh tensors may land at a recycled address, so "one address" alone cannot tell reuse apart
        assert all(in_buffer) == reuse and any(in_buffer) == reuse
        if reuse:
            assert len(set(pointers)) == 1
    for a, b in zip(runs[True], runs[False]):
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_reuse_buffer_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="reuse_buffer must be a bool, got 'yes'"):
        MixUp(reuse_buffer="yes")


def test_quick_benchmark_writes_every_figure(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    main(["--quick", "--json", str(path)])
    records = json.loads(path.read_text())
    assert {r["method"] for r in records} == set(METHODS) | {"copy"}
    keys = {"method", "mode", "part", "shape", "device", "ms", "ratio"}
    assert all(keys <= set(r) for r in records)
    parts = {(r["method"], r["part"]) for r in records}
    assert {("mixup", "step"), ("cutmix", "apply"), ("fmix", "apply"), ("fmix", "mask")} <= parts
    assert {("mixup", "timm_step"), ("cutmix", "timm_step")} <= parts
    assert {("manifold_mixup", "throughput"), ("patchup", "throughput")} <= parts
    assert all(r["ratio"] is None for r in records if r["part"] == "mask")
    assert all(r["ms"] > 0 for r in records)
    assert {r["mode"] for r in records if r["part"] == "step"} == {"batch", "per_sample"}


def test_the_timm_style_baselines_mix_like_the_method() -> None:
    x, y = torch.rand(6, 3, 9, 7), torch.arange(6) % 4
    flip = torch.arange(5, -1, -1)
    mixed = x.clone()
    target = timm_style_mixup(mixed, y, 4, random.Random(1))
    lam = random.Random(1).betavariate(1.0, 1.0)
    torch.testing.assert_close(mixed, lam * x + (1 - lam) * x[flip])
    torch.testing.assert_close(target, lam * F.one_hot(y, 4) + (1 - lam) * F.one_hot(y[flip], 4))
    pasted = x.clone()
    target = timm_style_cutmix(pasted, y, 4, random.Random(2))
    own = (pasted == x).all(dim=1, keepdim=True)  # where each sample kept its own pixels
    assert torch.equal(pasted, torch.where(own, x, x[flip]))
    kept = own[0].float().mean()  # one box for the batch: λ is the kept area
    torch.testing.assert_close(target, kept * F.one_hot(y, 4) + (1 - kept) * F.one_hot(y[flip], 4))


def test_unknown_benchmark_method() -> None:
    with pytest.raises(ValueError, match=r"unknown method\(s\) \['puzzle'\]"):
        run(["puzzle"], quick=True)


def test_quick_loss_and_segmentation_sections(capsys: pytest.CaptureFixture[str]) -> None:
    records = main(["--quick", "--sections", "loss,segmentation", "mixup", "cutmix", "fmix", "puzzlemix"])
    parts = {(r["method"], r["mode"], r["part"]) for r in records}
    assert {("cross_entropy", form, part) for form in ("mixed", "pair") for part in ("loss", "mix+loss")} == {
        p for p in parts if p[0] == "cross_entropy"
    }
    for method in ("mixup", "cutmix", "fmix", "puzzlemix"):
        assert {(method, "batch", part) for part in ("step_labels", "step_seg", "step_seg_pair")} <= parts
    assert all(r["ms"] > 0 for r in records)
    assert all(r["ratio"] is None for r in records)  # --quick: tiny shapes, no ratio
    captured = capsys.readouterr()
    table = captured.out
    assert "| cross_entropy | pair | loss |" in table and "| puzzlemix | batch | step_seg |" in table
    assert "a ratio means nothing" in table
    assert "] loss: mixed vs pair form" in captured.err and "] segmentation:" in captured.err  # progress


def test_sections_compute_ratios_that_quick_runs_drop() -> None:
    records = bench.bench_loss(8, (16,), torch.device("cpu"), repeat=3)  # what run() calls, at a tiny size
    ratios = [r for r in records if r["ratio"] is not None]
    assert ratios and all(r["ratio"] > 0 for r in ratios)
    assert {r["part"] for r in ratios} == {"loss", "mix+loss"}


def test_benchmark_says_how_to_get_pygco(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bench, "_have_gco", lambda: False)
    records = main(["--quick", "--sections", "puzzlemix", "puzzlemix"])
    assert {r["part"] for r in records} == {"solve", "train_step"}
    assert "pyGCO is not installed" in capsys.readouterr().err and "lightning-mixup[gco]" in bench.GCO_INSTALL


def test_benchmark_sections_are_checked() -> None:
    records = run(["manifold_mixup"], quick=True, sections=["segmentation"])  # no segmentation op: nothing to time
    assert records == []
    with pytest.raises(ValueError, match=r"unknown section\(s\) \['losses'\]"):
        run(["mixup"], quick=True, sections=["losses"])
    with pytest.raises(SystemExit):
        main(["--quick", "--sections", "loss,segmentaton"])


def test_compiled_section_times_the_blends(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", lambda fn, **_: fn)  # the code path, without minutes of compiling
    records = run(["mixup", "cutmix", "fmix", "manifold_mixup"], quick=True, sections=["compiled"])
    parts = {(r["method"], r["mode"], r["part"]) for r in records}
    modes = ("batch", "per_sample")
    expected = {
        (m, mode, part) for m in ("mixup", "cutmix", "fmix") for mode in modes for part in ("compile", "apply_compiled")
    }
    assert parts == expected | {("copy", "batch", "copy")}


@pytest.mark.parametrize("channels_last", [False, True])
def test_partners_equal_indexing_in_value_layout_and_gradient(channels_last: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 3, 5, 4, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    index = torch.tensor([2, 2, 0, 5, 1, 3])  # a repeated partner: its gradient accumulates
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    fast, slow = partners(a, index), b[index]
    assert torch.equal(fast, slow) and fast.stride() == slow.stride()
    weight = torch.randn(6, 3, 5, 4, generator=g)
    (fast * weight).sum().backward()
    (slow * weight).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)

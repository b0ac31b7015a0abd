"""Benchmark every mixer against the memory-bandwidth floor: a copy of the same batch.

A mix reads two batches and writes one, so it cannot beat 1.5× the time of ``dst.copy_(x)`` into a
preallocated tensor. For each mixer, in batch and per-sample mode, this measures (medians):

- ``step``: the callback's whole mixing step (sampling, box or mask, blend, targets), ÷ copy;
- ``apply``: mixup, CutMix and FMix with λ, the box or the mask given (the blend alone), ÷ copy;
- ``timm_step``: mixup and CutMix as timm's batch mode does them (:mod:`~lightning_mixup.bench.timm_style`), ÷ copy;
- ``mask``: FMix mask generation alone, 256 masks at 32² and 224²;
- ``throughput``: training samples/s of a small CNN with the mixer ÷ without (hidden-state mixers too);
- PuzzleMix: the mask solver on 100 problems per grid size and label count, ÷ pyGCO's α-β swap called in a
  serial loop (as the official code does; needs ``gco-wrapper``), the mean energy ÷ pyGCO's, and a whole
  training step (saliency pass, mask, transport, forward, backward) ÷ a MixUp step on the same model and batch;
- ``loss`` (opt-in): forward + backward of the loss alone from logits ``[256, C]`` at 1,000 and 10,000 classes,
  the pair form (:func:`~lightning_mixup.functional.pair_loss` with index cross-entropy) ÷ the soft-target
  cross-entropy of the mixed probabilities, without and with reading and mixing the class indices;
- ``compiled`` (opt-in): the same blends under ``torch.compile`` (one fused pass) at 64×3×224², ÷ copy, and the
  first call (mostly compiling) apart;
- ``segmentation`` (opt-in): MixUp's, CutMix's, FMix's and PuzzleMix's whole ``*_batch`` call on a class-index
  mask ``[B, H, W]`` (21 classes; mixed form, and pair form) ÷ the same call on class indices ``[B]``.

The variants a ratio compares are timed in alternating rounds of one run (each round draws the same randomness
for all of them). Each figure is a section (``--sections``); the default runs every section but the opt-in ones.

Usage::

    python -m lightning_mixup.bench [METHODS...] [--sections NAME,...] [--device cpu|cuda] [--threads N]
        [--json FILE] [--quick]

Example:
    >>> records = run(["mixup"], device="cpu", quick=True)
    >>> sorted({r["part"] for r in records})
    ['apply', 'copy', 'step', 'throughput', 'timm_step']
    >>> format_table(records).splitlines()[0]
    '| method | mode | part | shape | dtype | ms | ratio | ratio of |'
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning.pytorch.plugins.precision import Precision

from lightning_mixup.bench.pygco import gco_labels, random_problems
from lightning_mixup.bench.timm_style import timm_style_cutmix, timm_style_mixup
from lightning_mixup.callbacks import Mixer, MixUp, PuzzleMix
from lightning_mixup.functional import (
    Targets,
    cutmix,
    cutmix_batch,
    fmix,
    fmix_batch,
    mixup,
    mixup_batch,
    pair_loss,
    partner_index,
    sample_boxes,
    sample_lam,
    sample_masks,
)
from lightning_mixup.functional.puzzlemix import energy, puzzlemix_batch, solve_masks
from lightning_mixup.functional.puzzlemix.mix import GRIDS, PuzzleMixParams
from lightning_mixup.methods import get, names
from lightning_mixup.models.nets import SmallCNN

METHODS = tuple(names("input", "hidden", "saliency", task="multiclass"))
"""Every method the benchmark times: all the registry's classifier mixers (the GAN method has its own loop; C-Mixup,
for regression, and TransMix, which needs a ViT, are not timed yet)."""
SHAPES = ((256, 3, 32, 32), (64, 3, 224, 224))
QUICK_SHAPES = ((8, 3, 16, 16),)
NUM_CLASSES = 10
SECTIONS = ("steps", "masks", "throughput", "puzzlemix", "loss", "segmentation", "compiled")
"""Every figure of the benchmark, in the order they run (see the module docstring)."""
DEFAULT_SECTIONS = ("steps", "masks", "throughput", "puzzlemix")
"""The sections a run without ``--sections`` gives; ``loss`` and ``segmentation`` (about 25 s together on 1 CPU
thread) and ``compiled`` (mostly compile time: a few minutes on a CPU) are opt-in."""
LOSS_BATCH = 256
LOSS_CLASSES = (1000, 10000)
SEG_SHAPE = (64, 3, 64, 64)
SEG_CLASSES = 21
SEG_OPS: dict[str, Callable[..., Any]] = {"mixup": mixup_batch, "cutmix": cutmix_batch, "fmix": fmix_batch}
"""The ``*_batch`` ops of the segmentation section; PuzzleMix's (which needs a saliency) is added apart."""


class _Module(nn.Module):
    """The least a mixing callback needs of a LightningModule: named layers and a no-op ``log``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.net = SmallCNN(in_channels=3, num_classes=NUM_CLASSES, width=width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @staticmethod
    def log(*args: Any, **kwargs: Any) -> None:
        """Logging is not timed."""


def _make(method: str, per_sample: bool, **kwargs: Any) -> Mixer:
    """The registry's example instance of ``method`` (see :mod:`lightning_mixup.methods`) for the benchmark's net."""
    return get(method).make(per_sample=per_sample, num_classes=NUM_CLASSES, seed=0, **BENCH_OPTIONS.get(method, {}))


BENCH_OPTIONS: dict[str, dict[str, Any]] = {"patchup": {"block_size": 7}}
"""Where the benchmark's instance differs from the registry's example: PatchUp's official 7×7 blocks on the
32×32 maps."""


TIMM_STYLE: dict[str, Callable[..., torch.Tensor]] = {"mixup": timm_style_mixup, "cutmix": timm_style_cutmix}
"""The methods with a ``timm_step`` row: timm's batch mode (:mod:`lightning_mixup.bench.timm_style`)."""


def _mixup_param(x: torch.Tensor, lam: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return lam.to(x.device)


def _cutmix_param(x: torch.Tensor, lam: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return sample_boxes(lam, x.shape[2], x.shape[3], generator=g)[0]


def _fmix_param(x: torch.Tensor, lam: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return sample_masks(lam, x.shape[2], x.shape[3], generator=g)[0].to(x.dtype)


APPLY: dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]] = {
    "mixup": (mixup, _mixup_param),
    "cutmix": (cutmix, _cutmix_param),
    "fmix": (fmix, _fmix_param),
}
"""The deterministic blend of the input methods (``op(x, index, param, out=...)``) and how to draw its parameter
(λ, box, mask) from λ: the ``apply`` figure times the blend with its randomness drawn beforehand."""


_clock: Callable[[], float] = time.perf_counter
"""What the timings read: wall time, or this thread's CPU time with ``--threads 1`` on a CPU (:func:`use_cpu_time`),
which other processes on a busy host do not inflate."""


def use_cpu_time(enabled: bool) -> None:
    """Time with this thread's CPU time (``time.thread_time``: steady beside other jobs, meaningful only when torch
    runs on this one thread) instead of wall time."""
    global _clock
    _clock = time.thread_time if enabled else time.perf_counter


def median_ms(
    fn: Callable[[], Any], device: torch.device, repeat: int, warmup: int = 3, budget_s: float = 2.0
) -> float:
    """Median wall time of ``fn`` in milliseconds over ``repeat`` calls (fewer, but at least 5, once
    ``budget_s`` is spent), synchronising CUDA around each call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        fn()
    times: list[float] = []
    while len(times) < repeat and (len(times) < 5 or sum(times) < budget_s):
        sync()
        start = _clock()
        fn()
        sync()
        times.append(_clock() - start)
    return 1e3 * statistics.median(times)


def interleaved_ms(
    fns: dict[str, Callable[[int], Any]],
    device: torch.device,
    repeat: int,
    warmup: int = 2,
    budget_s: float = 2.0,
) -> dict[str, float]:
    """Median wall time in milliseconds of each of ``fns``, called in alternating rounds (every function once per
    round, in order) so that a ratio between them is measured under the same conditions; each call gets the
    round's number (to seed the same draws for every variant). ``repeat`` rounds (fewer, but at least 5, once
    ``budget_s`` per function is spent)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(warmup):
        for fn in fns.values():
            fn(-1 - i)
    times: dict[str, list[float]] = {name: [] for name in fns}
    rounds = 0
    while rounds < repeat and (rounds < 5 or sum(map(sum, times.values())) < budget_s * len(fns)):
        for name, fn in fns.items():
            sync()
            start = _clock()
            fn(rounds)
            sync()
            times[name].append(_clock() - start)
        rounds += 1
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def _once_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one call of ``fn`` in milliseconds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = _clock()
    fn()
    sync()
    return 1e3 * (_clock() - start)


def _record(
    method: str,
    mode: str,
    part: str,
    shape: Sequence[int],
    device: torch.device,
    dtype: torch.dtype,
    ms: float,
    ratio: float | None,
    ratio_of: str = "copy",
) -> dict[str, Any]:
    return {
        "method": method,
        "mode": mode,
        "part": part,
        "shape": list(shape),
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "ms": round(ms, 4),
        "ratio": None if ratio is None else round(ratio, 5),
        "ratio_of": ratio_of if ratio is not None else "",
    }


def _stubs(module: Any) -> tuple[Any, Any]:
    return SimpleNamespace(current_epoch=0, global_rank=0, precision_plugin=Precision(), datamodule=None), module


def bench_steps(
    methods: Sequence[str], shape: Sequence[int], device: torch.device, dtype: torch.dtype, repeat: int
) -> list[dict[str, Any]]:
    """``step`` (and ``apply`` for mixup, CutMix and FMix) of the input mixers at one shape, ÷ copy."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(*shape, generator=g, device=device).to(dtype)
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=g, device=device)
    dst = torch.empty_like(x)
    copy_ms = median_ms(lambda: dst.copy_(x), device, repeat)
    records = [_record("copy", "batch", "copy", shape, device, dtype, copy_ms, 1.0)]
    for method in methods:
        if get(method).kind != "input":
            continue
        for per_sample in (False, True):
            mode = "per_sample" if per_sample else "batch"
            cb = _make(method, per_sample)
            trainer, module = _stubs(SimpleNamespace(log=_Module.log))
            cb.setup(trainer, module, "fit")
            batch = [x, y]

            def step() -> None:
                batch[0], batch[1] = x, y
                cb.on_train_batch_start(trainer, module, batch, 0)

            ms = median_ms(step, device, repeat)
            records.append(_record(method, mode, "step", shape, device, dtype, ms, ms / copy_ms))
            if method in APPLY:
                records += _bench_apply(method, per_sample, x, dst, g, copy_ms, repeat)
        if method in TIMM_STYLE:  # timm's batch mode, which mixes its input in place: on a copy of its own
            mixed, rng = x.clone(), random.Random(0)
            ms = median_ms(lambda: TIMM_STYLE[method](mixed, y, NUM_CLASSES, rng), device, repeat)
            records.append(_record(method, "batch", "timm_step", shape, device, dtype, ms, ms / copy_ms))
    return records


def _bench_apply(
    method: str,
    per_sample: bool,
    x: torch.Tensor,
    dst: torch.Tensor,
    g: torch.Generator,
    copy_ms: float,
    repeat: int,
    compiled: bool = False,
) -> list[dict[str, Any]]:
    """``apply``: ``method``'s blend into ``dst`` with its randomness drawn beforehand, ÷ copy; ``compiled``: the
    blend under ``torch.compile`` instead (``compile``: the first call; ``apply_compiled``: the later ones)."""
    mode, device = ("per_sample" if per_sample else "batch"), x.device
    lam = sample_lam(1.0, x.shape[0] if per_sample else None, generator=g)
    index = partner_index(x.shape[0], generator=g).to(device)
    op, draw = APPLY[method]
    param = draw(x, lam, g)
    if not compiled:
        ms = median_ms(lambda: op(x, index, param, out=dst), device, repeat)
        return [_record(method, mode, "apply", x.shape, device, x.dtype, ms, ms / copy_ms)]
    fused = torch.compile(op, fullgraph=True, dynamic=False)
    start = time.perf_counter()  # wall time: compiling works in other processes too
    _once_ms(lambda: fused(x, index, param, out=dst), device)
    first = 1e3 * (time.perf_counter() - start)
    ms = median_ms(lambda: fused(x, index, param, out=dst), device, repeat)
    return [
        _record(method, mode, "compile", x.shape, device, x.dtype, first, None),
        _record(method, mode, "apply_compiled", x.shape, device, x.dtype, ms, ms / copy_ms),
    ]


def bench_compiled(
    methods: Sequence[str], shape: Sequence[int], device: torch.device, repeat: int
) -> list[dict[str, Any]]:
    """The blends of ``methods`` (those in :data:`APPLY`) under ``torch.compile``, which fuses them into one
    pass, ÷ copy, in batch and per-sample mode; the first call's time (mostly compiling) apart."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(*shape, generator=g, device=device)
    dst = torch.empty_like(x)
    copy_ms = median_ms(lambda: dst.copy_(x), device, repeat)
    records = [_record("copy", "batch", "copy", shape, device, x.dtype, copy_ms, 1.0)]
    for method in (m for m in methods if m in APPLY):
        for per_sample in (False, True):
            records += _bench_apply(method, per_sample, x, dst, g, copy_ms, repeat, compiled=True)
    return records


def bench_masks(sizes: Sequence[int], n: int, device: torch.device, repeat: int) -> list[dict[str, Any]]:
    """FMix mask generation alone: ``n`` per-sample masks at each size."""
    g = torch.Generator(device=device).manual_seed(0)
    records = []
    for size in sizes:
        lam = sample_lam(1.0, n, generator=g)
        ms = median_ms(lambda: sample_masks(lam, size, size, generator=g), device, repeat)
        records.append(_record("fmix", "per_sample", "mask", (n, 1, size, size), device, torch.float32, ms, None))
    return records


def _train(
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer: Any,
    mixer: Mixer | None,
    x: torch.Tensor,
    y: torch.Tensor,
    steps: int,
) -> None:
    """``steps`` SGD steps of ``module`` on the batch ``(x, y)``, mixed by ``mixer`` (None: plain)."""
    for _ in range(steps):
        batch = [x, y]
        if mixer is not None:
            mixer.on_train_batch_start(trainer, module, batch, 0)
        loss = F.cross_entropy(module(batch[0]), batch[1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if mixer is not None:
            mixer.on_train_batch_end(trainer, module, loss, batch, 0)


def bench_throughput(
    methods: Sequence[str], shape: Sequence[int], device: torch.device, width: int, steps: int, rounds: int
) -> list[dict[str, Any]]:
    """Training samples/s of a SmallCNN with each mixer ÷ without, measured in alternating rounds."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(*shape, generator=g, device=device)
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=g, device=device)
    records = []
    for method in methods:
        for per_sample in (False, True):
            torch.manual_seed(0)
            module = _Module(width).to(device)
            optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
            cb = _make(method, per_sample)
            trainer, _ = _stubs(module)
            cb.setup(trainer, module, "fit")

            plain, mixed = [], []
            state = cb.state_dict()  # every mixed round draws the same (layers, λ, masks): rounds compare alike
            for i in range(rounds):
                cb.load_state_dict(state)
                runs = [
                    (plain, lambda: _train(module, optimizer, trainer, None, x, y, steps)),
                    (mixed, lambda: _train(module, optimizer, trainer, cb, x, y, steps)),
                ]
                for times, fn in runs[:: 1 if i % 2 == 0 else -1]:  # alternate which goes first
                    times.append(_once_ms(fn, device))
            cb.teardown(trainer, module, "fit")
            ms = statistics.median(mixed) / steps
            ratio = statistics.median(plain) / statistics.median(mixed)
            mode = "per_sample" if per_sample else "batch"
            records.append(
                _record(method, mode, "throughput", shape, device, torch.float32, ms, ratio, "samples/s without mixing")
            )
    return records


GCO_INSTALL = "pip install 'lightning-mixup[gco]' (or pip install gco-wrapper) to compare with it"
"""What to do when pyGCO, the reference solver of the PuzzleMix rows, is missing."""


def _have_gco() -> bool:
    try:
        import gco  # noqa: F401
    except ImportError:
        return False
    return True


def bench_puzzlemix(device: torch.device, quick: bool, repeat: int) -> list[dict[str, Any]]:
    """PuzzleMix's solver ÷ pyGCO (time and mean energy) per grid and label count, and its training step ÷
    MixUp's."""
    batch = 8 if quick else 100
    records = []
    for grid in (2, 4) if quick else GRIDS:
        for n_labels in (2, 3):
            problem = random_problems(batch, grid, n_labels, seed=grid)
            problem = type(problem)(*(t.to(device) for t in problem))
            shape, mode = (batch, grid, grid, n_labels), f"grid {grid}, L={n_labels}"
            if not _have_gco():
                ours = median_ms(lambda: solve_masks(problem), device, repeat)
                records.append(_record("puzzlemix", mode, "solve", shape, device, torch.float32, ours, None))
                continue
            cpu = torch.device("cpu")
            fns = {"ours": lambda _: solve_masks(problem), "pygco": lambda _: gco_labels(problem)}
            ms = interleaved_ms(fns, device, max(5, repeat // 3), warmup=1)  # alternating: the ratio of one load
            ours, reference = ms["ours"], ms["pygco"]
            ratio = energy(problem, solve_masks(problem)).mean() / energy(problem, gco_labels(problem)).mean()
            records += [
                _record("puzzlemix", mode, "solve", shape, device, torch.float32, ours, ours / reference, "pyGCO time"),
                _record("puzzlemix", mode, "solve_pygco", shape, cpu, torch.float32, reference, float(ratio),
                        "ours: energy ÷ pyGCO's"),
            ]  # fmt: skip
    shape = (8, 3, 16, 16) if quick else (128, 3, 32, 32)
    records += _step_ratio(shape, device, width=4 if quick else 32, steps=2 if quick else 4, rounds=1 if quick else 8)
    return records


def _step_ratio(
    shape: Sequence[int], device: torch.device, width: int, steps: int, rounds: int
) -> list[dict[str, Any]]:
    """A PuzzleMix training step ÷ a MixUp step, same SmallCNN and batch (alternating rounds, medians)."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.rand(*shape, generator=g, device=device)
    y = torch.randint(0, NUM_CLASSES, (shape[0],), generator=g, device=device)
    grids = tuple(grid for grid in GRIDS if shape[-1] % grid == 0 and shape[-1] // grid >= 2)
    torch.manual_seed(0)
    module = _Module(width).to(device)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.01, momentum=0.9)
    trainer, _ = _stubs(module)
    mixers = {
        "mixup": MixUp(num_classes=NUM_CLASSES, seed=0),
        "puzzlemix": PuzzleMix(grids=grids, num_classes=NUM_CLASSES, seed=0),
    }
    for mixer in mixers.values():
        mixer.setup(trainer, module, "fit")

    times: dict[str, list[float]] = {name: [] for name in mixers}
    for _ in range(rounds):
        for name, mixer in mixers.items():
            times[name].append(_once_ms(lambda: _train(module, optimizer, trainer, mixer, x, y, steps), device) / steps)
    mixup_ms, puzzle_ms = statistics.median(times["mixup"]), statistics.median(times["puzzlemix"])
    return [
        _record("mixup", "batch", "train_step", shape, device, torch.float32, mixup_ms, None),
        _record("puzzlemix", "batch", "train_step", shape, device, torch.float32, puzzle_ms, puzzle_ms / mixup_ms,
                "MixUp step"),
    ]  # fmt: skip


def bench_loss(batch: int, classes: Sequence[int], device: torch.device, repeat: int) -> list[dict[str, Any]]:
    """Forward + backward of the mixed loss alone from logits ``[batch, C]``: the soft-target cross-entropy of the
    mixed probabilities (form ``"mixed"``) and :func:`pair_loss` with index cross-entropy (form ``"pair"``), each
    with its targets given (``loss``) and with reading and mixing the class indices in the timing (``mix+loss``);
    the pair form ÷ the mixed form. Per-sample λ."""
    ce = nn.CrossEntropyLoss(reduction="none")
    records = []
    for num_classes in classes:
        g = torch.Generator(device=device).manual_seed(0)
        logits = torch.randn(batch, num_classes, generator=g, device=device).requires_grad_()
        y = torch.randint(0, num_classes, (batch,), generator=g, device=device)
        index = partner_index(batch, generator=g, device=device)
        lam = sample_lam(1.0, batch, generator=g, device=device)
        specs = {form: Targets(num_classes, form=form) for form in ("mixed", "pair")}
        given = {form: spec.read(y, logits).mix(index, lam) for form, spec in specs.items()}

        def loss(form: str, target: Any) -> None:
            logits.grad = None
            if form == "mixed":
                F.cross_entropy(logits, target).backward()
            else:
                pair_loss(ce, logits, target).backward()

        fns: dict[str, Callable[[int], Any]] = {}
        for form in specs:
            fns[f"{form} loss"] = lambda _, form=form: loss(form, given[form])
            fns[f"{form} mix+loss"] = lambda _, form=form: loss(form, specs[form].read(y, logits).mix(index, lam))
        ms = interleaved_ms(fns, device, repeat)
        shape = (batch, num_classes)
        for part in ("loss", "mix+loss"):
            mixed, pair = ms[f"mixed {part}"], ms[f"pair {part}"]
            records += [
                _record("cross_entropy", "mixed", part, shape, device, torch.float32, mixed, None),
                _record("cross_entropy", "pair", part, shape, device, torch.float32, pair, pair / mixed,
                        f"mixed form {part}"),
            ]  # fmt: skip
    return records


def _seeded(op: Callable[..., Any], x: torch.Tensor, target: Any, spec: Any, gen: torch.Generator, seed: int) -> Any:
    """``op(x, target, spec)`` with ``gen`` seeded by the round: every variant of a round draws the same."""
    return op(x, target, spec, generator=gen.manual_seed(1000 + seed))


def bench_segmentation(
    methods: Sequence[str], shape: Sequence[int], num_classes: int, device: torch.device, repeat: int
) -> list[dict[str, Any]]:
    """The whole ``*_batch`` call of each of ``methods`` (those with a segmentation-capable op) on class-index
    masks ``[B, H, W]`` (mixed and pair form) ÷ the same call on class indices ``[B]`` (mixed into probabilities),
    alternating rounds with the same draws. PuzzleMix gets a fixed saliency (the images' mean absolute value)."""
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(*shape, generator=g, device=device)
    labels = torch.randint(0, num_classes, (shape[0],), generator=g, device=device)
    masks = torch.randint(0, num_classes, (shape[0], *shape[2:]), generator=g, device=device)
    saliency = x.abs().mean(1)
    variants = {
        "step_labels": (labels, num_classes),
        "step_seg": (masks, Targets(num_classes, task="segmentation")),
        "step_seg_pair": (masks, Targets(num_classes, task="segmentation", form="pair")),
    }
    ops = {m: SEG_OPS[m] for m in methods if m in SEG_OPS}
    if "puzzlemix" in methods:
        grids = tuple(grid for grid in PuzzleMixParams().grids_that_fit(shape[-1]) if grid in GRIDS)
        ops["puzzlemix"] = functools.partial(puzzlemix_batch, saliency=saliency, params=PuzzleMixParams(grids=grids))
    records = []
    for method, op in ops.items():
        gen = torch.Generator(device=device)
        fns = {part: functools.partial(_seeded, op, x, target, spec, gen) for part, (target, spec) in variants.items()}
        ms = interleaved_ms(fns, device, repeat)
        base = ms["step_labels"]
        records.append(_record(method, "batch", "step_labels", shape, device, torch.float32, base, None))
        for part in ("step_seg", "step_seg_pair"):
            records.append(
                _record(
                    method, "batch", part, shape, device, torch.float32, ms[part], ms[part] / base, "labels [B] step"
                )
            )
    return records


def run(
    methods: Sequence[str] = METHODS,
    device: str = "cpu",
    quick: bool = False,
    sections: Sequence[str] = DEFAULT_SECTIONS,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run the ``sections`` (see :data:`SECTIONS`) for ``methods`` on ``device``; ``quick`` uses tiny shapes and
    few repeats to check that everything runs, so its records carry no ratio (at those sizes a ratio means
    nothing). ``loss`` does not depend on the methods. ``progress`` gets a line as each part starts (the command
    line prints them to stderr)."""
    say = progress or (lambda line: None)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        raise ValueError(f"unknown section(s) {bad}; choose from {list(SECTIONS)}")
    dev = torch.device(device)
    shapes = QUICK_SHAPES if quick else SHAPES
    repeat = 3 if quick else 25
    dtypes = [torch.float32] + ([torch.bfloat16] if dev.type == "cuda" else [])
    records: list[dict[str, Any]] = []
    if "steps" in sections:
        input_methods = [m for m in methods if get(m).kind == "input"]
        for shape in shapes if input_methods else ():
            for dtype in dtypes:
                say(f"steps: {len(input_methods)} input mixers at {_shape(shape)} {_dtype(dtype)}, ÷ copy")
                records += bench_steps(methods, shape, dev, dtype, repeat)
    apply_methods = [m for m in methods if m in APPLY]
    for shape in shapes[-1:] if "compiled" in sections and apply_methods else ():
        say(f"compiled: the blend of {', '.join(apply_methods)} under torch.compile at {_shape(shape)}, ÷ copy")
        records += bench_compiled(apply_methods, shape, dev, repeat)
    if "masks" in sections and "fmix" in methods:
        say("masks: FMix per-sample masks")
        records += bench_masks((16,) if quick else (32, 224), 8 if quick else 256, dev, repeat)
    throughput_methods = [m for m in methods if m != "puzzlemix"]  # PuzzleMix: its own step ratio
    for method in throughput_methods if "throughput" in sections else ():
        say(f"throughput: {method}, SmallCNN training steps with ÷ without mixing")
        if quick:
            records += bench_throughput([method], (8, 3, 16, 16), dev, width=4, steps=2, rounds=1)
        else:
            records += bench_throughput([method], (128, 3, 32, 32), dev, width=32, steps=4, rounds=8)
    if "puzzlemix" in sections and "puzzlemix" in methods:
        say("puzzlemix: mask solver ÷ pyGCO, then a training step ÷ MixUp's")
        if not _have_gco():
            say(f"puzzlemix: pyGCO is not installed, so the solver has no reference time or energy; {GCO_INSTALL}")
        records += bench_puzzlemix(dev, quick, repeat)
    if "loss" in sections:
        say("loss: mixed vs pair form")
        records += bench_loss(8 if quick else LOSS_BATCH, (16,) if quick else LOSS_CLASSES, dev, repeat)
    if "segmentation" in sections:
        say("segmentation: class-index masks ÷ class indices")
        shape = (4, 3, 16, 16) if quick else SEG_SHAPE
        records += bench_segmentation(methods, shape, 5 if quick else SEG_CLASSES, dev, 3 if quick else 15)
    for r in records:
        r.setdefault("device", dev.type)
        if quick:
            r["ratio"], r["ratio_of"] = None, ""
    return records


def _shape(shape: Sequence[int]) -> str:
    return "×".join(map(str, shape))


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The records as a markdown table."""
    lines = ["| method | mode | part | shape | dtype | ms | ratio | ratio of |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        shape = _shape(r["shape"])
        digits = 4 if r["ratio_of"].startswith("ours: energy") else 2
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.{digits}f}"
        cells = [r["method"], r["mode"], r["part"], shape, r["dtype"], f"{r['ms']:.3f}", ratio, r["ratio_of"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(prog="python -m lightning_mixup.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("methods", nargs="*", metavar="METHOD", help=f"any of {', '.join(METHODS)} (default: all)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--json", dest="json_file", help="write the records to this file")
    parser.add_argument("--quick", action="store_true", help="tiny shapes, few repeats: checks that it runs")
    parser.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        metavar="NAME,...",
        help=f"comma-separated, any of {', '.join(SECTIONS)} or 'all' (default: {','.join(DEFAULT_SECTIONS)})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="torch CPU threads (default: torch's); 1 times with the thread's CPU time, steady on a busy host",
    )
    args = parser.parse_args(argv)
    for method in args.methods:
        if method not in METHODS:
            parser.error(f"argument METHOD: invalid choice: {method!r} (choose from {', '.join(METHODS)})")
    sections = SECTIONS if args.sections == "all" else tuple(s.strip() for s in args.sections.split(",") if s.strip())
    for section in sections:
        if section not in SECTIONS:
            parser.error(f"argument --sections: invalid choice: {section!r} (choose from {', '.join(SECTIONS)}, all)")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    if args.threads is not None:
        if args.threads < 1:
            parser.error(f"argument --threads: must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    use_cpu_time(args.threads == 1 and args.device == "cpu")
    start = time.perf_counter()

    def progress(line: str) -> None:
        print(f"[{time.perf_counter() - start:6.1f} s] {line}", file=sys.stderr, flush=True)

    records = run(args.methods or METHODS, args.device, args.quick, sections, progress)
    print(format_table(records))
    if args.quick:
        print(
            "\n--quick: tiny shapes and few repeats check that every part runs; at those sizes a ratio means "
            "nothing, so none is given. Run without --quick for the figures."
        )
    elif any(r["part"] == "solve" and r["ratio"] is None for r in records):
        print(f"\nThe PuzzleMix solver rows have no ratio: pyGCO is not installed; {GCO_INSTALL}.")
    if args.json_file:
        with open(args.json_file, "w") as f:
            json.dump(records, f, indent=1)
    return records

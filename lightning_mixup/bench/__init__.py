"""Benchmark every mixer against the memory-bandwidth floor: a copy of the same batch.

A mix reads two batches and writes one, so it cannot beat 1.5× the time of ``dst.copy_(x)`` into a
preallocated tensor. For each mixer, in batch and per-sample mode, this measures (medians):

- ``step``: the callback's whole mixing step (sampling, box or mask, blend, targets), ÷ copy;
- ``apply``: CutMix and FMix with the box or mask given (the blend alone), ÷ copy;
- ``mask``: FMix mask generation alone, 256 masks at 32² and 224²;
- ``throughput``: training samples/s of a small CNN with the mixer ÷ without (hidden-state mixers too);
- PuzzleMix: the mask solver on 100 problems per grid size and label count, ÷ pyGCO's α-β swap called in a
  serial loop (as the official code does; needs ``gco-wrapper``), the mean energy ÷ pyGCO's, and a whole
  training step (saliency pass, mask, transport, forward, backward) ÷ a MixUp step on the same model and batch.

Usage::

    python -m lightning_mixup.bench [METHODS...] [--device cpu|cuda] [--json FILE] [--quick]

Example:
    >>> records = run(["mixup"], device="cpu", quick=True)
    >>> sorted({r["part"] for r in records})
    ['copy', 'step', 'throughput']
    >>> format_table(records).splitlines()[0]
    '| method | mode | part | shape | dtype | ms | ratio | ratio of |'
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning.pytorch.plugins.precision import Precision

from lightning_mixup.bench.pygco import gco_labels, random_problems
from lightning_mixup.callbacks import Mixer, MixUp, PuzzleMix
from lightning_mixup.functional import cutmix, fmix, partner_index, sample_boxes, sample_lam, sample_masks
from lightning_mixup.functional.puzzlemix import energy, solve_masks
from lightning_mixup.functional.puzzlemix.mix import GRIDS
from lightning_mixup.methods import get, names
from lightning_mixup.models.nets import SmallCNN

METHODS = tuple(names("input", "hidden", "saliency"))
"""Every method the benchmark times: all the registry's classifier mixers (the GAN method has its own loop)."""
SHAPES = ((256, 3, 32, 32), (64, 3, 224, 224))
QUICK_SHAPES = ((8, 3, 16, 16),)
NUM_CLASSES = 10


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


def _apply_cutmix(x: torch.Tensor, index: torch.Tensor, lam: torch.Tensor, g: torch.Generator, dst: torch.Tensor):
    boxes, _ = sample_boxes(lam, x.shape[2], x.shape[3], generator=g)
    return lambda: cutmix(x, index, boxes, out=dst)


def _apply_fmix(x: torch.Tensor, index: torch.Tensor, lam: torch.Tensor, g: torch.Generator, dst: torch.Tensor):
    mask, _ = sample_masks(lam, x.shape[2], x.shape[3], generator=g)
    mask = mask.to(x.dtype)
    return lambda: fmix(x, index, mask, out=dst)


APPLY: dict[str, Callable[..., Callable[[], Any]]] = {"cutmix": _apply_cutmix, "fmix": _apply_fmix}
"""The deterministic blend of the input methods that have one apart from their sampling (box, mask): the ``apply``
figure times it with its randomness drawn beforehand."""


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
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _once_ms(fn: Callable[[], Any], device: torch.device) -> float:
    """Wall time of one call of ``fn`` in milliseconds."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return 1e3 * (time.perf_counter() - start)


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
    """``step`` (and ``apply`` for CutMix and FMix) of the input mixers at one shape, ÷ copy."""
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
            if method not in APPLY:
                continue
            lam = sample_lam(1.0, shape[0] if per_sample else None, generator=g)
            index = partner_index(shape[0], generator=g)
            ms = median_ms(APPLY[method](x, index, lam, g, dst), device, repeat)
            records.append(_record(method, mode, "apply", shape, device, dtype, ms, ms / copy_ms))
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
            for _ in range(rounds):
                plain.append(_once_ms(lambda: _train(module, optimizer, trainer, None, x, y, steps), device))
                mixed.append(_once_ms(lambda: _train(module, optimizer, trainer, cb, x, y, steps), device))
            cb.teardown(trainer, module, "fit")
            ms = statistics.median(mixed) / steps
            ratio = statistics.median(plain) / statistics.median(mixed)
            mode = "per_sample" if per_sample else "batch"
            records.append(
                _record(method, mode, "throughput", shape, device, torch.float32, ms, ratio, "samples/s without mixing")
            )
    return records


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
            ours = median_ms(lambda: solve_masks(problem), device, repeat)
            if not _have_gco():
                records.append(_record("puzzlemix", mode, "solve", shape, device, torch.float32, ours, None))
                continue
            cpu = torch.device("cpu")
            reference = median_ms(lambda: gco_labels(problem), cpu, max(3, repeat // 5), warmup=1)
            ratio = energy(problem, solve_masks(problem)).mean() / energy(problem, gco_labels(problem)).mean()
            records += [
                _record("puzzlemix", mode, "solve", shape, device, torch.float32, ours, ours / reference, "pyGCO time"),
                _record("puzzlemix", mode, "solve_pygco", shape, cpu, torch.float32, reference, float(ratio),
                        "ours: energy ÷ pyGCO's"),
            ]  # fmt: skip
    shape = (8, 3, 16, 16) if quick else (128, 3, 32, 32)
    records += _step_ratio(shape, device, width=4 if quick else 32, steps=2 if quick else 4, rounds=1 if quick else 4)
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


def run(methods: Sequence[str] = METHODS, device: str = "cpu", quick: bool = False) -> list[dict[str, Any]]:
    """Run every figure for ``methods`` on ``device``; ``quick`` uses tiny shapes and few repeats (for CI)."""
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    dev = torch.device(device)
    shapes = QUICK_SHAPES if quick else SHAPES
    repeat = 3 if quick else 25
    dtypes = [torch.float32] + ([torch.bfloat16] if dev.type == "cuda" else [])
    records: list[dict[str, Any]] = []
    for shape in shapes if any(get(m).kind == "input" for m in methods) else ():
        for dtype in dtypes:
            records += bench_steps(methods, shape, dev, dtype, repeat)
    if "fmix" in methods:
        records += bench_masks((16,) if quick else (32, 224), 8 if quick else 256, dev, repeat)
    throughput_methods = [m for m in methods if get(m).kind != "saliency"]  # PuzzleMix: its own step ratio
    if quick:
        records += bench_throughput(throughput_methods, (8, 3, 16, 16), dev, width=4, steps=2, rounds=1)
    else:
        records += bench_throughput(throughput_methods, (128, 3, 32, 32), dev, width=32, steps=4, rounds=4)
    if "puzzlemix" in methods:
        records += bench_puzzlemix(dev, quick, repeat)
    for r in records:
        r.setdefault("device", dev.type)
    return records


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The records as a markdown table."""
    lines = ["| method | mode | part | shape | dtype | ms | ratio | ratio of |", "|---|---|---|---|---|---|---|---|"]
    for r in records:
        shape = "×".join(map(str, r["shape"]))
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
    args = parser.parse_args(argv)
    for method in args.methods:
        if method not in METHODS:
            parser.error(f"argument METHOD: invalid choice: {method!r} (choose from {', '.join(METHODS)})")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available")
    records = run(args.methods or METHODS, args.device, args.quick)
    print(format_table(records))
    if args.json_file:
        with open(args.json_file, "w") as f:
            json.dump(records, f, indent=1)
    return records

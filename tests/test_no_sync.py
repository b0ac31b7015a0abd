"""No mixer makes the host wait for the device in a training step.

``torch.cuda.set_sync_debug_mode`` needs CUDA; on the CPU this test forbids what would synchronize an accelerator:
reading a tensor on the host (``item``, ``float``, ``int``, ``bool``, ``tolist``, ``numpy``: ``_local_scalar_dense``
under a ``TorchDispatchMode``) and ops whose output size depends on the data (``nonzero``, ``masked_select``,
``unique``, boolean indexing). It runs the callback's batch start, the forward, the loss, the backward and the batch
end of the steps after the first (whose targets are checked in full, naming bad values, which needs reading them).
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lightning_mixup import MixUp
from lightning_mixup.callbacks import base
from lightning_mixup.methods import get, names
from lightning_mixup.models.nets import SmallCNN

NUM_CLASSES = 10  # the registry's examples are for 10 classes (Remix's class counts)
METHODS = names("input", "hidden", task="multiclass")

ALLOWED = {
    base.read_host: "reads a draw of MixStep.host (whether to mix, which layer): a CPU generator next to an "
    "accelerator's, so it waits for no device",
}
"""Functions inside which a host read is not a synchronization, and why."""

KNOWN: dict[tuple[str, bool], str] = {
    ("cutmix", False): "functional/cutmix.py reads the batch's box corners to slice (on an accelerator, where the box "
    "lies on the device, it takes the masked form instead)",
    ("patchup", False): "its input CutMix: functional/cutmix.py reads the batch's box corners on the host (tolist)",
    ("saliencymix", False): "functional/cutmix.py reads the batch's box corners on the host (tolist) to slice",
    ("resizemix", False): "functional/resizemix.py reads the batch's box on the host (tolist) to slice",
    ("alignmix", False): "functional/alignmix.py reads its Sinkhorn convergence on the host",
    ("alignmix", True): "functional/alignmix.py reads its Sinkhorn convergence on the host",
}
"""(method, per_sample) that still synchronize, and where: expected to fail (not strictly: with ``p < 1`` or a layer
drawn among several, whether a step takes the reading path depends on the draws)."""

SYNCING = {
    torch.ops.aten._local_scalar_dense,
    torch.ops.aten.nonzero,
    torch.ops.aten.masked_select,
    torch.ops.aten._unique2,
    torch.ops.aten.unique_dim,
    torch.ops.aten.unique_consecutive,
    torch.ops.aten.equal,
    torch.ops.aten.is_nonzero,
}
"""Ops that read data on the host or size their output by it."""


class HostReads(TorchDispatchMode):
    """Records every op of :data:`SYNCING` (and boolean indexing) called outside :data:`ALLOWED`, with its caller."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        indices = args[1] if func.overloadpacket in (torch.ops.aten.index, torch.ops.aten.index_put_) else ()
        bool_index = any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices or ())
        if func.overloadpacket in SYNCING or bool_index:
            self.record(str(func))
        return func(*args, **(kwargs or {}))

    def record(self, what: str) -> None:
        frames = inspect.stack()
        if any(frame.frame.f_code in _ALLOWED_CODE for frame in frames):
            return
        caller = next((f for f in frames if "lightning_mixup" in f.filename), None)
        self.found.append(f"{what} at {caller.filename}:{caller.lineno}" if caller else what)


_ALLOWED_CODE = {fn.__code__ for fn in ALLOWED}


@contextmanager
def no_host_reads() -> Iterator[HostReads]:
    """Record host reads, including the ones that reach no op (``tolist``, ``numpy``)."""
    mode = HostReads()
    originals = {name: getattr(torch.Tensor, name) for name in ("tolist", "numpy")}

    def forbid(name: str) -> Any:
        def reader(self: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
            mode.record(f"Tensor.{name}")
            return originals[name](self, *args, **kwargs)

        return reader

    try:
        for name in originals:
            setattr(torch.Tensor, name, forbid(name))
        with mode:
            yield mode
    finally:
        for name, original in originals.items():
            setattr(torch.Tensor, name, original)


class Module(nn.Module):
    """What a mixing callback needs of a LightningModule: the registry's ``net`` and a ``log``."""

    def __init__(self) -> None:
        super().__init__()
        self.net = SmallCNN(in_channels=3, num_classes=NUM_CLASSES, width=4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def log(self, *args: Any, **kwargs: Any) -> None:
        """Lightning's logging is not under test."""


def _step(cb: Any, trainer: Any, module: Module, x: torch.Tensor, y: torch.Tensor) -> None:
    batch = [x, y]
    cb.on_train_batch_start(trainer, module, batch, 0)
    loss = F.cross_entropy(module(batch[0]), batch[1])
    cb.on_before_backward(trainer, module, loss)
    loss.backward()
    cb.on_train_batch_end(trainer, module, loss, batch, 0)


SLOW = {"alignmix"}
"""Known offenders skipped rather than run: AlignMixup's 100 Sinkhorn iterations under the dispatch mode take a
minute a case."""

CASES = [
    pytest.param(
        name,
        per_sample,
        marks=pytest.mark.skip(reason=KNOWN[name, per_sample])
        if name in SLOW
        else pytest.mark.xfail(strict=False, reason=KNOWN[name, per_sample]),
    )
    if (name, per_sample) in KNOWN
    else (name, per_sample)
    for name in METHODS
    for per_sample in (False, True)
]


@pytest.mark.parametrize("p", [1.0, 0.5])
@pytest.mark.parametrize(("name", "per_sample"), CASES)
def test_a_training_step_reads_nothing_on_the_host(name: str, per_sample: bool, p: float) -> None:
    reads = _watched_steps(name, per_sample, p, "cpu", no_host_reads())
    assert reads.found == [], f"{name} reads tensors on the host in a training step: {reads.found}"


def _watched_steps(name: str, per_sample: bool, p: float, device: str, watch: Any) -> Any:
    """Two steps of the registry's ``name`` (the first mixed batch: targets checked in full, layers checked), then four
    more inside the context manager ``watch`` (both sides of the coin, several layers); returns what it yields."""
    torch.manual_seed(0)
    module = Module().to(device)
    cb = get(name).make(per_sample=per_sample, num_classes=NUM_CLASSES, seed=0, p=p)
    trainer = SimpleNamespace(current_epoch=0, global_rank=0, datamodule=None)
    cb.setup(trainer, module, "fit")
    x, y = torch.randn(8, 3, 16, 16).to(device), (torch.arange(8) % 4).to(device)
    for _ in range(2):
        _step(cb, trainer, module, x, y)
    with watch as watched:
        for _ in range(4):
            _step(cb, trainer, module, x, y)
    cb.teardown(trainer, module, "fit")
    return watched


CUDA_KNOWN = {"alignmix": KNOWN["alignmix", False]}
"""What still synchronizes on CUDA, where the batch boxes lie on the device and take the masked form."""


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("name", METHODS)
def test_a_cuda_training_step_never_synchronizes(name: str, per_sample: bool) -> None:
    """The same steps on a GPU under ``torch.cuda.set_sync_debug_mode("error")``, which raises on any sync."""
    if name in CUDA_KNOWN:
        pytest.xfail(CUDA_KNOWN[name])
    _watched_steps(name, per_sample, 0.5, "cuda", cuda_syncs_raise())


@contextmanager
def cuda_syncs_raise() -> Iterator[None]:
    """Inside: any host synchronization with the GPU raises."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_the_detector_sees_host_reads() -> None:
    t = torch.ones(3)
    for read in (lambda: float(t[0]), lambda: bool(t[0]), lambda: t.tolist(), lambda: t.nonzero(), lambda: t[t > 0]):
        with no_host_reads() as reads:
            read()
        assert reads.found, read
    with no_host_reads() as reads:
        base.read_host(torch.rand(()))  # the documented exception
    assert reads.found == []


def test_host_generator_next_to_an_accelerator_generator() -> None:
    """On the CPU the generator draws the host's decisions itself; next to an accelerator's generator (stood for
    here by its device alone) a CPU generator of the same seed does, saved and restored with the checkpoint."""
    cb = MixUp(seed=3, num_classes=NUM_CLASSES)
    cb.setup(SimpleNamespace(global_rank=0), Module(), "fit")
    cpu = cb.generator_for(torch.device("cpu"))
    assert cb.host_generator_for(cpu) is cpu
    accelerator = SimpleNamespace(device=torch.device("cuda"))
    host = cb.host_generator_for(accelerator)
    assert host.device.type == "cpu" and cb.host_generator_for(accelerator) is host
    assert torch.equal(torch.rand(4, generator=host), torch.rand(4, generator=torch.Generator().manual_seed(cb._seed)))
    restored = MixUp(seed=3, num_classes=NUM_CLASSES)
    restored.setup(SimpleNamespace(global_rank=0), Module(), "fit")
    restored.load_state_dict(cb.state_dict())
    assert torch.equal(torch.rand(4, generator=restored.host_generator_for(accelerator)), torch.rand(4, generator=host))

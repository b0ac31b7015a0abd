"""Local vs global partners under DDP: the mixing step of 2 CPU processes (gloo), each as the callback runs it.

``local``: the mix of the rank's own batch. ``global`` (``partner_scope="global"``): the all-gather of inputs and
targets, the mix of the global batch and the rank's rows. Each rank receives ``(world_size − 1)·B`` samples and
targets per step: ``(W − 1)·B·(C·H·W·4 + 8)`` bytes for float32 images and int64 labels.

    python -m lightning_mixup.bench.partners [--batch 128] [--size 32] [--methods mixup cutmix]

Example:
    >>> rows = step_times(["mixup"], batch=8, size=8, repeat=5)  # doctest: +SKIP
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lightning_mixup.bench import median_ms
from lightning_mixup.callbacks.base import MixStep, mixing_seed
from lightning_mixup.functional import Targets
from lightning_mixup.methods import get
from lightning_mixup.ranks import gather_rows

WORLD_SIZE = 2


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, port: int, methods: list[str], batch: int, size: int, repeat: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD_SIZE)
    try:
        x = torch.randn(batch, 3, size, size)
        y = torch.randint(0, 10, (batch,))
        cpu, results = torch.device("cpu"), {}
        for name in methods:
            mixer = get(name).make(per_sample=True)
            generator = torch.Generator().manual_seed(mixing_seed(0, 0))
            targets = Targets(10)

            def local() -> None:
                mixer.mix(MixStep(x, y, targets, generator, 0))

            def global_() -> None:
                xs, ys = gather_rows([x, y], WORLD_SIZE, name)
                mixed = mixer.mix(MixStep(xs, ys, targets, generator, 0))
                mixed.input[rank * batch : (rank + 1) * batch]

            results[name] = (median_ms(local, cpu, repeat), median_ms(global_, cpu, repeat))
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def step_times(
    methods: list[str], batch: int = 128, size: int = 32, repeat: int = 30
) -> dict[str, tuple[float, float]]:
    """``{method: (local ms, global ms)}`` of rank 0, 2 processes, one thread each."""
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "times.pt")
        mp.spawn(_worker, args=(_free_port(), methods, batch, size, repeat, out), nprocs=WORLD_SIZE)
        return torch.load(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_mixup.bench.partners", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--batch", type=int, default=128, help="samples per rank")
    parser.add_argument("--size", type=int, default=32, help="image side (3 channels)")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--methods", nargs="+", default=["mixup", "cutmix", "fmix"])
    args = parser.parse_args(argv)
    for name in args.methods:
        get(name)  # unknown names fail here, with the list
    times = step_times(args.methods, args.batch, args.size, args.repeat)
    moved = (WORLD_SIZE - 1) * args.batch * (3 * args.size * args.size * 4 + 8)
    print(f"2 CPU processes (gloo), batch {args.batch} of 3x{args.size}x{args.size} per rank; each rank receives")
    print(f"{moved / 1e6:.2f} MB per global step\n")
    print("| method | local step | global step | global ÷ local |")
    print("|---|---|---|---|")
    for name, (local, global_) in times.items():
        print(f"| {name} | {local:.2f} ms | {global_:.2f} ms | {global_ / local:.2f} |")


if __name__ == "__main__":
    main()

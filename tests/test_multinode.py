"""Past one machine: 2 nodes × 1 process simulated on localhost with torchrun (CPU, gloo), for a plain Trainer
script and for the Hydra entry point. The mixers need nothing beyond what DDP gives."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

from conftest import free_port

SCRIPT = Path(__file__).with_name("multinode_fit.py")


def torchrun_two_nodes(args: list[str], cwd: Path) -> None:
    """Start the two simulated nodes (node_rank 0 and 1) and wait for both; fail with their output."""
    port = str(free_port())
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1"]
    launcher += ["--master_addr=127.0.0.1", f"--master_port={port}"]
    procs = [
        subprocess.Popen(
            [*launcher, f"--node_rank={node}", *args],
            env=env,
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for node in (0, 1)
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    for proc, output in zip(procs, outputs):
        assert proc.returncode == 0, output[-4000:]


def test_a_plain_trainer_script_runs_on_two_simulated_nodes(tmp_path: Path) -> None:
    torchrun_two_nodes([str(SCRIPT), str(tmp_path)], cwd=tmp_path)
    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["node_rank"] for r in ranks] == [0, 1]
    for r in ranks:
        torch.testing.assert_close(r["sums"], torch.ones(3, 32))  # mixed probability targets on both nodes
    gathered = ranks[0]["generator"]["ranks"]  # the checkpoint's state: every rank's generator, gathered
    assert len(gathered) == 2 and gathered[0]["seed"] != gathered[1]["seed"]  # the global rank is in the seed
    assert not torch.equal(gathered[0]["generator"], gathered[1]["generator"])
    torch.testing.assert_close(ranks[0]["weight"], ranks[1]["weight"])  # one model: DDP kept the replicas equal


def test_the_hydra_entry_point_runs_on_two_simulated_nodes(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = [
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=1",
        "trainer.num_nodes=2",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=3",
        "+trainer.limit_val_batches=2",
        "+trainer.limit_test_batches=2",
        "trainer.enable_progress_bar=false",
        "mix=cutmix",
        f"hydra.run.dir={run_dir}",
    ]
    torchrun_two_nodes(["-m", "lightning_mixup.train", *overrides], cwd=tmp_path)
    log = (run_dir / "train.log").read_text()
    assert "test accuracy" in log
    assert list((run_dir / "checkpoints").glob("*.ckpt"))

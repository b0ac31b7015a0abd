"""Every mixer (input and hidden-state) completes a short DDP fit with 2 CPU processes (gloo), and the ranks draw differently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).with_name("ddp_fit.py")
NAMES = ("mixup", "cutmix", "fmix", "random_choice", "manifold_mixup", "patchup")


def test_every_mixer_fits_under_ddp_and_ranks_differ(tmp_path: Path) -> None:
    env = {**os.environ, "MASTER_PORT": str(20000 + os.getpid() % 20000), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in NAMES:
        rank0 = torch.load(tmp_path / f"{name}-rank0.pt")
        rank1 = torch.load(tmp_path / f"{name}-rank1.pt")
        assert rank0["targets"].shape == rank1["targets"].shape == (3, 32, 10), name
        torch.testing.assert_close(rank0["targets"].sum(-1), torch.ones(3, 32))
        assert rank0["lam"].shape == (3, 32), name
        assert not torch.equal(rank0["lam"], rank1["lam"]), name

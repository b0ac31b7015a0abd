"""Every mixer (input and hidden-state) completes a short DDP fit with 2 CPU processes (gloo), the ranks
draw differently, and a resumed DDP run redraws each rank's own sequence."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import free_port
from lightning_mixup.methods import METHODS, get
from ddp_fit import NAMES as MIXERS

SCRIPT = Path(__file__).with_name("ddp_fit.py")
NAMES = (*MIXERS, "random_choice", "cutmix_pair", "transmix")


@pytest.fixture(scope="module")
def ddp_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp")
    env = {**os.environ, "MASTER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=400, cwd=out
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_every_mixer_fits_under_ddp_and_ranks_differ(ddp_out: Path) -> None:
    for name in NAMES:
        rank0 = torch.load(ddp_out / f"{name}-rank0.pt")
        rank1 = torch.load(ddp_out / f"{name}-rank1.pt")
        rows = 32 * (get(name).callback.OUTPUT_ROWS if name in METHODS else 1)  # RegMixup: clean + mixed
        assert rank0["targets"].shape == rank1["targets"].shape == (3, rows, 10), name
        if name not in METHODS or get(name).callback.LABELS_FOLLOW_AREA:  # SnapMix's weights need not sum to 1
            torch.testing.assert_close(rank0["targets"].sum(-1), torch.ones(3, rows))
        assert rank0["lam"].shape == (3, 32), name
        assert not torch.equal(rank0["lam"], rank1["lam"]), name


def test_resume_under_ddp_restores_every_ranks_generator(ddp_out: Path) -> None:
    """The checkpoint holds each rank's generator, not only rank 0's."""
    resumed = {}
    for rank in (0, 1):
        full = torch.load(ddp_out / f"resume-full-rank{rank}.pt")
        resumed[rank] = torch.load(ddp_out / f"resume-resumed-rank{rank}.pt")
        assert full.shape == (4, 32) and resumed[rank].shape == (2, 32)
        assert torch.equal(full[2:], resumed[rank]), rank
    assert not torch.equal(resumed[0], resumed[1])

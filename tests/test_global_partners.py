"""``partner_scope="global"`` under DDP (2 CPU processes, gloo): every rank gets exactly its rows of the mix that one
process computes on the concatenated global batch; a resumed run redraws it; uneven batches are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import free_port, same
from global_mixers import GLOBAL_MIXERS, MODEL_MIXERS, SEED
from lightning_mixup import CMixup, ManifoldMixup, MixUp, PuzzleMix, RandomChoice, RegMixup, TransMix
from lightning_mixup.methods import get
from lightning_mixup.callbacks.base import MixStep, mixing_seed
from lightning_mixup.functional import Targets

SCRIPT = Path(__file__).with_name("ddp_global_fit.py")


@pytest.fixture(scope="module")
def ddp_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp_global")
    env = {**os.environ, "MASTER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(out)], env=env, capture_output=True, text=True, timeout=400, cwd=out
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("name", sorted(GLOBAL_MIXERS))
def test_each_rank_gets_its_rows_of_the_global_mix(ddp_out: Path, name: str) -> None:
    ranks = [torch.load(ddp_out / f"{name}-rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    oracle = GLOBAL_MIXERS[name]()
    oracle._seed = mixing_seed(SEED, 0)  # what setup gives every rank under partner_scope="global"
    generator = oracle.generator_for(torch.device("cpu"))
    form = "pair" if name.endswith("_pair") else "mixed"
    for step in range(3):
        x = torch.cat([r["before"][step][0] for r in ranks])  # the global batch, in rank order
        y = torch.cat([r["before"][step][1] for r in ranks])
        assert x.shape[0] == 64
        mixed = oracle.mix(MixStep(x, y, Targets(10, form=form), generator, epoch=0))
        for rank, r in enumerate(ranks):
            own = slice(32 * rank, 32 * (rank + 1))
            x_rank, y_rank = r["after"][step][0], r["after"][step][1]
            torch.testing.assert_close(x_rank, mixed.input[own], rtol=0, atol=0)
            expected = type(mixed.target)(*(t[own] for t in mixed.target)) if form == "pair" else mixed.target[own]
            assert same(y_rank, expected), (name, step, rank)
        partners = mixed.index if mixed.index is not None else None
        if partners is not None and name != "random_choice":  # partners cross ranks
            assert ((partners < 32) != (torch.arange(64) < 32)).any()


def test_c_mixup_draws_partners_by_label_distance_over_the_global_batch(ddp_out: Path) -> None:
    ranks = [torch.load(ddp_out / f"cmixup-rank{rank}.pt", weights_only=False) for rank in (0, 1)]
    oracle = CMixup(per_sample=True, seed=SEED, partner_scope="global")
    oracle._seed = mixing_seed(SEED, 0)
    generator = oracle.generator_for(torch.device("cpu"))
    for step in range(3):
        x = torch.cat([r["before"][step][0] for r in ranks])
        y = torch.cat([r["before"][step][1] for r in ranks])
        mixed = oracle.mix(MixStep(x, y, Targets(None, task="regression"), generator, epoch=0))
        for rank, r in enumerate(ranks):
            own = slice(16 * rank, 16 * (rank + 1))
            assert torch.equal(r["after"][step][0], mixed.input[own]) and torch.equal(
                r["after"][step][1], mixed.target[own]
            )


def test_resume_redraws_the_shared_sequence_on_every_rank(ddp_out: Path) -> None:
    full = [torch.load(ddp_out / f"resume-full-rank{rank}.pt") for rank in (0, 1)]
    resumed = [torch.load(ddp_out / f"resume-resumed-rank{rank}.pt") for rank in (0, 1)]
    assert torch.equal(full[0], full[1]) and full[0].shape == (4, 64)  # one global λ per sample, on every rank
    for rank in (0, 1):
        assert torch.equal(full[rank][2:], resumed[rank])


def test_uneven_batches_are_refused_on_every_rank(ddp_out: Path) -> None:
    for rank in (0, 1):
        message = (ddp_out / f"uneven-rank{rank}.txt").read_text()
        assert "needs the same batch size on every rank, got [3, 4] (by rank)" in message


@pytest.mark.parametrize("name", sorted(MODEL_MIXERS))
def test_the_methods_that_mix_with_the_model_run_with_global_partners(ddp_out: Path, name: str) -> None:
    for rank in (0, 1):
        batches = torch.load(ddp_out / f"{name}-rank{rank}.pt", weights_only=False)
        assert len(batches) == 2
        for x, y in batches:  # after the forward (where PatchUp fills its targets in): this rank's rows
            assert x.shape == (32, 1, 8, 8) and y.shape == (32, 10) and torch.isfinite(y).all()
            if get(name).callback.LABELS_FOLLOW_AREA:  # not SnapMix's CAM weights
                torch.testing.assert_close(y.sum(dim=1), torch.ones(32))


@pytest.mark.parametrize(
    "make",
    [
        lambda: RegMixup(partner_scope="global"),
        lambda: TransMix(attention_layer="net.blocks.0.attn.attn_drop", partner_scope="global"),
        lambda: RandomChoice([MixUp(), RegMixup()], partner_scope="global"),
    ],
)
def test_the_methods_that_cannot_refuse_global_partners(make) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="global"):
        make()
    assert not RegMixup.GLOBAL_PARTNERS and ManifoldMixup.GLOBAL_PARTNERS and PuzzleMix.GLOBAL_PARTNERS


def test_partner_scope_is_checked() -> None:
    with pytest.raises(ValueError, match="partner_scope must be one of"):
        MixUp(partner_scope="world")


def test_the_benchmark_times_local_and_global_steps() -> None:
    from lightning_mixup.bench.partners import step_times

    times = step_times(["mixup"], batch=4, size=4, repeat=5)
    assert set(times) == {"mixup"} and all(ms > 0 for ms in times["mixup"])

"""The report: finished runs (single and multirun) into one markdown table, seeds aggregated, paper beside."""

from __future__ import annotations

import statistics
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from lightning_mixup.report import aggregate, collect, main, to_markdown
from lightning_mixup.train import config_dir, train

MIXUP_CONFIG = {
    "seed": 0,
    "mix": {"_target_": "lightning_mixup.MixUp", "alpha": 1.0},
    "net": {"_target_": "lightning_mixup.models.nets.PreActResNet18"},
    "data": {"_target_": "lightning_mixup.data.cifar.CIFAR10DataModule", "data_dir": "${oc.env:CIFAR_DIR,data}"},
    "trainer": {"max_epochs": 200},
    "paths": {"output_dir": "${hydra:runtime.output_dir}"},
    "paper": {"error": 4.2, "source": "mixup Table 2"},
}


def _write_run(
    run: Path, config: dict, overrides: list[str], acc: float | None, ece: float = 0.03, version: int = 0
) -> Path:
    (run / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(OmegaConf.create(config), run / ".hydra" / "config.yaml")
    OmegaConf.save(OmegaConf.create(overrides), run / ".hydra" / "overrides.yaml")
    metrics = run / "csv" / f"version_{version}" / "metrics.csv"
    metrics.parent.mkdir(parents=True, exist_ok=True)
    rows = ["epoch,step,train/loss,val/acc,test/acc,test/ece,test/loss", "0,390,1.5,,,,", "0,390,,0.90,,,"]
    if acc is not None:
        rows.append(f"199,78000,,,{acc},{ece},0.2")
    metrics.write_text("\n".join(rows) + "\n")
    return run


def _seeded(config: dict, seed: int) -> dict:
    return {**config, "seed": seed}


def test_seeds_of_one_setting_are_aggregated_beside_the_paper(tmp_path: Path) -> None:
    sweep = tmp_path / "multirun"
    (sweep).mkdir()
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    for job, (seed, acc) in enumerate([(0, 0.958), (1, 0.956), (2, 0.960)]):
        _write_run(
            sweep / str(job),
            _seeded(MIXUP_CONFIG, seed),
            ["+experiment=mixup_cifar10_preactresnet18", f"seed={seed}", "data.data_dir=/data"],
            acc,
            0.02 + job / 100,
        )
    erm = {**MIXUP_CONFIG, "mix": None, "paper": {"error": 5.6, "source": "mixup Table 2, ERM"}}
    single = _write_run(tmp_path / "erm", erm, ["+experiment=erm_cifar10_preactresnet18"], 0.944)

    runs = collect([sweep, single])
    assert [r["seed"] for r in runs] == [0, 1, 2, 0]
    assert runs[0]["method"] == "MixUp" and runs[3]["method"] == "none"
    assert runs[0]["net"] == "PreActResNet18" and runs[0]["data"] == "CIFAR10DataModule" and runs[0]["epochs"] == 200
    assert runs[1]["test_error"] == pytest.approx(4.4)

    rows = aggregate(runs)
    assert len(rows) == 2
    errors = [4.2, 4.4, 4.0]
    assert (
        rows[0]["test error (%)"] == f"{statistics.fmean(errors):.2f} ± {statistics.stdev(errors):.2f}" == "4.20 ± 0.20"
    )
    assert rows[0]["test ECE"] == "0.030 ± 0.010" and rows[0]["seeds"] == "0, 1, 2"
    assert rows[0]["paper error (%)"] == "4.2 (mixup Table 2)"
    assert rows[0]["setting"] == "`+experiment=mixup_cifar10_preactresnet18`"
    assert rows[1]["test error (%)"] == "5.60" and rows[1]["paper error (%)"] == "5.6 (mixup Table 2, ERM)"

    table = to_markdown(rows)
    lines = table.splitlines()
    assert len(lines) == 4 and lines[0].startswith("| setting | method | net | data | epochs | seeds | test error (%)")
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_a_paper_number_for_another_net_and_a_missing_one_are_labelled(tmp_path: Path) -> None:
    cutmix = {**MIXUP_CONFIG, "paper": {"error": 14.23, "net": "PyramidNet-200", "source": "CutMix"}}
    patchup = {**MIXUP_CONFIG, "paper": {"error": None, "source": "PatchUp Table 1, not verified"}}
    rows = aggregate(
        collect([_write_run(tmp_path / "a", cutmix, ["x=1"], 0.8), _write_run(tmp_path / "b", patchup, ["x=2"], 0.8)])
    )
    assert rows[0]["paper error (%)"] == "14.23 (PyramidNet-200; CutMix)"
    assert rows[1]["paper error (%)"] == "— (PatchUp Table 1, not verified)"
    no_paper = {k: v for k, v in MIXUP_CONFIG.items() if k != "paper"}
    assert aggregate(collect([_write_run(tmp_path / "c", no_paper, [], 0.8)]))[0]["paper error (%)"] == "—"


def test_the_latest_log_version_wins_and_unfinished_runs_are_skipped(tmp_path: Path) -> None:
    run = _write_run(tmp_path / "resumed", MIXUP_CONFIG, [], 0.90)
    _write_run(run, MIXUP_CONFIG, [], 0.95, version=1)
    assert collect([run])[0]["test_error"] == pytest.approx(5.0)
    unfinished = _write_run(tmp_path / "unfinished", MIXUP_CONFIG, [], None)
    with pytest.warns(UserWarning, match="skipping .*unfinished: no test/acc"):
        assert collect([unfinished]) == []


def test_main_prints_the_table_and_refuses_other_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _write_run(tmp_path / "run", _seeded(MIXUP_CONFIG, 3), ["seed=3"], 0.95)
    assert main([str(run)]) == 0
    assert (
        "| `defaults` | MixUp | PreActResNet18 | CIFAR10DataModule | 200 | 3 | 5.00 | 0.030 | 4.2 (mixup Table 2) |"
        in capsys.readouterr().out
    )
    assert main([str(tmp_path)]) == 2
    assert f"{tmp_path} is neither a run directory" in capsys.readouterr().err


def test_a_real_training_run_is_collected(tmp_path: Path) -> None:
    overrides = [
        "mix=cutmix",
        "trainer.max_epochs=1",
        "+trainer.limit_train_batches=2",
        "+trainer.limit_val_batches=1",
        "+trainer.limit_test_batches=1",
        "callbacks=none",
        "net.width=4",
        "seed=7",
    ]
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, f"paths.output_dir={tmp_path}"])
    metrics = train(cfg)
    (tmp_path / ".hydra").mkdir()
    OmegaConf.save(cfg, tmp_path / ".hydra" / "config.yaml")  # what @hydra.main writes
    OmegaConf.save(OmegaConf.create(overrides), tmp_path / ".hydra" / "overrides.yaml")
    (run,) = collect([tmp_path])
    assert run["method"] == "CutMix" and run["net"] == "SmallCNN" and run["data"] == "DigitsDataModule"
    assert run["seed"] == 7 and run["epochs"] == 1 and run["paper_error"] is None
    assert run["test_error"] == pytest.approx(100 * (1 - metrics["test/acc"]))
    assert run["test_ece"] == pytest.approx(metrics["test/ece"])

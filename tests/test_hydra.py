"""Hydra: every config composes and runs, multirun sweeps, the console script, configs found from a wheel."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf, open_dict

from lightning_mixup.train import config_dir, train

REPO = Path(__file__).resolve().parent.parent
MIXES = sorted(p.stem for p in Path(config_dir(), "mix").glob("*.yaml"))
NETS = sorted(p.stem for p in Path(config_dir(), "net").glob("*.yaml"))
# the keys every mixing callback takes (MixingCallback), and those of every Mixer: conf/mix/options/*.yaml
SHARED = {
    "callback": {
        "p",
        "start_epoch",
        "stop_epoch",
        "input_key",
        "target_key",
        "num_classes",
        "seed",
        "task",
        "targets",
        "ignore_index",
        "partner_scope",
    }  # fmt: skip
}
SHARED["mixer"] = SHARED["callback"] | {"per_sample", "partner"}


def _compose(tmp_path: Path, *overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"paths.output_dir={tmp_path}", "trainer.fast_dev_run=true", *overrides])
    return cfg


def _own_keys(path: Path) -> DictConfig:
    """A config file's own keys, without its defaults list."""
    cfg = OmegaConf.load(path)
    cfg.pop("defaults", None)
    return cfg


def test_the_shared_options_files_hold_exactly_the_shared_keys() -> None:
    options = Path(config_dir(), "mix", "options")
    assert set(_own_keys(options / "callback.yaml")) == SHARED["callback"]
    assert set(_own_keys(options / "mixer.yaml")) == SHARED["mixer"] - SHARED["callback"]
    assert list(OmegaConf.load(options / "mixer.yaml").defaults) == ["callback@_here_", "_self_"]


# gan_mixup's DiscriminatorMixup takes none of the keys/p/partner: it keeps its own few keys
@pytest.mark.parametrize("mix", [m for m in MIXES if m not in ("none", "gan_mixup")])
def test_every_method_config_takes_the_shared_keys_from_the_options_files(mix: str, tmp_path: Path) -> None:
    own = OmegaConf.load(Path(config_dir(), "mix", f"{mix}.yaml"))
    kind = "callback" if mix == "random_choice" else "mixer"
    assert list(own.defaults) == [f"options/{kind}@_here_", "_self_"]  # _self_ last: the method's keys win
    options = Path(config_dir(), "mix", "options")
    shared = OmegaConf.merge(*(_own_keys(options / f"{k}.yaml") for k in dict.fromkeys(["callback", kind])))
    for key in SHARED[kind] & set(own):  # only an override (e.g. patchup's p: null), never a repeat
        assert own[key] != shared[key], f"{mix}.yaml repeats {key}: {own[key]!r}, as options/{kind}.yaml"
    composed = _compose(tmp_path, f"mix={mix}").mix
    assert set(composed) >= SHARED[kind] | {"_target_"} and "defaults" not in composed
    assert all(composed[key] == (own[key] if key in own else shared[key]) for key in SHARED[kind])


@pytest.mark.parametrize("net", NETS)
def test_every_net_gives_hidden_layers_and_its_own_only_where_they_differ(net: str, tmp_path: Path) -> None:
    layers = _compose(tmp_path, f"net={net}").net_layers
    assert list(layers.hidden) and all(isinstance(name, str) for name in layers.hidden)
    assert all(list(layers[method]) != list(layers.hidden) for method in layers if method != "hidden")


@pytest.mark.parametrize("net", NETS)
def test_a_new_hidden_state_mix_config_needs_no_net_config_change(net: str, tmp_path: Path) -> None:
    conf = tmp_path / "conf" / "mix"
    conf.mkdir(parents=True)
    (conf / "new_hidden_mix.yaml").write_text(
        "defaults:\n  - options/mixer@_here_\n  - _self_\n\n"
        "_target_: lightning_mixup.ManifoldMixup\n"
        "layers: ${oc.select:net_layers.new_hidden_mix,${net_layers.hidden}}\n"
    )
    cfg = _compose(tmp_path, f"hydra.searchpath=[file://{tmp_path / 'conf'}]", f"net={net}", "mix=new_hidden_mix")
    assert "new_hidden_mix" not in cfg.net_layers
    mix = OmegaConf.to_container(cfg.mix, resolve=True)
    assert mix["layers"] == list(cfg.net_layers.hidden) and set(mix) >= SHARED["mixer"]
    with open_dict(cfg):  # a net that does give the method its own layers wins over hidden
        cfg.net_layers.new_hidden_mix = ["net.own"]
    assert list(cfg.mix.layers) == ["net.own"]


NET_FOR = {"transmix": ("net=vit", "model=classifier_adamw")}  # a mix that needs another net than the SmallCNN


@pytest.mark.parametrize("mix", [m for m in MIXES if m not in ("gan_mixup", "cmixup")])  # test_gan, test_regression
def test_every_mix_config_composes_and_runs_fast_dev_run(mix: str, tmp_path: Path) -> None:
    metrics = train(_compose(tmp_path, f"mix={mix}", *NET_FOR.get(mix, ())))
    assert 0.0 <= metrics["test/acc"] <= 1.0 and 0.0 <= metrics["test/ece"] <= 1.0
    assert ("mix/applied" in metrics) == (mix != "none")


@pytest.mark.parametrize(
    "overrides",
    [
        ("data=moons", "net=mlp"),
        ("data=spirals", "net=mlp", "mix.alpha=0.2", "mix.per_sample=true"),
        ("net=preact_resnet18", "net.width=8", "data.batch_size=8"),
        ("mix=fmix", "mix.max_soft=0.1", "mix.reformulate=true", "model.loss=bce", "model.label_smoothing=0.1"),
        ("mix=cutmix", "trainer=cpu", "logger=tensorboard"),
        ("mix=random_choice", "callbacks=none", "logger=none"),
        ("mix=manifold_mixup", "net=preact_resnet18", "net.width=8", "data.batch_size=8", "data.image_size=16"),
        ("mix=manifold_mixup", "data=moons", "net=mlp", "mix.per_sample=true"),
        ("mix=patchup", "mix.mode=hard", "mix.block_size=3", "mix.shared_mask=true"),
        ("mix=puzzlemix", "mix.adv_p=1.0", "mix.clean_lam=1.0", "mix.n_labels=2", "mix.per_sample=true"),
        (
            "mix=patchup",
            "net=preact_resnet18",
            "net.width=8",
            "data.batch_size=8",
            "data.image_size=16",
            "mix.block_size=5",
        ),
    ],
)
def test_other_groups_compose_and_run(overrides: tuple[str, ...], tmp_path: Path) -> None:
    if "logger=tensorboard" in overrides:
        pytest.importorskip("tensorboard")
    metrics = train(_compose(tmp_path, *overrides))
    assert "test/acc" in metrics


@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_gpu_and_ddp_trainer_configs_compose(trainer: str, tmp_path: Path) -> None:
    cfg = _compose(tmp_path, f"trainer={trainer}")
    assert cfg.trainer.accelerator == "gpu"
    assert cfg.trainer.get("strategy") == ("ddp" if trainer == "ddp" else None)


def test_a_short_training_learns_and_checkpoints(tmp_path: Path) -> None:
    cfg = _compose(tmp_path, "trainer.fast_dev_run=false", "trainer.max_epochs=3", "mix=mixup", "test_ckpt=last")
    metrics = train(cfg)
    assert metrics["test/acc"] > 0.5  # 10 classes: chance is 0.1
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    with open_dict(cfg):
        cfg.ckpt_path = str(tmp_path / "checkpoints" / "last.ckpt")
        cfg.trainer.max_epochs = 4
    assert "test/acc" in train(cfg)


def test_bad_test_ckpt_is_quoted(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="test_ckpt must be 'best' or 'last', got 'final'"):
        train(_compose(tmp_path, "test_ckpt=final"))


def test_patchup_on_a_net_without_feature_maps_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="layers is empty"):
        train(_compose(tmp_path, "mix=patchup", "data=moons", "net=mlp"))


def test_unknown_method_name_lists_the_options(tmp_path: Path) -> None:
    with pytest.raises(ConfigCompositionException, match="(?s)mix/puzzlemx.*Available options.*cutmix"):
        _compose(tmp_path, "mix=puzzlemx")


def test_bad_value_from_the_command_line_is_quoted(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="alpha must be a finite number > 0, got -1.0"):
        train(_compose(tmp_path, "mix.alpha=-1.0"))


def _run(cmd: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_multirun_sweeps_methods(tmp_path: Path) -> None:
    _run(
        [
            sys.executable,
            "-m",
            "lightning_mixup.train",
            "-m",
            "mix=none,cutmix",
            "trainer.fast_dev_run=true",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cwd=tmp_path,
    )
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["0", "1"]
    assert "_target_: lightning_mixup.CutMix" in (tmp_path / "1" / ".hydra" / "config.yaml").read_text()
    assert (
        "lightning_mixup" not in (tmp_path / "0" / ".hydra" / "config.yaml").read_text().split("mix:")[1].split("\n")[0]
    )


def test_console_script_runs(tmp_path: Path) -> None:
    script = shutil.which("lightning-mixup-train", path=str(Path(sys.executable).parent))
    assert script, "the console script is installed with the package"
    proc = _run([script, "mix=fmix", "trainer.fast_dev_run=true", f"hydra.run.dir={tmp_path}"], cwd=tmp_path)
    assert "test accuracy" in proc.stdout + proc.stderr


def test_configs_are_found_from_a_wheel_run_in_another_directory(tmp_path: Path) -> None:
    pytest.importorskip("build")
    dist = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(dist), str(REPO)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode != 0 and "hatchling" in proc.stdout + proc.stderr:
        pytest.skip("the build backend could not be installed (offline?)")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheel = next(dist.glob("lightning_mixup-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "lightning_mixup/conf/train.yaml" in names and "lightning_mixup/conf/mix/cutmix.yaml" in names
    assert "lightning_mixup/data/digits.pt" in names
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = _run(
        [sys.executable, "-m", "lightning_mixup.train", "mix=cutmix", "trainer.fast_dev_run=true"],
        cwd=elsewhere,
        PYTHONPATH=str(site),
    )
    assert (
        str(site / "lightning_mixup" / "conf")
        in subprocess.run(
            [sys.executable, "-c", "from lightning_mixup.train import config_dir; print(config_dir())"],
            cwd=elsewhere,
            env={**os.environ, "PYTHONPATH": str(site)},
            capture_output=True,
            text=True,
        ).stdout
    )
    assert "test accuracy" in proc.stdout + proc.stderr

"""What a user sees and relies on (issue 18): last.ckpt is the last epoch and resuming keeps the run's mixer,
progress and train.log, clear failures (PuzzleMix's grids and logits, hidden layers, GPU-less presets, toy data
on a CNN, offline download, missing matplotlib), CPU DDP from the config table, Lightning's lr_find and
LightningCLI, small pickles, readable PNGs and --help."""

from __future__ import annotations

import logging
import os
import pickle
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf
from torch import nn

from conftest import NUM_CLASSES, Recorder, UserModule, free_port, make_loader, make_trainer
from lightning_mixup import Classifier, CutMix, ManifoldMixup, MixedBatchLogger, MixUp, PatchUp, PuzzleMix
from lightning_mixup.callbacks import EpochSummary
from lightning_mixup.data import DigitsDataModule
from lightning_mixup.models.nets import SmallCNN
from lightning_mixup.train import config_dir, resume_overrides, train

REPO = Path(__file__).resolve().parent.parent
QUICK = ("trainer.enable_progress_bar=false", "+trainer.limit_train_batches=2", "+trainer.limit_val_batches=1")


def _compose(tmp_path: Path, *overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose(
            "train", overrides=[f"paths.output_dir={tmp_path}", "trainer.enable_progress_bar=false", *overrides]
        )


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_mixup.train", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


# ---- 1. last.ckpt and resuming ----------------------------------------------------------------------------------


def test_last_ckpt_is_the_last_epoch_even_when_the_best_is_earlier(tmp_path: Path) -> None:
    # lr 0: val/acc never improves, so the only top-k checkpoint is epoch 0 (Lightning's save_last kept that one)
    cfg = _compose(tmp_path, "model.optimizer.lr=0.0", "trainer.max_epochs=3", "test=false", *QUICK[1:])
    train(cfg)
    ckpts = tmp_path / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["epoch_000.ckpt", "last.ckpt"]
    last = torch.load(ckpts / "last.ckpt", weights_only=False)
    assert (last["epoch"], last["global_step"]) == (2, 3 * 2)


def test_resuming_with_another_mixer_is_refused_naming_both(tmp_path: Path) -> None:
    train(_compose(tmp_path, "trainer.max_epochs=1", "test=false", *QUICK[1:]))
    last = tmp_path / "checkpoints" / "last.ckpt"
    cfg = _compose(tmp_path / "again", f"ckpt_path={last}", "mix=cutmix", "trainer.max_epochs=2", *QUICK[1:])
    with pytest.raises(ValueError, match=r"trained with MixUp\{'alpha': 1.0.*but this run configures CutMix\{"):
        train(cfg)
    with pytest.raises(ValueError, match="trained with MixUp.*configures no mixer"):
        train(_compose(tmp_path / "none", f"ckpt_path={last}", "mix=none", "trainer.max_epochs=2", *QUICK[1:]))


def test_resume_overrides_replay_the_run_then_the_command_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").touch()
    OmegaConf.save(
        OmegaConf.create(["mix=cutmix", "seed=1", "trainer.max_epochs=3", "ckpt_path=old"]),
        run / ".hydra" / "overrides.yaml",
    )
    got = resume_overrides(run, [f"resume={run}", "trainer.max_epochs=5"])
    assert got == ["mix=cutmix", "seed=1", "trainer.max_epochs=5", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}"]
    with pytest.raises(FileNotFoundError, match="is not a run directory"):
        resume_overrides(tmp_path, [])
    OmegaConf.save(OmegaConf.create([f"resume={run}"]), run / ".hydra" / "overrides.yaml")  # an older restart
    with pytest.raises(ValueError, match="holds only this restart's overrides.*ckpt_path="):
        resume_overrides(run, [])
    OmegaConf.save(OmegaConf.create(["mix=fmix"]), run / ".hydra" / "run_overrides.yaml")  # ours wins
    assert resume_overrides(run, [])[0] == "mix=fmix"


@pytest.mark.parametrize("config_name", ["train", "gan", "regress", "segment"])
def test_every_entry_config_takes_resume(config_name: str) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        assert compose(config_name, overrides=["resume=somewhere"]).resume == "somewhere"


@pytest.mark.slow
def test_resume_from_a_run_directory_keeps_its_mixer_and_logs_progress(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    proc = _run(["mix=cutmix", "trainer.max_epochs=1", "test=false", *QUICK, f"hydra.run.dir={first}"], tmp_path)
    out = proc.stdout + proc.stderr
    assert f"output directory: {first}" in out and "epoch 1/1  val/acc" in out
    log = (first / "train.log").read_text()
    assert "epoch 1/1  val/acc" in log and "Trainer.fit" in log  # Lightning's own messages too
    proc = _run([f"resume={first}", "trainer.max_epochs=2", "test=false", f"hydra.run.dir={second}"], tmp_path)
    out = proc.stdout + proc.stderr
    assert "Restored all states" in out and "epoch 2/2" in out and "epoch 1/2" not in out
    saved = OmegaConf.load(second / ".hydra" / "config.yaml")
    assert saved.mix._target_ == "lightning_mixup.CutMix" and saved.ckpt_path == str(
        first / "checkpoints" / "last.ckpt"
    )
    last = torch.load(second / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["epoch"] == 1 and any(key.startswith("CutMix{") for key in last["callbacks"])
    # into its own directory: Hydra rewrites .hydra/overrides.yaml before the run starts, run_overrides.yaml stays
    proc = _run([f"resume={second}", "trainer.max_epochs=3", "test=false", f"hydra.run.dir={second}"], tmp_path)
    out = proc.stdout + proc.stderr
    assert "Restored all states" in out and "epoch 3/3" in out and "epoch 2/3" not in out
    assert OmegaConf.load(second / ".hydra" / "config.yaml").mix._target_ == "lightning_mixup.CutMix"


# ---- 2. progress ------------------------------------------------------------------------------------------------


def test_progress_bar_on_by_default_and_one_line_per_epoch(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        assert compose("train", overrides=[f"paths.output_dir={tmp_path}"]).trainer.enable_progress_bar is True
    logging.getLogger("lightning.pytorch").addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO):
            summary = EpochSummary(prefix="val_", timing=False)  # UserModule logs val_loss
            make_trainer([summary], max_epochs=2).fit(UserModule(), make_loader(), make_loader())
    finally:
        logging.getLogger("lightning.pytorch").removeHandler(caplog.handler)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/2", "epoch 2/2"]  # not the sanity check
    assert all(line.split("  ")[1].startswith("val_loss ") for line in lines)
    with pytest.raises(TypeError, match="prefix must be a str, got 3"):
        EpochSummary(prefix=3)  # type: ignore[arg-type]


# ---- 3. and 4. PuzzleMix: grids and logits ----------------------------------------------------------------------


class NoForward(pl.LightningModule):
    """A module whose training_step calls self.net(x): no forward of its own."""

    num_classes = NUM_CLASSES

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, NUM_CLASSES)
        )
        self.steps = 0

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.steps += 1
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_puzzlemix_grids_that_do_not_fit_the_datamodule_fail_in_setup_naming_those_that_fit() -> None:
    model = Classifier(SmallCNN(in_channels=1), num_classes=10)
    trainer = make_trainer([PuzzleMix()], max_steps=1)
    message = (
        r"grids=\(2, 4, 8, 16\) do not fit 8×8 images: grid 16 does not divide 8; the grids that fit are \(2, 4, 8\)"
    )
    with pytest.raises(ValueError, match=message):
        trainer.fit(model, datamodule=DigitsDataModule())
    assert trainer.global_step == 0
    make_trainer([PuzzleMix(grids=(2, 4, 8))], max_steps=1).fit(model, datamodule=DigitsDataModule())


def test_puzzlemix_grids_are_checked_on_the_first_batch_without_a_datamodule() -> None:
    module = UserModule()
    with pytest.raises(ValueError, match=r"the grids that fit are \(2, 4, 8\)"):
        make_trainer([PuzzleMix()]).fit(module, make_loader(shape=(3, 8, 8)))
    assert module.seen["train"] == []


def test_puzzlemix_on_a_module_without_forward_fails_in_setup_naming_logits_from() -> None:
    module = NoForward()
    with pytest.raises(
        TypeError, match=r"NoForward defines no forward: pass logits_from='<submodule>' \(one of \['net'\]"
    ):
        make_trainer([PuzzleMix(grids=(2, 4))]).fit(module, make_loader())
    assert module.steps == 0
    with pytest.raises(
        ValueError,
        match=r"PuzzleMix\(logits_from='nett'\): NoForward has no such submodule; its submodules are \['net'\]",
    ):
        make_trainer([PuzzleMix(grids=(2, 4), logits_from="nett")]).fit(module, make_loader())
    with pytest.raises(TypeError, match="logits_from must be None, a submodule name or a callable.*got 3"):
        PuzzleMix(logits_from=3)  # type: ignore[arg-type]


@pytest.mark.parametrize("logits_from", ["net", lambda module, x: module.net(x)], ids=["name", "callable"])
def test_puzzlemix_takes_logits_from_a_submodule_or_a_callable(logits_from: Any) -> None:
    module, seen = NoForward(), Recorder()
    make_trainer([PuzzleMix(grids=(2, 4), logits_from=logits_from), seen]).fit(module, make_loader())
    assert module.steps == 4 and all(
        batch[1].is_floating_point() and batch[1].shape == (8, NUM_CLASSES) for batch in seen.batches
    )


# ---- 5. every hidden layer is checked on the first training forward ---------------------------------------------


class Transpose(nn.Module):
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h.t()


def test_patchup_checks_every_layer_on_the_first_forward_even_when_the_input_is_drawn() -> None:
    module = UserModule()
    with pytest.raises(ValueError, match=r"layer 'net.0': PatchUp: block_size=99 is larger than the 8x8 feature map"):
        make_trainer([PatchUp(layers=["net.0"], block_size=99, include_input=True, seed=0)]).fit(module, make_loader())
    assert module.seen["train"] == []  # the very first forward


def test_a_layer_that_is_not_batch_first_fails_on_the_first_forward() -> None:
    module = UserModule()
    module.net = nn.Sequential(nn.Flatten(), nn.Linear(192, 16), Transpose(), Transpose(), nn.Linear(16, NUM_CLASSES))
    with pytest.raises(ValueError, match=r"layer 'net.2'.*shape \[16, 8\], expected the batch \(8\) first"):
        make_trainer([ManifoldMixup(layers=["net.1", "net.2"], include_input=True)]).fit(module, make_loader())
    assert module.seen["train"] == []


@pytest.mark.parametrize("seed", [0, 1, 2, 3])  # whichever layer (or the input) the first batch draws
def test_a_named_layer_the_forward_never_calls_fails_after_the_first_step(seed: int) -> None:
    module = UserModule()
    module.unused = nn.Linear(1, 1)
    mixer = ManifoldMixup(layers=["net.0", "unused"], include_input=True, seed=seed)
    with pytest.raises(RuntimeError, match=r"'unused'\]? (was|were) not called during the (first )?training forward"):
        make_trainer([mixer]).fit(module, make_loader())
    assert len(module.seen["train"]) == 1


# ---- 6. CPU DDP from the config table --------------------------------------------------------------------------


def test_ddp_syncs_batchnorm_on_gpus_only(tmp_path: Path) -> None:
    cfg = _compose(tmp_path, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert cfg.trainer.sync_batchnorm is False and cfg.trainer.strategy == "ddp"
    assert _compose(tmp_path, "trainer=ddp").trainer.sync_batchnorm is True


@pytest.mark.slow
def test_the_documented_cpu_ddp_command_runs(tmp_path: Path) -> None:
    env = {**os.environ, "MASTER_PORT": str(free_port())}
    cmd = [sys.executable, "-m", "lightning_mixup.train", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
           "trainer.fast_dev_run=true", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "test accuracy" in proc.stdout + proc.stderr


# ---- 7. Lightning's own tools: Tuner.lr_find and LightningCLI --------------------------------------------------


def test_lr_find_sets_the_classifiers_lr_and_the_optimizer_uses_it(tmp_path: Path) -> None:
    from lightning.pytorch.tuner import Tuner

    model = Classifier(SmallCNN(in_channels=1), num_classes=10)
    trainer = make_trainer([], default_root_dir=tmp_path)
    finder = Tuner(trainer).lr_find(model, datamodule=DigitsDataModule(), num_training=20, min_lr=1e-4, max_lr=1.0)
    assert finder is not None and model.lr == finder.suggestion() and model.lr > 0
    optimizer = model.configure_optimizers()  # no scheduler: the optimizer itself
    assert all(group["lr"] == model.lr for group in optimizer.param_groups)
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got 0.0"):
        Classifier(SmallCNN(), num_classes=10, lr=0.0)


CLI_ARGS = [
    "--model.net=lightning_mixup.models.nets.SmallCNN", "--model.net.in_channels=1", "--model.num_classes=10",
    "--data=lightning_mixup.data.DigitsDataModule", "--trainer.fast_dev_run=true", "--trainer.logger=false",
    "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
]  # fmt: skip


def test_lightning_cli_takes_a_mixer_callback_and_a_scheduler_class(tmp_path: Path) -> None:
    pytest.importorskip("jsonargparse")
    from lightning_mixup.cli import main

    cli = main(
        [*CLI_ARGS, "--trainer.callbacks+=lightning_mixup.CutMix", "--trainer.callbacks.alpha=0.5",
         "--model.scheduler=torch.optim.lr_scheduler.CosineAnnealingLR", "--model.scheduler.T_max=3",
         f"--trainer.default_root_dir={tmp_path}"],
        run=False,
    )  # fmt: skip
    (cutmix,) = [cb for cb in cli.trainer.callbacks if isinstance(cb, CutMix)]
    assert cutmix.alpha == 0.5
    config = cli.model.configure_optimizers()
    assert isinstance(config["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.CosineAnnealingLR)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    assert cli.trainer.global_step == 1


def test_lightning_cli_runs_the_documented_yaml_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("jsonargparse")
    from lightning_mixup.cli import main

    monkeypatch.chdir(tmp_path)
    cli = main(["fit", "--config", str(REPO / "examples" / "cli" / "digits_cutmix.yaml"), *CLI_ARGS[-4:]])
    assert any(isinstance(cb, CutMix) for cb in cli.trainer.callbacks) and cli.trainer.global_step == 1
    assert isinstance(cli.model.net, SmallCNN) and cli.model.hparams.num_classes == 10


# ---- 8. failures that say what to do ---------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_a_gpu_trainer_on_a_cpu_machine_says_what_to_add(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"trainer.accelerator='gpu', but torch sees no GPU.*add trainer=cpu"):
        train(_compose(tmp_path, "trainer=gpu", "trainer.fast_dev_run=true"))


def test_toy_data_on_a_cnn_says_to_use_the_mlp(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"net SmallCNN cannot take the samples of Toy2DDataModule \(shape \[2\]\).*use net=mlp"
    ):
        train(_compose(tmp_path, "data=moons", "trainer.fast_dev_run=true"))


def test_an_offline_download_does_not_suggest_download_true(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_mixup.data import cifar

    def offline(*args: Any, **kwargs: Any) -> Any:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(cifar.urllib.request, "urlopen", offline)
    with pytest.raises(RuntimeError) as info:
        cifar.CIFAR10DataModule(data_dir=tmp_path, download=True).prepare_data()
    assert "cannot download it (offline?)" in str(info.value) and "download=True" not in str(info.value)
    with pytest.raises(FileNotFoundError, match=r"or pass download=True \(data.download=true\)"):
        cifar.CIFAR10DataModule(data_dir=tmp_path).setup("fit")


def test_the_gallery_without_matplotlib_names_the_plot_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_mixup import gallery

    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(
        ModuleNotFoundError, match=r'pip install "lightning-mixup\[plot\]" \(from a clone: pip install "\.\[plot\]"\)'
    ):
        gallery.main(["--out", str(tmp_path), "--methods", "mixup", "--no-boundaries"])
    assert not list(tmp_path.iterdir())


# ---- 11. small things ------------------------------------------------------------------------------------------


def test_callbacks_pickled_after_fit_are_small_and_work_again(tmp_path: Path) -> None:
    callbacks = [MixUp(), PatchUp(layers=["net.0"], block_size=3), PuzzleMix(grids=(2, 4)), EpochSummary(),
                 MixedBatchLogger(every_n_steps=100, dirpath=tmp_path)]  # fmt: skip
    for callback in callbacks:
        make_trainer([callback]).fit(UserModule(), make_loader())
        data = pickle.dumps(callback)
        assert len(data) < 10_000, (type(callback).__name__, len(data))  # ~6 KB: options and the generator's state
        copy = pickle.loads(data)
        make_trainer([copy]).fit(UserModule(), make_loader())


def test_the_png_is_scaled_up_with_sharp_pixels() -> None:
    grid = torch.rand(3, 67, 265)  # 16 CIFAR images, 8 a row, padding 1
    pixels = MixedBatchLogger().png_pixels(grid)
    assert pixels.shape == (4 * 67, 4 * 265, 3)
    assert torch.equal(pixels[::4, ::4], grid.permute(1, 2, 0)) and torch.equal(
        pixels[3::4, 3::4], grid.permute(1, 2, 0)
    )
    assert MixedBatchLogger(png_scale=2).png_pixels(torch.rand(1, 10, 10)).shape == (20, 20, 3)
    with pytest.raises(ValueError, match="png_scale must be a positive int, got 0"):
        MixedBatchLogger(png_scale=0)


def test_help_lists_only_the_classifiers_options_and_all_of_them(tmp_path: Path) -> None:
    proc = _run(["--help"], tmp_path)
    listed = {}
    for line in proc.stdout.split("== Configuration groups")[1].split("== Config ==")[0].splitlines():
        if ": " in line and not line.startswith(("GAN", "experiment")):
            group, options = line.split(": ", 1)
            listed[group] = set(options.split(", "))
    gan_only = ("gan", "gaussians", "digit_masks", "small_fcn", "segmenter", "diabetes", "regressor")  # other configs
    for group in ("mix", "data", "net", "model", "trainer", "logger", "callbacks"):
        files = {p.stem for p in Path(config_dir(), group).glob("*.yaml")}
        assert listed[group] == {f for f in files if not any(word in f for word in gan_only)}, group
    assert "gan_preset" not in listed and "--config-name gan --help" in proc.stdout


def test_gitignore_keeps_out_what_the_snippets_write() -> None:
    ignored = (REPO / ".gitignore").read_text().split()
    assert "samples/" in ignored and "logs/" in ignored


def test_the_train_log_is_written_with_lightnings_messages(tmp_path: Path) -> None:
    _run(["trainer.fast_dev_run=true", "trainer.enable_progress_bar=false", f"hydra.run.dir={tmp_path}"], tmp_path)
    assert "test accuracy" in (tmp_path / "train.log").read_text()

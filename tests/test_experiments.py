"""Every paper preset in conf/experiment composes (GPU, DDP) and runs one fast_dev_run step on fake CIFAR."""

from __future__ import annotations

import urllib.request
from pathlib import Path
from typing import Any

import pytest
from fake_cifar import CIFAR10_FOLDER, CIFAR100_FOLDER, cifar10_files, cifar100_files, write_folder
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from lightning_mixup.methods import get
from lightning_mixup.train import config_dir, train

PRESETS = sorted(p.stem for p in Path(config_dir(), "experiment").glob("*.yaml"))
OPTIMIZER = {  # (lr, weight decay) of the presets whose official recipe is not the mixup paper's (0.1, 1e-4)
    "saliencymix_cifar100_wrn28_10": (0.1, 5e-4),
    "comixup_cifar100_preactresnet18": (0.2, 1e-4),
}
SHRINK = {  # a small net, so that one step is quick on a CPU
    "PreActResNet18": ["net.width=4"],
    "WideResNet": ["net.depth=10", "net.widen_factor=1", "net.width=4"],
}


def _experiment_override(name: str) -> str:
    """``experiment=NAME`` once conf/train.yaml lists the group in its defaults, ``+experiment=NAME`` before."""
    defaults = OmegaConf.to_container(OmegaConf.load(Path(config_dir(), "train.yaml")).defaults)
    listed = any(isinstance(d, dict) and any(str(k).split()[-1] == "experiment" for k in d) for d in defaults)
    return f"{'' if listed else '+'}experiment={name}"


def _compose(name: str, *overrides: str) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", overrides=[_experiment_override(name), *overrides])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cifar")
    write_folder(root, CIFAR10_FOLDER, cifar10_files())
    return write_folder(root, CIFAR100_FOLDER, cifar100_files())


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a test tried to download {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def test_one_preset_per_headline_result() -> None:
    assert PRESETS == [
        "comixup_cifar100_preactresnet18",
        "cutmix_cifar100_preactresnet18",
        "erm_cifar100_preactresnet18",
        "erm_cifar10_preactresnet18",
        "fmix_cifar10_preactresnet18",
        "manifold_mixup_cifar100_preactresnet18",
        "manifold_mixup_cifar10_preactresnet18",
        "mixup_cifar100_preactresnet18",
        "mixup_cifar10_preactresnet18",
        "mixup_cifar10_wrn28_10",
        "patchup_hard_cifar100_preactresnet18",
        "patchup_hard_cifar10_preactresnet18",
        "patchup_soft_cifar100_preactresnet18",
        "patchup_soft_cifar10_preactresnet18",
        "puzzlemix_cifar100_preactresnet18",
        "saliencymix_cifar100_wrn28_10",
    ]


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_for_one_gpu_with_the_papers_recipe(name: str) -> None:
    cfg = _compose(name)
    assert cfg.trainer.accelerator == "gpu" and cfg.trainer.devices == 1
    method, data, net = (
        name.split("_cifar")[0],
        "cifar" + name.split("_cifar")[1].split("_")[0],
        name.rsplit("_", 1)[-1],
    )
    assert cfg.data._target_.endswith({"cifar10": "CIFAR10DataModule", "cifar100": "CIFAR100DataModule"}[data])
    assert cfg.dataset.num_classes == int(data.removeprefix("cifar"))
    assert cfg.net._target_.endswith({"preactresnet18": "PreActResNet18", "10": "WideResNet"}[net])
    expected = None if method == "erm" else get(method.removesuffix("_soft").removesuffix("_hard")).callback.__name__
    assert (cfg.mix or {}).get("_target_", "").endswith(expected) if expected else not cfg.mix
    scheduler = cfg.model.scheduler
    assert scheduler._target_ == "torch.optim.lr_scheduler.MultiStepLR" and "T_max" not in scheduler
    assert (
        list(scheduler.milestones) == sorted(scheduler.milestones) and scheduler.milestones[-1] < cfg.trainer.max_epochs
    )
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay) == OPTIMIZER.get(name, (0.1, 1e-4))
    assert set(cfg.paper) >= {"error", "source"} and cfg.paper.source
    assert cfg.paper.error is None or 0 < cfg.paper.error < 100
    assert cfg.test_ckpt == ("best" if cfg.data.val_size else "last")  # never pick the best epoch on the test set


@pytest.mark.parametrize("name", PRESETS)
def test_preset_composes_under_ddp(name: str) -> None:
    cfg = _compose(name, "trainer=ddp")
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.devices == -1 and cfg.trainer.sync_batchnorm


@pytest.mark.parametrize("name", PRESETS)
def test_preset_runs_fast_dev_run_on_fake_cifar(name: str, data_dir: Path, tmp_path: Path) -> None:
    net = _compose(name).net._target_.rsplit(".", 1)[-1]
    overrides = [
        "trainer=cpu",
        "trainer.fast_dev_run=true",
        f"data.data_dir={data_dir}",
        "data.batch_size=8",
        f"paths.output_dir={tmp_path}",
        *SHRINK[net],
    ]
    if "patchup" in name:
        overrides.append("data.val_size=20")  # the preset holds out 5,000 of the 50,000 real images
    metrics = train(_compose(name, *overrides))
    assert 0.0 <= metrics["test/acc"] <= 1.0 and 0.0 <= metrics["test/ece"] <= 1.0
    assert ("mix/applied" in metrics) == (not name.startswith("erm"))


@pytest.mark.parametrize(
    "name", [p for p in PRESETS if p.startswith(("manifold_mixup", "patchup", "puzzlemix", "comixup"))]
)
def test_hidden_state_and_puzzlemix_presets_use_the_official_loss_and_optimizer(name: str) -> None:
    """The official Manifold Mixup, PatchUp and PuzzleMix CIFAR code trains with BCELoss(softmax(output), target) and
    SGD with Nesterov; PatchUp mixes one block mask per batch, its input with CutMix of beta 1, loss_params [1, 1]."""
    cfg = _compose(name)
    assert cfg.model.loss == "softmax_bce" and cfg.model.optimizer.nesterov is True
    if name.startswith("patchup"):
        assert cfg.mix.shared_mask is True and cfg.mix.input_alpha == 1.0 and list(cfg.mix.loss_params) == [1.0, 1.0]

"""Hydra entry point: ``python -m lightning_mixup.train mix=cutmix mix.alpha=0.5 trainer.max_epochs=3``.

:func:`train` is a plain function of a composed config (tests and notebooks call it directly);
:func:`main` is the thin ``@hydra.main`` around it, also installed as ``lightning-mixup-train``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, ListConfig, OmegaConf

GPU_ACCELERATORS = ("gpu", "cuda")


def on_gpu(accelerator: str) -> bool:
    """Whether a ``Trainer(accelerator=...)`` runs on CUDA GPUs (``auto``: when one is visible); the configs'
    ``${lm.on_gpu:${trainer.accelerator}}``, e.g. ``sync_batchnorm`` of ``trainer=ddp``, which CPUs refuse."""
    return str(accelerator) in GPU_ACCELERATORS or (str(accelerator) == "auto" and torch.cuda.is_available())


if not OmegaConf.has_resolver("lm.on_gpu"):
    OmegaConf.register_new_resolver("lm.on_gpu", on_gpu)


def config_dir() -> str:
    """Absolute path of the configs: inside the package in a wheel, the repository's ``conf/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "train.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"lightning_mixup's configs are missing: looked in {here / 'conf'} and {here.parent / 'conf'}"
    )


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of a config group made of named objects (callbacks, loggers)."""
    if not group:
        return []
    return [hydra.utils.instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def _mixer_keys(states: Sequence[str] | Sequence[pl.Callback]) -> list[str]:
    """The ``state_key`` of every mixing callback among callbacks, or among a checkpoint's callback state keys."""
    from lightning_mixup.callbacks import SeededCallback

    if all(isinstance(c, str) for c in states):
        names, todo = set(), [SeededCallback]
        while todo:
            cls = todo.pop()
            names.add(cls.__name__)
            todo.extend(cls.__subclasses__())
        return sorted(key for key in states if key.split("{", 1)[0] in names)
    return sorted(c.state_key for c in states if isinstance(c, SeededCallback))


def check_resumed_mixers(ckpt_path: str | Path, callbacks: Sequence[pl.Callback]) -> None:
    """Refuse to resume ``ckpt_path`` with mixers that differ from those it was trained with (naming both):
    Lightning would only warn, then go on training with the new mixer from the old run's weights."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path {str(ckpt_path)!r} is not a file")
    saved = _mixer_keys(list(torch.load(path, map_location="cpu", weights_only=False, mmap=True).get("callbacks", {})))
    configured = _mixer_keys(callbacks)
    if saved != configured:
        raise ValueError(
            f"{ckpt_path} was trained with {', '.join(saved) or 'no mixer'}, but this run configures "
            f"{', '.join(configured) or 'no mixer'}: "
            "resume with the run's own config (resume=RUN_DIR reuses it) or give the same mix=... options"
        )


RUN_OVERRIDES = "run_overrides.yaml"
"""Where :func:`main` keeps the overrides that compose a run, beside Hydra's ``overrides.yaml``: Hydra rewrites
its own file before the task starts, so a run resumed into its own directory would otherwise read only
``resume=...``."""


def resume_overrides(run_dir: str | Path, overrides: Sequence[str]) -> list[str]:
    """The overrides that recompose the run in ``run_dir`` (its ``.hydra/run_overrides.yaml``, or Hydra's
    ``overrides.yaml`` for a run without one), then ``overrides``, resuming from ``run_dir/checkpoints/last.ckpt``
    unless ``overrides`` give a ``ckpt_path``.

    >>> resume_overrides("no/such/run", [])
    Traceback (most recent call last):
    ...
    FileNotFoundError: resume='no/such/run' is not a run directory: ...
    """
    run = Path(run_dir)
    saved = run / ".hydra" / RUN_OVERRIDES
    if not saved.is_file():
        saved = run / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        raise FileNotFoundError(
            f"resume={str(run_dir)!r} is not a run directory: it has no .hydra/overrides.yaml "
            "(give an outputs/DATE/TIME or multirun/DATE/TIME/N folder, or ckpt_path=... with the run's options)"
        )
    old = OmegaConf.load(saved)
    if not isinstance(old, ListConfig):
        raise ValueError(f"{saved} is not a list of overrides")
    key = lambda o: o.lstrip("+~").split("=", 1)[0]  # noqa: E731
    if any(key(str(o)) == "resume" for o in old):
        raise ValueError(
            f"{saved} holds only this restart's overrides ({' '.join(map(str, old))}): Hydra rewrote it when a run "
            f"was resumed into {str(run_dir)!r} before this version kept {RUN_OVERRIDES}. Give the run's options "
            "again with ckpt_path=.../checkpoints/last.ckpt instead of resume="
        )
    new = [o for o in overrides if key(o) != "resume"]
    replaced = {key(o) for o in new}
    kept = [str(o) for o in old if key(str(o)) not in replaced | {"resume", "ckpt_path"}]
    last = run / "checkpoints" / "last.ckpt"
    if "ckpt_path" not in replaced:
        if not last.is_file():
            raise FileNotFoundError(f"resume={str(run_dir)!r}: {last} does not exist (the run saved no checkpoint)")
        new.append(f"ckpt_path={last}")
    return kept + new


def _check_accelerator(cfg: DictConfig) -> None:
    """Fail with what to do when the config asks for a GPU that torch does not see."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if accelerator in GPU_ACCELERATORS and not torch.cuda.is_available():
        raise RuntimeError(
            f"trainer.accelerator={accelerator!r}, but torch sees no GPU (torch.cuda.is_available() is False). "
            "To run on this machine's CPU add trainer=cpu (trainer=ddp: trainer.accelerator=cpu trainer.devices=2); "
            "for a quick check of a preset: trainer=cpu trainer.fast_dev_run=true"
        )


def _check_net_takes_data(model: pl.LightningModule, datamodule: pl.LightningDataModule) -> None:
    """One forward of two zero samples of the datamodule's ``input_shape``, to name a net/data mismatch before fit."""
    net, shape = getattr(model, "net", None), getattr(datamodule, "input_shape", None)
    if not isinstance(net, torch.nn.Module) or not shape:
        return
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()
            net(torch.zeros(2, *shape))
    except RuntimeError as err:
        hint = "for 2-D toy data (data=moons, data=spirals) use net=mlp" if len(shape) == 1 else "pick a net for it"
        raise ValueError(
            f"net {type(net).__name__} cannot take the samples of {type(datamodule).__name__} "
            f"(shape {list(shape)}): {str(err).splitlines()[0]}; {hint}"
        ) from err
    finally:
        net.train(was_training)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the configured model with the configured mixer; return the final metrics.

    Example:
        >>> from hydra import compose, initialize_config_dir
        >>> with initialize_config_dir(config_dir(), version_base="1.3"):
        ...     cfg = compose("train", overrides=["mix=cutmix", "trainer.fast_dev_run=true"], return_hydra_config=True)
    """
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    _check_accelerator(cfg)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    _check_net_takes_data(model, datamodule)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    if cfg.get("mix") and cfg.mix.get("_target_"):
        callbacks.append(hydra.utils.instantiate(cfg.mix))
    if cfg.get("ckpt_path"):
        check_resumed_mixers(cfg.ckpt_path, callbacks)
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test"):
        which = cfg.get("test_ckpt", "best")
        if which not in ("best", "last"):
            raise ValueError(f"test_ckpt must be 'best' or 'last', got {which!r}")
        monitored = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint) and c.monitor]
        best = monitored[0].best_model_path if monitored else ""
        ckpt = best if which == "best" and best else None
        results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    if "test/miou" in metrics:  # a segmentation run
        rank_zero_info(f"test mIoU {metrics['test/miou']:.4f}  test pixel accuracy {metrics['test/acc']:.4f}")
    elif "test/rmse" in metrics:  # a regression run
        rank_zero_info(f"test RMSE {metrics['test/rmse']:.4f}  test MAE {metrics['test/mae']:.4f}")
    elif "test/acc" in metrics:
        rank_zero_info(f"test accuracy {metrics['test/acc']:.4f}  test ECE {metrics.get('test/ece', float('nan')):.4f}")
    return metrics


def end_distributed() -> None:
    """Destroy the default process group once every rank is done (a no-op without one).

    Lightning destroys it at exit only for NCCL; a gloo group left to the interpreter's finalization can abort a
    finished run (``terminate called without an active exception``, SIGABRT) while its worker threads still hold work.

    Example:
        >>> end_distributed()  # nothing to do outside a distributed run
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Console entry: compose the config from the command line, train, return the config's ``objective`` metric
    (``val/acc`` by default, ``val/miou`` for segmentation) for sweepers.

    ``resume=RUN_DIR`` recomposes that run's config (its ``.hydra/overrides.yaml``, then this command line's) and
    resumes from its ``checkpoints/last.ckpt``.
    """
    from hydra.core.hydra_config import HydraConfig

    hydra_cfg = HydraConfig.get()
    # Lightning 2.6 under torch >= 2.10 warns on every fit that it calls a deprecated pytree API: not the user's concern
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):  # their own handlers bypass train.log
        lightning_logger = logging.getLogger(name)
        lightning_logger.handlers.clear()
        lightning_logger.propagate = True
    overrides, resumed = list(hydra_cfg.overrides.task), bool(cfg.get("resume"))
    if resumed:
        overrides = resume_overrides(cfg.resume, overrides)
        rank_zero_info(f"resuming {cfg.resume} with: {' '.join(overrides)}")
        cfg = hydra.compose(hydra_cfg.job.config_name, overrides=overrides)
    if hydra_cfg.output_subdir is not None:  # what this run really is, for report and a later resume
        saved = Path(hydra_cfg.runtime.output_dir, hydra_cfg.output_subdir)
        saved.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(overrides), saved / RUN_OVERRIDES)
        if resumed:
            OmegaConf.save(cfg, saved / "config.yaml")
            OmegaConf.save(OmegaConf.create(overrides), saved / "overrides.yaml")
    rank_zero_info(OmegaConf.to_yaml(cfg, resolve=False))
    rank_zero_info(f"output directory: {hydra_cfg.runtime.output_dir} (train.log, checkpoints/, .hydra/config.yaml)")
    metrics = train(cfg)
    end_distributed()
    return metrics.get(cfg.get("objective", "val/acc"))


if __name__ == "__main__":
    main()

"""Hydra entry point: ``python -m lightning_mixup.train mix=cutmix mix.alpha=0.5 trainer.max_epochs=3``.

:func:`train` is a plain function of a composed config (tests and notebooks call it directly);
:func:`main` is the thin ``@hydra.main`` around it, also installed as ``lightning-mixup-train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info
from omegaconf import DictConfig, OmegaConf


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


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit (and test) the configured model with the configured mixer; return the final metrics.

    Example:
        >>> from hydra import compose, initialize_config_dir
        >>> with initialize_config_dir(config_dir(), version_base="1.3"):
        ...     cfg = compose("train", overrides=["mix=cutmix", "trainer.fast_dev_run=true"], return_hydra_config=True)
    """
    if cfg.get("seed") is not None:
        pl.seed_everything(cfg.seed, workers=True)
    datamodule: pl.LightningDataModule = hydra.utils.instantiate(cfg.data)
    model: pl.LightningModule = hydra.utils.instantiate(cfg.model)
    callbacks = _instantiate_all(cfg.get("callbacks"))
    if cfg.get("mix") and cfg.mix.get("_target_"):
        callbacks.append(hydra.utils.instantiate(cfg.mix))
    loggers = _instantiate_all(cfg.get("logger"))
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    if cfg.get("test"):
        which = cfg.get("test_ckpt", "best")
        if which not in ("best", "last"):
            raise ValueError(f"test_ckpt must be 'best' or 'last', got {which!r}")
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if trainer.checkpoint_callback else ""
        ckpt = best if which == "best" and best else None
        results = trainer.test(model, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
        metrics.update({k: float(v) for k, v in (results[0] if results else {}).items()})
    if "test/acc" in metrics:
        rank_zero_info(f"test accuracy {metrics['test/acc']:.4f}  test ECE {metrics.get('test/ece', float('nan')):.4f}")
    return metrics


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Console entry: compose the config from the command line, train, return val accuracy for sweepers."""
    rank_zero_info(OmegaConf.to_yaml(cfg, resolve=False))
    metrics = train(cfg)
    return metrics.get("val/acc")


if __name__ == "__main__":
    main()

"""The Remix callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import lightning.pytorch as pl
from torch import Tensor

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.remix import (
    KAPPA,
    TAU,
    check_class_counts,
    check_kappa,
    check_tau,
    class_labels,
    remix_batch,
    remix_label_weight,
)


class Remix(Mixer):
    """Remix (Chou et al., ECCV Workshops 2020, arXiv 2007.03943): mixup's input ``λ·x_i + (1 − λ)·x_j``,
    λ ~ Beta(α, α), with the label weight pushed to the minority class of an imbalanced pair: the weight of
    ``y_i`` is 0 when ``n_i / n_j ≥ κ`` and ``λ < τ``, 1 when ``n_i / n_j ≤ 1/κ`` and ``1 − λ < τ``, else λ
    (``n_c``: the training samples of class ``c``). With balanced counts it is mixup. For long-tailed training
    sets; multiclass targets, mixed or pair form; inputs of any shape.

    Paper settings: κ = 3, τ = 0.5, α = 1 (mixup's CIFAR setting; the paper also pairs Remix with re-weighting,
    e.g. Remix-DRW, which is the loss's business, not the mixer's). No official code was released; the paper's
    equations are followed.

    Args:
        alpha: λ ~ Beta(α, α).
        class_counts: the number of training samples of each class (one per class). None: read in ``setup`` from
            the datamodule's ``class_counts`` (``trainer.datamodule.class_counts``, e.g.
            :class:`~lightning_mixup.data.DigitsDataModule` with ``imbalance_ratio``).
        kappa: κ > 1, the count ratio from which a pair is rebalanced (paper: 3).
        tau: τ in (0, 1), the share of the input below which the majority's label is dropped (paper: 0.5).
        **kwargs: ``p``, ``per_sample`` (one λ per sample; the reimplementations draw one per batch), ``partner``,
            ... as for :class:`Mixer`.

    Logs ``mix/rebalanced``, the fraction of samples whose label weight is not λ.
    The functional op is :func:`~lightning_mixup.functional.remix.remix_batch`.

    Example:
        >>> from lightning import Trainer
        >>> remix = Remix(alpha=1.0, class_counts=[500, 280, 160, 90, 50, 28, 16, 9, 5, 5], kappa=3.0, tau=0.5)
        >>> trainer = Trainer(callbacks=[remix], logger=False, enable_checkpointing=False)
    """

    TASKS: ClassVar[tuple[str, ...]] = ("multiclass",)
    FORMS: ClassVar[tuple[str, ...]] = ("mixed", "pair")
    LABELS_FOLLOW_AREA: ClassVar[bool] = False  # 0 or 1 toward the minority class

    def __init__(
        self,
        alpha: float = 1.0,
        class_counts: Sequence[float] | Tensor | None = None,
        kappa: float = KAPPA,
        tau: float = TAU,
        **kwargs: Any,
    ) -> None:
        super().__init__(alpha, **kwargs)
        self.class_counts = None if class_counts is None else check_class_counts(class_counts, self.num_classes)
        self.kappa = check_kappa(kappa)
        self.tau = check_tau(tau)
        self._counts: tuple[float, ...] | None = self.class_counts

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "kappa": self.kappa, "tau": self.tau, "class_counts": self.class_counts}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        counts: object = self.class_counts
        if counts is None:
            datamodule = getattr(trainer, "datamodule", None)
            counts = getattr(datamodule, "class_counts", None)
            if counts is None:
                where = (
                    "no datamodule was given to fit"
                    if datamodule is None
                    else f"{type(datamodule).__name__} has no `class_counts`"
                )
                raise ValueError(
                    "Remix needs the number of training samples of each class: pass class_counts=[...] to Remix, "
                    f"or fit with a datamodule that has a `class_counts` attribute ({where})"
                )
        num_classes = self._resolved_targets().num_classes
        try:
            self._counts = check_class_counts(counts, num_classes)
        except (TypeError, ValueError) as err:
            source = "Remix(class_counts=...)" if self.class_counts is not None else "the datamodule's class_counts"
            raise type(err)(f"{source} does not fit the {num_classes} classes: {err}") from None

    def mix(self, step: MixStep) -> MixedBatch:
        counts = self._counts
        if counts is None:
            raise RuntimeError(
                "Remix has no class counts: pass class_counts=[...] or let setup read them from the datamodule"
            )
        targets = step.targets.read(step.target, step.x)
        mixed = remix_batch(
            step.x,
            targets,
            step.targets,
            self.alpha,
            class_counts=counts,
            kappa=self.kappa,
            tau=self.tau,
            **self.batch_options(step),
        )
        weight = remix_label_weight(mixed.lam, class_labels(targets), mixed.index, counts, self.kappa, self.tau)
        step.stats["mix/rebalanced"] = (weight != mixed.lam.to(weight)).float().mean()
        return mixed

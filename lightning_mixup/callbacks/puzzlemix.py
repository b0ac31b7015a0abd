"""The PuzzleMix callback."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from torch import Tensor

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.checks import check_channel_stats, check_number
from lightning_mixup.functional import MixedBatch
from lightning_mixup.functional.puzzlemix import (
    PuzzleMixParams,
    adversarial_noise,
    adversarial_start,
    puzzlemix_batch,
)
from lightning_mixup.functional.puzzlemix.mix import GRIDS
from lightning_mixup.functional.saliency import input_saliency, loss_input_grad
from lightning_mixup.functional.targets import TargetBatch

LogitsFrom = Callable[[pl.LightningModule, Tensor], Tensor]


@runtime_checkable
class AcceptsAuxiliaryLoss(Protocol):
    """The opt-in protocol for losses a callback computes on the module's behalf (PuzzleMix's clean loss).

    ``add_auxiliary_loss(name, loss)`` is called during ``on_train_batch_start`` with a scalar that is still
    attached to the graph; the module adds every loss it received to the loss its next ``training_step``
    returns (and may log it), then forgets them. :class:`~lightning_mixup.models.Classifier` implements it.
    """

    def add_auxiliary_loss(self, name: str, loss: Tensor) -> None: ...


class PuzzleMix(Mixer):
    """PuzzleMix (Kim, Choo & Song, ICML 2020, arXiv 2009.06962): each pair is mixed under a block mask
    chosen to keep both images' salient regions (a graph-cut-style energy, solved for the whole batch at
    once), after the salient blocks have been moved into the region each image keeps (transport).
    Targets are weighted by each sample's mask mean. Needs square images ``[B, C, S, S]``.

    Saliency is the gradient of the loss with respect to the input, from an extra forward and backward
    pass of ``pl_module(x)`` (which must return logits ``[B, num_classes]``; see ``logits_from`` for a module
    without ``forward``) in eval mode, computed with ``torch.autograd.grad`` on the input only: no parameter
    gradient is touched and DDP does not see it. That pass costs about one more training step's forward and
    backward. Grids that do not fit the images are refused in ``setup`` when the datamodule has an
    ``input_shape`` (ours do), else on the first batch, with the grids that fit.

    Args:
        alpha: λ ~ Beta(α, α), the mask mean the prior pulls towards.
        beta, gamma, eta, neigh_size, n_labels, grids, transport, t_eps, t_size, iterations: the mask and
            transport options of :class:`~lightning_mixup.functional.puzzlemix.PuzzleMixParams` (official
            CIFAR defaults).
        adv_p: probability of adding adversarial noise to each of the two images of a pair (one coin each
            per batch); ``adv_eps``: its bound in pixel levels (``/255``), as in the official code.
        clean_lam: weight of the loss on the clean batch; > 0 runs the saliency pass in train mode and hands
            ``clean_lam · CE(clean)`` to the module through :class:`AcceptsAuxiliaryLoss` (the official
            code's ``2·clean_lam/num_classes`` factor converts to its BCE-over-classes loss; with a
            cross-entropy loss the weight is ``clean_lam``).
        logits_from: how the saliency pass gets logits from the input ``x``: None calls ``pl_module(x)`` (its
            ``forward``); a submodule name such as ``"net"`` calls ``pl_module.net(x)``; a callable is called as
            ``logits_from(pl_module, x)``. A module without ``forward`` and no ``logits_from`` fails in ``setup``.
        mean, std: the input normalisation (per channel or scalar), to compare pixels in [0, 1] space;
            e.g. CIFAR-100: ``mean=[0.507, 0.487, 0.441]``, ``std=[0.267, 0.256, 0.276]``. None: the
            datamodule's ``mean`` / ``std`` attributes when it has them (ours do), else 0 and 1.
        **kwargs: ``p``, ``per_sample`` (one λ prior per sample; the grid is drawn once per batch, as in the
            official code), ``partner``, ... as for :class:`Mixer`.

    The math (saliency, adversarial noise, mask, transport) is in :mod:`lightning_mixup.functional.puzzlemix`
    and :mod:`lightning_mixup.functional.saliency`: ``puzzlemix_batch`` is the functional op.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[PuzzleMix()], logger=False, enable_checkpointing=False)
    """

    GLOBAL_PARTNERS: ClassVar[bool] = False  # its saliency pass runs the model

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.2,
        gamma: float = 0.5,
        eta: float = 0.2,
        neigh_size: int = 4,
        n_labels: int = 3,
        grids: Sequence[int] = GRIDS,
        transport: bool = True,
        t_eps: float = 0.8,
        t_size: int = 4,
        adv_p: float = 0.0,
        adv_eps: float = 10.0,
        clean_lam: float = 0.0,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        iterations: int | None = None,
        logits_from: str | LogitsFrom | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(alpha, reuse_buffer=False, **kwargs)
        if logits_from is not None and not isinstance(logits_from, str) and not callable(logits_from):
            raise TypeError(
                "logits_from must be None, a submodule name or a callable (pl_module, x) -> logits, "
                f"got {logits_from!r}"
            )
        if isinstance(logits_from, str) and not logits_from:
            raise ValueError("logits_from must be a submodule name such as 'net', got ''")
        self.logits_from = logits_from
        self.params = PuzzleMixParams(
            beta, gamma, eta, neigh_size, n_labels, tuple(grids) if isinstance(grids, Sequence) else grids,
            transport, t_eps, t_size, iterations,
        )  # fmt: skip
        self.adv_p = check_number("adv_p", adv_p, 0.0, 1.0)
        self.adv_eps = check_number("adv_eps", adv_eps, 0.0)
        self.clean_lam = check_number("clean_lam", clean_lam, 0.0)
        self.mean = check_channel_stats("mean", mean, positive=False)
        self.std = check_channel_stats("std", std, positive=True)
        self._trainer: pl.Trainer | None = None
        self._module: pl.LightningModule | None = None
        self._normalisation: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0,), (1.0,))
        self._logits: Callable[[Tensor], Tensor] | None = None

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "n_labels": self.params.n_labels, "clean_lam": self.clean_lam}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        if self.clean_lam > 0 and not isinstance(pl_module, AcceptsAuxiliaryLoss):
            raise TypeError(
                f"PuzzleMix(clean_lam={self.clean_lam}) hands the clean loss to the module, but "
                f"{type(pl_module).__name__} has no add_auxiliary_loss(name, loss) method (see AcceptsAuxiliaryLoss); "
                "implement it or set clean_lam=0"
            )
        self._trainer, self._module = trainer, pl_module
        self._logits = self._resolve_logits(pl_module)
        datamodule = getattr(trainer, "datamodule", None)  # set up before the callbacks: its statistics are known
        shape = getattr(datamodule, "input_shape", None)
        if isinstance(shape, Sequence) and len(shape) == 3 and shape[-1] == shape[-2] and isinstance(shape[-1], int):
            self.params.check_side(shape[-1])  # else on the first batch, by check_image
        self._normalisation = (
            self.mean or check_channel_stats("datamodule.mean", getattr(datamodule, "mean", None), False) or (0.0,),
            self.std or check_channel_stats("datamodule.std", getattr(datamodule, "std", None), True) or (1.0,),
        )

    def _resolve_logits(self, pl_module: pl.LightningModule) -> Callable[[Tensor], Tensor]:
        """The function the saliency pass calls on the input, from ``logits_from``; fails naming the fix."""
        name = type(pl_module).__name__
        if callable(self.logits_from):
            fn = self.logits_from
            return lambda x: fn(pl_module, x)
        if isinstance(self.logits_from, str):
            try:
                return pl_module.get_submodule(self.logits_from)
            except AttributeError:
                children = [child for child, _ in pl_module.named_children()]
                raise ValueError(
                    f"PuzzleMix(logits_from={self.logits_from!r}): {name} has no such submodule; "
                    f"its submodules are {children}"
                ) from None
        if type(pl_module).forward in (pl.LightningModule.forward, torch.nn.Module.forward):
            children = [child for child, _ in pl_module.named_children()]
            raise TypeError(
                f"PuzzleMix computes saliency from pl_module(x), but {name} defines no forward: pass "
                f"logits_from='<submodule>' (one of {children} that returns logits) or "
                "logits_from=lambda module, x: ... (a callable returning logits)"
            )
        return pl_module

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = self._module = self._logits = None

    def mix(self, step: MixStep) -> MixedBatch:
        x, generator = step.x, step.generator
        self.params.check_image(x)
        targets = step.targets.read(step.target, x)
        perturb = (False, False)
        if self.adv_p > 0:
            coins = torch.rand(2, generator=generator, device=generator.device) < self.adv_p
            perturb = (bool(coins[0]), bool(coins[1]))
        mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) for v in self._normalisation)
        eps = self.adv_eps / 255
        noise, x_in = adversarial_start(x, mean, std, eps, generator) if any(perturb) else (None, x)
        grad = self._input_grad(x_in, targets)
        if noise is not None:
            noise = adversarial_noise(noise, grad, eps, generator)
        return puzzlemix_batch(
            x, targets, step.targets, input_saliency(grad), self.alpha, self.params,
            per_sample=self.per_sample, partner=self.partner, generator=generator,
            mean=mean, std=std, noise=noise, perturb=perturb,
        )  # fmt: skip

    def _input_grad(self, x: Tensor, targets: TargetBatch) -> Tensor:
        """Gradient of the task's loss (cross-entropy for classification) w.r.t. the input only, from
        ``pl_module(x)`` in eval mode (train mode when ``clean_lam > 0``, whose loss goes to the module) under the
        trainer's precision."""
        module, trainer, logits = self._module, self._trainer, self._logits
        if module is None or trainer is None or logits is None:
            raise RuntimeError("PuzzleMix was not set up for fit: pass it to Trainer(callbacks=[...])")
        clean = self.clean_lam > 0
        was_training = module.training
        module.train(clean)
        try:
            with trainer.precision_plugin.forward_context():
                grad, loss = loss_input_grad(logits, x, targets, retain_graph=clean, source=self._source())
        finally:
            module.train(was_training)
        if clean:
            module.add_auxiliary_loss("puzzlemix_clean", self.clean_lam * loss)
        return grad

    def _source(self) -> str:
        """How the saliency pass gets logits, for error messages."""
        if self.logits_from is None:
            return "PuzzleMix computes it from pl_module(x)"
        if isinstance(self.logits_from, str):
            return f"PuzzleMix computes it from pl_module.{self.logits_from}(x) (logits_from={self.logits_from!r})"
        return f"PuzzleMix computes it from logits_from(pl_module, x) (logits_from={self.logits_from!r})"

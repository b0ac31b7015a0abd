"""What the mixers guided by the input gradient share (PuzzleMix, Co-Mixup): the saliency pass through the module,
where its logits come from, and the clean loss handed to the module."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import lightning.pytorch as pl
import torch
from torch import Tensor

from lightning_mixup.callbacks.base import Mixer
from lightning_mixup.checks import check_number
from lightning_mixup.functional.saliency import loss_input_grad
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


class SaliencyPassMixer(Mixer):
    """Base of the mixers whose masks follow the saliency ``|∂loss/∂x|`` of an extra forward and input-only backward
    of the module on the batch.

    Args:
        clean_lam: weight of the loss on the clean batch; > 0 runs the saliency pass in train mode and hands
            ``clean_lam · loss(clean)`` to the module through :class:`AcceptsAuxiliaryLoss` (``"<method>_clean"``).
        logits_from: how the saliency pass gets logits from the input ``x``: None calls ``pl_module(x)``, a str
            names a submodule (e.g. ``"net"``), a callable is called as ``logits_from(pl_module, x)``. A module
            without ``forward`` and no ``logits_from`` fails in ``setup``.
        **kwargs: the :class:`~lightning_mixup.callbacks.base.Mixer` arguments.
    """

    def __init__(self, clean_lam: float = 0.0, logits_from: str | LogitsFrom | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if logits_from is not None and not isinstance(logits_from, str) and not callable(logits_from):
            raise TypeError(
                "logits_from must be None, a submodule name or a callable (pl_module, x) -> logits, "
                f"got {logits_from!r}"
            )
        if isinstance(logits_from, str) and not logits_from:
            raise ValueError("logits_from must be a submodule name such as 'net', got ''")
        self.logits_from = logits_from
        self.clean_lam = check_number("clean_lam", clean_lam, 0.0)
        self._trainer: pl.Trainer | None = None
        self._module: pl.LightningModule | None = None
        self._logits: Callable[[Tensor], Tensor] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        name = type(self).__name__
        if self.clean_lam > 0 and not isinstance(pl_module, AcceptsAuxiliaryLoss):
            raise TypeError(
                f"{name}(clean_lam={self.clean_lam}) hands the clean loss to the module, but "
                f"{type(pl_module).__name__} has no add_auxiliary_loss(name, loss) method (see AcceptsAuxiliaryLoss); "
                "implement it or set clean_lam=0"
            )
        self._trainer, self._module = trainer, pl_module
        self._logits = self._resolve_logits(pl_module)

    def _resolve_logits(self, pl_module: pl.LightningModule) -> Callable[[Tensor], Tensor]:
        """The function the saliency pass calls on the input, from ``logits_from``; fails naming the fix."""
        name, module = type(self).__name__, type(pl_module).__name__
        if callable(self.logits_from):
            fn = self.logits_from
            return lambda x: fn(pl_module, x)
        if isinstance(self.logits_from, str):
            try:
                return pl_module.get_submodule(self.logits_from)
            except AttributeError:
                children = [child for child, _ in pl_module.named_children()]
                raise ValueError(
                    f"{name}(logits_from={self.logits_from!r}): {module} has no such submodule; "
                    f"its submodules are {children}"
                ) from None
        if type(pl_module).forward in (pl.LightningModule.forward, torch.nn.Module.forward):
            children = [child for child, _ in pl_module.named_children()]
            raise TypeError(
                f"{name} computes saliency from pl_module(x), but {module} defines no forward: pass "
                f"logits_from='<submodule>' (one of {children} that returns logits) or "
                "logits_from=lambda module, x: ... (a callable returning logits)"
            )
        return pl_module

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = self._module = self._logits = None

    def _input_grad(self, x: Tensor, targets: TargetBatch) -> Tensor:
        """Gradient of the task's loss (cross-entropy for classification) w.r.t. the input only, from the module's
        logits in eval mode (train mode when ``clean_lam > 0``, whose loss goes to the module) under the trainer's
        precision."""
        module, trainer, logits = self._module, self._trainer, self._logits
        name = type(self).__name__
        if module is None or trainer is None or logits is None:
            raise RuntimeError(f"{name} was not set up for fit: pass it to Trainer(callbacks=[...])")
        clean = self.clean_lam > 0
        was_training = module.training
        module.train(clean)
        try:
            with trainer.precision_plugin.forward_context():
                grad, loss = loss_input_grad(logits, x, targets, retain_graph=clean, source=self._source())
        finally:
            module.train(was_training)
        if clean:
            module.add_auxiliary_loss(f"{name.lower()}_clean", self.clean_lam * loss)
        return grad

    def _source(self) -> str:
        """How the saliency pass gets logits, for error messages."""
        name = type(self).__name__
        if self.logits_from is None:
            return f"{name} computes it from pl_module(x)"
        if isinstance(self.logits_from, str):
            return f"{name} computes it from pl_module.{self.logits_from}(x) (logits_from={self.logits_from!r})"
        return f"{name} computes it from logits_from(pl_module, x) (logits_from={self.logits_from!r})"

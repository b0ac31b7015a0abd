"""The RegMixup callback."""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightning_mixup.callbacks.base import ForwardHooks, Mixer, MixStep
from lightning_mixup.checks import check_choice, check_number
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.regmixup import regmixup_batch

REDUCTIONS = ("mean", "sum")


class RegMixup(ForwardHooks, Mixer):
    """RegMixup (Pinto et al., NeurIPS 2022, arXiv 2206.14502): train on the clean batch *and* its mixup,
    ``CE(clean) + η·CE(mixup)``, with a large α so that λ ~ Beta(α, α) stays near ½.

    As in the official code, the mixup copies are appended to the batch: the module sees ``2B`` rows, the clean
    batch then its mixup (:func:`~lightning_mixup.functional.regmixup_batch`), with targets doubled alike (the
    clean rows unmixed: probability rows of the original targets, or pairs of weight 1). The module's ordinary
    loss, averaged over the rows, is then ``½·(CE_clean + CE_mix)``: exactly the official code's loss. ``mix/lam``
    logs the mixed half's λ.

    Args:
        alpha: λ ~ Beta(α, α). Official: 20 on CIFAR-10, 10 on CIFAR-100 (the paper cross-validates α in
            {10, 20}); the official ``--mixup_beta`` is always α.
        eta: η, the weight of the mixup term (≥ 0; official: 1, the code has no η). η ≠ 1 scales the gradient of
            the mixed rows by η, exactly: a hook on the module's output, armed for the step's first call of the
            module (its ``forward``, as ``training_step`` calls ``self(x)``), which must return the logits, a tensor
            whose first dim is the ``2B`` rows. The loss logged by the module stays the plain mean of its rows.
        reduction: how the two terms add up: ``"mean"``, ``½·(CE_clean + η·CE_mix)``, the official code (the mean
            over the ``2B`` rows); ``"sum"``, ``CE_clean + η·CE_mix``, the paper's equation (twice the gradient:
            a step's gradient factor of 2, ``MixStep.loss_weight``).
        **kwargs: ``p``, ``per_sample``, ``partner``, ``reuse_buffer`` (a ``[2B, ...]`` buffer), ... as for
            :class:`Mixer`.

    Other entries of the batch (a list position or a dict key besides the input and the targets) follow the rows:
    a tensor whose first dim is ``B`` and a list or tuple of length ``B`` are repeated (row ``B + i`` is sample
    ``i``'s mixup, as row ``i`` of a plain mixer's batch is); anything else is left as it is. Inside
    :class:`RandomChoice`, which writes only the input and the targets, they are left as they are.
    Validation, test and predict batches are never doubled.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[RegMixup(alpha=20.0)], logger=False, enable_checkpointing=False)
    """

    GLOBAL_PARTNERS: ClassVar[bool] = False  # its batch doubles

    OUTPUT_ROWS: ClassVar[int] = 2  # the clean batch, then its mixed copy

    def __init__(self, alpha: float = 20.0, eta: float = 1.0, reduction: str = "mean", **kwargs: Any) -> None:
        super().__init__(alpha, **kwargs)
        self.eta = check_number("eta", eta, 0.0)
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self._handles: list[RemovableHandle] = []
        self._pending: int | None = None  # the clean batch size while the η hook is armed
        self._doubled: int | None = None  # the clean batch size of the batch this callback just doubled

    _TRANSIENT = (*Mixer._TRANSIENT, "_pending", "_doubled")

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "eta": self.eta, "reduction": self.reduction}

    def mix(self, step: MixStep) -> MixedBatch:
        mixed = regmixup_batch(step.x, step.target, step.targets, self.alpha, **self.batch_options(step))
        if self.reduction == "sum":
            step.loss_weight = 2.0
        if self.eta != 1.0:
            if not self._handles:
                raise RuntimeError(
                    f"{type(self).__name__} was not set up: it must be passed to Trainer(callbacks=[...])"
                )
            self._pending = step.x.shape[0]
        self._doubled = step.x.shape[0]
        return mixed

    def buffer_for(self, x: Tensor) -> Tensor | None:
        """The buffer the doubled batch ``[2B, ...]`` is written into (None: out of place), kept while ``x``'s shape,
        dtype and device stay the same."""
        if not self.reuse_buffer or x.requires_grad:
            return None
        shape = (2 * x.shape[0], *x.shape[1:])
        channels_last = x.ndim == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        layout = torch.channels_last if channels_last else torch.contiguous_format
        buffer = self._buffer
        if (
            buffer is None
            or buffer.shape != shape
            or buffer.dtype != x.dtype
            or buffer.device != x.device
            or not buffer.is_contiguous(memory_format=layout)
            or buffer.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        ):
            buffer = self._buffer = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=layout)
        return buffer

    # ---- the η hook ------------------------------------------------------------------------------

    def _scale_mixed_rows(self, module: nn.Module, args: Any, output: Any) -> None:
        batch, self._pending = self._pending, None
        if batch is None:
            return
        if not isinstance(output, Tensor) or output.ndim == 0 or output.shape[0] != 2 * batch:
            got = f"shape {list(output.shape)}" if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(
                f"{type(self).__name__}(eta={self.eta}) weighs the mixed rows of the module's output, which must be "
                f"the logits of the {2 * batch} rows (a tensor, batch first), got {got}; or use eta=1"
            )
        if output.requires_grad:
            shape = (2 * batch,) + (1,) * (output.ndim - 1)
            weight = torch.cat([output.new_ones(batch), output.new_full((batch,), self.eta)]).view(shape)
            output.register_hook(_scaled_by(weight))

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._remove_hooks()
        if self.eta != 1.0:
            self._handles = [pl_module.register_forward_hook(self._scale_mixed_rows)]

    def _forget(self) -> None:
        self._pending = None

    # ---- the batch -------------------------------------------------------------------------------

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._doubled = None
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        batch_size, self._doubled = self._doubled, None
        if batch_size is not None:
            repeat_other_entries(batch, (self.input_key, self.target_key), batch_size)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        pending, self._pending = self._pending, None
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if pending is not None:
            raise RuntimeError(
                f"{type(self).__name__}(eta={self.eta}): the module's forward was not called during the training "
                "step, so the mixed rows could not be weighted; call self(x) in training_step, or use eta=1"
            )


def _scaled_by(weight: Tensor) -> Callable[[Tensor], Tensor]:
    return lambda grad: grad * weight.to(grad.dtype)


def repeat_other_entries(batch: Any, skip: tuple[int | str, ...], size: int) -> None:
    """Repeat in place every entry of the list or dict ``batch`` but ``skip`` that has one row per sample (a tensor
    whose first dim is ``size``, or a list or tuple of length ``size``), so that it follows the doubled rows.

    Example:
        >>> batch = {"x": torch.zeros(4, 2), "y": torch.zeros(4), "id": torch.arange(2), "name": ["a", "b"], "k": 3}
        >>> repeat_other_entries(batch, ("x", "y"), 2)
        >>> batch["id"].tolist(), batch["name"], batch["k"], batch["y"].shape
        ([0, 1, 0, 1], ['a', 'b', 'a', 'b'], 3, torch.Size([4]))
    """
    if isinstance(batch, MutableMapping):
        keys: list[int | str] = [key for key in batch if key not in skip]
    else:
        taken = {key % len(batch) for key in skip if isinstance(key, int)}
        keys = [i for i in range(len(batch)) if i not in taken]
    for key in keys:
        value = batch[key]
        if isinstance(value, Tensor) and value.ndim > 0 and value.shape[0] == size:
            batch[key] = torch.cat([value, value])
        elif isinstance(value, (list, tuple)) and len(value) == size:
            batch[key] = value + value

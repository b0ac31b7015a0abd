"""The hook mechanism shared by the hidden-state mixers (Manifold Mixup, PatchUp).

Each training batch draws one eligible layer; the callback arms the step (:class:`~.base.MixStep`) with that
layer and a function, and during the training forward the layer's forward hook replaces its output with the
mixed one and disarms. The first training forward checks every named layer's output, drawn or not (a tensor,
batch-first, and :meth:`HiddenStateMixer.check_layer_output`), and a named layer it does not call is an error at
the end of that step. Hooks are registered in ``setup`` (after DDP has started its processes), never act
outside a training forward, and are all removed in ``teardown`` and on exceptions.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightning_mixup.callbacks.base import ForwardHooks, Mixer, MixStep, read_host
from lightning_mixup.checks import check_bool
from lightning_mixup.functional.batch import MixedBatch, pair_targets
from lightning_mixup.functional.sampling import sample_lam
from lightning_mixup.functional.targets import PairTarget, TargetBatch

INPUT = "<input>"

HiddenMix = Callable[[Tensor], Tensor]


def check_batch_dim(name: str, h: Tensor, batch: int) -> None:
    """Raise unless the hidden state ``h`` has the batch in its first dimension."""
    if h.ndim == 0 or h.shape[0] != batch:
        raise ValueError(
            f"{name}: the hooked layer's output has shape {list(h.shape)}, expected the batch ({batch}) first; "
            "hook a layer whose output is batch-first"
        )


class HiddenStateMixer(ForwardHooks, Mixer):
    """Base of the mixers that mix the output of a layer drawn at random each batch.

    Args:
        layers: module names, as ``pl_module.named_modules()`` gives them (e.g. ``"net.layer1"``);
            an unknown name fails in ``setup`` with the list of valid names.
        include_input: the input itself is one more eligible "layer", mixed before the forward.
        **kwargs: ``alpha``, ``p``, ``per_sample``, ``partner``, ... as for :class:`Mixer`.

    A subclass provides :meth:`mix_input` and :meth:`plan`, and may refine :meth:`check_layer_output`.

    Example:
        >>> from lightning_mixup import ManifoldMixup  # a HiddenStateMixer
        >>> ManifoldMixup(layers=["net.layer1"]).eligible
        ['<input>', 'net.layer1']
    """

    def __init__(self, layers: Sequence[str], include_input: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(layers, str) or not isinstance(layers, Sequence) or not all(isinstance(n, str) for n in layers):
            raise TypeError(f"layers must be a list of module names, got {layers!r}")
        layers = list(layers)
        if not layers:
            raise ValueError("layers is empty: name at least one module, e.g. layers=['net.layer1']")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers has duplicates: {layers}")
        self.layers = layers
        self.include_input = check_bool("include_input", include_input)
        self._handles: list[RemovableHandle] = []
        self._fired = 0
        self._layers_checked = False
        self._seen: set[str] = set()

    @property
    def eligible(self) -> list[str]:
        """The layers one is drawn from each batch (``"<input>"`` first when ``include_input``)."""
        return ([INPUT] if self.include_input else []) + self.layers

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "layers": self.layers, "include_input": self.include_input}

    # ---- what a subclass provides --------------------------------------------------------------

    @abstractmethod
    def mix_input(self, step: MixStep) -> MixedBatch:
        """Mix the input itself (the ``"<input>"`` layer)."""

    @abstractmethod
    def plan(
        self, step: MixStep, targets: TargetBatch, index: Tensor, lam: Tensor
    ) -> tuple[HiddenMix, Tensor | PairTarget]:
        """Given the checked targets, the partner index and λ, return ``(mix_fn, mixed targets)``:
        ``mix_fn`` maps the layer's output to the mixed output during the forward (and may add to
        ``step.stats``); the mixed targets are written into the batch now."""

    def check_layer_output(self, name: str, h: Tensor) -> None:
        """Raise if the output ``h`` of layer ``name`` (a batch-first tensor) cannot be mixed: called for every
        named layer on the first training forward, drawn or not. The base accepts any batch-first tensor."""

    # ---- the mixing step -----------------------------------------------------------------------

    def mix(self, step: MixStep) -> MixedBatch:
        generator, host = step.generator, step.host
        choice = int(read_host(torch.randint(len(self.eligible), (), generator=host, device=host.device)))
        layer = self.eligible[choice]
        if layer == INPUT:
            return self.mix_input(step)
        targets, index = pair_targets(step.x, step.target, step.targets, self.partner, generator)
        batch = step.x.shape[0]
        lam = sample_lam(self.alpha, batch if self.per_sample else None, generator=generator).to(index.device)
        mix_fn, mixed = self.plan(step, targets, index, lam)
        step.forward_mix = (layer, mix_fn)
        self._step = step  # the forward hooks read it
        return MixedBatch(step.x, mixed, lam, index=index)

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            step = self._step
            if step is not None and not self._layers_checked:  # the first training forward: every named layer
                self._check_output(name, output, step.rows)
                self._seen.add(name)
            if step is None or step.forward_mix is None or step.forward_mix[0] != name:
                return None
            mix_fn, step.forward_mix = step.forward_mix[1], None
            self._check_output(name, output, step.rows)
            self._fired += 1
            if step.gather is None:
                return mix_fn(output)
            return mix_fn(step.gather(output))[step.own]  # partner_scope="global": mix the global hidden state

        return hook

    def _check_output(self, name: str, output: Any, batch: int) -> None:
        if not isinstance(output, Tensor):
            raise TypeError(
                f"{type(self).__name__}: layer {name!r} returned {type(output).__name__}, not a tensor; "
                "choose a layer whose output is a single tensor"
            )
        check_batch_dim(f"{type(self).__name__}, layer {name!r}", output, batch)
        self.check_layer_output(name, output)

    # ---- Lightning hooks -----------------------------------------------------------------------

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        checking = self._step is not None and not self._layers_checked
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        if not checking:
            return
        missing = [name for name in self.layers if name not in self._seen]
        if missing:
            raise RuntimeError(
                f"{type(self).__name__}: layer(s) {missing} were not called during the first training forward, so "
                "they could never be mixed; name layers that the forward of the module runs"
            )
        self._layers_checked = True

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        modules = dict(pl_module.named_modules())
        unknown = [name for name in self.layers if name not in modules]
        if unknown:
            valid = [name for name in modules if name]
            raise ValueError(f"{type(self).__name__}: unknown layer(s) {unknown}; valid names are {valid}")
        self._remove_hooks()
        self._layers_checked, self._seen = False, set()
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.layers]

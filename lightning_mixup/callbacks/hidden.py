"""The hook mechanism shared by the hidden-state mixers (Manifold Mixup, PatchUp).

Each training batch draws one eligible layer; the callback arms a forward hook on it, and during the
training forward the hook replaces that layer's output with the mixed one and disarms. Hooks are
registered in ``setup`` (after DDP has started its processes), never act outside a training forward,
and are all removed in ``teardown`` and on exceptions.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightning_mixup.callbacks.base import Mixer
from lightning_mixup.functional import MixedBatch, sample_lam
from lightning_mixup.functional.batch import pair_targets

INPUT = "<input>"

HiddenMix = Callable[[Tensor], Tensor]


def check_batch_dim(name: str, h: Tensor, batch: int) -> None:
    """Raise unless the hidden state ``h`` has the batch in its first dimension."""
    if h.ndim == 0 or h.shape[0] != batch:
        raise ValueError(
            f"{name}: the hooked layer's output has shape {list(h.shape)}, expected the batch ({batch}) first; "
            "hook a layer whose output is batch-first"
        )


class HiddenStateMixer(Mixer):
    """Base of the mixers that mix the output of a layer drawn at random each batch.

    Args:
        layers: module names, as ``pl_module.named_modules()`` gives them (e.g. ``"net.layer1"``);
            an unknown name fails in ``setup`` with the list of valid names.
        include_input: the input itself is one more eligible "layer", mixed before the forward.
        The other arguments are those of :class:`Mixer`.
    """

    def __init__(self, layers: Sequence[str], include_input: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(layers, str) or not all(isinstance(name, str) for name in layers):
            raise TypeError(f"layers must be a list of module names, got {layers!r}")
        layers = list(layers)
        if not layers:
            raise ValueError("layers is empty: name at least one module, e.g. layers=['net.layer1']")
        if len(set(layers)) != len(layers):
            raise ValueError(f"layers has duplicates: {layers}")
        if not isinstance(include_input, bool):
            raise TypeError(f"include_input must be a bool, got {include_input!r}")
        self.layers = layers
        self.include_input = include_input
        self._handles: list[RemovableHandle] = []
        self._armed: tuple[str, HiddenMix] | None = None
        self._fired = 0

    @property
    def eligible(self) -> list[str]:
        """The layers one is drawn from each batch (``"<input>"`` first when ``include_input``)."""
        return ([INPUT] if self.include_input else []) + self.layers

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "layers": self.layers, "include_input": self.include_input}

    # ---- what a subclass provides --------------------------------------------------------------

    @abstractmethod
    def mix_input(self, x: Tensor, target: Tensor, num_classes: int, generator: torch.Generator) -> MixedBatch:
        """Mix the input itself (the ``"<input>"`` layer)."""

    @abstractmethod
    def plan(self, probs: Tensor, index: Tensor, lam: Tensor, generator: torch.Generator) -> tuple[HiddenMix, Tensor]:
        """Given the targets as probabilities, the partner index and λ, return ``(mix_fn, targets)``:
        ``mix_fn`` maps the layer's output to the mixed output during the forward; ``targets`` are
        written into the batch now."""

    # ---- the mixing step -----------------------------------------------------------------------

    def mix(self, x: Tensor, target: Tensor, num_classes: int, generator: torch.Generator) -> MixedBatch:
        choice = int(torch.randint(len(self.eligible), (), generator=generator, device=generator.device))
        layer = self.eligible[choice]
        if layer == INPUT:
            return self.mix_input(x, target, num_classes, generator)
        probs, index = pair_targets(x, target, num_classes, self.partner, generator)
        lam = sample_lam(self.alpha, x.shape[0] if self.per_sample else None, generator=generator).to(probs.device)
        mix_fn, targets = self.plan(probs, index, lam, generator)
        self._armed = (layer, mix_fn)
        return MixedBatch(x, targets, lam)

    def _hook(self, name: str) -> Callable[[nn.Module, Any, Any], Any]:
        def hook(module: nn.Module, args: Any, output: Any) -> Any:
            if self._armed is None or self._armed[0] != name:
                return None
            if not isinstance(output, Tensor):
                self._armed = None
                raise TypeError(
                    f"{type(self).__name__}: layer {name!r} returned {type(output).__name__}, not a tensor; "
                    "choose a layer whose output is a single tensor"
                )
            mix_fn = self._armed[1]
            self._armed = None
            self._fired += 1
            return mix_fn(output)

        return hook

    # ---- Lightning hooks -----------------------------------------------------------------------

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
        self._handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.layers]

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._armed is not None:
            layer = self._armed[0]
            self._armed = None
            raise RuntimeError(
                f"{type(self).__name__}: layer {layer!r} was not called during the training forward, so nothing "
                "was mixed; name layers that the forward of the module runs"
            )

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._armed = None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._remove_hooks()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._armed = None

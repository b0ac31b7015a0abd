"""The RandomChoice callback: one mixer per batch, picked at random."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from lightning_mixup.callbacks.base import MixingCallback, MixStep, read_host
from lightning_mixup.functional import MixedBatch


class RandomChoice(MixingCallback):
    """Mix each training batch with one mixer drawn from ``mixers`` with probabilities ``weights``.

    timm's "mixup or CutMix" switch, generalised. The wrapper's ``p``, epoch window, keys, targets (number of
    classes, ``task``, ``targets``, ``ignore_index``) and generator govern; the chosen mixer contributes its method
    and hyper-parameters, and its own ``p`` and epoch window are honoured as well. Every ``Callback`` hook of the
    wrapper but ``on_train_batch_start`` is forwarded to each mixer (see :data:`FORWARDED_HOOKS`), so a mixer that
    relies on any of them (hidden-state mixers register their hooks in ``setup``) works inside it. Pass the mixers
    to ``RandomChoice`` only, not to the ``Trainer`` too.

    Args:
        mixers: the mixing callbacks to choose from (at least one).
        weights: non-negative weights, one per mixer, normalised to sum to 1 (None: uniform).
        **kwargs: ``p``, ``start_epoch``, ``stop_epoch``, keys, ``num_classes``, ``seed``, ``task``, ``targets``,
            ``ignore_index`` as for :class:`MixingCallback`.

    Example:
        >>> from lightning_mixup import CutMix, MixUp
        >>> choice = RandomChoice([MixUp(alpha=0.8), CutMix(alpha=1.0)], weights=[0.5, 0.5])
    """

    def __init__(self, mixers: Sequence[MixingCallback], weights: Sequence[float] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        mixers = list(mixers)
        if not mixers:
            raise ValueError("RandomChoice needs at least one mixer, got an empty list")
        for mixer in mixers:
            if not isinstance(mixer, MixingCallback):
                raise TypeError(f"RandomChoice takes mixing callbacks, got {mixer!r}")
            mixer.check_task(self.task, self.targets)  # the wrapper's targets govern
            if self.partner_scope == "global" and not mixer.GLOBAL_PARTNERS:
                raise ValueError(
                    f"RandomChoice(partner_scope='global') cannot wrap {type(mixer).__name__}: it mixes locally"
                )
        if weights is None:
            weights = [1.0] * len(mixers)
        weights = [float(w) for w in weights]
        if len(weights) != len(mixers):
            raise ValueError(f"got {len(weights)} weights {weights} for {len(mixers)} mixers")
        if any(not math.isfinite(w) or w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights must be finite, >= 0 and not all 0, got {weights}")
        self.mixers = mixers
        self.weights = [w / sum(weights) for w in weights]

    def _hparams(self) -> dict[str, Any]:
        return {"mixers": [type(m).__name__ for m in self.mixers], "weights": self.weights, "p": self.p}

    def mix(self, step: MixStep) -> MixedBatch | None:
        host = step.host  # the choice is read on the host: a CPU draw beside an accelerator, waits for no device
        choice = int(read_host(torch.multinomial(torch.tensor(self.weights, device=host.device), 1, generator=host)))
        return self.mixers[choice].maybe_mix(step)


def _forward_to_mixers(name: str) -> Callable[..., None]:
    """The ``Callback`` hook ``name`` of :class:`RandomChoice`: its own, then each of its mixers'."""

    def hook(self: RandomChoice, *args: Any, **kwargs: Any) -> None:
        getattr(super(RandomChoice, self), name)(*args, **kwargs)
        for mixer in self.mixers:
            getattr(mixer, name)(*args, **kwargs)

    hook.__name__ = hook.__qualname__ = name
    hook.__doc__ = f"``{name}`` of the wrapper, then of every mixer."
    return hook


FORWARDED_HOOKS = tuple(
    name
    for name, value in vars(Callback).items()
    if callable(value) and (name.startswith("on_") or name in ("setup", "teardown"))
    and name not in ("on_train_batch_start", "on_save_checkpoint", "on_load_checkpoint")
)  # fmt: skip
"""Every ``Callback`` hook but batch start (the wrapper mixes through the chosen mixer's ``maybe_mix``) and the
checkpoint ones (the wrapper's generator draws for all; the mixers' own state is not used)."""

for _name in FORWARDED_HOOKS:
    setattr(RandomChoice, _name, _forward_to_mixers(_name))

"""What every mixing callback shares: when to mix, where the batch's input and targets are, its generator."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import MutableMapping, MutableSequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor

from lightning_mixup.functional import MixedBatch
from lightning_mixup.functional.sampling import PARTNERS, check_alpha
from lightning_mixup.functional.targets import check_num_classes
from lightning_mixup.ranks import gather_ranks, own_part

_GOLDEN = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, rank) pairs apart
_MASK63 = (1 << 63) - 1

Key = int | str


def _check_key(name: str, key: object) -> Key:
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"{name} must be an int (list batches) or a str (dict batches), got {key!r}")
    return key


def _check_epoch(name: str, value: object, allow_none: bool) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an int >= 0{' or None' if allow_none else ''}, got {value!r}")
    return value


def mixing_seed(base: int, rank: int) -> int:
    """The seed of a mixer's generator for a run seed and a global rank: different ranks draw differently."""
    return (int(base) * 6364136223846793005 + _GOLDEN * (int(rank) + 1)) & _MASK63


class SeededCallback(Callback):
    """A callback that draws within an epoch window from its own ``torch.Generator``: seeded from ``seed``
    (else the run seed, else 0) and the global rank, created on the device it is asked for, and saved in
    the ``state_dict`` so that a resumed run draws what the uninterrupted run would have drawn.

    Subclasses call :meth:`active` with the epoch and :meth:`generator_for` with the device of the data,
    and keep ``state_dict`` as is. ``start_epoch`` is the first epoch that draws, ``stop_epoch`` the first
    that no longer does (None: never stop).
    """

    def __init__(self, seed: int | None = None, start_epoch: int = 0, stop_epoch: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        self.start_epoch = _check_epoch("start_epoch", start_epoch, allow_none=False)
        self.stop_epoch = _check_epoch("stop_epoch", stop_epoch, allow_none=True)
        if self.stop_epoch is not None and self.stop_epoch <= self.start_epoch:
            raise ValueError(f"stop_epoch must be > start_epoch={start_epoch}, got {stop_epoch!r}")
        self.seed = seed
        self._seed: int | None = None
        self._generator: torch.Generator | None = None
        self._pending_state: Tensor | None = None
        self._pending_device_type: str | None = None
        self._rank, self._world_size = 0, 1

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._rank, self._world_size = trainer.global_rank, getattr(trainer, "world_size", 1)
        base = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        seed = mixing_seed(base, trainer.global_rank)
        if seed != self._seed:
            self._seed, self._generator = seed, None

    def state_dict(self) -> dict[str, Any]:
        """Seed and generator state of every rank (gathered under DDP: the checkpoint is rank 0's)."""
        generator = self._generator
        own = (
            self._seed,
            None if generator is None else generator.get_state(),
            None if generator is None else generator.device.type,
        )
        ranks = gather_ranks(own, self._world_size)
        return {"ranks": [{"seed": seed, "generator": state, "device_type": kind} for seed, state, kind in ranks]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        mine = own_part(state_dict["ranks"], self._rank, self._world_size, type(self).__name__, "generators")
        if mine is None:
            return
        self._seed = mine["seed"]
        self._pending_state = mine["generator"]
        self._pending_device_type = mine["device_type"]
        self._generator = None

    def active(self, epoch: int) -> bool:
        """Whether ``epoch`` lies in ``[start_epoch, stop_epoch)``."""
        return epoch >= self.start_epoch and (self.stop_epoch is None or epoch < self.stop_epoch)

    def generator_for(self, device: torch.device) -> torch.Generator:
        """The callback's generator on ``device`` (created, or restored from a checkpoint, on first use)."""
        if self._seed is None:
            raise RuntimeError(f"{type(self).__name__} was not set up: it must be passed to Trainer(callbacks=[...])")
        if self._generator is not None and self._generator.device == device:
            return self._generator
        generator = torch.Generator(device=device)
        if self._pending_state is not None and self._pending_device_type == device.type:
            generator.set_state(self._pending_state)
        else:
            if self._pending_state is not None:
                rank_zero_warn(
                    f"{type(self).__name__}: the checkpoint's generator ran on {self._pending_device_type}, "
                    "this run on "
                    f"{device.type}; reseeding, so the draws will differ from the uninterrupted run"
                )
            generator.manual_seed(self._seed)
        self._pending_state = None
        self._generator = generator
        return generator


class MixingCallback(SeededCallback, ABC):
    """Base of every mixing callback: when to mix, where the batch's input and targets are, the generator.

    Args:
        p: probability of mixing a given training batch.
        start_epoch: first epoch that is mixed.
        stop_epoch: first epoch that is no longer mixed (None: never stop), e.g. ``max_epochs - N``
            to train the last N epochs on clean data.
        input_key: position (list batch) or key (dict batch) of the input.
        target_key: position or key of the targets (class indices ``[B]`` or probabilities ``[B, C]``).
        num_classes: number of classes; None takes the LightningModule's ``num_classes`` attribute
            (or ``hparams.num_classes``).
        seed: seed of the callback's generator; None takes the run seed (``seed_everything``'s
            ``PL_GLOBAL_SEED``, else 0). The global rank is folded in, so DDP ranks draw differently.
            The generator lives on the batch's device and is saved in the checkpoint.

    The batch is written back in place (``batch[input_key] = ...``): Lightning ignores a returned
    batch, so a tuple batch is refused. Targets come back as float probabilities ``[B, C]``; an
    unmixed batch (``p``, the epoch window, or a batch of one sample) is left untouched.
    Nothing is mixed outside training (validation, test, predict, sanity check).
    """

    def __init__(
        self,
        p: float = 1.0,
        start_epoch: int = 0,
        stop_epoch: int | None = None,
        input_key: Key = 0,
        target_key: Key = 1,
        num_classes: int | None = None,
        seed: int | None = None,
    ) -> None:
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p!r}")
        super().__init__(seed, start_epoch, stop_epoch)
        if num_classes is not None:
            check_num_classes(num_classes)
        self.p = float(p)
        self.input_key = _check_key("input_key", input_key)
        self.target_key = _check_key("target_key", target_key)
        self.num_classes = num_classes
        self._num_classes: int | None = num_classes
        self._warned_small = False

    # ---- what a subclass provides --------------------------------------------------------------

    @abstractmethod
    def mix(self, x: Tensor, target: Tensor, num_classes: int, generator: torch.Generator) -> MixedBatch | None:
        """Mix one batch with draws from ``generator`` (None: leave it unmixed); ``x`` and ``target`` are not
        modified."""

    def _hparams(self) -> dict[str, Any]:
        """The hyper-parameters that name this callback's ``state_key``."""
        return {"p": self.p}

    # ---- Lightning hooks -----------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        return self._generate_state_key(**self._hparams())

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._num_classes = self._resolve_num_classes(pl_module)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        x, target = self._read(batch)
        if x.shape[0] < 2:
            if not self._warned_small:
                rank_zero_warn(f"{type(self).__name__}: a batch of {x.shape[0]} sample cannot be mixed; left unchanged")
                self._warned_small = True
            return
        num_classes = self._resolved_num_classes()
        generator = self.generator_for(x.device)
        mixed = self.maybe_mix(x, target, num_classes, trainer.current_epoch, generator)
        pl_module.log("mix/applied", float(mixed is not None), on_step=False, on_epoch=True, batch_size=x.shape[0])
        if mixed is None:
            return
        batch[self.input_key] = mixed.input
        batch[self.target_key] = mixed.target
        pl_module.log("mix/lam", mixed.lam.float().mean(), on_step=True, on_epoch=True, batch_size=x.shape[0])
        if mixed.lam.ndim == 1:
            pl_module.log("mix/lam_std", mixed.lam.float().std(), on_step=False, on_epoch=True, batch_size=x.shape[0])

    # ---- the mixing decision -------------------------------------------------------------------

    def maybe_mix(
        self, x: Tensor, target: Tensor, num_classes: int, epoch: int, generator: torch.Generator
    ) -> MixedBatch | None:
        """Mix if ``epoch`` is in the window and a coin of probability ``p`` says so; else None."""
        if not self.active(epoch) or self.p == 0.0:
            return None
        if self.p < 1.0 and float(torch.rand((), generator=generator, device=generator.device)) >= self.p:
            return None
        return self.mix(x, target, num_classes, generator)

    # ---- helpers -------------------------------------------------------------------------------

    def _resolve_num_classes(self, pl_module: pl.LightningModule) -> int:
        if self.num_classes is not None:
            return self.num_classes
        found = getattr(pl_module, "num_classes", None)
        if found is None:
            found = getattr(getattr(pl_module, "hparams", None), "get", lambda _k: None)("num_classes")
        if found is None:
            raise ValueError(
                f"{type(self).__name__} needs the number of classes: pass num_classes=... to the callback or "
                f"give {type(pl_module).__name__} a `num_classes` attribute"
            )
        try:
            return check_num_classes(found)
        except ValueError as err:
            raise ValueError(f"{type(pl_module).__name__}.num_classes is invalid: {err}") from None

    def _resolved_num_classes(self) -> int:
        if self._num_classes is None:
            raise RuntimeError(f"{type(self).__name__} was not set up: it must be passed to Trainer(callbacks=[...])")
        return self._num_classes

    def _read(self, batch: Any) -> tuple[Tensor, Tensor]:
        name = type(self).__name__
        if isinstance(batch, tuple):
            raise TypeError(
                f"{name} got a tuple batch, which cannot be changed in place (Lightning ignores a returned batch). "
                "Return a list or a dict from your collate_fn (the default collate turns tuple samples into a list)."
            )
        for key in (self.input_key, self.target_key):
            if isinstance(batch, MutableMapping):
                if key not in batch:
                    raise KeyError(f"{name}: the batch dict has no key {key!r}; its keys are {list(batch)}")
            elif isinstance(batch, MutableSequence):
                if not isinstance(key, int) or not -len(batch) <= key < len(batch):
                    raise KeyError(f"{name}: key {key!r} does not index a list batch of length {len(batch)}")
            else:
                raise TypeError(f"{name} expects a list or dict batch, got {type(batch).__name__}")
        x, target = batch[self.input_key], batch[self.target_key]
        if not isinstance(x, Tensor) or not isinstance(target, Tensor):
            raise TypeError(
                f"{name}: batch[{self.input_key!r}] and batch[{self.target_key!r}] must be tensors, "
                f"got {type(x).__name__} and {type(target).__name__}"
            )
        return x, target


class Mixer(MixingCallback):
    """Base of the mixers that draw λ ~ Beta(α, α) and a partner for each sample.

    Args:
        alpha: concentration of λ ~ Beta(α, α); must be > 0.
        p: probability of mixing a given training batch.
        per_sample: one λ (and box or mask) per sample instead of one per batch.
        partner: ``"perm"`` (random permutation of the batch) or ``"flip"`` (sample i with B − 1 − i).
        reuse_buffer: write the mixed input into a buffer kept from one batch to the next, so a mix
            allocates nothing (fresh memory is what makes an out-of-place mix several times slower than a
            copy). The previous batch's mixed input is overwritten by the next mix: copy it if you keep
            it beyond its training step, or pass False.
        The other arguments are those of :class:`MixingCallback`.
    """

    def __init__(
        self,
        alpha: float = 1.0,
        p: float = 1.0,
        per_sample: bool = False,
        partner: str = "perm",
        start_epoch: int = 0,
        stop_epoch: int | None = None,
        input_key: Key = 0,
        target_key: Key = 1,
        num_classes: int | None = None,
        seed: int | None = None,
        reuse_buffer: bool = True,
    ) -> None:
        super().__init__(p, start_epoch, stop_epoch, input_key, target_key, num_classes, seed)
        check_alpha(alpha)
        if not isinstance(reuse_buffer, bool):
            raise TypeError(f"reuse_buffer must be a bool, got {reuse_buffer!r}")
        if not isinstance(per_sample, bool):
            raise TypeError(f"per_sample must be a bool, got {per_sample!r}")
        if partner not in PARTNERS:
            raise ValueError(f"partner must be one of {PARTNERS}, got {partner!r}")
        self.alpha = float(alpha)
        self.per_sample = per_sample
        self.partner = partner
        self.reuse_buffer = reuse_buffer
        self._buffer: Tensor | None = None

    def _hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "per_sample": self.per_sample, "partner": self.partner, "p": self.p}

    def batch_options(self, x: Tensor, generator: torch.Generator) -> dict[str, Any]:
        """The keyword arguments every ``*_batch`` op takes from this mixer: per-sample mode, partner,
        generator and output buffer."""
        return {
            "per_sample": self.per_sample,
            "partner": self.partner,
            "generator": generator,
            "out": self.buffer_for(x),
        }

    def buffer_for(self, x: Tensor) -> Tensor | None:
        """The buffer the mixed input is written into (None: out of place): kept while ``x``'s shape, dtype,
        device and memory format stay the same."""
        if not self.reuse_buffer or x.requires_grad:
            return None
        buffer = self._buffer
        if (
            buffer is None
            or buffer.shape != x.shape
            or buffer.dtype != x.dtype
            or buffer.device != x.device
            or buffer.stride() != x.stride()
            or buffer.untyped_storage().data_ptr() == x.untyped_storage().data_ptr()
        ):
            buffer = self._buffer = torch.empty_like(x)
        return buffer

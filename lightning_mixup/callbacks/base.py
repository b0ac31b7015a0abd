"""What every mixing callback shares: when to mix, where the batch's input and targets are, its generator."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch import Tensor
from torch.utils.hooks import RemovableHandle

from lightning_mixup.callbacks.batches import Key, check_key, read_batch
from lightning_mixup.checks import check_bool, check_choice, check_int, check_probability
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.sampling import PARTNERS, check_alpha
from lightning_mixup.functional.targets import FORMS, TASKS, PairTarget, Targets, as_targets, check_num_classes
from lightning_mixup.ranks import gather_ranks, gather_rows, gather_rows_keeping_own, own_part

PARTNER_SCOPES = ("local", "global")
_GOLDEN = 0x9E3779B97F4A7C15  # odd 64-bit constant: spreads (seed, rank) pairs apart
_MASK63 = (1 << 63) - 1


def mixing_seed(base: int, rank: int) -> int:
    """The seed of a mixer's generator for a run seed and a global rank: different ranks draw differently."""
    return (int(base) * 6364136223846793005 + _GOLDEN * (int(rank) + 1)) & _MASK63


# what Lightning attaches to every callback at fit: bound methods of the module, which would pickle the whole module
_ATTACHED_BY_LIGHTNING = ("log", "log_dict")


def picklable_state(obj: object, transient: tuple[str, ...] = ()) -> dict[str, Any]:
    """``obj.__dict__`` for pickling and copying, without what a fit attached (Lightning's bound ``log`` and
    ``log_dict``) and with the ``transient`` attributes (references to the step, trainer, module, buffers, hooks)
    emptied: a callback pickled after ``fit`` holds its options and generator state only."""
    state = {k: v for k, v in obj.__dict__.items() if k not in _ATTACHED_BY_LIGHTNING}
    for name in transient:
        if name in state:
            state[name] = [] if isinstance(state[name], list) else None
    return state


class SeededCallback(Callback):
    """A callback that draws within an epoch window from its own ``torch.Generator``: seeded from ``seed``
    (else the run seed, else 0) and the global rank, created on the device it is asked for, and saved in
    the ``state_dict`` so that a resumed run draws what the uninterrupted run would have drawn.

    Subclasses call :meth:`active` with the epoch and :meth:`generator_for` with the device of the data,
    and keep ``state_dict`` as is. ``start_epoch`` is the first epoch that draws, ``stop_epoch`` the first
    that no longer does (None: never stop).
    """

    def __init__(self, seed: int | None = None, start_epoch: int = 0, stop_epoch: int | None = None) -> None:
        if seed is not None:
            check_int("seed", seed)
        self.start_epoch = check_int("start_epoch", start_epoch, 0)
        self.stop_epoch = None if stop_epoch is None else check_int("stop_epoch", stop_epoch, 0)
        if self.stop_epoch is not None and self.stop_epoch <= self.start_epoch:
            raise ValueError(f"stop_epoch must be > start_epoch={start_epoch}, got {stop_epoch!r}")
        self.seed = seed
        self._seed: int | None = None
        self._generator: torch.Generator | None = None
        self._host_generator: torch.Generator | None = None
        self._pending_state: Tensor | None = None
        self._pending_device_type: str | None = None
        self._pending_host_state: Tensor | None = None
        self._rank, self._world_size = 0, 1

    _TRANSIENT: tuple[str, ...] = ("_step", "_buffer", "_trainer", "_module", "_logits", "_handles")

    def __getstate__(self) -> dict[str, Any]:
        return picklable_state(self, self._TRANSIENT)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._rank, self._world_size = trainer.global_rank, getattr(trainer, "world_size", 1)
        base = self.seed if self.seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
        seed = mixing_seed(base, 0 if self.shares_draws else trainer.global_rank)
        if seed != self._seed:
            self._seed, self._generator, self._host_generator = seed, None, None

    @property
    def shares_draws(self) -> bool:
        """Whether every rank draws the same sequence (one seed for all ranks) instead of its own."""
        return False

    def state_dict(self) -> dict[str, Any]:
        """Seed and generator states of every rank (gathered under DDP: the checkpoint is rank 0's); ``host_generator``
        is the state of the host generator (None where the generator itself is on the CPU)."""
        generator, host = self._generator, self._host_generator
        own = (
            self._seed,
            None if generator is None else generator.get_state(),
            None if generator is None else generator.device.type,
            None if host is None else host.get_state(),
        )
        ranks = gather_ranks(own, self._world_size)
        return {
            "ranks": [
                {"seed": seed, "generator": state, "device_type": kind, "host_generator": host_state}
                for seed, state, kind, host_state in ranks
            ]
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        mine = own_part(state_dict["ranks"], self._rank, self._world_size, type(self).__name__, "generators")
        if mine is None:
            return
        self._seed = mine["seed"]
        self._pending_state = mine["generator"]
        self._pending_device_type = mine["device_type"]
        self._pending_host_state = mine.get("host_generator")  # absent from checkpoints of earlier versions
        self._generator = self._host_generator = None

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

    def host_generator_for(self, generator: torch.Generator) -> torch.Generator:
        """The generator of the draws read on the host (whether to mix, which layer) next to ``generator``: itself on
        the CPU, else a CPU generator of the same seed (restored from a checkpoint on first use), so that reading
        them never waits for an accelerator."""
        if generator.device.type == "cpu":
            return generator
        if self._host_generator is None:
            self._host_generator = torch.Generator()
            if self._pending_host_state is not None:
                self._host_generator.set_state(self._pending_host_state)
            else:
                self._host_generator.manual_seed(self._seed)
            self._pending_host_state = None
        return self._host_generator


def read_host(draw: Tensor) -> float:
    """A draw of :attr:`MixStep.host` as a Python number: the one place a mixer reads a tensor on the host in a
    training step. The host generator is on the CPU, so this waits for no device (unless a step made without one
    falls back to an accelerator's generator)."""
    return draw.item()


class ForwardHooks:
    """Mixin of the callbacks that register forward hooks in ``setup`` (kept in ``_handles``): all are removed in
    ``teardown``, on an exception and before registering anew, with what they were armed with (:meth:`_forget`)."""

    _handles: list[RemovableHandle]

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._remove_hooks()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._remove_hooks()

    def _remove_hooks(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self._forget()

    def _forget(self) -> None:
        """Drop what the hooks were armed with: the step (a subclass with other state overrides it)."""
        self._step = None


@dataclass
class MixStep:
    """One training step's mixing: what :meth:`MixingCallback.mix` works on, and what it leaves for later in the
    step. Created at batch start by the callback the ``Trainer`` calls, handed to ``mix`` (through
    :meth:`MixingCallback.maybe_mix`, also by a wrapper such as :class:`RandomChoice`), finished at batch end.

    Args:
        x, target: the batch's input and targets (not modified).
        targets: what the targets are and which form the mixed ones take (task, number of classes, form); a
            number of classes stands for multiclass probabilities.
        generator: the generator to draw from (the mixer's own, or the wrapper's).
        epoch: the current epoch (for the epoch windows).
        stats: scalars to log at batch end (``pl_module.log(name, value, on_epoch=True)``), filled by ``mix`` or
            during the forward (e.g. PatchUp's ``mix/unchanged``).
        forward_mix: ``(layer name, fn)`` armed by a hidden-state mixer: ``fn`` replaces that layer's output
            in this step's training forward, once; still armed at batch end is an error.
        loss_weight: a factor on the gradient of this step's training loss (PatchUp's official loss weight),
            applied once in ``on_before_backward``; None: 1.
        own: this rank's rows of ``x`` (all of them, unless ``partner_scope="global"`` made ``x`` the global batch).
        gather: with ``partner_scope="global"``, the function that turns a tensor of this rank's rows (a hidden
            state in the forward) into the global one, this rank's part keeping its gradient; else None.
        host_generator: a CPU generator for the draws read on the host (:attr:`host`); None: ``generator``.

    Example:
        >>> from lightning_mixup.callbacks import MixUp
        >>> from lightning_mixup.functional import Targets
        >>> step = MixStep(torch.randn(4, 3), torch.arange(4) % 2, Targets(2), torch.Generator().manual_seed(0))
        >>> mixed = MixUp(alpha=0.4).mix(step)
        >>> mixed.target.shape
        torch.Size([4, 2])
    """

    x: Tensor
    target: Tensor
    targets: Targets | int
    generator: torch.Generator
    epoch: int = 0
    stats: dict[str, Tensor] = field(default_factory=dict)
    forward_mix: tuple[str, Callable[[Tensor], Tensor]] | None = None
    loss_weight: Tensor | float | None = None
    own: slice = field(default_factory=lambda: slice(None))
    gather: Callable[[Tensor], Tensor] | None = None
    host_generator: torch.Generator | None = None

    @property
    def host(self) -> torch.Generator:
        """The generator of the draws that decide on the host what the step does (whether to mix, which layer): read
        with :func:`read_host`, they must not wait for an accelerator, so it is a CPU generator there
        (:meth:`SeededCallback.host_generator_for`); ``generator`` itself on the CPU."""
        return self.generator if self.host_generator is None else self.host_generator

    @property
    def rows(self) -> int:
        """How many of ``x``'s rows are this rank's (the rows a hidden state in the forward has)."""
        return len(range(*self.own.indices(self.x.shape[0])))

    def __post_init__(self) -> None:
        self.targets = as_targets(self.targets)


class MixingCallback(SeededCallback, ABC):
    """Base of every mixing callback: when to mix, where the batch's input and targets are, the generator.

    Args:
        p: probability of mixing a given training batch.
        start_epoch: first epoch that is mixed.
        stop_epoch: first epoch that is no longer mixed (None: never stop), e.g. ``max_epochs - N``
            to train the last N epochs on clean data.
        input_key: position (list batch) or key (dict batch) of the input.
        target_key: position or key of the targets (class indices ``[B]`` or probabilities ``[B, C]``; for the
            other tasks see ``task``).
        num_classes: number of classes; None takes the LightningModule's ``num_classes`` attribute
            (or ``hparams.num_classes``). Not needed for ``task="regression"``.
        task: what the targets are: ``"multiclass"``, ``"multilabel"`` (``[B, C]`` rows in [0, 1]),
            ``"regression"`` (float ``[B]`` or ``[B, ...]``) or ``"segmentation"`` (a mask ``[B, H, W]`` of class
            indices or ``[B, C, H, W]`` of probabilities, mixed with the same box, mask or blend as the image).
        targets: ``"mixed"``: the mixed targets as one tensor (probabilities ``[B, C]`` for classification);
            ``"pair"``: a :class:`~lightning_mixup.functional.PairTarget` ``(a, b, weight)`` for any per-sample
            loss through :func:`~lightning_mixup.functional.pair_loss`.
        ignore_index: segmentation label of pixels to ignore (e.g. 255); they stay ignored.
        partner_scope: ``"local"``: under DDP each rank mixes within its own batch; ``"global"``: the partners
            come from the global batch (every rank's), so a sample's partner is drawn from ``world_size·B − 1``
            others. Each rank all-gathers the inputs and targets, draws the same mix of the global batch from
            a generator all ranks share (seeded without the rank), and keeps its own rows: exactly what one
            process would compute on the concatenated batch. Costs two all-gathers per step (each rank
            receives ``(world_size − 1)·B`` samples and targets) and the mix of ``world_size·B`` samples.
            Hidden-state mixers gather the hidden state inside the forward (the received partners carry no
            gradient back to their rank); the saliency-guided mixers run their saliency pass on the global batch
            (``world_size`` times the pass). Not TransMix nor RegMixup (``GLOBAL_PARTNERS``). Every rank must
            have the same batch size.
        seed: seed of the callback's generator; None takes the run seed (``seed_everything``'s
            ``PL_GLOBAL_SEED``, else 0). The global rank is folded in, so DDP ranks draw differently.
            The generator lives on the batch's device and is saved in the checkpoint.

    The batch is written back in place (``batch[input_key] = ...``): Lightning ignores a returned
    batch, so a tuple batch is refused. Classification targets come back as float probabilities ``[B, C]`` (or a
    pair); an unmixed batch (``p``, the epoch window, or a batch of one sample) is left untouched.
    Nothing is mixed outside training (validation, test, predict, sanity check).

    Example:
        >>> class EveryOther(MixingCallback):  # a method: mix a step, or return None to leave it as it is
        ...     def mix(self, step):
        ...         return None
        >>> EveryOther(p=0.5).p
        0.5
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
        task: str = "multiclass",
        targets: str = "mixed",
        ignore_index: int | None = None,
        partner_scope: str = "local",
    ) -> None:
        super().__init__(seed, start_epoch, stop_epoch)
        self.p = check_probability("p", p)
        self.partner_scope = check_choice("partner_scope", partner_scope, PARTNER_SCOPES)
        if partner_scope == "global" and not self.GLOBAL_PARTNERS:
            raise ValueError(
                f"{type(self).__name__} cannot draw partners from the global batch (partner_scope='global'): "
                "it needs the partner inside the forward or a pass of the model; use partner_scope='local'"
            )
        if num_classes is not None:
            check_num_classes(num_classes)
        self.input_key = check_key("input_key", input_key)
        self.target_key = check_key("target_key", target_key)
        self.num_classes = num_classes
        self.task = check_choice("task", task, TASKS)
        self.targets = check_choice("targets", targets, FORMS)
        self.check_task(task, targets)
        Targets(num_classes or 2, task, targets, ignore_index)  # the checks of ignore_index, before any fit
        self.ignore_index = ignore_index
        self._targets: Targets | None = None
        self._warned_small = False
        self._step: MixStep | None = None

    # ---- what a subclass provides --------------------------------------------------------------

    @abstractmethod
    def mix(self, step: MixStep) -> MixedBatch | None:
        """Mix ``step``'s batch with draws from ``step.generator`` (None: leave it unmixed); the batch's tensors
        are not modified. Anything to log or to do during the forward goes into ``step``."""

    def _hparams(self) -> dict[str, Any]:
        """The hyper-parameters that name this callback's ``state_key``."""
        return {"p": self.p}

    TASKS: ClassVar[tuple[str, ...]] = TASKS
    """The tasks whose targets this method can mix."""
    FORMS: ClassVar[tuple[str, ...]] = FORMS
    """The forms of mixed targets this method can give."""
    GLOBAL_PARTNERS: ClassVar[bool] = True
    """Whether ``partner_scope="global"`` is supported (not by TransMix, whose label weights come from the attention
    of the rank's own forward, nor by RegMixup, whose batch doubles)."""
    OUTPUT_ROWS: ClassVar[int] = 1
    """Rows of the mixed batch per input sample (RegMixup: 2, the clean batch followed by its mixed copy)."""
    LABELS_FOLLOW_AREA: ClassVar[bool] = True
    """Whether the label weight of the sample's own target is λ, the share of the input that is its own (False for
    the methods that weigh labels otherwise: SnapMix's CAM mass, Remix's rebalancing)."""

    @classmethod
    def check_task(cls, task: str, targets: str) -> None:
        """Raise ``ValueError`` unless this method can mix ``task``'s targets into the form ``targets``."""
        if task not in cls.TASKS:
            raise ValueError(f"{cls.__name__} cannot mix task={task!r} targets; it mixes {list(cls.TASKS)}")
        if targets not in cls.FORMS:
            raise ValueError(f"{cls.__name__} cannot give targets={targets!r}; it gives {list(cls.FORMS)}")

    @property
    def shares_draws(self) -> bool:
        return self.partner_scope == "global"

    # ---- Lightning hooks -----------------------------------------------------------------------

    @property
    def state_key(self) -> str:
        return self._generate_state_key(**self._hparams())

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._targets = Targets(self._resolve_num_classes(pl_module), self.task, self.targets, self.ignore_index)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        x, target = read_batch(batch, (self.input_key, self.target_key), type(self).__name__)
        rows, own = x.shape[0], slice(None)
        if self.shares_draws and self._world_size > 1:  # partner_scope="global": mix the global batch
            x, target = gather_rows([x, target], self._world_size, type(self).__name__)
            own = slice(self._rank * rows, (self._rank + 1) * rows)
        if x.shape[0] < 2:
            if not self._warned_small:
                rank_zero_warn(f"{type(self).__name__}: a batch of {x.shape[0]} sample cannot be mixed; left unchanged")
                self._warned_small = True
            return
        generator = self.generator_for(x.device)
        step = MixStep(
            x, target, self._resolved_targets(), generator, trainer.current_epoch, own=own,
            host_generator=self.host_generator_for(generator),
        )  # fmt: skip
        if own != slice(None):
            rank, world_size = self._rank, self._world_size
            step.gather = lambda h: gather_rows_keeping_own(h, rank, world_size, type(self).__name__)
        mixed = self.maybe_mix(step)
        pl_module.log("mix/applied", float(mixed is not None), on_step=False, on_epoch=True, batch_size=rows)
        if mixed is None:
            return
        if not step.targets.async_checks:  # the first mixed batch was checked in full: the next ones on the device
            self._targets = replace(step.targets, async_checks=True)
        target = mixed.target
        batch[self.input_key] = mixed.input[own]
        batch[self.target_key] = (
            PairTarget(*(t[own] for t in target)) if isinstance(target, PairTarget) else target[own]
        )
        lam = mixed.lam[own] if mixed.lam.ndim == 1 else mixed.lam
        pl_module.log("mix/lam", lam.float().mean(), on_step=True, on_epoch=True, batch_size=rows)
        if lam.ndim == 1:
            pl_module.log("mix/lam_std", lam.float().std(), on_step=False, on_epoch=True, batch_size=rows)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, self._step = self._step, None
        if step is None:
            return
        stats, step.stats = step.stats, {}  # a wrapper and its chosen mixer both finish the same step: log once
        for name, value in stats.items():
            pl_module.log(name, value, on_step=False, on_epoch=True)
        if step.forward_mix is not None:
            layer, step.forward_mix = step.forward_mix[0], None
            raise RuntimeError(
                f"{type(self).__name__}: layer {layer!r} was not called during the training forward, so nothing "
                "was mixed; name layers that the forward of the module runs"
            )

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: Tensor) -> None:
        step = self._step
        if step is None or step.loss_weight is None:
            return
        weight, step.loss_weight = step.loss_weight, None  # once, also when a wrapper forwards this hook
        if loss.requires_grad:
            loss.register_hook(lambda grad: grad * weight)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._step = None

    # ---- the mixing decision -------------------------------------------------------------------

    def maybe_mix(self, step: MixStep) -> MixedBatch | None:
        """Mix if ``step.epoch`` is in the window and a coin of probability ``p`` says so; else None. The step is
        this callback's until batch end."""
        self._step = step
        if not self.active(step.epoch) or self.p == 0.0:
            return None
        host = step.host
        if self.p < 1.0 and read_host(torch.rand((), generator=host, device=host.device)) >= self.p:
            return None
        return self.mix(step)

    # ---- helpers -------------------------------------------------------------------------------

    def _resolve_num_classes(self, pl_module: pl.LightningModule) -> int | None:
        """The number of classes: the callback's, else the module's; None where the task needs none."""
        if self.num_classes is not None or self.task == "regression":
            return self.num_classes
        found = getattr(pl_module, "num_classes", None)
        if found is None:
            found = getattr(getattr(pl_module, "hparams", None), "get", lambda _k: None)("num_classes")
        if found is None and self.task == "multilabel":
            return None  # the rows' width is not checked
        if found is None:
            raise ValueError(
                f"{type(self).__name__} needs the number of classes: pass num_classes=... to the callback or "
                f"give {type(pl_module).__name__} a `num_classes` attribute"
            )
        try:
            return check_num_classes(found)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{type(pl_module).__name__}.num_classes is invalid: {err}") from None

    def _resolved_targets(self) -> Targets:
        if self._targets is None:
            raise RuntimeError(f"{type(self).__name__} was not set up: it must be passed to Trainer(callbacks=[...])")
        return self._targets


class Mixer(MixingCallback):
    """Base of the mixers that draw λ ~ Beta(α, α) and a partner for each sample.

    Args:
        alpha: concentration of λ ~ Beta(α, α); must be > 0.
        per_sample: one λ (and box or mask) per sample instead of one per batch.
        partner: ``"perm"`` (random permutation of the batch) or ``"flip"`` (sample i with B − 1 − i).
        reuse_buffer: write the mixed input into a buffer kept from one batch to the next, so a mix
            allocates nothing (fresh memory is what makes an out-of-place mix several times slower than a
            copy). The previous batch's mixed input is overwritten by the next mix: copy it if you keep
            it beyond its training step, or pass False.
        **kwargs: ``p``, ``start_epoch``, ``stop_epoch``, ``input_key``, ``target_key``, ``num_classes``,
            ``seed``, ``task``, ``targets``, ``ignore_index``: see :class:`MixingCallback`.

    Example:
        >>> from lightning_mixup.functional import mixup_batch
        >>> class Blend(Mixer):  # a new method: its functional op on the step, with the shared options
        ...     def mix(self, step):
        ...         return mixup_batch(step.x, step.target, step.targets, self.alpha, **self.batch_options(step))
        >>> Blend(alpha=0.4, per_sample=True).per_sample
        True
    """

    def __init__(
        self,
        alpha: float = 1.0,
        per_sample: bool = False,
        partner: str = "perm",
        reuse_buffer: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.alpha = check_alpha(alpha)
        self.per_sample = check_bool("per_sample", per_sample)
        self.partner = check_choice("partner", partner, PARTNERS)
        self.reuse_buffer = check_bool("reuse_buffer", reuse_buffer)
        self._buffer: Tensor | None = None

    def _hparams(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "per_sample": self.per_sample, "partner": self.partner, "p": self.p}

    def batch_options(self, step: MixStep) -> dict[str, Any]:
        """The keyword arguments every ``*_batch`` op takes from this mixer: per-sample mode, partner,
        the step's generator and the output buffer."""
        return {
            "per_sample": self.per_sample,
            "partner": self.partner,
            "generator": step.generator,
            "out": self.buffer_for(step.x),
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

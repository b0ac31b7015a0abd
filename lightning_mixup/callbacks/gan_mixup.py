"""The DiscriminatorMixup callback: the mixup paper's GAN objective (arXiv 1710.09412, §3.7)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning.pytorch as pl
from torch import Tensor

from lightning_mixup.callbacks.base import SeededCallback
from lightning_mixup.checks import check_bool
from lightning_mixup.functional.gan import check_gan_mixup_options, gan_mixup_batch
from lightning_mixup.functional.sampling import check_alpha

_DEFAULT_RECIPE = {"pairs": "real_fake", "lam_dist": "beta", "lam_bound": 1.0}


@dataclass
class DiscriminatorStep:
    """One training batch of :class:`DiscriminatorMixup`: its epoch, and the λ drawn (logged at batch end)."""

    epoch: int
    lam: Tensor | None = None


class DiscriminatorMixup(SeededCallback):
    """Train a GAN's discriminator on mixes of real and fake samples with λ as the target (Zhang et al.,
    ICLR 2018, arXiv 1710.09412, §3.7): ``max_g min_d E_{x,z,λ} ℓ(d(λx + (1−λ)g(z)), λ)``, ℓ the binary
    cross-entropy, λ ~ Beta(α, α).

    Each discriminator step trains on the ``B`` mixes ``λ_i·x_i + (1−λ_i)·g(z_i)`` with targets ``λ_i``
    only (no separate real or fake terms, as in the paper); the generator's loss is left as the module
    has it. ``pairs="pooled"`` with ``lam_dist="uniform"`` is the released code's recipe instead
    (hongyi-zhang/mixup ``gan/example_gan.py``): the ``B`` reals (label 1) and ``B`` fakes (label 0) are
    pooled and the pool is mixed with a shuffled copy of itself, so real–real, fake–fake and real–fake pairs
    occur, ``2B`` mixes with the mixed labels as targets, λ ~ U(0, ``lam_bound``) (``gan_preset=official``).

    The module must offer the extension point ``set_discriminator_batch(fn)``, as
    :class:`~lightning_mixup.models.gan.GANModule` does; the callback registers there in ``setup`` and
    unregisters in ``teardown``. λ comes from the callback's own generator (seeded from ``seed`` or the
    run seed, and the global rank; saved in checkpoints). Logs ``mix/lam`` and ``mix/applied``. The functional
    op is :func:`~lightning_mixup.functional.gan.gan_mixup_batch`.

    Args:
        alpha: λ ~ Beta(α, α); must be > 0. The paper's figure uses α = 0.2.
        per_sample: one λ per pair (True) or one for the whole batch (False).
        pairs: ``"real_fake"`` (each real with one fake; ours, the paper's formula) or ``"pooled"`` (any two of
            the pooled reals and fakes, targets the mixed labels; the released code).
        lam_dist: ``"beta"`` (λ ~ Beta(α, α)) or ``"uniform"`` (λ ~ U(0, ``lam_bound``); the released code,
            which sweeps ``lam_bound`` over 0.1, 0.2, 0.5 and 1). With ``pairs="real_fake"`` λ is the real
            sample's weight, so a bound below 1 keeps every mix mostly fake.
        lam_bound: the upper end m of U(0, m), in (0, 1]; only used with ``lam_dist="uniform"``.
        start_epoch / stop_epoch: mix in epochs ``[start_epoch, stop_epoch)``; other epochs train the
            plain GAN.
        seed: seed of the λ generator; None takes the run seed (``seed_everything``), else 0.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[DiscriminatorMixup(alpha=0.2)], logger=False, enable_checkpointing=False)
    """

    def __init__(
        self,
        alpha: float = 0.2,
        per_sample: bool = True,
        start_epoch: int = 0,
        stop_epoch: int | None = None,
        seed: int | None = None,
        pairs: str = "real_fake",
        lam_dist: str = "beta",
        lam_bound: float = 1.0,
    ) -> None:
        self.alpha = check_alpha(alpha)
        self.per_sample = check_bool("per_sample", per_sample)
        self.pairs, self.lam_dist, self.lam_bound = check_gan_mixup_options(pairs, lam_dist, lam_bound)
        super().__init__(seed, start_epoch, stop_epoch)
        self._module: pl.LightningModule | None = None
        self._step: DiscriminatorStep | None = None

    @property
    def state_key(self) -> str:
        recipe = {"pairs": self.pairs, "lam_dist": self.lam_dist, "lam_bound": self.lam_bound}
        changed = {key: value for key, value in recipe.items() if value != _DEFAULT_RECIPE[key]}  # old keys still load
        return self._generate_state_key(alpha=self.alpha, per_sample=self.per_sample, **changed)

    def discriminator_batch(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor] | None:
        """The mixes and their targets (``λ·real + (1−λ)·fake`` and λ ``[B]``, or ``2B`` pooled mixes and their
        mixed labels); None outside the epoch window (or outside a training batch)."""
        step = self._step
        if step is None or not self.active(step.epoch):
            return None
        if real.shape != fake.shape:
            raise ValueError(
                f"{type(self).__name__}: real samples of shape {list(real.shape)} cannot be mixed with fakes of "
                f"shape {list(fake.shape)}"
            )
        generator = self.generator_for(real.device)
        mixed = gan_mixup_batch(
            real,
            fake,
            self.alpha,
            per_sample=self.per_sample,
            generator=generator,
            pairs=self.pairs,
            lam_dist=self.lam_dist,
            lam_bound=self.lam_bound,
        )
        step.lam = mixed.lam
        return mixed.input, mixed.target

    # ---- Lightning hooks -----------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        register = getattr(pl_module, "set_discriminator_batch", None)
        if not callable(register):
            raise TypeError(
                f"{type(self).__name__} needs a GAN module that lets a callback build its discriminator's batch "
                f"(a `set_discriminator_batch(fn)` method, as lightning_mixup.models.gan.GANModule has); "
                f"got {type(pl_module).__name__}, which has none"
            )
        register(self.discriminator_batch)
        self._module = pl_module

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step = DiscriminatorStep(trainer.current_epoch)

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step, self._step = self._step, None
        lam = None if step is None else step.lam
        pl_module.log("mix/applied", float(lam is not None), on_step=False, on_epoch=True)
        if lam is not None:
            pl_module.log("mix/lam", lam.float().mean(), on_step=False, on_epoch=True)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._unregister()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._unregister()

    def _unregister(self) -> None:
        if self._module is not None:
            self._module.set_discriminator_batch(None)
            self._module = None

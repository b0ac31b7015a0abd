"""The DiscriminatorMixup callback: the mixup paper's GAN objective (arXiv 1710.09412, §3.7)."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from lightning_mixup.callbacks.base import SeededCallback
from lightning_mixup.functional.sampling import check_alpha, expand_lam, sample_lam


class DiscriminatorMixup(SeededCallback):
    """Train a GAN's discriminator on mixes of real and fake samples with λ as the target (Zhang et al.,
    ICLR 2018, arXiv 1710.09412, §3.7): ``max_g min_d E_{x,z,λ} ℓ(d(λx + (1−λ)g(z)), λ)``, ℓ the binary
    cross-entropy, λ ~ Beta(α, α).

    Each discriminator step trains on the ``B`` mixes ``λ_i·x_i + (1−λ_i)·g(z_i)`` with targets ``λ_i``
    only (no separate real or fake terms, as in the paper); the generator's loss is left as the module
    has it. The module must offer the extension point ``set_discriminator_batch(fn)``, as
    :class:`~lightning_mixup.models.gan.GANModule` does; the callback registers there in ``setup`` and
    unregisters in ``teardown``. λ comes from the callback's own generator (seeded from ``seed`` or the
    run seed, and the global rank; saved in checkpoints). Logs ``mix/lam`` and ``mix/applied``.

    Args:
        alpha: λ ~ Beta(α, α); must be > 0. The paper's figure uses α = 0.2.
        per_sample: one λ per pair (True) or one for the whole batch (False).
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
    ) -> None:
        check_alpha(alpha)
        if not isinstance(per_sample, bool):
            raise TypeError(f"per_sample must be a bool, got {per_sample!r}")
        super().__init__(seed, start_epoch, stop_epoch)
        self.alpha = float(alpha)
        self.per_sample = per_sample
        self._module: pl.LightningModule | None = None
        self._epoch = 0
        self._lam: Tensor | None = None

    @property
    def state_key(self) -> str:
        return self._generate_state_key(alpha=self.alpha, per_sample=self.per_sample)

    def discriminator_batch(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor] | None:
        """The mixes ``λ·real + (1−λ)·fake`` and their targets λ ``[B]``; None outside the epoch window."""
        if not self.active(self._epoch):
            return None
        if real.shape != fake.shape:
            raise ValueError(
                f"{type(self).__name__}: real samples of shape {list(real.shape)} cannot be mixed with fakes of "
                f"shape {list(fake.shape)}"
            )
        generator = self.generator_for(real.device)
        lam = sample_lam(self.alpha, real.shape[0] if self.per_sample else None, generator=generator).to(real.device)
        self._lam = lam
        mixed = torch.lerp(fake, real, expand_lam(lam, real))
        return mixed, lam.float().expand(real.shape[0])

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
        self._epoch = trainer.current_epoch

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        lam, self._lam = self._lam, None
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

"""A GAN LightningModule with an extension point for what its discriminator is trained on.

The mixup paper (Zhang et al., ICLR 2018, arXiv 1710.09412, §3.7) stabilises GAN training by training
the discriminator on mixes of real and fake samples with λ itself as the target,
``max_g min_d E_{x,z,λ} ℓ(d(λx + (1−λ)g(z)), λ)``. This module is a plain GAN; a callback (such as
:class:`~lightning_mixup.callbacks.gan_mixup.DiscriminatorMixup`) changes the discriminator's batch
through :meth:`GANModule.set_discriminator_batch`, without touching the module's code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_mixup.checks import check_choice, check_positive_int
from lightning_mixup.ranks import gather_ranks, own_part

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
DiscriminatorBatch = Callable[[Tensor, Tensor], "tuple[Tensor, Tensor] | None"]
"""``fn(real, fake) -> (inputs, targets)`` or None (this batch stays plain): what the discriminator trains on."""
GENERATOR_LOSSES: tuple[str, ...] = ("non_saturating", "saturating")
"""``−log σ(d(g(z)))`` (Goodfellow et al.'s practical choice; ours) or the minimax ``log(1 − σ(d(g(z))))`` (the
mixup paper's released GAN code)."""


def generator_loss(logits: Tensor, kind: str = "non_saturating") -> Tensor:
    """The generator's loss on the discriminator's logits ``d(g(z))`` ``[B]``, averaged over the batch.

    ``"non_saturating"``: ``mean(−log σ(l)) = BCE(l, 1)``. ``"saturating"``: the minimax objective's
    ``mean(log(1 − σ(l))) = −BCE(l, 0)`` — the released mixup GAN code maximises the discriminator's BCE on a
    batch of ``B`` reals and ``B`` fakes, which is half this (the reals carry no gradient); Adam makes that
    constant factor irrelevant.

    Example:
        >>> round(generator_loss(torch.zeros(3), "saturating").item(), 4)  # log(1/2)
        -0.6931
    """
    check_choice("generator_loss", kind, GENERATOR_LOSSES)
    if kind == "non_saturating":
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
    return -F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


def plain_discriminator_batch(real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """The standard GAN discriminator batch: ``cat(real, fake)`` with targets 1 for real and 0 for fake.

    Example:
        >>> inputs, targets = plain_discriminator_batch(torch.ones(2, 3), torch.zeros(2, 3))
        >>> inputs.shape, targets.tolist()
        (torch.Size([4, 3]), [1.0, 1.0, 0.0, 0.0])
    """
    targets = torch.cat((real.new_ones(real.shape[0]), fake.new_zeros(fake.shape[0]))).float()
    return torch.cat((real, fake)), targets


class GANModule(pl.LightningModule):
    """A GAN trained with binary cross-entropy, manual optimisation and the non-saturating (default) or saturating
    generator loss.

    **Steps.** Every training batch is one discriminator step: ``B`` real samples, ``B`` fakes
    ``g(z)`` from fresh noise, and a BCE-with-logits step of ``d`` on :meth:`discriminator_batch`
    (real → 1, fake → 0 by default). After every ``n_critic``-th discriminator step (counted over the
    whole run, so epochs need not be multiples of ``n_critic``) comes one generator step on ``B`` fresh
    fakes with the non-saturating loss ``−log σ(d(g(z)))`` (or, ``generator_loss="saturating"``, the minimax
    ``log(1 − σ(d(g(z))))`` of the released mixup GAN code, see :func:`generator_loss`). One *iteration*, as
    in the paper, is one generator step: ``iterations = batches / n_critic``. ``d_steps`` and ``g_steps``
    count the steps and are saved in checkpoints together with the noise generator (every rank's, under DDP),
    so a resumed run is exact.

    **Extension point.** :meth:`set_discriminator_batch` registers ``fn(real, fake) -> (inputs, targets)``
    (targets in ``[0, 1]``, one per input) that replaces the plain batch; ``fn`` returns None to leave a
    batch plain. One function at a time; ``None`` unregisters. The generator's loss is unchanged.

    **Noise.** ``z ~ N(0, I)`` of size ``latent_dim`` is drawn on the CPU from the module's own
    generator, seeded from ``noise_seed`` (None: the run seed of ``seed_everything``, else 0) and the global
    rank, then moved to the module's device.

    Args:
        generator: maps noise ``[B, latent_dim]`` to samples shaped like the data's ``[B, ...]``.
        discriminator: maps samples to one logit each, ``[B]`` or ``[B, 1]``.
        latent_dim: size of the noise (the paper: 2).
        g_optimizer / d_optimizer: factories ``params -> Optimizer`` (Hydra ``_partial_: true`` or
            ``functools.partial``); None gives Adam with PyTorch's defaults (lr 1e-3), the paper's choice.
        n_critic: discriminator steps per generator step (the paper: 5).
        input_key: where the real samples are in a list or dict batch (labels, if any, are ignored).
        noise_seed: seed of the noise; None takes the run seed.
        generator_loss: ``"non_saturating"`` (default) or ``"saturating"`` (the released mixup GAN code).
        num_threads: torch's intra-op threads while fitting on the CPU (restored at the end of fit); None leaves
            torch's setting. Tiny nets gain nothing from more threads and lose much when another process busies
            a core (measured: 2 threads ran a GAN 7× slower than 1 with one of 2 cores busy); the GAN config
            sets 1. Ignored on an accelerator.

    Example:
        >>> from lightning_mixup.models.nets import MLP
        >>> gan = GANModule(MLP(2, 2, hidden=512, depth=3), MLP(2, 1, hidden=512, depth=3), latent_dim=2)
        >>> gan.sample(16).shape
        torch.Size([16, 2])
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        latent_dim: int,
        g_optimizer: OptimizerFactory | None = None,
        d_optimizer: OptimizerFactory | None = None,
        n_critic: int = 5,
        input_key: int | str = 0,
        noise_seed: int | None = None,
        generator_loss: str = "non_saturating",
        num_threads: int | None = None,
    ) -> None:
        super().__init__()
        for name, net in (("generator", generator), ("discriminator", discriminator)):
            if not isinstance(net, nn.Module):
                raise TypeError(f"{name} must be an nn.Module, got {type(net).__name__}")
        check_positive_int("latent_dim", latent_dim)
        check_positive_int("n_critic", n_critic)
        if noise_seed is not None and (isinstance(noise_seed, bool) or not isinstance(noise_seed, int)):
            raise TypeError(f"noise_seed must be an int or None, got {noise_seed!r}")
        if not isinstance(generator_loss, str):
            raise TypeError(f"generator_loss must be a str, got {generator_loss!r}")
        check_choice("generator_loss", generator_loss, GENERATOR_LOSSES)
        if num_threads is not None:
            check_positive_int("num_threads", num_threads)
        self.automatic_optimization = False
        self.save_hyperparameters(ignore=["generator", "discriminator", "g_optimizer", "d_optimizer"])
        self.generator = generator
        self.discriminator = discriminator
        self.latent_dim = latent_dim
        self.g_optimizer_factory = g_optimizer
        self.d_optimizer_factory = d_optimizer
        self.n_critic = n_critic
        self.input_key = input_key
        self.noise_seed = noise_seed
        self.generator_loss = generator_loss
        self.num_threads = num_threads
        self._threads_before: int | None = None
        self.d_steps = 0
        self.g_steps = 0
        self._noise_rng: torch.Generator | None = None
        self._discriminator_batch: DiscriminatorBatch | None = None

    # ---- the extension point -------------------------------------------------------------------

    def set_discriminator_batch(self, fn: DiscriminatorBatch | None) -> None:
        """Register ``fn(real, fake) -> (inputs, targets) | None`` as the discriminator's batch (None: plain)."""
        current = self._discriminator_batch
        if fn is not None and current is not None and current != fn:
            raise RuntimeError(
                f"{type(self).__name__} already builds its discriminator batch with {current!r}; "
                f"only one callback may change it, got a second: {fn!r}"
            )
        self._discriminator_batch = fn

    def discriminator_batch(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """What one discriminator step trains on: the registered function's ``(inputs, targets)``, else plain."""
        built = None if self._discriminator_batch is None else self._discriminator_batch(real, fake)
        inputs, targets = plain_discriminator_batch(real, fake) if built is None else built
        if targets.shape != (inputs.shape[0],):
            raise ValueError(
                f"the discriminator batch has {inputs.shape[0]} inputs but targets of shape {list(targets.shape)}; "
                "expected one target in [0, 1] per input"
            )
        return inputs, targets

    # ---- sampling ------------------------------------------------------------------------------

    def noise(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` noise vectors ``[n, latent_dim]`` from ``generator`` (default: the module's own), on the
        module's device."""
        if generator is None:
            generator = self._noise_generator()
        return torch.randn(n, self.latent_dim, generator=generator).to(self.device)

    def forward(self, z: Tensor) -> Tensor:
        return self.generator(z)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` generated samples (no gradient)."""
        return self.generator(self.noise(n, generator))

    def _noise_generator(self) -> torch.Generator:
        if self._noise_rng is None:
            base = self.noise_seed if self.noise_seed is not None else int(os.environ.get("PL_GLOBAL_SEED", 0))
            rank = self.trainer.global_rank if self._trainer is not None else 0
            self._noise_rng = torch.Generator().manual_seed((base * 1_000_003 + rank) & ((1 << 63) - 1))
        return self._noise_rng

    # ---- training ------------------------------------------------------------------------------

    def _logits(self, x: Tensor) -> Tensor:
        logits = self.discriminator(x)
        if logits.shape not in ((x.shape[0],), (x.shape[0], 1)):
            raise ValueError(
                f"the discriminator must return one logit per sample, [{x.shape[0]}] or [{x.shape[0]}, 1], "
                f"got shape {list(logits.shape)}"
            )
        return logits.reshape(-1).float()

    def _real(self, batch: Any) -> Tensor:
        real = batch if isinstance(batch, Tensor) else batch[self.input_key]
        if not isinstance(real, Tensor) or not real.is_floating_point() or real.ndim < 2:
            got = f"shape {list(real.shape)}, dtype {real.dtype}" if isinstance(real, Tensor) else type(real).__name__
            raise ValueError(f"{type(self).__name__} expects real samples as a float tensor [B, ...], got {got}")
        return real

    def training_step(self, batch: Any, batch_idx: int) -> None:
        real = self._real(batch)
        d_opt, g_opt = self.optimizers()
        n = real.shape[0]
        with torch.no_grad():
            fake = self.generator(self.noise(n))
        if fake.shape != real.shape:
            raise ValueError(
                f"the generator makes samples of shape {list(fake.shape[1:])} but the data's samples have shape "
                f"{list(real.shape[1:])}; pair the nets with the data "
                "(e.g. an MLP for 2-D points, conv nets for images)"
            )
        inputs, targets = self.discriminator_batch(real, fake)
        d_loss = F.binary_cross_entropy_with_logits(self._logits(inputs), targets.float())
        d_opt.zero_grad()
        self.manual_backward(d_loss)
        d_opt.step()
        self.d_steps += 1
        self.log("train/d_loss", d_loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)
        if self.d_steps % self.n_critic:
            return
        self.toggle_optimizer(g_opt)
        g_loss = generator_loss(self._logits(self.generator(self.noise(n))), self.generator_loss)
        g_opt.zero_grad()
        self.manual_backward(g_loss)
        g_opt.step()
        self.untoggle_optimizer(g_opt)
        self.g_steps += 1
        self.log("train/g_loss", g_loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=n)

    def on_fit_start(self) -> None:
        if self.num_threads is not None and self.device.type == "cpu":
            self._threads_before = torch.get_num_threads()
            torch.set_num_threads(self.num_threads)

    def on_fit_end(self) -> None:
        self._restore_threads()

    def teardown(self, stage: str) -> None:
        self._restore_threads()

    def _restore_threads(self) -> None:
        if self._threads_before is not None:
            torch.set_num_threads(self._threads_before)
            self._threads_before = None

    def on_train_epoch_end(self) -> None:
        self.log("gan/iterations", float(self.g_steps), on_step=False, on_epoch=True, sync_dist=True)

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """``[d_optimizer, g_optimizer]``, each over its own net's parameters."""
        d_factory = self.d_optimizer_factory or torch.optim.Adam
        g_factory = self.g_optimizer_factory or torch.optim.Adam
        return [d_factory(self.discriminator.parameters()), g_factory(self.generator.parameters())]

    # ---- checkpoints ---------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Save the step counters and every rank's noise generator (gathered under DDP: the file is rank 0's)."""
        noise = gather_ranks(self._noise_generator().get_state(), self._world_size())
        checkpoint["gan"] = {"d_steps": self.d_steps, "g_steps": self.g_steps, "noise": noise}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["gan"]
        self.d_steps, self.g_steps = state["d_steps"], state["g_steps"]
        rank = self.trainer.global_rank if self._trainer is not None else 0
        mine = own_part(state["noise"], rank, self._world_size(), type(self).__name__, "noise generators")
        if mine is not None:
            self._noise_generator().set_state(mine)

    def _world_size(self) -> int:
        return self.trainer.world_size if self._trainer is not None else 1

"""The PuzzleMix callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch

from lightning_mixup.callbacks.base import MixStep
from lightning_mixup.callbacks.saliency_pass import LogitsFrom, SaliencyPassMixer
from lightning_mixup.checks import check_channel_stats, check_number
from lightning_mixup.functional import MixedBatch
from lightning_mixup.functional.puzzlemix import (
    PuzzleMixParams,
    adversarial_noise,
    adversarial_start,
    puzzlemix_batch,
)
from lightning_mixup.functional.puzzlemix.mix import GRIDS
from lightning_mixup.functional.saliency import input_saliency


class PuzzleMix(SaliencyPassMixer):
    """PuzzleMix (Kim, Choo & Song, ICML 2020, arXiv 2009.06962): each pair is mixed under a block mask
    chosen to keep both images' salient regions (a graph-cut-style energy, solved for the whole batch at
    once), after the salient blocks have been moved into the region each image keeps (transport).
    Targets are weighted by each sample's mask mean. Needs square images ``[B, C, S, S]``.

    Saliency is the gradient of the loss with respect to the input, from an extra forward and backward
    pass of ``pl_module(x)`` (which must return logits ``[B, num_classes]``; see ``logits_from`` for a module
    without ``forward``) in eval mode, computed with ``torch.autograd.grad`` on the input only: no parameter
    gradient is touched and DDP does not see it. That pass costs about one more training step's forward and
    backward. Grids that do not fit the images are refused in ``setup`` when the datamodule has an
    ``input_shape`` (ours do), else on the first batch, with the grids that fit.

    Args:
        alpha: λ ~ Beta(α, α), the mask mean the prior pulls towards.
        beta, gamma, eta, neigh_size, n_labels, grids, transport, t_eps, t_size, iterations: the mask and
            transport options of :class:`~lightning_mixup.functional.puzzlemix.PuzzleMixParams` (official
            CIFAR defaults).
        adv_p: probability of adding adversarial noise to each of the two images of a pair (one coin each
            per batch); ``adv_eps``: its bound in pixel levels (``/255``), as in the official code.
        clean_lam: weight of the loss on the clean batch; > 0 runs the saliency pass in train mode and hands
            ``clean_lam · CE(clean)`` to the module through :class:`AcceptsAuxiliaryLoss` (the official
            code's ``2·clean_lam/num_classes`` factor converts to its BCE-over-classes loss; with a
            cross-entropy loss the weight is ``clean_lam``).
        logits_from: how the saliency pass gets logits from the input ``x``: None calls ``pl_module(x)`` (its
            ``forward``); a submodule name such as ``"net"`` calls ``pl_module.net(x)``; a callable is called as
            ``logits_from(pl_module, x)``. A module without ``forward`` and no ``logits_from`` fails in ``setup``.
        mean, std: the input normalisation (per channel or scalar), to compare pixels in [0, 1] space;
            e.g. CIFAR-100: ``mean=[0.507, 0.487, 0.441]``, ``std=[0.267, 0.256, 0.276]``. None: the
            datamodule's ``mean`` / ``std`` attributes when it has them (ours do), else 0 and 1.
        **kwargs: ``p``, ``per_sample`` (one λ prior per sample; the grid is drawn once per batch, as in the
            official code), ``partner``, ... as for :class:`Mixer`.

    The math (saliency, adversarial noise, mask, transport) is in :mod:`lightning_mixup.functional.puzzlemix`
    and :mod:`lightning_mixup.functional.saliency`: ``puzzlemix_batch`` is the functional op.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[PuzzleMix()], logger=False, enable_checkpointing=False)
    """

    def __init__(
        self,
        alpha: float = 1.0,
        beta: float = 1.2,
        gamma: float = 0.5,
        eta: float = 0.2,
        neigh_size: int = 4,
        n_labels: int = 3,
        grids: Sequence[int] = GRIDS,
        transport: bool = True,
        t_eps: float = 0.8,
        t_size: int = 4,
        adv_p: float = 0.0,
        adv_eps: float = 10.0,
        clean_lam: float = 0.0,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        iterations: int | None = None,
        logits_from: str | LogitsFrom | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(clean_lam, logits_from, alpha=alpha, reuse_buffer=False, **kwargs)
        self.params = PuzzleMixParams(
            beta, gamma, eta, neigh_size, n_labels, tuple(grids) if isinstance(grids, Sequence) else grids,
            transport, t_eps, t_size, iterations,
        )  # fmt: skip
        self.adv_p = check_number("adv_p", adv_p, 0.0, 1.0)
        self.adv_eps = check_number("adv_eps", adv_eps, 0.0)
        self.mean = check_channel_stats("mean", mean, positive=False)
        self.std = check_channel_stats("std", std, positive=True)
        self._normalisation: tuple[tuple[float, ...], tuple[float, ...]] = ((0.0,), (1.0,))

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "n_labels": self.params.n_labels, "clean_lam": self.clean_lam}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        datamodule = getattr(trainer, "datamodule", None)  # set up before the callbacks: its statistics are known
        shape = getattr(datamodule, "input_shape", None)
        if isinstance(shape, Sequence) and len(shape) == 3 and shape[-1] == shape[-2] and isinstance(shape[-1], int):
            self.params.check_side(shape[-1])  # else on the first batch, by check_image
        self._normalisation = (
            self.mean or check_channel_stats("datamodule.mean", getattr(datamodule, "mean", None), False) or (0.0,),
            self.std or check_channel_stats("datamodule.std", getattr(datamodule, "std", None), True) or (1.0,),
        )

    def mix(self, step: MixStep) -> MixedBatch:
        x, generator = step.x, step.generator
        self.params.check_image(x)
        targets = step.targets.read(step.target, x)
        perturb = (False, False)
        if self.adv_p > 0:
            coins = torch.rand(2, generator=generator, device=generator.device) < self.adv_p
            perturb = (bool(coins[0]), bool(coins[1]))
        mean, std = (torch.tensor(v, dtype=x.dtype, device=x.device).view(1, -1, 1, 1) for v in self._normalisation)
        eps = self.adv_eps / 255
        noise, x_in = adversarial_start(x, mean, std, eps, generator) if any(perturb) else (None, x)
        grad = self._input_grad(x_in, targets)
        if noise is not None:
            noise = adversarial_noise(noise, grad, eps, generator)
        return puzzlemix_batch(
            x, targets, step.targets, input_saliency(grad), self.alpha, self.params,
            per_sample=self.per_sample, partner=self.partner, generator=generator,
            mean=mean, std=std, noise=noise, perturb=perturb,
        )  # fmt: skip

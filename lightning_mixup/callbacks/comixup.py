"""The Co-Mixup callback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar


from lightning_mixup.callbacks.base import MixStep
from lightning_mixup.callbacks.saliency_pass import LogitsFrom, SaliencyPassMixer
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.comixup import CoMixupParams, comixup_batch
from lightning_mixup.functional.saliency import input_saliency


class CoMixup(SaliencyPassMixer):
    """Co-Mixup (Kim, Choo, Jeong & Song, ICLR 2021, arXiv 2102.03065): the batch is cut into partitions of
    ``m_part`` inputs and each partition gives as many outputs, every output a block mosaic of several of its inputs
    (or half-half blends of two), the blocks chosen jointly to keep the inputs' saliency, to be smooth and to make
    the outputs diverse (a supermodular penalty on outputs that share inputs). Targets mix up to ``m_part`` labels,
    each weighted by its input's share of the output. Needs square images ``[B, C, S, S]``; gives mixed targets only
    (``targets="pair"`` cannot hold many labels).

    Saliency is the input gradient of the task loss, as for :class:`~lightning_mixup.callbacks.PuzzleMix` (one more
    forward and backward of ``pl_module(x)``, eval mode, parameters untouched; train mode when ``clean_lam > 0``,
    whose clean loss goes to the module through
    :class:`~lightning_mixup.callbacks.AcceptsAuxiliaryLoss`). The functional op is
    :func:`~lightning_mixup.functional.comixup.comixup_batch`.

    The labelling options ``grids``, ``m_part``, ``beta``, ``gamma``, ``eta``, ``omega``, ``thres``, ``thres_type``,
    ``niter``, ``set_resolve``, ``blends``, ``compat_kernel``, ``init`` and ``expansions`` are those of
    :class:`~lightning_mixup.functional.comixup.CoMixupParams` (official CIFAR-100 defaults).

    Args:
        alpha: Dirichlet(α) prior on the inputs' shares (official ``--mixup_alpha 2``).
        clean_lam: weight of the loss on the clean batch (official ``--clean_lam 1`` with its BCE-over-classes loss
            scaled by ``2/num_classes``; with cross-entropy the weight is ``clean_lam``). 0 (the default here) needs
            no ``add_auxiliary_loss`` on the module; the Hydra config sets the official 1.
        logits_from: how the saliency pass gets logits: None calls ``pl_module(x)``, a submodule name such as
            ``"net"`` calls ``pl_module.net(x)``, a callable is called as ``logits_from(pl_module, x)``.
        **kwargs: ``p``, ``per_sample`` (one Dirichlet draw per partition, the official code, by default; False:
            one for the batch), ``partner`` (how the batch is shuffled into partitions), ... as for :class:`Mixer`.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[CoMixup(m_part=20)], logger=False, enable_checkpointing=False)
    """

    FORMS: ClassVar[tuple[str, ...]] = ("mixed",)

    def __init__(
        self,
        alpha: float = 2.0,
        grids: Sequence[int] = (4,),
        m_part: int = 20,
        beta: float = 0.32,
        gamma: float = 1.0,
        eta: float = 0.05,
        omega: float = 0.001,
        thres: float = 0.83,
        thres_type: str = "hard",
        niter: int = 4,
        set_resolve: bool = True,
        blends: bool = True,
        compat_kernel: int = 8,
        init: str = "random",
        expansions: int = 4,
        clean_lam: float = 0.0,
        logits_from: str | LogitsFrom | None = None,
        per_sample: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(clean_lam, logits_from, alpha=alpha, per_sample=per_sample, reuse_buffer=False, **kwargs)
        self.params = CoMixupParams(
            tuple(grids) if isinstance(grids, Sequence) and not isinstance(grids, str) else grids,
            m_part, beta, gamma, eta, omega, thres, thres_type, niter, set_resolve, blends, compat_kernel, init,
            expansions,
        )  # fmt: skip

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "m_part": self.params.m_part, "clean_lam": self.clean_lam}

    def mix(self, step: MixStep) -> MixedBatch:
        x = step.x
        self.params.check_image(x)
        targets = step.targets.read(step.target, x)
        saliency = input_saliency(self._input_grad(x, targets))
        return comixup_batch(
            x, targets, step.targets, saliency, self.alpha, self.params,
            per_sample=self.per_sample, partner=self.partner, generator=step.generator,
        )  # fmt: skip

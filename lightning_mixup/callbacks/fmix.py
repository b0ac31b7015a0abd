"""The FMix callback."""

from __future__ import annotations

from typing import Any

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.checks import check_bool
from lightning_mixup.functional import MixedBatch, fmix_batch
from lightning_mixup.functional.fmix import check_fmix_params


class FMix(Mixer):
    """FMix (Harris et al., arXiv 2002.12047): binary masks from thresholded low-frequency Fourier noise.

    Args:
        decay_power: exponent of the noise spectrum's ``1/f`` decay; larger gives blobbier masks (paper: 3).
        max_soft: width of a soft edge around the threshold, as a fraction of the pixels (0: binary).
        reformulate: the paper's reformulation (official ``reformulate=True``): λ ~ Beta(α+1, α) and the targets
            are the first image's own label alone (the mix is an augmentation of it), not a mix of the two.
        **kwargs: ``p``, ``per_sample``, ``partner``, ... as for :class:`Mixer`. Needs ``[B, C, H, W]``.

    The functional op is :func:`~lightning_mixup.functional.fmix_batch`.

    Example:
        >>> from lightning import Trainer
        >>> trainer = Trainer(callbacks=[FMix(alpha=1.0, decay_power=3.0)], logger=False, enable_checkpointing=False)
    """

    def __init__(
        self,
        alpha: float = 1.0,
        decay_power: float = 3.0,
        max_soft: float = 0.0,
        reformulate: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(alpha, **kwargs)
        check_fmix_params(decay_power, max_soft)
        self.decay_power = float(decay_power)
        self.max_soft = float(max_soft)
        self.reformulate = check_bool("reformulate", reformulate)

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "decay_power": self.decay_power, "max_soft": self.max_soft}

    def mix(self, step: MixStep) -> MixedBatch:
        return fmix_batch(
            step.x,
            step.target,
            step.targets,
            self.alpha,
            decay_power=self.decay_power,
            max_soft=self.max_soft,
            reformulate=self.reformulate,
            **self.batch_options(step),
        )

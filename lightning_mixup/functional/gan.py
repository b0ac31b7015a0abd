"""mixup for GAN discriminators (Zhang, Cisse, Dauphin, Lopez-Paz, ICLR 2018, arXiv 1710.09412, §3.7):
``max_g min_d E ℓ(d(λx + (1−λ)g(z)), λ)``, the discriminator's targets being λ itself."""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.sampling import expand_lam, sample_lam


def discriminator_mixup(real: Tensor, fake: Tensor, lam: Tensor | float) -> Tensor:
    """``λ·real + (1−λ)·fake`` for a scalar or per-sample ``lam``; shapes must agree.

    Example:
        >>> discriminator_mixup(torch.ones(2, 3), torch.zeros(2, 3), torch.tensor([0.25, 1.0]))
        tensor([[0.2500, 0.2500, 0.2500],
                [1.0000, 1.0000, 1.0000]])
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real samples of shape {list(real.shape)} cannot be mixed with fakes of shape {list(fake.shape)}"
        )
    return torch.lerp(fake, real, expand_lam(lam, real))


def gan_mixup_batch(
    real: Tensor,
    fake: Tensor,
    alpha: float = 0.2,
    *,
    per_sample: bool = True,
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Draw λ ~ Beta(α, α) (one per pair, or one for the batch) and return the discriminator's batch: the mixes,
    their targets λ ``[B]`` (the probability of "real"), and λ.

    Example:
        >>> out = gan_mixup_batch(torch.ones(4, 2), torch.zeros(4, 2), generator=torch.Generator().manual_seed(0))
        >>> bool(torch.allclose(out.input[:, 0], out.target)), out.lam.shape
        (True, torch.Size([4]))
    """
    lam = sample_lam(alpha, real.shape[0] if per_sample else None, generator=generator, device=real.device)
    lam = lam.to(real.device)
    return MixedBatch(discriminator_mixup(real, fake, lam), lam.float().expand(real.shape[0]), lam)

"""mixup for GAN discriminators (Zhang, Cisse, Dauphin, Lopez-Paz, ICLR 2018, arXiv 1710.09412, §3.7):
``max_g min_d E ℓ(d(λx + (1−λ)g(z)), λ)``, the discriminator's targets being λ itself.

Two recipes, chosen by options of :func:`gan_mixup_batch`:

* ``pairs="real_fake"``, ``lam_dist="beta"`` (our default, the paper's formula): each real sample is mixed with
  one fake, λ ~ Beta(α, α), target λ.
* ``pairs="pooled"``, ``lam_dist="uniform"`` (the released code, hongyi-zhang/mixup ``gan/example_gan.py``):
  real and fake samples are pooled with labels 1 and 0 and the pool is mixed with a shuffled copy of itself, so
  real–real, fake–fake and real–fake pairs all occur; λ ~ U(0, m) per sample (``lam_bound`` m, the released
  script sweeps 0.1, 0.2, 0.5, 1); the target is the mixed label ``λ·l_i + (1−λ)·l_j``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_mixup.checks import check_bool, check_choice, check_number
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.sampling import _generator_device, check_alpha, expand_lam, partners, sample_lam

PAIRS: tuple[str, ...] = ("real_fake", "pooled")
"""Which samples a discriminator mix pairs: each real with a fake, or any two of the pooled reals and fakes."""
LAM_DISTS: tuple[str, ...] = ("beta", "uniform")
"""λ ~ Beta(α, α) (the paper's formula) or λ ~ U(0, lam_bound) (the released code)."""


def check_gan_mixup_options(pairs: object, lam_dist: object, lam_bound: object) -> tuple[str, str, float]:
    """Validate ``pairs``, ``lam_dist`` and ``lam_bound`` (a number in (0, 1]); return them."""
    for name, value in (("pairs", pairs), ("lam_dist", lam_dist)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {value!r}")
    check_choice("pairs", pairs, PAIRS)
    check_choice("lam_dist", lam_dist, LAM_DISTS)
    bound = check_number("lam_bound", lam_bound, 0.0, 1.0, open_low=True, what="a number in (0, 1]")
    return pairs, lam_dist, bound


def sample_gan_lam(
    size: int | None,
    alpha: float = 0.2,
    lam_dist: str = "beta",
    lam_bound: float = 1.0,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """λ ~ Beta(α, α) or U(0, lam_bound): a 0-d tensor when ``size`` is None, else ``[size]`` (float32).

    Example:
        >>> lam = sample_gan_lam(1000, lam_dist="uniform", lam_bound=0.2, generator=torch.Generator().manual_seed(0))
        >>> bool((lam >= 0).all() and (lam <= 0.2).all())
        True
    """
    check_choice("lam_dist", lam_dist, LAM_DISTS)
    if lam_dist == "beta":
        return sample_lam(alpha, size, generator=generator, device=device)
    check_number("lam_bound", lam_bound, 0.0, 1.0, open_low=True, what="a number in (0, 1]")
    dev = _generator_device(generator, device)
    lam = torch.rand(1 if size is None else int(size), generator=generator, device=dev) * float(lam_bound)
    return lam[0] if size is None else lam


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


def pooled_discriminator_mixup(real: Tensor, fake: Tensor, lam: Tensor | float, index: Tensor) -> tuple[Tensor, Tensor]:
    """Mix the pool ``cat(real, fake)`` (labels 1 and 0) with its permutation ``pool[index]``: returns the mixes
    ``λ·pool + (1−λ)·pool[index]`` ``[2B, ...]`` and their targets ``λ·label + (1−λ)·label[index]`` ``[2B]``.

    Example:
        >>> x, t = pooled_discriminator_mixup(torch.ones(1, 2), torch.zeros(1, 2), 0.25, torch.tensor([1, 0]))
        >>> x.tolist(), t.tolist()
        ([[0.25, 0.25], [0.75, 0.75]], [0.25, 0.75])
    """
    if real.shape != fake.shape:
        raise ValueError(
            f"real samples of shape {list(real.shape)} cannot be mixed with fakes of shape {list(fake.shape)}"
        )
    pool = torch.cat((real, fake))
    labels = torch.cat((real.new_ones(real.shape[0]), fake.new_zeros(fake.shape[0]))).float()
    if index.shape != (pool.shape[0],):
        raise ValueError(
            f"index must have shape [{pool.shape[0]}] (one partner per pooled sample), got {list(index.shape)}"
        )
    index = index.to(pool.device)
    mixes = torch.lerp(partners(pool, index), pool, expand_lam(lam, pool))
    targets = torch.lerp(partners(labels, index), labels, expand_lam(lam, labels).float())
    return mixes, targets


def gan_mixup_batch(
    real: Tensor,
    fake: Tensor,
    alpha: float = 0.2,
    *,
    per_sample: bool = True,
    generator: torch.Generator | None = None,
    pairs: str = "real_fake",
    lam_dist: str = "beta",
    lam_bound: float = 1.0,
) -> MixedBatch:
    """The discriminator's batch: the mixes, their targets (the probability of "real") and λ.

    ``pairs="real_fake"``: ``B`` mixes ``λ_i·real_i + (1−λ_i)·fake_i``, targets λ ``[B]``.
    ``pairs="pooled"``: ``2B`` mixes of the pool ``cat(real, fake)`` with a random permutation of itself (drawn
    from ``generator``), targets the mixed labels ``[2B]`` (see :func:`pooled_discriminator_mixup`).
    λ ~ Beta(α, α) (``lam_dist="beta"``) or U(0, ``lam_bound``) (``"uniform"``), one per mix or one for the batch.

    Example:
        >>> out = gan_mixup_batch(torch.ones(4, 2), torch.zeros(4, 2), generator=torch.Generator().manual_seed(0))
        >>> bool(torch.allclose(out.input[:, 0], out.target)), out.lam.shape
        (True, torch.Size([4]))
        >>> out = gan_mixup_batch(torch.ones(4, 2), torch.zeros(4, 2), pairs="pooled", lam_dist="uniform",
        ...                       lam_bound=0.2, generator=torch.Generator().manual_seed(0))
        >>> out.input.shape, out.target.shape
        (torch.Size([8, 2]), torch.Size([8]))
    """
    check_bool("per_sample", per_sample)
    pairs, lam_dist, lam_bound = check_gan_mixup_options(pairs, lam_dist, lam_bound)
    if lam_dist == "beta":
        check_alpha(alpha)
    n = real.shape[0] * (2 if pairs == "pooled" else 1)
    lam = sample_gan_lam(
        n if per_sample else None, alpha, lam_dist, lam_bound, generator=generator, device=real.device
    ).to(real.device)
    if pairs == "real_fake":
        return MixedBatch(discriminator_mixup(real, fake, lam), lam.float().expand(n), lam)
    device = generator.device if generator is not None else real.device
    index = torch.randperm(n, generator=generator, device=device)
    mixes, targets = pooled_discriminator_mixup(real, fake, lam, index)
    return MixedBatch(mixes, targets, lam)

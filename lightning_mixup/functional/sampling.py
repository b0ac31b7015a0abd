"""Random draws shared by every mixer: λ ~ Beta and the partner index.

Every sampler takes a ``torch.Generator`` so that a caller owns its randomness (a callback keeps one
per run and rank and saves it in its ``state_dict``). Beta variates are ``Ga / (Ga + Gb)`` of two Gamma
variates from ``torch._standard_gamma``, the op behind ``torch.distributions`` that, unlike the
distribution classes, takes a generator; it is drawn in float64 so that small concentrations
(α = 0.1) do not underflow to ``0 / 0``. One op draws the whole batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lightning_mixup.checks import check_choice, check_number, check_positive_int

PARTNERS = ("perm", "flip")


def _generator_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def check_alpha(alpha: object) -> float:
    """Return ``alpha`` as a float if it is a finite number > 0, else raise with the bad value."""
    return check_number("alpha", alpha, 0.0, open_low=True)


def sample_beta(
    a: float,
    b: float,
    size: int | None = None,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Draw ``Beta(a, b)`` variates: a 0-d tensor when ``size`` is None, else shape ``[size]``.

    The draw happens on the generator's device (else ``device``, else CPU); the result is float32.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> lam = sample_beta(1.0, 1.0, 8, generator=g)
        >>> lam.shape, bool(((lam >= 0) & (lam <= 1)).all())
        (torch.Size([8]), True)
    """
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise ValueError(f"Beta parameters must be finite and > 0, got a={a!r}, b={b!r}")
    dev = _generator_device(generator, device)
    dtype = torch.float32 if dev.type == "mps" else torch.float64  # float64: no Gamma underflow at small α
    n = 1 if size is None else int(size)
    concentration = torch.tensor([[float(a)], [float(b)]], dtype=dtype, device=dev).expand(2, n)
    gammas = torch._standard_gamma(concentration, generator=generator)
    lam = (gammas[0] / (gammas[0] + gammas[1])).to(torch.float32)
    return lam[0] if size is None else lam


def sample_lam(
    alpha: float,
    size: int | None = None,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """λ ~ Beta(α, α), the mixing coefficient of mixup (arXiv 1710.09412) and CutMix (arXiv 1905.04899).

    ``size=None`` gives one λ for the batch (0-d tensor); ``size=B`` gives one per sample.

    Example:
        >>> sample_lam(1.0, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([])
    """
    check_alpha(alpha)
    return sample_beta(alpha, alpha, size, generator=generator, device=device)


def partner_index(
    batch_size: int,
    partner: str = "perm",
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Index of each sample's mixing partner: a random permutation (``"perm"``) or the reversed batch (``"flip"``).

    ``"flip"`` pairs sample ``i`` with ``B - 1 - i``, as timm does; with an odd batch the middle sample is
    its own partner and stays unchanged.

    Example:
        >>> partner_index(4, "flip")
        tensor([3, 2, 1, 0])
    """
    check_choice("partner", partner, PARTNERS)
    check_positive_int("batch_size", batch_size)
    dev = _generator_device(generator, device)
    if partner == "flip":
        return torch.arange(batch_size - 1, -1, -1, device=dev)
    return torch.randperm(batch_size, generator=generator, device=dev)


def partners(x: Tensor, index: Tensor) -> Tensor:
    """``x[index]`` along the batch dimension: differentiable, in ``x``'s memory format.

    ``torch.index_select`` where ``x`` is contiguous (it keeps no other layout): on a CPU, ``x[index]``
    (``aten::index``, and ``index_put_`` with accumulation in its backward) took 2–8× as long at 128×32×32² and
    256×3×32².

    Example:
        >>> partners(torch.tensor([[0.0], [1.0], [2.0]]), torch.tensor([2, 0, 1]))
        tensor([[2.],
                [0.],
                [1.]])
    """
    return torch.index_select(x, 0, index) if x.is_contiguous() else x[index]


def expand_lam(lam: Tensor | float, like: Tensor) -> Tensor:
    """λ as a tensor of ``like``'s dtype and device that broadcasts against it: ``[]`` or ``[B, 1, …, 1]``.

    Example:
        >>> expand_lam(torch.tensor([0.2, 0.8]), torch.zeros(2, 3, 4, 4)).shape
        torch.Size([2, 1, 1, 1])
    """
    lam = torch.as_tensor(lam, dtype=like.dtype, device=like.device)
    if lam.ndim == 0:
        return lam
    if lam.ndim != 1 or lam.shape[0] != like.shape[0]:
        raise ValueError(f"lam must be a scalar or have shape [{like.shape[0]}], got shape {list(lam.shape)}")
    return lam.view(-1, *([1] * (like.ndim - 1)))

"""Random draws shared by every mixer: λ ~ Beta and the partner index.

Every sampler takes a ``torch.Generator`` so that a caller owns its randomness (a callback keeps one
per run and rank and saves it in its ``state_dict``). Beta variates are drawn from two Gamma variates
(Marsaglia & Tsang, 2000) because ``torch.distributions.Beta`` cannot take a generator; the Gammas
are handled in log space so that small concentrations (α = 0.1) never produce ``0 / 0``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

PARTNERS = ("perm", "flip")


def _generator_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _log_gamma_variates(shape: float, n: int, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``log G`` for ``n`` draws of ``G ~ Gamma(shape, 1)``, vectorized rejection sampling."""
    boost = shape < 1.0  # Gamma(k) = Gamma(k + 1) · U^(1/k)
    k = shape + 1.0 if boost else shape
    d = k - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    dtype = torch.float32 if device.type == "mps" else torch.float64
    out = torch.empty(n, dtype=dtype, device=device)
    todo = torch.arange(n, device=device)
    while todo.numel() > 0:
        m = todo.numel()
        rounds = 4  # each round accepts with probability > 0.95: four leave ~1e-6 for the next pass
        z = torch.randn(rounds, m, generator=generator, device=device, dtype=dtype)
        u = torch.rand(rounds, m, generator=generator, device=device, dtype=dtype)
        v = (1.0 + c * z) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * z * z + d - d * v + d * torch.log(v.clamp_min(1e-300)))
        first = torch.argmax(ok.to(torch.uint8), dim=0)  # first accepted round per column
        accepted = ok.any(dim=0)
        log_g = math.log(d) + torch.log(v.gather(0, first[None]).squeeze(0).clamp_min(1e-300))
        out[todo[accepted]] = log_g[accepted]
        todo = todo[~accepted]
    if boost:
        u = torch.rand(n, generator=generator, device=device, dtype=dtype)
        out = out + torch.log(u.clamp_min(torch.finfo(dtype).tiny)) / shape
    return out


def check_alpha(alpha: object) -> float:
    """Return ``alpha`` if it is a finite number > 0, else raise with the bad value."""
    if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha!r}")
    return alpha


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
    n = 1 if size is None else int(size)
    log_ga = _log_gamma_variates(float(a), n, generator, dev)
    log_gb = _log_gamma_variates(float(b), n, generator, dev)
    lam = torch.sigmoid(log_ga - log_gb).to(torch.float32)  # Ga / (Ga + Gb)
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
    if partner not in PARTNERS:
        raise ValueError(f"partner must be one of {PARTNERS}, got {partner!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    dev = _generator_device(generator, device)
    if partner == "flip":
        return torch.arange(batch_size - 1, -1, -1, device=dev)
    return torch.randperm(batch_size, generator=generator, device=dev)


def expand_lam(lam: Tensor | float, like: Tensor) -> Tensor:
    """λ as a tensor of ``like``'s dtype and device that broadcasts against it: ``[]`` or ``[B, 1, …, 1]``."""
    lam = torch.as_tensor(lam, dtype=like.dtype, device=like.device)
    if lam.ndim == 0:
        return lam
    if lam.ndim != 1 or lam.shape[0] != like.shape[0]:
        raise ValueError(f"lam must be a scalar or have shape [{like.shape[0]}], got shape {list(lam.shape)}")
    return lam.view(-1, *([1] * (like.ndim - 1)))

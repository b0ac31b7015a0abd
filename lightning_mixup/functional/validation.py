"""Checks of a batch before it is mixed: what was expected and what came, in the message."""

from __future__ import annotations

from torch import Tensor


def check_input(x: object, ndim: int | None = None, method: str = "mixing") -> Tensor:
    """Return ``x`` if it is a floating-point tensor of at least 1 sample (and ``ndim`` dims if given)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{method} expects the input to be a tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{method} expects a floating-point input, got dtype {x.dtype}; convert images to float first")
    if ndim is not None and x.ndim != ndim:
        raise ValueError(f"{method} expects a {ndim}-D input [B, C, H, W], got shape {list(x.shape)}")
    if x.ndim < 1 or x.shape[0] < 1:
        raise ValueError(f"{method} expects a batch of at least one sample, got shape {list(x.shape)}")
    return x


def check_same_batch(x: Tensor, target: Tensor) -> None:
    """Raise if the input and the targets disagree on the batch size."""
    if target.ndim == 0 or target.shape[0] != x.shape[0]:
        raise ValueError(f"input has batch size {x.shape[0]} but targets have shape {list(target.shape)}")

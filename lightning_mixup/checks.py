"""Constructor-argument checks shared by the networks, modules and datamodules: each error quotes the bad value."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor


def check_positive_int(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not ``bool``) greater than 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_int(name: str, value: object, minimum: int | None = None) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not ``bool``) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")


def check_bool(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a ``bool``."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be a bool, got {value!r}")


def check_dropout(value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a probability in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"dropout must be a float in [0, 1), got {value!r}")


def check_number(name: str, value: object, low: float, high: float | None = None) -> float:
    """Return ``value`` as a float; raise ``ValueError`` unless it is a finite number ``>= low`` (and ``<= high``)."""
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) and value >= low
    if not ok or (high is not None and value > high):
        where = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise ValueError(f"{name} must be a finite number {where}, got {value!r}")
    return float(value)


def check_channel_stats(name: str, value: object, positive: bool) -> tuple[float, ...] | None:
    """A normalisation statistic (``mean``/``std``) as a tuple of floats, one or one per channel: a number, a
    sequence or a tensor; None stays None. Raise ``ValueError`` unless every value is finite (and > 0 if
    ``positive``)."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        value = value.flatten().tolist()  # e.g. a datamodule's per-channel statistics
    values = value if isinstance(value, Sequence) and not isinstance(value, str) else (value,)
    ok = len(values) > 0 and all(
        not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and (v > 0 or not positive)
        for v in values
    )
    if not ok:
        what = "a finite number > 0" if positive else "a finite number"
        raise ValueError(f"{name} must be {what} or a sequence of them (one per channel), got {value!r}")
    return tuple(float(v) for v in values)

"""The one validation policy of the package, for constructor arguments and functional options alike.

- a value of the wrong type raises ``TypeError``; a value of the right type out of its range ``ValueError``;
- ``bool`` is refused where a number is expected (``True`` is an ``int`` to Python, never to us);
- every message names the argument, says what was expected and quotes the bad value (``got 1.5``).

Pure Python and torch: the functional ops use it too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

from torch import Tensor

T = TypeVar("T")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a ``bool``, else ``TypeError``."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return value


def check_int(name: str, value: object, minimum: int | None = None) -> int:
    """Return ``value`` if it is an ``int`` (``TypeError`` otherwise) ``>= minimum`` (``ValueError`` otherwise)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int{'' if minimum is None else f' >= {minimum}'}, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_positive_int(name: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` greater than 0 (``TypeError`` for another type, else ``ValueError``)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive int, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def check_number(
    name: str, value: object, low: float, high: float | None = None, *, open_low: bool = False, what: str | None = None
) -> float:
    """Return ``value`` as a float if it is a finite number ``>= low`` (``> low`` when ``open_low``) and ``<= high``.

    ``TypeError`` for a non-number (``bool`` included), ``ValueError`` for NaN, infinity or a value out of range.
    ``what`` replaces the description of the range in the message (e.g. ``"a probability in [0, 1]"``).
    """
    if what is None:
        bound = f"> {low:g}" if open_low else f">= {low:g}"
        what = f"a finite number {bound}" if high is None else f"a finite number in [{low:g}, {high:g}]"
    if not _is_number(value):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    too_low = value <= low if open_low else value < low
    if not math.isfinite(value) or too_low or (high is not None and value > high):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return float(value)


def check_probability(name: str, value: object) -> float:
    """Return ``value`` as a float if it is a number in [0, 1]."""
    return check_number(name, value, 0.0, 1.0, what="a probability in [0, 1]")


def check_choice(name: str, value: T, choices: Sequence[T]) -> T:
    """Return ``value`` if it is one of ``choices``, else ``ValueError`` listing them."""
    if isinstance(value, (list, dict, set)) or value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return value


def check_dropout(value: object) -> float:
    """Return ``value`` if it is a probability in ``[0, 1)``."""
    if not _is_number(value):
        raise TypeError(f"dropout must be a float in [0, 1), got {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"dropout must be a float in [0, 1), got {value!r}")
    return float(value)


def check_channel_stats(name: str, value: object, positive: bool) -> tuple[float, ...] | None:
    """A normalisation statistic (``mean``/``std``) as a tuple of floats, one or one per channel: a number, a
    sequence or a tensor; None stays None. ``TypeError`` unless numbers, ``ValueError`` unless every value is
    finite (and > 0 if ``positive``)."""
    if value is None:
        return None
    if isinstance(value, Tensor):
        value = value.flatten().tolist()  # e.g. a datamodule's per-channel statistics
    values = value if isinstance(value, Sequence) and not isinstance(value, str) else (value,)
    what = "a finite number > 0" if positive else "a finite number"
    message = f"{name} must be {what} or a sequence of them (one per channel), got {value!r}"
    if not all(_is_number(v) for v in values):
        raise TypeError(message)
    if not values or not all(math.isfinite(v) and (v > 0 or not positive) for v in values):
        raise ValueError(message)
    return tuple(float(v) for v in values)

"""Constructor-argument checks shared by the networks."""

from __future__ import annotations


def check_positive_int(name: str, value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is an ``int`` (not ``bool``) greater than 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def check_dropout(value: object) -> None:
    """Raise ``ValueError`` unless ``value`` is a probability in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"dropout must be a float in [0, 1), got {value!r}")

"""Constructor-argument checks shared by the networks, modules and datamodules: each error quotes the bad value."""

from __future__ import annotations


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

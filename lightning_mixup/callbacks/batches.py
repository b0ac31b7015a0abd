"""Reading a training batch by key: the one place that knows list and dict batches, for every callback.

Lightning hands ``on_train_batch_start`` the batch it will pass to ``training_step`` and ignores a returned
one, so a callback that changes the batch writes back into it: a list or a dict, never a tuple.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence
from typing import Any

from torch import Tensor

Key = int | str


def check_key(name: str, key: object) -> Key:
    """Return ``key`` if it can index a batch: an int (list batches) or a str (dict batches); else ``TypeError``."""
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise TypeError(f"{name} must be an int (list batches) or a str (dict batches), got {key!r}")
    return key


def read_batch(batch: Any, keys: Sequence[Key], owner: str, *, writable: bool = True) -> list[Tensor]:
    """The tensors ``batch[key]`` for each key, with an error naming ``owner``, what was expected and what came.

    ``writable``: the caller writes back into the batch, so a tuple (or any immutable batch) is refused with
    the fix; else tuples are read too.

    Example:
        >>> import torch
        >>> x, y = read_batch({"image": torch.zeros(2, 3), "label": torch.ones(2)}, ["image", "label"], "MixUp")
        >>> x.shape, y.shape
        (torch.Size([2, 3]), torch.Size([2]))
    """
    if writable and isinstance(batch, tuple):
        raise TypeError(
            f"{owner} got a tuple batch, which cannot be changed in place (Lightning ignores a returned batch). "
            "Return a list or a dict from your collate_fn (the default collate turns tuple samples into a list)."
        )
    mapping, sequence = (MutableMapping, MutableSequence) if writable else (Mapping, Sequence)
    for key in keys:
        if isinstance(batch, mapping):
            if key not in batch:
                raise KeyError(f"{owner}: the batch dict has no key {key!r}; its keys are {list(batch)}")
        elif isinstance(batch, sequence) and not isinstance(batch, (str, bytes)):
            if not isinstance(key, int) or not -len(batch) <= key < len(batch):
                kind = "list batch" if writable else "batch"
                raise KeyError(f"{owner}: key {key!r} does not index a {kind} of length {len(batch)}")
        else:
            kinds = "a list or dict" if writable else "a list, tuple or dict"
            raise TypeError(f"{owner} expects {kinds} batch, got {type(batch).__name__}")
    values = [batch[key] for key in keys]
    for key, value in zip(keys, values):
        if not isinstance(value, Tensor):
            raise TypeError(f"{owner}: batch[{key!r}] must be a tensor, got {type(value).__name__}")
    return values

"""What the functional property tests share: seeds for hypothesis, dtypes, generators, random images."""

from __future__ import annotations

import torch
from hypothesis import strategies as st

SEEDS = st.integers(min_value=0, max_value=2**32 - 1)
DTYPES = [torch.float32, torch.float64, torch.bfloat16]


def gen(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def draw_images(seed: int, batch: int, channels: int, height: int, width: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(batch, channels, height, width, generator=gen(seed), dtype=torch.float64).to(dtype)


def policy_error(value: object, right_type: type | tuple[type, ...]) -> type[Exception]:
    """What the validation policy (lightning_mixup/checks.py) raises for a bad ``value`` of an argument whose type is
    ``right_type``: ``TypeError`` for another type (``bool`` is never a number), else ``ValueError``."""
    return ValueError if isinstance(value, right_type) and not isinstance(value, bool) else TypeError


@st.composite
def boxes_in(draw: st.DrawFn, height: int, width: int) -> list[int]:
    """A box (y1, y2, x1, x2) inside an H×W image, possibly empty."""
    y1 = draw(st.integers(0, height))
    y2 = draw(st.integers(y1, height))
    x1 = draw(st.integers(0, width))
    x2 = draw(st.integers(x1, width))
    return [y1, y2, x1, x2]

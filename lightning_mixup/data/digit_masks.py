"""A small segmentation set made from the bundled handwritten digits: digits placed on a larger canvas, and a
class-index mask per pixel (0 background, ``1 + d`` on the strokes of digit ``d``).

Nothing is downloaded: the digits are those of :func:`~lightning_mixup.data.digits.load_digits`, split into
train/val/test exactly as :class:`~lightning_mixup.data.DigitsDataModule` splits them, so that no digit of the
validation or test canvases is ever seen in training.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lightning_mixup.checks import check_bool, check_int, check_number, check_positive_int
from lightning_mixup.data.digits import _MAX_PIXEL, load_digits
from lightning_mixup.data.in_memory import InMemoryDataModule, check_fractions, split_indices

DIGIT_SIZE = 8
_CANDIDATES = 64  # positions drawn per digit; the first one clear of the digits already placed is taken


class DictDataset(Dataset):
    """Equal-length tensors served as dicts ``{name: tensor[i]}``; a ``DataLoader`` collates them to dict batches.

    Example:
        >>> ds = DictDataset(image=torch.zeros(3, 1, 4, 4), mask=torch.zeros(3, 4, 4, dtype=torch.long))
        >>> len(ds), sorted(ds[0])
        (3, ['image', 'mask'])
    """

    def __init__(self, **tensors: Tensor) -> None:
        lengths = {name: t.shape[0] for name, t in tensors.items()}
        if not tensors or len(set(lengths.values())) != 1:
            raise ValueError(f"DictDataset needs tensors of one length, got {lengths}")
        self.tensors = tensors

    def __len__(self) -> int:
        return next(iter(self.tensors.values())).shape[0]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {name: t[index] for name, t in self.tensors.items()}


def place_digits(
    digits: Tensor, labels: Tensor, count: int, canvas_size: int, threshold: float, generator: torch.Generator
) -> tuple[Tensor, Tensor]:
    """One canvas per digit of ``digits`` (float ``[N, 8, 8]`` in [0, 1], labels ``[N]``): that digit and
    ``count - 1`` others drawn from the same set, at drawn positions where their 8x8 boxes do not overlap.
    Returns images float ``[N, 1, S, S]`` in [0, 1] and masks long ``[N, S, S]``: 0 background, ``1 + label`` where
    the digit's intensity exceeds ``threshold``.

    Example:
        >>> digits, labels = torch.zeros(2, 8, 8), torch.tensor([3, 7])
        >>> digits[:, 2:6, 3:5] = 1.0
        >>> images, masks = place_digits(digits, labels, 2, 24, 0.5, torch.Generator().manual_seed(0))
        >>> images.shape, masks.shape, sorted(masks.unique().tolist())
        (torch.Size([2, 1, 24, 24]), torch.Size([2, 24, 24]), [0, 4, 8])
    """
    n, span = digits.shape[0], canvas_size - DIGIT_SIZE + 1
    chosen = torch.cat([torch.arange(n)[:, None], torch.randint(n, (n, count - 1), generator=generator)], dim=1)
    corners = torch.empty(n, count, 2, dtype=torch.long)
    for j in range(count):
        candidates = torch.randint(span, (n, _CANDIDATES, 2), generator=generator)
        clear = torch.ones(n, _CANDIDATES, dtype=torch.bool)
        for k in range(j):  # two 8x8 boxes overlap iff both offsets are below 8
            offset = (candidates - corners[:, k, None]).abs()
            clear &= (offset >= DIGIT_SIZE).any(dim=-1)
        if not bool(clear.any(dim=1).all()):
            raise ValueError(f"cannot place {count} digits apart on a {canvas_size}x{canvas_size} canvas; enlarge it")
        corners[:, j] = candidates[torch.arange(n), clear.int().argmax(dim=1)]
    images = torch.zeros(n, canvas_size, canvas_size)
    masks = torch.zeros(n, canvas_size, canvas_size, dtype=torch.long)
    rows = torch.arange(DIGIT_SIZE)
    for j in range(count):
        digit, label = digits[chosen[:, j]], labels[chosen[:, j]].long()
        ys = (corners[:, j, 0, None] + rows)[:, :, None]  # [N, 8, 1]
        xs = (corners[:, j, 1, None] + rows)[:, None, :]  # [N, 1, 8]
        batch = torch.arange(n)[:, None, None]
        images[batch, ys, xs] = digit
        masks[batch, ys, xs] = torch.where(digit > threshold, 1 + label[:, None, None], 0)
    return images.unsqueeze(1), masks


class DigitMasksDataModule(InMemoryDataModule):
    """Segmentation of handwritten digits: ``digits_per_image`` bundled 8x8 digits on a ``canvas_size`` canvas,
    with an 11-class mask (0 background, ``1 + d`` on the strokes of digit ``d``: the pixels whose intensity
    exceeds ``threshold`` of the maximum).

    Batches are dicts ``{"image": float32 [B, 1, S, S], "mask": int64 [B, S, S]}``. Each split has one canvas per
    digit of the split (the digits split as :class:`~lightning_mixup.data.DigitsDataModule` does, by
    ``split_seed``); the other digits of a canvas come from the same split. Layout depends only on ``layout_seed``,
    the train order only on ``shuffle_seed``. Images are standardised with the train split's mean/std (``mean`` /
    ``std`` after :meth:`setup`) if ``normalize``. The whole set lives in memory (about 3 MB at 24x24).

    Example:
        >>> dm = DigitMasksDataModule(batch_size=16)
        >>> dm.setup("fit")
        >>> batch = next(iter(dm.train_dataloader()))
        >>> batch["image"].shape, batch["mask"].shape, batch["mask"].dtype
        (torch.Size([16, 1, 24, 24]), torch.Size([16, 24, 24]), torch.int64)
    """

    num_classes: int = 11

    def __init__(
        self,
        batch_size: int = 16,
        canvas_size: int = 24,
        digits_per_image: int = 2,
        threshold: float = 0.5,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        layout_seed: int = 0,
        shuffle_seed: int = 0,
        normalize: bool = True,
        num_workers: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(batch_size, shuffle_seed, num_workers=num_workers, drop_last=drop_last)
        check_fractions(val_fraction, test_fraction)
        check_int("canvas_size", canvas_size, DIGIT_SIZE)
        check_positive_int("digits_per_image", digits_per_image)
        check_number("threshold", threshold, 0.0, 1.0, what="a number in [0, 1)")
        if threshold >= 1.0:
            raise ValueError(f"threshold must be a number in [0, 1), got {threshold!r}")
        check_int("split_seed", split_seed)
        check_int("layout_seed", layout_seed)
        check_bool("normalize", normalize)
        self.save_hyperparameters()
        self.canvas_size = canvas_size
        self.digits_per_image = digits_per_image
        self.threshold = float(threshold)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.layout_seed = layout_seed
        self.normalize = normalize
        self.input_shape: tuple[int, int, int] = (1, canvas_size, canvas_size)
        self.mean: float | None = None
        self.std: float | None = None

    def build_splits(self) -> tuple[DictDataset, DictDataset, DictDataset]:
        """Split the digits, lay out each split's canvases, standardise the images."""
        images, labels = load_digits()
        digits = images.float() / _MAX_PIXEL
        splits = []
        for part, indices in enumerate(split_indices(labels, self.val_fraction, self.test_fraction, self.split_seed)):
            generator = torch.Generator().manual_seed(self.layout_seed * 3 + part)  # each split its own layout
            x, mask = place_digits(
                digits[indices], labels[indices], self.digits_per_image, self.canvas_size, self.threshold, generator
            )
            splits.append((x, mask))
        if self.normalize:
            self.mean = splits[0][0].mean().item()
            self.std = splits[0][0].std().item()
            splits = [((x - self.mean) / self.std, mask) for x, mask in splits]
        train, val, test = (DictDataset(image=x, mask=mask) for x, mask in splits)
        return train, val, test

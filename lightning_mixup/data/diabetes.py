"""The diabetes regression data set (442 patients, 10 features, one target) shipped inside the package.

The data are those of Efron et al., "Least Angle Regression" (2004), as redistributed by scikit-learn
(``load_diabetes(scaled=False)``); see ``DIABETES_LICENSE.txt`` next to this module. Loading needs only torch.
"""

from __future__ import annotations

import csv
import io
from importlib import resources

import torch
from torch import Tensor
from torch.utils.data import TensorDataset

from lightning_mixup.checks import check_int, check_positive_int
from lightning_mixup.data.in_memory import InMemoryDataModule, check_fractions, split_indices

_DIABETES_FILE = "diabetes.csv"
FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
"""The columns of the features: age, sex, body mass index, average blood pressure, six blood serum measurements."""


def load_diabetes() -> tuple[Tensor, Tensor]:
    """Load the bundled data as ``(features float64 [442, 10], target float64 [442])``, unscaled: scikit-learn's
    ``load_diabetes(scaled=False)`` exactly. The target measures disease progression one year after baseline.

    Example:
        >>> x, y = load_diabetes()
        >>> x.shape, y.shape, float(y.min()), float(y.max())
        (torch.Size([442, 10]), torch.Size([442]), 25.0, 346.0)
    """
    text = resources.files(__package__).joinpath(_DIABETES_FILE).read_text(encoding="ascii")
    rows = list(csv.reader(io.StringIO(text)))
    if tuple(rows[0]) != (*FEATURES, "target"):
        raise ValueError(f"{_DIABETES_FILE}: unexpected header {rows[0]}")
    data = torch.tensor([[float(v) for v in row] for row in rows[1:]], dtype=torch.float64)
    return data[:, :-1], data[:, -1]


def quantile_bins(values: Tensor, bins: int) -> Tensor:
    """The quantile bin ``0 .. bins − 1`` of each value (by rank, ties broken by position): labels that make
    :func:`~lightning_mixup.data.in_memory.split_indices` stratify a regression target.

    Example:
        >>> quantile_bins(torch.tensor([5.0, 1.0, 3.0, 2.0]), 2)
        tensor([1, 0, 1, 0])
    """
    rank = torch.empty(values.shape[0], dtype=torch.long)
    rank[torch.argsort(values, stable=True)] = torch.arange(values.shape[0])
    return rank * bins // values.shape[0]


class DiabetesDataModule(InMemoryDataModule):
    """Train/val/test splits of the bundled diabetes data: regression of disease progression from 10 features.

    Samples are ``(x float32 [10], y float32 [])``; batches collate to a list ``[x, y]`` with ``y`` of shape
    ``[B]``. The split is seeded by ``split_seed`` alone and stratified by target deciles (every split spans the
    range of the target). Features and target are standardised with the *training* split's statistics, stored
    after :meth:`setup` as ``mean`` / ``std`` (tensors ``[10]``) and ``target_mean`` / ``target_std`` (floats):
    a prediction ``p`` of the standardised target is ``p·target_std + target_mean`` in the original units, which
    :class:`~lightning_mixup.models.regressor.Regressor` reads to report its metrics in those units. The train
    order depends only on ``shuffle_seed``.

    Example:
        >>> dm = DiabetesDataModule(batch_size=32)
        >>> dm.setup("fit")
        >>> x, y = next(iter(dm.train_dataloader()))
        >>> x.shape, y.shape, y.dtype
        (torch.Size([32, 10]), torch.Size([32]), torch.float32)
        >>> len(dm.train_set), len(dm.val_set), len(dm.test_set)
        (310, 44, 88)
    """

    input_shape: tuple[int] = (len(FEATURES),)

    def __init__(
        self,
        batch_size: int = 32,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        strata: int = 10,
        num_workers: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(batch_size, shuffle_seed, num_workers=num_workers, drop_last=drop_last)
        check_fractions(val_fraction, test_fraction)
        check_int("split_seed", split_seed)
        check_positive_int("strata", strata)
        self.save_hyperparameters()
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.strata = strata
        self.mean: Tensor | None = None
        self.std: Tensor | None = None
        self.target_mean: float | None = None
        self.target_std: float | None = None

    def build_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """Split the data, then standardise features and target with the training split's statistics."""
        x, y = load_diabetes()
        splits = split_indices(quantile_bins(y, self.strata), self.val_fraction, self.test_fraction, self.split_seed)
        train = splits[0]
        self.mean, self.std = x[train].mean(dim=0).float(), x[train].std(dim=0).clamp_min(1e-8).float()
        self.target_mean, self.target_std = float(y[train].mean()), float(y[train].std())
        xs = ((x - self.mean.double()) / self.std.double()).float()
        ys = ((y - self.target_mean) / self.target_std).float()
        return tuple(TensorDataset(xs[i], ys[i]) for i in splits)  # type: ignore[return-value]

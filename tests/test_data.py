"""Tests for the bundled digits and the synthetic 2-D datamodules."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_mixup.data import DigitsDataModule, Toy2DDataModule, load_digits, make_toy2d
from lightning_mixup.data.in_memory import split_indices


def _split_indices_of(dm: DigitsDataModule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    _, labels = load_digits()
    return split_indices(labels, dm.val_fraction, dm.test_fraction, dm.split_seed)


@pytest.fixture(scope="module")
def digits() -> DigitsDataModule:
    dm = DigitsDataModule(batch_size=32)
    dm.setup("fit")
    return dm


def test_load_digits_raw_tensors() -> None:
    images, labels = load_digits()
    assert images.shape == (1797, 8, 8) and images.dtype == torch.uint8
    assert labels.shape == (1797,) and labels.dtype == torch.uint8
    assert int(images.min()) == 0 and int(images.max()) == 16
    expected_counts = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    assert torch.bincount(labels.long()).tolist() == expected_counts


def test_digits_attributes() -> None:
    dm = DigitsDataModule(image_size=16)
    assert dm.num_classes == 10
    assert dm.input_shape == (1, 16, 16)
    assert dm.hparams["image_size"] == 16


def test_digits_batches_are_lists_with_expected_shapes(digits: DigitsDataModule) -> None:
    for loader in (digits.train_dataloader(), digits.val_dataloader(), digits.test_dataloader()):
        batch = next(iter(loader))
        assert isinstance(batch, list) and len(batch) == 2
        x, y = batch
        assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32
        assert y.shape == (32,) and y.dtype == torch.int64
        assert 0 <= int(y.min()) and int(y.max()) <= 9


def test_digits_split_sizes_disjoint_and_stratified(digits: DigitsDataModule) -> None:
    sizes = [len(ds) for ds in (digits.train_set, digits.val_set, digits.test_set)]
    assert sizes == [1258, 180, 359] and sum(sizes) == 1797
    train, val, test = _split_indices_of(digits)
    union = torch.cat([train, val, test])
    assert torch.equal(union.sort().values, torch.arange(1797))
    for ds in (digits.train_set, digits.val_set, digits.test_set):
        counts = torch.bincount(ds.tensors[1], minlength=10).float()
        assert counts.max() - counts.min() <= 0.05 * len(ds) + 2


def test_digits_split_is_fixed_across_instances_and_depends_on_seed() -> None:
    a = DigitsDataModule(normalize=False)
    b = DigitsDataModule(normalize=False, shuffle_seed=5)
    c = DigitsDataModule(normalize=False, split_seed=1)
    for dm in (a, b, c):
        dm.setup()
    assert torch.equal(a.test_set.tensors[0], b.test_set.tensors[0])
    assert torch.equal(a.val_set.tensors[1], b.val_set.tensors[1])
    assert not torch.equal(a.test_set.tensors[0], c.test_set.tensors[0])


def test_digits_unnormalized_range_and_values() -> None:
    dm = DigitsDataModule(normalize=False, val_fraction=0.0, test_fraction=0.0)
    dm.setup()
    x, y = dm.train_set.tensors
    images, labels = load_digits()
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert torch.equal(x.mul(16).round().to(torch.uint8).squeeze(1), images)
    assert torch.equal(y, labels.long())
    assert dm.mean is None and dm.std is None


def test_digits_normalization_uses_train_stats(digits: DigitsDataModule) -> None:
    x = digits.train_set.tensors[0]
    assert abs(float(x.mean())) < 1e-4
    assert abs(float(x.std()) - 1.0) < 1e-4
    assert digits.mean is not None and 0.0 < digits.mean < 1.0
    assert float(digits.val_set.tensors[0].mean()) != pytest.approx(0.0, abs=1e-4)


def test_digits_upsampling() -> None:
    dm = DigitsDataModule(batch_size=4, image_size=32, normalize=False)
    dm.setup()
    x, _ = next(iter(dm.val_dataloader()))
    assert x.shape == (4, 1, 32, 32) and dm.input_shape == (1, 32, 32)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    _, val, _ = _split_indices_of(dm)
    raw = load_digits()[0][val].unsqueeze(1).float() / 16
    expected = F.interpolate(raw, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.equal(dm.val_set.tensors[0], expected)


def test_digits_shuffling_is_reproducible_and_val_is_ordered() -> None:
    def first_labels(dm: DigitsDataModule, train: bool) -> torch.Tensor:
        dm.setup()
        loader = dm.train_dataloader() if train else dm.val_dataloader()
        return next(iter(loader))[1]

    first = first_labels(DigitsDataModule(), True)
    assert torch.equal(first, first_labels(DigitsDataModule(), True))
    assert not torch.equal(first, first_labels(DigitsDataModule(shuffle_seed=1), True))
    dm = DigitsDataModule(batch_size=180)
    assert torch.equal(first_labels(dm, False), dm.val_set.tensors[1])
    predict_labels = next(iter(dm.predict_dataloader()))[1]
    assert torch.equal(predict_labels, dm.test_set.tensors[1][: dm.batch_size])


def test_digits_drop_last_applies_to_train_only() -> None:
    dm = DigitsDataModule(batch_size=500, drop_last=True)
    dm.setup()
    assert len(dm.train_dataloader()) == 1258 // 500
    assert len(dm.test_dataloader()) == 1


def test_loaders_require_setup() -> None:
    with pytest.raises(RuntimeError, match="setup"):
        DigitsDataModule().train_dataloader()


@pytest.mark.parametrize(
    ("kwargs", "error", "bad"),
    [
        ({"batch_size": 0}, ValueError, "0"),
        ({"batch_size": 2.5}, TypeError, "2.5"),
        ({"batch_size": True}, TypeError, "True"),
        ({"val_fraction": -0.1}, ValueError, "-0.1"),
        ({"test_fraction": 1.0}, ValueError, "1.0"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, ValueError, "0.6"),
        ({"image_size": 0}, ValueError, "0"),
        ({"split_seed": "a"}, TypeError, "'a'"),
        ({"num_workers": -1}, ValueError, "-1"),
        ({"normalize": 1}, TypeError, "1"),
        ({"drop_last": "yes"}, TypeError, "'yes'"),
        ({"shuffle_seed": 1.5}, TypeError, "1.5"),
    ],
)
def test_digits_bad_args_raise_with_value(kwargs: dict, error: type[Exception], bad: str) -> None:
    with pytest.raises(error, match=bad.replace(".", r"\.")):
        DigitsDataModule(**kwargs)


@pytest.mark.parametrize(("name", "n_classes"), [("moons", 2), ("spirals", 2), ("spirals", 4)])
def test_make_toy2d_shapes_balance_determinism(name: str, n_classes: int) -> None:
    x, y = make_toy2d(name, 401, 0.1, torch.Generator().manual_seed(3), n_classes=n_classes)
    assert x.shape == (401, 2) and x.dtype == torch.float32
    assert y.shape == (401,) and y.dtype == torch.int64
    counts = torch.bincount(y, minlength=n_classes)
    assert counts.numel() == n_classes and int(counts.max() - counts.min()) <= 1
    x2, y2 = make_toy2d(name, 401, 0.1, torch.Generator().manual_seed(3), n_classes=n_classes)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    x3, _ = make_toy2d(name, 401, 0.1, torch.Generator().manual_seed(4), n_classes=n_classes)
    assert not torch.equal(x, x3)


def test_make_toy2d_noise_free_geometry() -> None:
    x, y = make_toy2d("moons", 200, 0.0, torch.Generator().manual_seed(0))
    upper = x[y == 0]
    assert torch.allclose(upper.norm(dim=1), torch.ones(len(upper)), atol=1e-5)
    assert bool((upper[:, 1] >= -1e-6).all())
    lower = x[y == 1] - torch.tensor([1.0, 0.5])
    assert torch.allclose(lower.norm(dim=1), torch.ones(len(lower)), atol=1e-5)
    r, _ = make_toy2d("spirals", 200, 0.0, torch.Generator().manual_seed(0))
    assert float(r.norm(dim=1).max()) <= 1.0 + 1e-6


def test_make_toy2d_bad_args() -> None:
    with pytest.raises(ValueError, match=r"\['moons', 'spirals'\], got 'circles'"):
        make_toy2d("circles", 10, 0.1)
    with pytest.raises(ValueError, match="-0.5"):
        make_toy2d("moons", 10, -0.5)
    with pytest.raises(ValueError, match="n_classes=3"):
        make_toy2d("moons", 10, 0.1, n_classes=3)


def test_toy2d_datamodule() -> None:
    dm = Toy2DDataModule("spirals", n_samples=500, batch_size=50, n_classes=3)
    dm.setup()
    assert dm.num_classes == 3 and dm.input_shape == (2,)
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [350, 50, 100]
    x_train = dm.train_set.tensors[0]
    assert torch.allclose(x_train.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(x_train.std(0), torch.ones(2), atol=1e-5)
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, list)
    assert batch[0].shape == (50, 2) and batch[0].dtype == torch.float32
    assert batch[1].dtype == torch.int64
    again = Toy2DDataModule("spirals", n_samples=500, batch_size=50, n_classes=3, shuffle_seed=9)
    again.setup()
    assert torch.equal(dm.test_set.tensors[0], again.test_set.tensors[0])
    assert not torch.equal(next(iter(again.train_dataloader()))[1], batch[1])


def test_toy2d_datamodule_bad_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"\['moons', 'spirals'\], got 'circles'"):
        Toy2DDataModule("circles")
    with pytest.raises(ValueError, match="-3"):
        Toy2DDataModule(batch_size=-3)


def test_label_noise_corrupts_exactly_that_fraction_of_the_training_labels_only() -> None:
    clean, noisy = DigitsDataModule(), DigitsDataModule(label_noise=0.4, label_noise_seed=3)
    clean.setup("fit"), noisy.setup("fit")
    (_, y_clean), (_, y_noisy) = clean.train_set.tensors, noisy.train_set.tensors
    assert int((y_clean != y_noisy).sum()) == round(0.4 * len(y_clean))
    assert torch.equal(clean.val_set.tensors[1], noisy.val_set.tensors[1])  # validation (and test) stay clean
    assert torch.equal(clean.test_set.tensors[1], noisy.test_set.tensors[1])
    again = DigitsDataModule(label_noise=0.4, label_noise_seed=3)
    again.setup("fit")
    assert torch.equal(again.train_set.tensors[1], y_noisy)  # seeded
    wrong = y_noisy[y_clean != y_noisy] - y_clean[y_clean != y_noisy]
    assert len(torch.unique(wrong % 10)) == 9  # spread over every other class
    with pytest.raises(ValueError, match=r"label_noise must be a finite number in \[0, 1\], got 1.5"):
        DigitsDataModule(label_noise=1.5)

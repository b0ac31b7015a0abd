"""CIFAR datamodules on fake archives in the official format; the batched crop/flip against per-sample oracles."""

from __future__ import annotations

import io
import os
import pickle
import urllib.error
import urllib.request
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from conftest import Recorder, make_trainer
from fake_cifar import (
    CIFAR10_FOLDER,
    CIFAR100_FOLDER,
    cifar10_files,
    cifar100_files,
    py2_pickle,
    write_archive,
    write_folder,
)
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_mixup import Classifier, MixUp
from lightning_mixup.data import augment
from lightning_mixup.data.cifar import (
    CIFAR10,
    CIFAR100,
    CIFAR10DataModule,
    CIFAR100DataModule,
    CIFARSpec,
    load_cifar,
    md5sum,
)
from lightning_mixup.models.nets import SmallCNN


def _with_md5(spec: CIFARSpec, md5: str) -> CIFARSpec:
    """The spec with ``md5`` as the official checksum (to accept a fake archive)."""
    return replace(spec, md5=md5)


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any download attempt fails loudly: the tests never touch the network."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError(f"a test tried to download {args[:1]}")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_folder(tmp_path_factory.mktemp("c10"), CIFAR10_FOLDER, cifar10_files())


@pytest.fixture(scope="module")
def cifar10_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("c10a") / CIFAR10.archive, CIFAR10_FOLDER, cifar10_files())


@pytest.fixture(scope="module")
def cifar100_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_archive(tmp_path_factory.mktemp("c100a") / CIFAR100.archive, CIFAR100_FOLDER, cifar100_files())


# ---------------------------------------------------------------- reading the archives


def test_the_fake_files_are_real_numpy_pickles() -> None:
    np = pytest.importorskip("numpy")
    batch = pickle.loads(cifar10_files()["data_batch_1"], encoding="bytes")
    assert isinstance(batch[b"data"], np.ndarray) and batch[b"data"].dtype == np.uint8
    assert batch[b"data"].shape == (20, 3072) and isinstance(batch[b"batch_label"], bytes)


def test_folder_and_archive_give_the_same_tensors(cifar10_dir: Path, cifar10_archive: Path) -> None:
    x, y = load_cifar(CIFAR10, cifar10_dir, train=True)
    assert x.shape == (100, 3, 32, 32) and x.dtype == torch.uint8 and y.dtype == torch.int64
    raw = pickle.loads(cifar10_files()["data_batch_2"], encoding="bytes")
    assert torch.equal(x[20:40].reshape(20, -1), torch.as_tensor(raw[b"data"]))  # row-major R, G, B planes
    assert y[20:40].tolist() == raw[b"labels"]
    spec = _with_md5(CIFAR10, md5sum(cifar10_archive))
    xa, ya = load_cifar(spec, cifar10_archive.parent, train=True)
    assert torch.equal(x, xa) and torch.equal(y, ya)
    xt, _ = load_cifar(spec, cifar10_archive.parent, train=False)
    assert xt.shape == (40, 3, 32, 32)


def test_md5_rejects_a_corrupt_archive_and_accepts_the_right_one(cifar10_archive: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ValueError,
        match=f"has MD5 {md5sum(cifar10_archive)}, but the official cifar-10-python.tar.gz has {CIFAR10.md5}",
    ):
        load_cifar(CIFAR10, cifar10_archive.parent, train=True)
    assert load_cifar(CIFAR10, cifar10_archive.parent, train=True, check_md5=False)[0].shape[0] == 100
    corrupt = tmp_path / CIFAR10.archive
    data = bytearray(cifar10_archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    spec = _with_md5(CIFAR10, md5sum(cifar10_archive))  # the "official" MD5 is the intact file's
    with pytest.raises(ValueError, match="is corrupt or not the official archive"):
        load_cifar(spec, tmp_path, train=True)


def test_cifar100_reads_the_fine_labels(cifar100_archive: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(CIFAR100DataModule, "spec", _with_md5(CIFAR100, md5sum(cifar100_archive)))
    dm = CIFAR100DataModule(data_dir=str(cifar100_archive.parent), batch_size=16)
    dm.setup("fit")
    raw = pickle.loads(cifar100_files()["train"], encoding="bytes")
    assert dm.train_set.tensors[1].tolist() == raw[b"fine_labels"]
    assert dm.num_classes == 100 and dm.mean == (0.5071, 0.4865, 0.4409) and dm.std == (0.2673, 0.2564, 0.2762)


def test_offline_without_files_names_the_files_and_the_folder(tmp_path: Path) -> None:
    dm = CIFAR10DataModule(data_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError) as err:
        dm.setup("fit")
    message = str(err.value)
    for part in (
        str(tmp_path),
        "cifar-10-python.tar.gz",
        "cifar-10-batches-py/",
        CIFAR10.url,
        "CIFAR_DIR",
        "download=True",
    ):
        assert part in message


def test_download_failure_is_reported_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*args: Any, **kwargs: Any) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    dm = CIFAR10DataModule(data_dir=str(tmp_path), download=True)
    with pytest.raises(
        RuntimeError, match=r"could not download https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz.*no network"
    ):
        dm.prepare_data()
    assert list(tmp_path.iterdir()) == []


def test_download_checks_the_md5_before_keeping_the_file(
    cifar10_archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = cifar10_archive.read_bytes()
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: io.BytesIO(payload))
    with pytest.raises(ValueError, match="is corrupt or not the official archive"):
        CIFAR10DataModule(data_dir=str(tmp_path / "a"), download=True).prepare_data()
    assert not any((tmp_path / "a").iterdir())
    monkeypatch.setattr(CIFAR10DataModule, "spec", _with_md5(CIFAR10, md5sum(cifar10_archive)))
    dm = CIFAR10DataModule(data_dir=str(tmp_path / "b"), download=True)
    dm.prepare_data()
    dm.setup("fit")
    assert (tmp_path / "b" / CIFAR10.archive).is_file() and len(dm.train_set) == 100


class _RunsCode:
    """A pickle payload that would call ``os.system`` when loaded by a plain ``pickle.load``."""

    def __reduce__(self) -> tuple[Any, ...]:
        return os.system, ("exit 3",)


def test_a_pickle_that_would_run_code_is_refused(tmp_path: Path) -> None:
    files = cifar10_files()
    files["data_batch_3"] = pickle.dumps({b"data": _RunsCode(), b"labels": []}, protocol=4)
    write_folder(tmp_path, CIFAR10_FOLDER, files)
    with pytest.raises(
        pickle.UnpicklingError, match=r"refusing to load (posix|nt|os)\.system: not part of an official"
    ):
        load_cifar(CIFAR10, tmp_path, train=True)


def test_labels_out_of_range_are_quoted(tmp_path: Path) -> None:
    files = cifar10_files()
    files["test_batch"] = py2_pickle({b"data": torch.zeros(2, 3072, dtype=torch.uint8), b"labels": [3, 12]})
    write_folder(tmp_path, CIFAR10_FOLDER, files)
    with pytest.raises(ValueError, match=r"test_batch: labels must lie in \[0, 10\), got 3..12"):
        load_cifar(CIFAR10, tmp_path, train=False)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"val_size": -1}, ValueError, "val_size must be an int >= 0, got -1"),
        ({"batch_size": 0}, ValueError, "batch_size must be a positive int, got 0"),
        ({"download": "yes"}, TypeError, "download must be a bool, got 'yes'"),
        ({"seed": 1.5}, TypeError, "seed must be an int, got 1.5"),
    ],
)
def test_bad_arguments_are_quoted(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        CIFAR10DataModule(**kwargs)


# ---------------------------------------------------------------- splits and batches


def test_val_split_is_held_out_stratified_and_fixed_by_the_seed(cifar10_dir: Path) -> None:
    def split(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        dm = CIFAR10DataModule(data_dir=str(cifar10_dir), val_size=30, split_seed=seed)
        dm.setup("fit")
        return dm.train_set.tensors[0], dm.val_set.tensors[0]

    train, val = split(0)
    assert len(train) == 70 and len(val) == 30

    def rows(t: torch.Tensor) -> set[tuple[int, ...]]:
        return {tuple(r.tolist()) for r in t.flatten(1)}

    assert not rows(train) & rows(val)
    assert torch.equal(split(0)[1], val) and not torch.equal(split(1)[1], val)
    with pytest.raises(ValueError, match="val_size must be smaller than the 100 training images, got 100"):
        CIFAR10DataModule(data_dir=str(cifar10_dir), val_size=100).setup("fit")


def test_without_val_size_the_test_set_validates(cifar10_dir: Path) -> None:
    dm = CIFAR10DataModule(data_dir=str(cifar10_dir), batch_size=16)
    dm.setup("fit")
    assert len(dm.train_set) == 100 and dm.val_set is dm.test_set and len(dm.test_set) == 40
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (16, 3, 32, 32) and y.dtype == torch.int64


class _Seen(pl.LightningModule):
    """Records the batches that reach the model in each stage."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(3 * 32 * 32, 10)
        self.seen: dict[str, list[list[torch.Tensor]]] = {"train": [], "val": []}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.seen["train"].append([t.clone() for t in batch])
        return torch.nn.functional.cross_entropy(self.layer(batch[0].flatten(1)), batch[1])

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.seen["val"].append([t.clone() for t in batch])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_training_batches_are_augmented_and_evaluation_batches_only_normalised(cifar10_dir: Path) -> None:
    dm = CIFAR10DataModule(data_dir=str(cifar10_dir), batch_size=100, shuffle_seed=3)
    model = _Seen()
    make_trainer([], max_epochs=1, num_sanity_val_steps=0).fit(model, datamodule=dm)
    ((x, y),) = model.seen["train"]
    assert isinstance(model.seen["train"][0], list) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape == (100, 3, 32, 32)
    order = list(dm.train_dataloader().sampler)
    clean = augment.normalize(dm.train_set.tensors[0][order].float() / 255, CIFAR10.mean, CIFAR10.std)
    assert torch.equal(y, dm.train_set.tensors[1][order])
    assert not torch.allclose(x, clean)  # cropped and flipped
    zero = augment.normalize(torch.zeros(1, 3, 1, 1), CIFAR10.mean, CIFAR10.std)
    assert torch.isclose(x, zero.expand_as(x)).any()  # padded pixels are black before normalising
    val = torch.cat([b[0] for b in model.seen["val"]])
    expected = augment.normalize(dm.test_set.tensors[0].float() / 255, CIFAR10.mean, CIFAR10.std)
    torch.testing.assert_close(val, expected)


def test_resume_mid_epoch_reproduces_the_augmented_batches(cifar10_dir: Path, tmp_path: Path) -> None:
    def run(root: Path, ckpt_path: str | None = None) -> tuple[Classifier, list[list[torch.Tensor]]]:
        recorder = Recorder(at_end=True)
        callbacks: list[pl.Callback] = [MixUp(alpha=1.0, seed=5), recorder]
        if ckpt_path is None:
            callbacks.append(ModelCheckpoint(dirpath=root, every_n_train_steps=9, save_top_k=-1))
        trainer = make_trainer(
            callbacks,
            max_epochs=2,
            deterministic=True,
            enable_checkpointing=ckpt_path is None,
            default_root_dir=root,
            num_sanity_val_steps=0,
            limit_val_batches=0,
        )
        torch.manual_seed(0)
        model = Classifier(
            SmallCNN(in_channels=3, width=4), num_classes=10, optimizer=partial(torch.optim.SGD, lr=0.05)
        )
        dm = CIFAR10DataModule(data_dir=str(cifar10_dir), batch_size=16, shuffle_seed=1, seed=2)
        trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
        return model, recorder.batches

    full_model, full = run(tmp_path / "full")
    assert len(full) == 14  # 7 batches of 16 per epoch (the last one of 4)
    resumed_model, resumed = run(tmp_path / "resumed", str(tmp_path / "full" / "epoch=1-step=9.ckpt"))
    assert len(resumed) == 5
    for (x_full, y_full), (x_res, y_res) in zip(full[9:], resumed):
        assert torch.equal(x_full, x_res) and torch.equal(y_full, y_res)
    for p_full, p_res in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(p_full, p_res)


def test_ddp_ranks_take_their_share_of_one_draw(cifar10_dir: Path) -> None:
    x = torch.rand(8, 3, 32, 32)
    draws, states = [], []
    for rank in range(2):
        dm = CIFAR10DataModule(data_dir=str(cifar10_dir), batch_size=8, seed=4)
        draws.append(dm._augment(x, world_size=2, rank=rank))
        states.append(dm.state_dict()["augment_generator"])
    assert not torch.equal(draws[0], draws[1])
    assert torch.equal(states[0], states[1])  # one saved state resumes every rank
    reference = torch.Generator().manual_seed(4)
    offsets = augment.sample_crop_offsets(16, 4, reference)[8:]
    flips = augment.sample_flips(16, 0.5, reference)[8:]
    assert torch.equal(draws[1], augment.hflip(augment.crop(x, offsets, 4), flips))


# ---------------------------------------------------------------- the batched augmentation


def _crop_oracle(x: torch.Tensor, offsets: torch.Tensor, padding: int) -> torch.Tensor:
    """Per-sample crop: copy the overlap of the shifted window into a zero image."""
    out = torch.zeros_like(x)
    _, _, h, w = x.shape
    for i, (top, left) in enumerate(offsets.tolist()):
        dy, dx = top - padding, left - padding  # the window starts at (dy, dx) of the unpadded image
        for r in range(h):
            for c in range(w):
                if 0 <= r + dy < h and 0 <= c + dx < w:
                    out[i, :, r, c] = x[i, :, r + dy, c + dx]
    return out


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_crop_equals_the_per_sample_oracle(device: str, dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(0)
    x = (torch.randint(1, 256, (6, 2, 7, 5), generator=g)).to(dtype).to(device)  # no zero pixel in the images
    offsets = augment.sample_crop_offsets(6, 3, g)
    out = augment.crop(x, offsets, 3)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    expected = _crop_oracle(x.cpu(), offsets, 3)
    assert torch.equal(out.cpu(), expected)
    shifted_out = _crop_oracle(torch.ones_like(x.cpu()), offsets, 3) == 0
    assert torch.equal(out.cpu() == 0, shifted_out)  # zeros exactly where the window leaves the image


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_flip_is_exact_and_where_asked(device: str) -> None:
    x = torch.rand(5, 3, 4, 6, device=device)
    flip = torch.tensor([True, False, True, False, False])
    out = augment.hflip(x, flip)
    assert out.device == x.device and out.dtype == x.dtype
    for i in range(5):
        assert torch.equal(out[i], x[i].flip(-1) if flip[i] else x[i])


@pytest.mark.parametrize("device", ["cpu", CUDA])
def test_random_ops_are_deterministic_given_the_generator(device: str) -> None:
    x = torch.rand(16, 3, 32, 32, device=device)

    def run(seed: int) -> torch.Tensor:
        g = torch.Generator(device=device).manual_seed(seed)
        return augment.random_hflip(augment.random_crop(x, 4, g), 0.5, g)

    out = run(0)
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.equal(out, run(0)) and not torch.equal(out, run(1))


def test_centre_offset_and_no_flip_change_nothing() -> None:
    x = torch.rand(3, 3, 8, 8)
    assert torch.equal(augment.crop(x, torch.full((3, 2), 4), 4), x)
    assert torch.equal(augment.hflip(x, torch.zeros(3, dtype=torch.bool)), x)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: augment.crop(torch.rand(2, 8, 8), torch.zeros(2, 2, dtype=torch.long), 1),
            r"\[B, C, H, W\], got \(2, 8, 8\)",
        ),
        (lambda: augment.crop(torch.rand(2, 1, 8, 8), torch.full((2, 2), 3), 1), r"offsets must lie in \[0, 2\]"),
        (lambda: augment.crop(torch.rand(2, 1, 8, 8), torch.zeros(3, 2, dtype=torch.long), 1), r"shape \[2, 2\]"),
        (lambda: augment.random_crop(torch.rand(2, 1, 8, 8), -1), "padding must be an int >= 0, got -1"),
        (lambda: augment.random_hflip(torch.rand(2, 1, 8, 8), 1.5), r"p must be a probability in \[0, 1\], got 1.5"),
        (lambda: augment.normalize(torch.rand(2, 3, 4, 4), (0.5,), (0.2,)), "one value per channel"),
        (lambda: augment.normalize(torch.rand(2, 1, 4, 4), (0.5,), (0.0,)), r"std must be > 0, got \(0.0,\)"),
    ],
)
def test_bad_augmentation_arguments_are_quoted(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()

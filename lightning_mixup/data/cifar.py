"""CIFAR-10 and CIFAR-100 from the official python archives, without torchvision.

Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009,
https://www.cs.toronto.edu/~kriz/cifar.html. The datamodules read ``cifar-10-python.tar.gz`` /
``cifar-100-python.tar.gz`` or their extracted folders (``cifar-10-batches-py/``, ``cifar-100-python/``)
from ``data_dir``, and fetch the archive with ``download=True``.

The archives hold Python pickles. Unpickling is restricted to what the official files contain (dicts,
lists, strings, numbers and uint8 numpy arrays, rebuilt here without numpy), so a crafted file cannot run
code; still, use only the official archives: their MD5 is checked on download and, with
``check_md5=True``, on an archive found locally (an extracted folder cannot be checked).
"""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import TensorDataset

from lightning_mixup.checks import check_bool, check_int
from lightning_mixup.data.augment import crop, hflip, normalize, sample_crop_offsets, sample_flips
from lightning_mixup.data.in_memory import InMemoryDataModule, split_indices

_IMAGE_SHAPE = (3, 32, 32)
_PADDING = 4
_CHUNK = 1 << 20


@dataclass(frozen=True)
class CIFARSpec:
    """Where a CIFAR variant's files are and what they hold."""

    name: str
    archive: str
    folder: str
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: bytes
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CIFAR10 = CIFARSpec(
    name="CIFAR-10",
    archive="cifar-10-python.tar.gz",
    folder="cifar-10-batches-py",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    md5="c58f30108f718f92721af3b95e74349a",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key=b"labels",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
CIFAR100 = CIFARSpec(
    name="CIFAR-100",
    archive="cifar-100-python.tar.gz",
    folder="cifar-100-python",
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    md5="eb9058c3a382ffc7106e4002c42a8d85",
    train_files=("train",),
    test_files=("test",),
    label_key=b"fine_labels",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)


class _Array:
    """What a pickled numpy array becomes here: its shape, dtype and raw bytes (set by ``BUILD``)."""

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        if len(state) == 5:  # numpy's state has a leading version number since 2006
            state = state[1:]
        self.shape, self.dtype, self.fortran_order, self.data = state


class _Dtype:
    """What a pickled numpy dtype becomes here: its type string (``'u1'``)."""

    def __init__(self, kind: str | bytes, align: bool = False, copy: bool = False) -> None:
        self.kind = kind.decode("ascii") if isinstance(kind, bytes) else kind

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        """Byte order and flags: irrelevant for the one dtype accepted, ``'u1'``."""


def _reconstruct(cls: type, shape: tuple[int, ...], typecode: bytes) -> _Array:
    return _Array()


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # numpy < 2, as in the official archives
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # numpy >= 2
    ("numpy", "ndarray"): _Array,
    ("numpy", "dtype"): _Dtype,
}


class _CIFARUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and uint8 arrays; refuses every other global (no code runs)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: not part of an official CIFAR archive"
            ) from None


def _to_tensor(array: object, where: str) -> Tensor:
    """The uint8 tensor of an unpickled numpy array."""
    dtype = getattr(array, "dtype", None)
    if not isinstance(array, _Array) or not isinstance(dtype, _Dtype) or dtype.kind not in ("u1", "|u1"):
        got = f"dtype {dtype.kind!r}" if isinstance(dtype, _Dtype) else type(array).__name__
        raise ValueError(f"{where}: b'data' must be a uint8 numpy array, got {got}")
    shape = tuple(int(d) for d in array.shape)
    if array.fortran_order or len(shape) != 2 or len(array.data) != shape[0] * shape[1]:
        raise ValueError(f"{where}: b'data' must be a C-ordered uint8 array [N, 3072], got shape {shape}")
    return torch.frombuffer(bytearray(array.data), dtype=torch.uint8).view(shape)


def _decode_batch(raw: bytes, spec: CIFARSpec, where: str) -> tuple[Tensor, Tensor]:
    """Images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]`` of one pickled batch file."""
    batch = _CIFARUnpickler(io.BytesIO(raw), encoding="bytes").load()
    if not isinstance(batch, dict) or b"data" not in batch or spec.label_key not in batch:
        keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(f"{where}: expected a dict with b'data' and {spec.label_key!r}, got {keys}")
    data = _to_tensor(batch[b"data"], where)
    labels = torch.as_tensor(list(batch[spec.label_key]), dtype=torch.int64)
    n = data.shape[0]
    if data.shape[1] != 3 * 32 * 32 or labels.shape != (n,):
        raise ValueError(
            f"{where}: expected data [N, 3072] and N labels, got data {tuple(data.shape)} and {labels.numel()} labels"
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= spec.num_classes):
        raise ValueError(
            f"{where}: labels must lie in [0, {spec.num_classes}), got {int(labels.min())}..{int(labels.max())}"
        )
    return data.view(n, *_IMAGE_SHAPE), labels


def md5sum(path: Path) -> str:
    """The hex MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_md5(path: Path, spec: CIFARSpec) -> None:
    actual = md5sum(path)
    if actual != spec.md5:
        raise ValueError(
            f"{path} has MD5 {actual}, but the official {spec.archive} has {spec.md5}: the file is corrupt or not "
            f"the official archive. Delete it and download it again from {spec.url}"
        )


def _missing_message(spec: CIFARSpec, data_dir: Path, downloading: bool = False) -> str:
    """What to do when the data set is not in ``data_dir`` (``downloading``: after a failed download)."""
    where = (
        f"put the official archive {spec.archive} ({spec.url}, MD5 {spec.md5}) or its extracted folder "
        f"{spec.folder}/ in {data_dir}, or point data_dir (or the CIFAR_DIR environment variable of the Hydra "
        "configs) to where they are"
    )
    if downloading:
        return f"This machine cannot download it (offline?): fetch it where you can, then {where}"
    return f"{spec.name} not found in {data_dir}: {where}, or pass download=True (data.download=true) to fetch it"


def download_cifar(spec: CIFARSpec, data_dir: str | Path) -> Path:
    """Fetch ``spec.archive`` into ``data_dir`` (unless present), check its MD5, return its path.

    The file is written as ``<archive>.part`` and renamed only once its MD5 matches.
    """
    data_dir = Path(data_dir)
    path = data_dir / spec.archive
    if path.is_file():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    rank_zero_info(f"downloading {spec.url} to {path}")
    try:
        with urllib.request.urlopen(spec.url, timeout=60) as response, open(part, "wb") as f:
            f.writelines(iter(lambda: response.read(_CHUNK), b""))
    except (urllib.error.URLError, OSError) as err:
        part.unlink(missing_ok=True)
        raise RuntimeError(f"could not download {spec.url}: {err}. {_missing_message(spec, data_dir, True)}") from err
    try:
        _check_md5(part, spec)
    except ValueError:
        part.unlink()
        raise
    part.replace(path)
    return path


def _read_files(spec: CIFARSpec, data_dir: Path, names: tuple[str, ...], check_md5: bool) -> dict[str, bytes]:
    """The raw bytes of the named batch files, from the extracted folder if there is one, else from the archive."""
    folder, archive = data_dir / spec.folder, data_dir / spec.archive
    if folder.is_dir():
        missing = [name for name in names if not (folder / name).is_file()]
        if missing:
            raise FileNotFoundError(f"{folder} lacks {missing}: extract the official {spec.archive} again")
        return {name: (folder / name).read_bytes() for name in names}
    if not archive.is_file():
        raise FileNotFoundError(_missing_message(spec, data_dir))
    if check_md5:
        _check_md5(archive, spec)
    with tarfile.open(archive, "r:gz") as tar:
        members = {member.name: member for member in tar.getmembers() if member.isfile()}
        missing = [name for name in names if f"{spec.folder}/{name}" not in members]
        if missing:
            raise FileNotFoundError(f"{archive} lacks {[f'{spec.folder}/{name}' for name in missing]}")
        return {name: tar.extractfile(members[f"{spec.folder}/{name}"]).read() for name in names}  # type: ignore[union-attr]


def load_cifar(spec: CIFARSpec, data_dir: str | Path, train: bool, check_md5: bool = True) -> tuple[Tensor, Tensor]:
    """Images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]`` of the training (50,000) or test (10,000) set.

    Example:
        >>> images, labels = load_cifar(CIFAR10, "data", train=False)  # doctest: +SKIP
        >>> images.shape, labels.shape  # doctest: +SKIP
        (torch.Size([10000, 3, 32, 32]), torch.Size([10000]))
    """
    data_dir = Path(data_dir).expanduser().resolve()
    names = spec.train_files if train else spec.test_files
    raw = _read_files(spec, data_dir, names, check_md5)
    parts = [_decode_batch(raw[name], spec, f"{spec.name} {name}") for name in names]
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


class CIFARDataModule(InMemoryDataModule):
    """A CIFAR variant held in memory as uint8, with the standard augmentation on the batch's device.

    The loaders yield lists ``[x uint8 [B, 3, 32, 32], y int64 [B]]``; :meth:`on_after_batch_transfer`, which
    Lightning calls once the batch is on its device, turns ``x`` into float32 in ``[0, 1]``, augments training
    batches (random 32x32 crop of the image zero-padded by 4, horizontal flip with probability 1/2) and
    normalises every batch with the dataset's per-channel ``mean`` and ``std``. So the model and the mixers see
    ``[x float32 [B, 3, 32, 32], y int64 [B]]``; validation and test batches are only normalised.

    Args:
        data_dir: folder with the official archive or its extracted folder.
        batch_size: training and evaluation batch size (per process under DDP).
        val_size: training images held out for validation (a stratified split fixed by ``split_seed``). The
            default 0 trains on all 50,000 images and validates on the test set, as the papers' code does;
            then pick the final weights (``test_ckpt=last``), not the best on validation.
        split_seed: seed of the validation split.
        shuffle_seed: seed of the training order (which depends only on it and the epoch).
        seed: seed of the augmentation's generator (a CPU generator: the offsets and flips are drawn on the
            CPU, a few bytes a batch, and the images are cropped and flipped on their device). Its state is in
            :meth:`state_dict`, so a run resumed mid-epoch draws what the uninterrupted run would have drawn.
            Under DDP every rank draws the whole global batch's values and takes its own share, so ranks
            differ and the one saved state serves them all.
        augment: crop and flip training batches.
        download: fetch the archive in :meth:`prepare_data` if it is missing (MD5 checked).
        check_md5: check the MD5 of an archive found locally.
        num_workers / drop_last: as for ``DataLoader``.

    Example:
        >>> dm = CIFAR10DataModule(data_dir="data", batch_size=128)
        >>> dm.num_classes, dm.input_shape, dm.std
        (10, (3, 32, 32), (0.247, 0.2435, 0.2616))
        >>> dm.setup("fit")  # doctest: +SKIP
        >>> x, y = next(iter(dm.train_dataloader()))  # doctest: +SKIP
        >>> x.dtype  # uint8 until the batch reaches its device  # doctest: +SKIP
        torch.uint8
    """

    spec: CIFARSpec
    input_shape: tuple[int, int, int] = _IMAGE_SHAPE

    def __init__(
        self,
        data_dir: str = "data",
        batch_size: int = 128,
        val_size: int = 0,
        split_seed: int = 0,
        shuffle_seed: int = 0,
        seed: int = 0,
        augment: bool = True,
        download: bool = False,
        check_md5: bool = True,
        num_workers: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(batch_size, shuffle_seed, num_workers=num_workers, drop_last=drop_last)
        if not isinstance(data_dir, (str, Path)):
            raise TypeError(f"data_dir must be a path, got {data_dir!r}")
        check_int("val_size", val_size, minimum=0)
        check_int("split_seed", split_seed)
        check_int("seed", seed)
        for name, value in (("augment", augment), ("download", download), ("check_md5", check_md5)):
            check_bool(name, value)
        self.save_hyperparameters()
        self.data_dir = Path(data_dir)
        self.val_size = val_size
        self.split_seed = split_seed
        self.seed = seed
        self.augment = augment
        self.download = download
        self.check_md5 = check_md5
        self.num_classes = self.spec.num_classes
        self.mean = self.spec.mean
        self.std = self.spec.std
        self._generator = torch.Generator().manual_seed(seed)

    def prepare_data(self) -> None:
        """Download the archive when ``download`` and neither it nor its extracted folder is in ``data_dir``."""
        if self.download and not (self.data_dir / self.spec.folder).is_dir():
            download_cifar(self.spec, self.data_dir)

    def build_splits(self) -> tuple[TensorDataset, TensorDataset, TensorDataset]:
        """Read the training and test sets; hold out ``val_size`` training images (else validate on test)."""
        x, y = load_cifar(self.spec, self.data_dir, train=True, check_md5=self.check_md5)
        test = TensorDataset(*load_cifar(self.spec, self.data_dir, train=False, check_md5=False))
        if self.val_size == 0:
            return TensorDataset(x, y), test, test
        if self.val_size >= len(y):
            raise ValueError(f"val_size must be smaller than the {len(y)} training images, got {self.val_size}")
        train_idx, val_idx, _ = split_indices(y, self.val_size / len(y), 0.0, self.split_seed)
        return TensorDataset(x[train_idx], y[train_idx]), TensorDataset(x[val_idx], y[val_idx]), test

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Scale to [0, 1], augment (training only) and normalise the batch on its device."""
        if not isinstance(batch, list) or len(batch) != 2 or not isinstance(batch[0], Tensor):
            raise TypeError(
                f"{type(self).__name__} expects the list batch [x, y] of its own loaders, got {type(batch).__name__}"
            )
        x = batch[0]
        if x.dtype != torch.uint8 or x.shape[1:] != _IMAGE_SHAPE:
            raise ValueError(f"expected uint8 images [B, 3, 32, 32] from the loader, got {x.dtype} {tuple(x.shape)}")
        x = x.float().div_(255.0)
        trainer = self.trainer
        if self.augment and trainer is not None and trainer.training:
            x = self._augment(x, trainer.world_size, trainer.global_rank)
        return [normalize(x, self.mean, self.std), batch[1]]

    def _augment(self, x: Tensor, world_size: int, rank: int) -> Tensor:
        """Crop and flip with values drawn for the whole global batch, this rank's share taken."""
        b = x.shape[0]
        n = max(self.batch_size, b)
        offsets = sample_crop_offsets(world_size * n, _PADDING, self._generator).view(world_size, n, 2)[rank, :b]
        flips = sample_flips(world_size * n, 0.5, self._generator).view(world_size, n)[rank, :b]
        return hflip(crop(x, offsets, _PADDING), flips)

    def state_dict(self) -> dict[str, Any]:
        """The augmentation generator's state (Lightning stores it in checkpoints)."""
        return {"augment_generator": self._generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the augmentation generator from a checkpoint."""
        self._generator.set_state(state_dict["augment_generator"])


class CIFAR10DataModule(CIFARDataModule):
    """CIFAR-10: 50,000 training and 10,000 test images of 10 classes, 32x32 RGB (see :class:`CIFARDataModule`).

    Example:
        >>> CIFAR10DataModule(data_dir="data").mean
        (0.4914, 0.4822, 0.4465)
    """

    spec = CIFAR10


class CIFAR100DataModule(CIFARDataModule):
    """CIFAR-100 with its 100 fine labels: 50,000 training and 10,000 test images (see :class:`CIFARDataModule`).

    Example:
        >>> CIFAR100DataModule(data_dir="data").num_classes
        100
    """

    spec = CIFAR100

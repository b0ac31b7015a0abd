"""Small fake CIFAR archives in the official format, written as Python 2's cPickle wrote the real ones.

The official batch files are protocol-2 pickles made by Python 2 with numpy 1: strings are byte strings
(BINSTRING) and arrays refer to ``numpy.core.multiarray._reconstruct``. :func:`py2_pickle` writes exactly
those opcodes, so the tests read what the real archives hold (and numpy itself can load it).
"""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path

import torch
from torch import Tensor

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR100_FOLDER = "cifar-100-python"


def _put(out: bytearray, obj: object) -> None:
    if isinstance(obj, dict):
        out += pickle.EMPTY_DICT + pickle.MARK
        for key, value in obj.items():
            _put(out, key)
            _put(out, value)
        out += pickle.SETITEMS
    elif isinstance(obj, list):
        out += pickle.EMPTY_LIST + pickle.MARK
        for value in obj:
            _put(out, value)
        out += pickle.APPENDS
    elif isinstance(obj, tuple):
        out += pickle.MARK
        for value in obj:
            _put(out, value)
        out += pickle.TUPLE
    elif isinstance(obj, bool):
        out += pickle.NEWTRUE if obj else pickle.NEWFALSE
    elif isinstance(obj, int):
        out += pickle.BININT + struct.pack("<i", obj)
    elif isinstance(obj, (bytes, str)):  # a Python 2 str
        raw = obj if isinstance(obj, bytes) else obj.encode("ascii")
        out += pickle.BINSTRING + struct.pack("<i", len(raw)) + raw
    elif obj is None:
        out += pickle.NONE
    elif isinstance(obj, Tensor):  # a uint8 numpy array, pickled by numpy 1
        out += pickle.GLOBAL + b"numpy.core.multiarray\n_reconstruct\n"
        _put_call_args(out, b"numpy\nndarray\n", ((0,), b"b"))
        out += pickle.REDUCE
        out += pickle.MARK
        _put(out, 1)
        _put(out, tuple(obj.shape))
        out += pickle.GLOBAL + b"numpy\ndtype\n"
        _put(out, ("u1", False, True))
        out += pickle.REDUCE
        _put(out, (3, "|", None, None, None, -1, -1, 0))
        out += pickle.BUILD
        _put(out, False)
        _put(out, obj.contiguous().numpy().tobytes())
        out += pickle.TUPLE + pickle.BUILD
    else:
        raise TypeError(f"cannot write {type(obj).__name__}")


def _put_call_args(out: bytearray, global_name: bytes, rest: tuple[object, ...]) -> None:
    out += pickle.MARK + pickle.GLOBAL + global_name
    for value in rest:
        _put(out, value)
    out += pickle.TUPLE


def py2_pickle(obj: object) -> bytes:
    """A protocol-2 pickle of dicts, lists, tuples, ints, byte strings and uint8 tensors, as Python 2 wrote it."""
    out = bytearray(pickle.PROTO + b"\x02")
    _put(out, obj)
    return bytes(out + pickle.STOP)


def fake_images(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Random uint8 images ``[n, 3072]`` (the files' layout) and labels in ``0..9`` (valid for both variants)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3072), generator=g, dtype=torch.uint8), torch.randint(0, 10, (n,), generator=g)


def cifar10_files(per_batch: int = 20, n_test: int = 40) -> dict[str, bytes]:
    """The members of a fake cifar-10-batches-py/: five training batches, the test batch and the meta file."""
    files = {}
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data, labels = fake_images(n_test if name == "test_batch" else per_batch, seed=i)
        files[name] = py2_pickle(
            {
                b"batch_label": name,
                b"labels": labels.tolist(),
                b"data": data,
                b"filenames": [f"img_{j}.png" for j in range(len(labels))],
            }
        )
    files["batches.meta"] = py2_pickle({b"label_names": [f"class_{k}" for k in range(10)], b"num_vis": 3072})
    return files


def cifar100_files(n_train: int = 100, n_test: int = 40) -> dict[str, bytes]:
    """The members of a fake cifar-100-python/: train, test and meta, labels under b'fine_labels'."""
    files = {}
    for i, (name, n) in enumerate((("train", n_train), ("test", n_test))):
        data, labels = fake_images(n, seed=10 + i)
        labels = labels * 10 + 9  # spread over 0..99
        files[name] = py2_pickle(
            {
                b"batch_label": name,
                b"fine_labels": labels.tolist(),
                b"coarse_labels": (labels // 5).tolist(),
                b"data": data,
            }
        )
    files["meta"] = py2_pickle({b"fine_label_names": [f"c{k}" for k in range(100)]})
    return files


def write_folder(root: Path, folder: str, files: dict[str, bytes]) -> Path:
    """Write ``files`` into ``root/folder/`` (an extracted archive); return ``root``."""
    (root / folder).mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        (root / folder / name).write_bytes(raw)
    return root


def write_archive(path: Path, folder: str, files: dict[str, bytes]) -> Path:
    """Write ``files`` as ``folder/<name>`` members of the gzipped tar ``path``; return ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, raw in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path

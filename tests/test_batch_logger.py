"""MixedBatchLogger: PNG files or TensorBoard images of exactly the mixed batch, at the right steps, never in
validation; its errors."""

from __future__ import annotations

import ast
import io
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib.image
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

import lightning_mixup
from conftest import Recorder, UserModule, make_loader, make_trainer
from lightning_mixup import MixUp
from lightning_mixup.callbacks.batch_logger import FOLDER, TAG, MixedBatchLogger, make_grid

LOW, HIGH = -2.0, 2.0


def _expected_grid(x: torch.Tensor, low: float = LOW, high: float = HIGH) -> torch.Tensor:
    """The first four images of ``x [B, C, H, W]`` as a 2 x 2 grid without padding, ``[low, high]`` -> ``[0, 1]``,
    laid out by hand (independently of ``make_grid``)."""
    x = ((x[:4] - low) / (high - low)).clamp(0, 1)
    return torch.cat((torch.cat((x[0], x[1]), dim=2), torch.cat((x[2], x[3]), dim=2)), dim=1)


def _read_png(source: Path | io.BytesIO) -> torch.Tensor:
    """A PNG's RGB pixels as ``[3, H, W]`` in [0, 1]."""
    return torch.from_numpy(matplotlib.image.imread(source)[..., :3].copy()).permute(2, 0, 1).float()


def _logger(**kwargs: Any) -> MixedBatchLogger:
    options = {"max_images": 4, "nrow": 2, "padding": 0, "value_range": (LOW, HIGH), "png_scale": 1}
    return MixedBatchLogger(**{**options, **kwargs})  # png_scale=1: the PNG is the grid, pixel for pixel


def test_make_grid_places_each_image_row_by_row_with_padding() -> None:
    images = torch.rand(5, 3, 4, 6)
    grid = make_grid(images, nrow=2, padding=1, pad_value=0.5)
    assert grid.shape == (3, 3 * 5 + 1, 2 * 7 + 1)
    for i in range(5):
        row, col = divmod(i, 2)
        top, left = 1 + row * 5, 1 + col * 7
        assert torch.equal(grid[:, top : top + 4, left : left + 6], images[i])
    blank = grid[:, 11:15, 8:14]  # the missing sixth image
    assert torch.all(blank == 0.5)
    assert torch.all(grid[:, 0] == 0.5) and torch.all(grid[:, :, 7] == 0.5)


@pytest.mark.parametrize("logger_first", [True, False], ids=["logger_before_mixer", "logger_after_mixer"])
def test_png_files_hold_the_mixed_batch_at_every_nth_step(tmp_path: Path, logger_first: bool) -> None:
    loader = make_loader(n=32, batch_size=8)  # 4 batches an epoch, 2 epochs: steps 0..7
    raw, seen = Recorder(), Recorder(at_end=True)
    mixer, logger = MixUp(alpha=100.0, seed=0), _logger(every_n_steps=3)  # λ ≈ 0.5: every mix shows
    callbacks = [logger, raw, mixer, seen] if logger_first else [raw, mixer, seen, logger]
    csv = CSVLogger(tmp_path, name="csv")
    make_trainer(callbacks, max_epochs=2, logger=csv).fit(UserModule(), loader)
    folder = Path(csv.log_dir) / FOLDER
    assert sorted(p.name for p in folder.iterdir()) == ["step_000000.png", "step_000003.png", "step_000006.png"]
    assert (Path(csv.log_dir) / "metrics.csv").exists()  # next to the CSV logs
    for step in (0, 3, 6):
        png = _read_png(folder / f"step_{step:06d}.png")
        torch.testing.assert_close(png, _expected_grid(seen.batches[step][0]), atol=1.0 / 255, rtol=0)
        assert not torch.allclose(png, _expected_grid(raw.batches[step][0]), atol=0.05)  # mixed, not raw


def test_png_undoes_the_normalisation_of_grayscale_images(tmp_path: Path) -> None:
    loader = make_loader(n=16, batch_size=8, shape=(1, 8, 8))
    seen = Recorder(at_end=True)
    logger = _logger(
        every_n_steps=1, mean=torch.tensor([0.5]), std=0.25, value_range=(0.0, 1.0), dirpath=tmp_path / "png"
    )
    make_trainer([MixUp(seed=1, per_sample=True), seen, logger]).fit(UserModule(channels=1), loader)
    png = _read_png(tmp_path / "png" / "step_000001.png")
    expected = _expected_grid(seen.batches[1][0] * 0.25 + 0.5, 0.0, 1.0).expand(3, -1, -1)
    torch.testing.assert_close(png, expected, atol=1.0 / 255, rtol=0)


def test_nothing_is_logged_in_validation_or_the_sanity_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    written: list[str] = []
    monkeypatch.setattr(matplotlib.image, "imsave", lambda path, *args, **kwargs: written.append(Path(path).name))
    loader = make_loader(n=32, batch_size=8)
    module = UserModule()
    trainer = make_trainer(
        [MixUp(seed=0), _logger(every_n_steps=1)], max_epochs=2, num_sanity_val_steps=2, default_root_dir=tmp_path
    )
    trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
    trainer.validate(module, loader, verbose=False)
    assert len(module.seen["val"]) == 2 + 2 * 4 + 4
    assert written == [f"step_{step:06d}.png" for step in range(8)]


def test_gradient_accumulation_logs_the_first_batch_of_a_due_step(monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[str] = []
    monkeypatch.setattr(matplotlib.image, "imsave", lambda path, *args, **kwargs: written.append(Path(path).name))
    trainer = make_trainer([_logger(every_n_steps=2)], max_epochs=2, accumulate_grad_batches=2)
    trainer.fit(UserModule(), make_loader(n=32, batch_size=8))  # 8 batches, 4 optimizer steps
    assert written == ["step_000000.png", "step_000002.png"]


def test_tensorboard_gets_the_images_and_no_png_is_written(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seen = Recorder(at_end=True)
    tensorboard = TensorBoardLogger(tmp_path, name="tb")
    make_trainer([_logger(every_n_steps=2), MixUp(seed=0), seen], logger=tensorboard).fit(UserModule(), make_loader())
    events = EventAccumulator(tensorboard.log_dir, size_guidance={"images": 0}).Reload()
    images = events.Images(TAG)
    assert [image.step for image in images] == [0, 2]
    for image in images:
        png = _read_png(io.BytesIO(image.encoded_image_string))
        torch.testing.assert_close(png, _expected_grid(seen.batches[image.step][0]), atol=1.0 / 255, rtol=0)
    assert not list(tmp_path.rglob("*.png"))


def test_without_matplotlib_png_logging_fails_in_setup_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.image", None)
    module = UserModule()
    with pytest.raises(ImportError, match=r'pip install "lightning-mixup\[plot\]"'):
        make_trainer([MixUp(), MixedBatchLogger()]).fit(module, make_loader())
    assert module.seen["train"] == []  # before the first step


def _module_level_imports(nodes: list[ast.stmt]) -> list[str]:
    """The modules imported by ``nodes`` outside functions, classes and ``if TYPE_CHECKING:`` blocks."""
    names = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
        elif isinstance(node, ast.If) and not (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"):
            names += _module_level_imports(node.body + node.orelse)
        elif isinstance(node, ast.Try):
            names += _module_level_imports(node.body + node.orelse + node.finalbody)
    return names


def test_the_package_imports_matplotlib_only_inside_functions() -> None:
    """matplotlib is an optional extra: no module of the package needs it to be imported."""
    package = Path(lightning_mixup.__file__).parent
    for path in package.rglob("*.py"):
        imports = _module_level_imports(ast.parse(path.read_text()).body)
        assert not [name for name in imports if name.split(".")[0] == "matplotlib"], path


def test_only_global_rank_zero_writes(tmp_path: Path) -> None:
    logger = _logger(every_n_steps=1, dirpath=tmp_path)
    batch = [torch.randn(4, 3, 8, 8), torch.zeros(4, dtype=torch.long)]
    for rank_zero in (False, True):
        trainer = SimpleNamespace(loggers=[], global_step=int(rank_zero), is_global_zero=rank_zero)
        logger.setup(trainer, None, "fit")
        logger.on_train_batch_start(trainer, None, batch, 0)
        logger.on_train_batch_end(trainer, None, None, batch, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["step_000001.png"]


def test_dict_batches_are_read_at_input_key(tmp_path: Path) -> None:
    dataset = TensorDataset(torch.randn(16, 3, 8, 8), torch.zeros(16, dtype=torch.long))
    loader = DataLoader(dataset, batch_size=8, collate_fn=lambda s: {"image": torch.stack([x for x, _ in s])})
    logger = _logger(every_n_steps=1, input_key="image", dirpath=tmp_path)
    trainer = SimpleNamespace(loggers=[], global_step=0, is_global_zero=True)
    logger.setup(trainer, None, "fit")
    batch = next(iter(loader))
    logger.on_train_batch_start(trainer, None, batch, 0)
    logger.on_train_batch_end(trainer, None, None, batch, 0)
    torch.testing.assert_close(
        _read_png(tmp_path / "step_000000.png"), _expected_grid(batch["image"]), atol=1 / 255, rtol=0
    )
    trainer.global_step = 1
    with pytest.raises(KeyError, match="the batch dict has no key 'image'; its keys are \\['x'\\]"):
        logger.on_train_batch_start(trainer, None, {"x": batch["image"]}, 1)


@pytest.mark.parametrize(
    ("shape", "kwargs", "match"),
    [
        ((2,), {}, r"images \[B, C, H, W\] with C = 1 or 3, got shape \[8, 2\]"),
        ((4, 8, 8), {}, r"got shape \[8, 4, 8, 8\]"),
        ((3, 8, 8), {"mean": (0.5, 0.5)}, "mean has 2 values for images with 3 channels"),
    ],
)
def test_a_batch_that_is_not_images_fails_on_the_first_batch(shape: tuple[int, ...], kwargs: Any, match: str) -> None:
    loader = DataLoader(TensorDataset(torch.randn(16, *shape), torch.zeros(16, dtype=torch.long)), batch_size=8)
    module = UserModule()
    with pytest.raises(ValueError, match=match):
        make_trainer([MixedBatchLogger(**kwargs)]).fit(module, loader)
    assert module.seen["train"] == []  # before the training step


@pytest.mark.parametrize(
    ("kwargs", "error", "quoted"),
    [
        ({"every_n_steps": 0}, ValueError, "every_n_steps must be a positive int, got 0"),
        ({"max_images": 2.5}, TypeError, "max_images must be a positive int, got 2.5"),
        ({"nrow": True}, TypeError, "nrow must be a positive int, got True"),
        ({"padding": -1}, ValueError, "padding must be an int >= 0, got -1"),
        ({"std": 0.0}, ValueError, "std must be a finite number > 0 or a sequence of them (one per channel), got 0.0"),
        ({"std": (1.0, float("nan"))}, ValueError, "got (1.0, nan)"),
        ({"mean": "0.5"}, TypeError, "mean must be a finite number or a sequence of them (one per channel), got '0.5'"),
        (
            {"value_range": (1.0, 0.0)},
            ValueError,
            "value_range must be (low, high), finite numbers with low < high, got (1.0, 0.0)",
        ),
        ({"value_range": 1.0}, ValueError, "got 1.0"),
    ],
)
def test_bad_arguments_fail_quoting_the_value(kwargs: dict[str, Any], error: type[Exception], quoted: str) -> None:
    with pytest.raises(error) as info:
        MixedBatchLogger(**kwargs)
    assert quoted in str(info.value)


def test_bad_input_key_fails_quoting_the_value() -> None:
    with pytest.raises(TypeError, match=r"input_key must be an int .* got 1.5"):
        MixedBatchLogger(input_key=1.5)

"""C-Mixup (arXiv 2210.05775): partners drawn by a kernel on the label distance, then mixup of inputs and targets."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from conftest import Recorder, make_trainer
from hypothesis import given, settings
from hypothesis import strategies as st
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from strategies import SEEDS, gen
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_mixup.callbacks.cmixup import CMixup
from lightning_mixup.functional import PairTarget, Targets, pair_loss
from lightning_mixup.functional.cmixup import (
    cmixup_batch,
    label_distances,
    partner_probabilities,
    sample_partners,
)
from lightning_mixup.data import DiabetesDataModule
from lightning_mixup.models.nets import MLP
from lightning_mixup.models.regressor import Regressor


def oracle_probabilities(target: torch.Tensor, sigma: float, kernel: str) -> torch.Tensor:
    """The official rates, one sample at a time: a one-point kernel density at ``y_i`` scored at every ``y_j``
    (scikit-learn's ``KernelDensity``: Gaussian ``exp(−d²/(2σ²))``, top-hat ``1[d < σ]``), normalised over j."""
    rows = target.double().reshape(target.shape[0], -1).tolist()
    probs = []
    for yi in rows:
        weights = []
        for yj in rows:
            d = math.sqrt(sum((a - b) ** 2 for a, b in zip(yi, yj)))
            weights.append(math.exp(-(d**2) / (2 * sigma**2)) if kernel == "gaussian" else float(d < sigma))
        total = sum(weights)
        probs.append([w / total for w in weights])
    return torch.tensor(probs, dtype=torch.float64)


# ---- the sampling matrix ---------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=SEEDS, batch=st.integers(2, 9), width=st.sampled_from([None, 1, 3]), sigma=st.floats(0.05, 5.0))
@pytest.mark.parametrize("kernel", ["gaussian", "tophat"])
def test_the_probabilities_are_the_official_kernel_rates(
    kernel: str, seed: int, batch: int, width: int | None, sigma: float
) -> None:
    shape = (batch,) if width is None else (batch, width)
    y = torch.randn(*shape, generator=gen(seed)) * 2
    probs = partner_probabilities(y, sigma, kernel)
    torch.testing.assert_close(probs, oracle_probabilities(y, sigma, kernel), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(batch, dtype=torch.float64))


def test_distances_are_euclidean_over_the_flattened_targets() -> None:
    y = torch.tensor([[[0.0, 0.0]], [[3.0, 4.0]]])  # [B, 1, 2]
    torch.testing.assert_close(label_distances(y), torch.tensor([[0.0, 5.0], [5.0, 0.0]], dtype=torch.float64))


def test_an_infinite_bandwidth_gives_uniform_partners_and_a_tiny_one_the_sample_itself() -> None:
    y = torch.linspace(-3, 3, 7)
    for kernel in ("gaussian", "tophat"):
        assert torch.equal(partner_probabilities(y, math.inf, kernel), torch.full((7, 7), 1 / 7, dtype=torch.float64))
        assert torch.equal(partner_probabilities(y, 1e-6, kernel), torch.eye(7, dtype=torch.float64))
    torch.testing.assert_close(partner_probabilities(y, 1e6), torch.full((7, 7), 1 / 7, dtype=torch.float64))


def test_far_labels_do_not_underflow_the_own_weight() -> None:
    probs = partner_probabilities(torch.tensor([0.0, 1e6]), 1e-3)  # exp(-5e17) underflows: the softmax does not
    assert torch.equal(probs, torch.eye(2, dtype=torch.float64))


def test_partners_are_drawn_with_the_kernel_probabilities() -> None:
    """The op's partner frequencies over many batches match the kernel (within 5 standard errors)."""
    y = torch.tensor([0.0, 0.3, 0.5, 1.5, 2.0, 4.0])
    x = torch.randn(6, 2)
    g, n = gen(0), 2000
    counts = torch.zeros(6, 6, dtype=torch.float64)
    for _ in range(n):
        index = cmixup_batch(x, y, alpha=2.0, bandwidth=0.8, generator=g).index
        counts[torch.arange(6), index] += 1
    expected = oracle_probabilities(y, 0.8, "gaussian")
    error = 5 * (expected * (1 - expected) / n).sqrt() + 1e-3
    assert ((counts / n - expected).abs() <= error).all(), (counts / n, expected)


def test_infinite_bandwidth_partners_are_uniform_with_replacement() -> None:
    y, g, n = torch.randn(5), gen(1), 1500
    index = torch.stack([cmixup_batch(torch.randn(5, 3), y, bandwidth=math.inf, generator=g).index for _ in range(n)])
    freq = F.one_hot(index, 5).double().mean(dim=0)  # [5, 5]: row i, partner j
    assert ((freq - 0.2).abs() < 5 * math.sqrt(0.2 * 0.8 / n)).all(), freq
    assert bool((index == torch.arange(5)).any()) and not bool((index.sort(dim=1).values == torch.arange(5)).all())


def test_sample_partners_follows_each_row() -> None:
    probs = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    assert sample_partners(probs, gen(0)).tolist() == [1, 2, 0]


# ---- the mix ---------------------------------------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(seed=SEEDS, per_sample=st.booleans(), width=st.sampled_from([None, 2]), image=st.booleans())
def test_inputs_and_targets_are_mixed_with_the_same_lambda(
    seed: int, per_sample: bool, width: int | None, image: bool
) -> None:
    g = gen(seed)
    x = torch.randn(8, 3, 4, 4, generator=g) if image else torch.randn(8, 5, generator=g)
    y = torch.randn(8, generator=g) if width is None else torch.randn(8, width, generator=g)
    out = cmixup_batch(x, y, None, 1.0, 0.5, per_sample=per_sample, generator=g)
    assert out.lam.shape == ((8,) if per_sample else ()) and out.mask is None
    lam_x = out.lam.view(-1, *[1] * (x.ndim - 1)) if per_sample else out.lam
    lam_y = out.lam.view(-1, *[1] * (y.ndim - 1)) if per_sample else out.lam
    torch.testing.assert_close(out.input, lam_x * x + (1 - lam_x) * x[out.index])
    torch.testing.assert_close(out.target, lam_y * y + (1 - lam_y) * y[out.index])
    assert ((out.lam >= 0) & (out.lam <= 1)).all()


def test_a_tiny_bandwidth_is_the_identity() -> None:
    x, y = torch.randn(6, 4), torch.arange(6.0)
    out = cmixup_batch(x, y, bandwidth=1e-6, per_sample=True, generator=gen(0))
    assert torch.equal(out.index, torch.arange(6))
    torch.testing.assert_close(out.input, x, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.target, y, rtol=0, atol=1e-6)


def test_the_pair_form_equals_the_mixed_form() -> None:
    x, y = torch.randn(8, 3), torch.randn(8, 2)
    mixed = cmixup_batch(x, y, Targets(task="regression"), bandwidth=1.0, per_sample=True, generator=gen(3))
    pair = cmixup_batch(x, y, Targets(task="regression", form="pair"), bandwidth=1.0, per_sample=True, generator=gen(3))
    assert isinstance(pair.target, PairTarget) and torch.equal(pair.index, mixed.index)
    assert torch.equal(pair.target.a, y) and torch.equal(pair.target.b, y[mixed.index])
    torch.testing.assert_close(torch.lerp(pair.target.b, pair.target.a, pair.target.weight[:, None]), mixed.target)
    # the MSE of a pair differs from the mixed target's by a constant of the targets: the same gradient
    output = torch.randn(8, 2, requires_grad=True)
    mse = torch.nn.MSELoss(reduction="none")
    (g_pair,) = torch.autograd.grad(pair_loss(mse, output, pair.target), output)
    (g_mixed,) = torch.autograd.grad(F.mse_loss(output, mixed.target), output)
    torch.testing.assert_close(g_pair, g_mixed)


def test_out_buffer_and_generator_give_the_same_mix() -> None:
    x, y = torch.randn(8, 5), torch.randn(8)
    plain = cmixup_batch(x, y, generator=gen(7))
    buffered = cmixup_batch(x, y, generator=gen(7), out=torch.empty_like(x))
    assert torch.equal(plain.input, buffered.input) and torch.equal(plain.index, buffered.index)


def test_bfloat16_inputs_and_targets() -> None:
    x, y = torch.randn(8, 5, dtype=torch.bfloat16), torch.randn(8, dtype=torch.bfloat16)
    out = cmixup_batch(x, y, generator=gen(0))
    assert out.input.dtype == torch.bfloat16 and out.target.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("kwargs", "error", "quoted"),
    [
        ({"bandwidth": 0.0}, ValueError, "got 0.0"),
        ({"bandwidth": -1}, ValueError, "got -1"),
        ({"bandwidth": float("nan")}, ValueError, "got nan"),
        ({"bandwidth": True}, TypeError, "got True"),
        ({"bandwidth": "1"}, TypeError, "got '1'"),
        ({"kernel": "epanechnikov"}, ValueError, "got 'epanechnikov'"),
        ({"alpha": 0.0}, ValueError, "got 0.0"),
        ({"targets": Targets(3)}, ValueError, "task='multiclass'"),
        ({"targets": 3}, ValueError, "got 3"),
    ],
)
def test_bad_options_are_quoted(kwargs: dict[str, Any], error: type[Exception], quoted: str) -> None:
    with pytest.raises(error, match=quoted):
        cmixup_batch(torch.randn(4, 2), torch.randn(4), **kwargs)


def test_class_labels_are_refused_with_what_came() -> None:
    with pytest.raises(TypeError, match=r"dtype torch.int64 shape \[4\]"):
        cmixup_batch(torch.randn(4, 2), torch.arange(4))
    with pytest.raises(ValueError, match=r"batch size 4 but targets have shape \[3\]"):
        cmixup_batch(torch.randn(4, 2), torch.randn(3))


# ---- the callback ----------------------------------------------------------------------------------------------


def test_callback_options_are_checked() -> None:
    with pytest.raises(ValueError, match="task='multiclass'"):
        CMixup(task="multiclass")
    with pytest.raises(ValueError, match="got 'flip'"):
        CMixup(partner="flip")
    with pytest.raises(ValueError, match="got -0.5"):
        CMixup(bandwidth=-0.5)
    with pytest.raises(ValueError, match="got 'box'"):
        CMixup(kernel="box")
    key = CMixup(bandwidth=0.5, kernel="tophat").state_key
    assert "bandwidth" in key and "tophat" in key and key != CMixup().state_key


class Seen(Callback):
    """The training batches after the mixer and the validation batches as the module gets them."""

    def __init__(self) -> None:
        self.train: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.val: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.train.append((batch[0].clone(), batch[1].clone()))

    def on_validation_batch_start(
        self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        self.val.append((batch_idx, batch[0].clone(), batch[1].clone()))


def test_one_epoch_of_the_regressor_with_c_mixup() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(48, 5, generator=g)
    y = x @ torch.randn(5, generator=g)
    data = DataLoader(TensorDataset(x, y), batch_size=16)
    torch.manual_seed(0)
    model = Regressor(nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1)), target_mean=1.0, target_std=2.0)
    seen = Seen()
    trainer = make_trainer([CMixup(alpha=2.0, bandwidth=0.5, seed=0), seen], limit_val_batches=2)
    trainer.fit(model, data, data)
    assert trainer.callback_metrics["mix/applied"] == 1.0 and math.isfinite(float(trainer.callback_metrics["val/rmse"]))
    for i, (mixed_x, mixed_y) in enumerate(seen.train):
        clean_y = y[16 * i : 16 * (i + 1)]
        assert not torch.equal(mixed_x, x[16 * i : 16 * (i + 1)])
        assert mixed_y.shape == clean_y.shape and bool((mixed_y >= clean_y.min() - 1e-6).all())
        assert bool((mixed_y <= clean_y.max() + 1e-6).all())
    assert len(seen.val) == 4  # the sanity check's two batches and the epoch's two
    for i, val_x, val_y in seen.val:  # validation is never mixed
        assert torch.equal(val_x, x[16 * i : 16 * (i + 1)]) and torch.equal(val_y, y[16 * i : 16 * (i + 1)])


def _fit_diabetes(mixer: Callback, root: Path, ckpt_path: str | None = None, checkpoint: bool = False):
    """Two epochs of a Regressor on the bundled diabetes data (10 batches of 32 per epoch), as test_resume does."""
    recorder = Recorder(at_end=True)
    callbacks: list[Callback] = [mixer, recorder]
    if checkpoint:
        callbacks.append(ModelCheckpoint(dirpath=root, every_n_train_steps=13, save_top_k=-1))
    trainer = make_trainer(
        callbacks, max_epochs=2, deterministic=True, enable_checkpointing=checkpoint, default_root_dir=root,
        num_sanity_val_steps=0, limit_val_batches=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = Regressor(MLP(in_features=10, num_classes=1, hidden=16, depth=1))
    trainer.fit(model, datamodule=DiabetesDataModule(batch_size=32), ckpt_path=ckpt_path)
    return model, recorder.batches


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    full_model, full = _fit_diabetes(CMixup(per_sample=True, seed=3), tmp_path / "full", checkpoint=True)
    ckpt = tmp_path / "full" / "epoch=1-step=13.ckpt"
    resumed_model, resumed = _fit_diabetes(CMixup(per_sample=True, seed=3), tmp_path / "resumed", str(ckpt))
    assert len(full) == 20 and len(resumed) == 7
    for (x_full, y_full), (x_res, y_res) in zip(full[13:], resumed):
        assert torch.equal(x_full, x_res) and torch.equal(y_full, y_res)
    for p_full, p_res in zip(full_model.parameters(), resumed_model.parameters()):
        assert torch.equal(p_full, p_res)


def test_p_zero_leaves_the_training_batches_unchanged(tmp_path: Path) -> None:
    _, plain = _fit_diabetes(CMixup(p=0.0, seed=3), tmp_path / "p0")
    _, none = _fit_diabetes(Callback(), tmp_path / "none")
    assert len(plain) == len(none) == 20
    for (x0, y0), (x1, y1) in zip(plain, none):
        assert torch.equal(x0, x1) and torch.equal(y0, y1)

"""The GAN module, DiscriminatorMixup (arXiv 1710.09412, §3.7), the mode-coverage metrics and the GAN configs."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from conftest import free_port, make_trainer
from ddp_gan_fit import RecordingGAN, small_gan
from lightning_mixup.callbacks.base import mixing_seed
from lightning_mixup.callbacks.gan_mixup import DiscriminatorMixup
from lightning_mixup.callbacks.gan_monitor import GANMonitor, image_grid
from lightning_mixup.data import DigitsDataModule, GaussianMixtureDataModule, mixture_modes, mode_coverage
from lightning_mixup.functional import discriminator_mixup, gan_mixup_batch, sample_lam
from lightning_mixup.functional.gan import pooled_discriminator_mixup, sample_gan_lam
from lightning_mixup.models.gan import GANModule, generator_loss
from lightning_mixup.report import collect, collect_gan, main
from lightning_mixup.models import Classifier
from lightning_mixup.models.nets import MLP, ConvDiscriminator, ConvGenerator, SmallCNN
from lightning_mixup.train import config_dir, train
from strategies import policy_error

B = 16


def _data(batches: int = 6, seed: int = 0) -> GaussianMixtureDataModule:
    return GaussianMixtureDataModule("grid25", batch_size=B, batches_per_epoch=batches, seed=seed, shuffle_seed=seed)


def _without_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("matplotlib", "matplotlib.figure"):  # also the submodule, in case another test imported it
        monkeypatch.setitem(sys.modules, name, None)


def _fit(module: RecordingGAN, *callbacks, max_epochs: int = 1, **kwargs) -> None:
    make_trainer(list(callbacks), max_epochs=max_epochs, **kwargs).fit(module, datamodule=_data())


# ---- training with and without the callback ----------------------------------------------------


def test_plain_gan_trains_on_real_ones_and_fake_zeros() -> None:
    module = small_gan(n_critic=2)
    before = [p.detach().clone() for p in module.parameters()]
    _fit(module, max_epochs=2)
    assert (module.d_steps, module.g_steps) == (12, 6)  # one D step a batch, one G step every n_critic
    for real, fake, inputs, targets in module.records:
        assert torch.equal(inputs, torch.cat((real, fake)))
        assert torch.equal(targets, torch.cat((torch.ones(B), torch.zeros(B))))
    after = list(module.parameters())
    assert all(torch.isfinite(p).all() for p in after)
    assert all(not torch.equal(p0, p1) for p0, p1 in zip(before, after))  # both nets were trained


@pytest.mark.parametrize("per_sample", [True, False])
def test_discriminator_trains_on_mixes_with_lam_targets(per_sample: bool) -> None:
    module = small_gan(n_critic=3)
    seen: list[torch.Tensor] = []
    module.discriminator.register_forward_pre_hook(lambda _m, args: seen.append(args[0].detach().clone()))
    _fit(module, DiscriminatorMixup(alpha=0.4, per_sample=per_sample, seed=3))
    oracle = torch.Generator().manual_seed(mixing_seed(3, 0))  # the callback's generator on rank 0
    assert len(module.records) == 6
    for real, fake, inputs, targets in module.records:
        lam = sample_lam(0.4, B if per_sample else None, generator=oracle)
        torch.testing.assert_close(targets, lam.expand(B))
        torch.testing.assert_close(inputs, lam.view(-1, 1) * real + (1 - lam.view(-1, 1)) * fake)
        assert inputs.shape == (B, 2)  # the mixes only, as in the paper
    d_step_inputs = [x for i, x in enumerate(seen) if i not in (3, 7)]  # calls 3 and 7 are the G steps' D(g(z))
    assert all(torch.equal(x, inputs) for x, (*_, inputs, _t) in zip(d_step_inputs, module.records))
    assert module._discriminator_batch is None  # unregistered at teardown


def test_epoch_window_leaves_other_epochs_plain() -> None:
    module = small_gan()
    _fit(module, DiscriminatorMixup(alpha=1.0, start_epoch=1, stop_epoch=2, seed=0), max_epochs=3)
    plain = torch.cat((torch.ones(B), torch.zeros(B)))
    kinds = ["plain" if torch.equal(t, plain) else "mixed" for *_, t in module.records]
    assert kinds == ["plain"] * 6 + ["mixed"] * 6 + ["plain"] * 6


def test_conv_gan_trains_on_digits_and_saves_a_grid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _without_matplotlib(monkeypatch)  # matplotlib is optional: the fallback must not fail
    torch.manual_seed(0)
    module = RecordingGAN(ConvGenerator(latent_dim=8, width=8), ConvDiscriminator(width=8), latent_dim=8, n_critic=1)
    trainer = make_trainer(
        [DiscriminatorMixup(seed=0), GANMonitor(n_samples=16, dirpath=tmp_path)], max_steps=6, limit_train_batches=3
    )
    trainer.fit(module, datamodule=DigitsDataModule(batch_size=8, normalize=False))
    assert module.g_steps == 3 and module.records[0][2].shape == (8, 1, 8, 8)
    saved = torch.load(tmp_path / "samples_final.pt")
    assert saved["samples"].shape == (16, 1, 8, 8) and saved["grid"].shape == (1, 32, 32)  # 16 samples: a 4 x 4 grid
    assert not (tmp_path / "samples_final.csv").exists()  # images: the .pt grid only


# ---- metrics -----------------------------------------------------------------------------------


def test_mode_coverage_on_hand_made_samples() -> None:
    modes, std = mixture_modes("grid25"), 0.05
    jitter = torch.tensor([[2.9 * std, 0.0]])  # inside the 3-std radius
    all_modes = mode_coverage(modes.repeat(20, 1) + jitter, modes, std)
    assert (all_modes.modes, all_modes.high_quality) == (25, 1.0)
    assert all_modes.counts.tolist() == [20] * 25
    one_mode = mode_coverage(modes[7].repeat(2500, 1), modes, std)
    assert (one_mode.modes, one_mode.high_quality) == (1, 1.0)
    none = mode_coverage(modes + torch.tensor([[1.0, 1.0]]), modes, std)  # between the modes
    assert (none.modes, none.high_quality) == (0, 0.0)
    outside = mode_coverage(modes.repeat(20, 1) + torch.tensor([[3.1 * std, 0.0]]), modes, std)
    assert (outside.modes, outside.high_quality) == (0, 0.0)
    half = mode_coverage(
        torch.cat((modes[:1].repeat(19, 1), modes[1:2].repeat(21, 1), torch.full((40, 2), 1.0))), modes, std
    )
    assert (half.modes, half.high_quality) == (1, 0.5)  # 19 < min_count = 20 <= 21


def test_monitor_logs_coverage_and_saves_samples_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _without_matplotlib(monkeypatch)
    module = small_gan()
    trainer = make_trainer([GANMonitor(n_samples=300, dirpath=tmp_path, save_every_n_epochs=1)], max_epochs=2)
    trainer.fit(module, datamodule=_data())
    saved = torch.load(tmp_path / "samples_final.pt")
    expected = mode_coverage(saved["samples"], mixture_modes("grid25"), 0.05)
    assert trainer.callback_metrics["gan/modes"] == expected.modes
    assert math.isclose(float(trainer.callback_metrics["gan/high_quality"]), expected.high_quality, rel_tol=1e-6)
    assert trainer.callback_metrics["gan/iterations"] == 6
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "samples_epoch0000.csv",
        "samples_epoch0000.pt",
        "samples_epoch0001.csv",
        "samples_epoch0001.pt",
        "samples_final.csv",
        "samples_final.pt",
    ]
    csv = (tmp_path / "samples_final.csv").read_text().splitlines()
    assert csv[0] == "x0,x1" and len(csv) == 301
    torch.testing.assert_close(torch.tensor([[float(v) for v in csv[1].split(",")]]), saved["samples"][:1])


def test_monitor_plots_with_matplotlib(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    make_trainer([GANMonitor(n_samples=100, dirpath=tmp_path)]).fit(small_gan(), datamodule=_data())
    assert (tmp_path / "samples_final.png").stat().st_size > 0


def test_image_grid_tiles_row_by_row() -> None:
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    assert image_grid(images)[0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


# ---- DDP and resume ----------------------------------------------------------------------------


def test_gan_fits_and_resumes_under_ddp_with_and_without_mixup(tmp_path: Path) -> None:
    env = {**os.environ, "MASTER_PORT": str(free_port()), "PYTHONUNBUFFERED": "1"}
    script = Path(__file__).with_name("ddp_gan_fit.py")
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = {
        name: [torch.load(tmp_path / f"{name}-rank{r}.pt") for r in (0, 1)] for name in ("plain", "mixup", "resumed")
    }
    for name, steps in (("plain", (4, 2)), ("mixup", (8, 4)), ("resumed", (8, 4))):  # 8 batches an epoch over 2 ranks
        rank0, rank1 = runs[name]
        assert rank0["steps"] == rank1["steps"] == steps, name
        for key, value in rank0["state"].items():
            torch.testing.assert_close(value, rank1["state"][key], msg=f"{name}: {key} differs between ranks")
        assert rank0["metrics"]["gan/modes"] == rank1["metrics"]["gan/modes"]
    mixed0, mixed1 = (run["targets"] for run in runs["mixup"])
    assert mixed0.shape == (8, B) and not torch.equal(mixed0, mixed1)  # ranks draw different λ
    for full, resumed in zip(runs["mixup"], runs["resumed"]):  # each rank redraws its own λ and noise
        assert torch.equal(full["targets"][4:], resumed["targets"])
        assert all(torch.equal(value, resumed["state"][key]) for key, value in full["state"].items())


def _resume_run(root: Path, ckpt_path: str | None = None, checkpoint: bool = False) -> RecordingGAN:
    module = small_gan(n_critic=3)
    callbacks = [DiscriminatorMixup(alpha=0.5, seed=11)]
    if checkpoint:
        callbacks.append(ModelCheckpoint(dirpath=root, every_n_train_steps=17, save_top_k=-1))
    trainer = make_trainer(
        callbacks,
        max_epochs=2,
        deterministic=True,
        enable_checkpointing=checkpoint,
        default_root_dir=root,
    )
    trainer.fit(module, datamodule=_data(batches=10, seed=1), ckpt_path=ckpt_path)
    return module


def test_resume_mid_epoch_reproduces_the_uninterrupted_run(tmp_path: Path) -> None:
    full = _resume_run(tmp_path / "full", checkpoint=True)
    ckpt = tmp_path / "full" / "epoch=1-step=17.ckpt"  # global_step counts both optimizers: 13 + 3 + 1
    assert ckpt.is_file(), sorted(p.name for p in (tmp_path / "full").iterdir())
    resumed = _resume_run(tmp_path / "resumed", ckpt_path=str(ckpt))
    assert (resumed.d_steps, resumed.g_steps) == (full.d_steps, full.g_steps) == (20, 6)
    done = len(full.records) - len(resumed.records)
    for record_full, record_resumed in zip(full.records[done:], resumed.records):
        assert all(torch.equal(a, b) for a, b in zip(record_full, record_resumed))  # same data, noise and λ
    for (name, p_full), p_resumed in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(p_full, p_resumed), name


# ---- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [0.0, -1.0, float("nan"), True])
def test_bad_alpha_is_quoted(alpha: float) -> None:
    with pytest.raises(policy_error(alpha, float), match=f"alpha must be a finite number > 0, got {alpha!r}"):
        DiscriminatorMixup(alpha=alpha)


def test_bad_callback_arguments_are_quoted() -> None:
    with pytest.raises(TypeError, match="per_sample must be a bool, got 1"):
        DiscriminatorMixup(per_sample=1)
    with pytest.raises(ValueError, match="stop_epoch must be > start_epoch=2, got 2"):
        DiscriminatorMixup(start_epoch=2, stop_epoch=2)
    with pytest.raises(ValueError, match="n_samples must be a positive int, got 0"):
        GANMonitor(n_samples=0)


def test_callback_on_a_classifier_fails_clearly() -> None:
    model = Classifier(SmallCNN(width=4), num_classes=10)
    with pytest.raises(TypeError, match="needs a GAN module .* got Classifier, which has none"):
        make_trainer([DiscriminatorMixup()]).fit(model, datamodule=DigitsDataModule())


def test_data_of_the_wrong_shape_fails_clearly() -> None:
    module = RecordingGAN(MLP(2, 2), MLP(64, 1), latent_dim=2)
    with pytest.raises(
        ValueError, match=r"generator makes samples of shape \[2\] but the data's samples have shape \[1, 8, 8\]"
    ):
        make_trainer([]).fit(module, datamodule=DigitsDataModule())
    module = RecordingGAN(MLP(2, 2), MLP(2, 3), latent_dim=2)
    with pytest.raises(ValueError, match=r"one logit per sample, \[32\] or \[32, 1\], got shape \[32, 3\]"):
        make_trainer([]).fit(module, datamodule=_data())


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: GaussianMixtureDataModule("grid9"), "name must be one of \\['ring8', 'grid25'\\], got 'grid9'"),
        (lambda: GaussianMixtureDataModule(std=0.0), "std must be a finite number > 0, got 0.0"),
        (lambda: GaussianMixtureDataModule(batches_per_epoch=0), "batches_per_epoch must be a positive int, got 0"),
        (lambda: RecordingGAN(MLP(), MLP(), latent_dim=2, n_critic=0), "n_critic must be a positive int, got 0"),
        (lambda: RecordingGAN(MLP(), "mlp", latent_dim=2), "discriminator must be an nn.Module, got str"),
        (lambda: ConvGenerator(image_size=10), "image_size must be a multiple of 4 .*, got 10"),
        (
            lambda: mode_coverage(torch.zeros(5, 3), mixture_modes("ring8"), 0.02),
            "samples must have shape \\[N, 2\\] .* got \\[5, 3\\]",
        ),
    ],
)
def test_bad_arguments_are_quoted(build, message: str) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        build()


def test_second_discriminator_batch_function_is_refused() -> None:
    module = small_gan()
    first, second = DiscriminatorMixup(), DiscriminatorMixup()
    module.set_discriminator_batch(first.discriminator_batch)
    with pytest.raises(RuntimeError, match="only one callback may change it"):
        module.set_discriminator_batch(second.discriminator_batch)


# ---- Hydra -------------------------------------------------------------------------------------


def _compose(tmp_path: Path, *overrides: str, config: str = "gan") -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose(config, overrides=[f"paths.output_dir={tmp_path}", "trainer.fast_dev_run=true", *overrides])


@pytest.mark.parametrize(
    "overrides",
    [(), ("mix=none", "data=gaussians8"), ("gan_preset=digits",), ("gan_preset=paper", "trainer.fast_dev_run=2")],
)
def test_gan_configs_compose_and_run_fast_dev_run(overrides: tuple[str, ...], tmp_path: Path) -> None:
    metrics = train(_compose(tmp_path, *overrides))
    assert "train/d_loss" in metrics
    assert ("mix/lam" in metrics) == ("mix=none" not in overrides)
    assert ("gan/modes" in metrics) == ("gan_preset=digits" not in overrides)


def test_paper_preset_has_the_papers_settings(tmp_path: Path) -> None:
    cfg = _compose(tmp_path, "gan_preset=paper")
    assert (cfg.gan_net.hidden, cfg.gan_net.depth, cfg.gan_net.latent_dim, cfg.data.batch_size) == (512, 3, 2, 128)
    assert (cfg.model.n_critic, cfg.model.d_optimizer.lr, cfg.model.g_optimizer.lr, cfg.mix.alpha) == (
        5,
        1e-3,
        1e-3,
        0.2,
    )
    assert cfg.trainer.max_epochs * cfg.data.batches_per_epoch // cfg.model.n_critic == 20_000


def test_gan_mixup_on_the_classifier_config_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="got Classifier"):
        train(_compose(tmp_path, "mix=gan_mixup", config="train"))


def test_gan_multirun_sweeps_plain_and_mixup(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_mixup.train",
            "--config-name",
            "gan",
            "-m",
            "mix=none,gan_mixup",
            "trainer.fast_dev_run=true",
            f"hydra.sweep.dir={tmp_path}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "DiscriminatorMixup" in (tmp_path / "1" / ".hydra" / "config.yaml").read_text()
    assert "DiscriminatorMixup" not in (tmp_path / "0" / ".hydra" / "config.yaml").read_text()


@pytest.mark.parametrize("per_sample", [False, True])
def test_gan_mixup_batch_equals_a_per_sample_oracle(per_sample: bool) -> None:
    real, fake = torch.randn(6, 2), torch.randn(6, 2)
    out = gan_mixup_batch(real, fake, 0.2, per_sample=per_sample, generator=torch.Generator().manual_seed(3))
    lam = sample_lam(0.2, 6 if per_sample else None, generator=torch.Generator().manual_seed(3)).expand(6)
    for i in range(6):
        torch.testing.assert_close(out.input[i], lam[i] * real[i] + (1 - lam[i]) * fake[i])
    assert torch.equal(out.target, lam) and out.target.dtype == torch.float32  # the target is λ, "real" = 1
    assert torch.equal(discriminator_mixup(real, fake, 1.0), real)  # λ = 1: the real samples themselves
    with pytest.raises(
        ValueError, match=r"real samples of shape \[6, 2\] cannot be mixed with fakes of shape \[6, 3\]"
    ):
        discriminator_mixup(real, torch.randn(6, 3), 0.5)


# ---- the released code's recipe (hongyi-zhang/mixup gan/example_gan.py) -------------------------------------


def test_pooled_pairs_mix_any_two_of_reals_and_fakes_with_the_mixed_labels() -> None:
    real, fake = torch.randn(8, 2) + 10, torch.randn(8, 2) - 10
    out = gan_mixup_batch(
        real, fake, pairs="pooled", lam_dist="uniform", lam_bound=0.5, generator=torch.Generator().manual_seed(1)
    )
    assert out.input.shape == (16, 2) and out.target.shape == (16,) and out.lam.shape == (16,)
    oracle = torch.Generator().manual_seed(1)  # λ first, then the partner permutation
    lam = sample_gan_lam(16, lam_dist="uniform", lam_bound=0.5, generator=oracle)
    index = torch.randperm(16, generator=oracle)
    pool, labels = torch.cat((real, fake)), torch.cat((torch.ones(8), torch.zeros(8)))
    for i in range(16):
        j = int(index[i])
        torch.testing.assert_close(out.input[i], lam[i] * pool[i] + (1 - lam[i]) * pool[j])
        torch.testing.assert_close(out.target[i], lam[i] * labels[i] + (1 - lam[i]) * labels[j])
    kinds = {(int(labels[i]), int(labels[index[i]])) for i in range(16)}
    assert kinds == {(0, 0), (0, 1), (1, 0), (1, 1)}  # real–real, fake–fake and real–fake pairs all occur
    real_real = (labels == 1) & (labels[index] == 1)
    assert torch.equal(out.target[real_real], torch.ones(int(real_real.sum())))  # two reals stay "real"
    x, t = pooled_discriminator_mixup(
        torch.ones(1, 2), torch.zeros(1, 2), torch.tensor([0.2, 0.2]), torch.tensor([1, 0])
    )
    torch.testing.assert_close(t, torch.tensor([0.2, 0.8]))
    torch.testing.assert_close(x, torch.tensor([[0.2, 0.2], [0.8, 0.8]]))


def test_uniform_lam_lies_in_zero_to_the_bound() -> None:
    for bound in (0.1, 0.2, 0.5, 1.0):
        lam = sample_gan_lam(20_000, lam_dist="uniform", lam_bound=bound, generator=torch.Generator().manual_seed(0))
        assert lam.dtype == torch.float32 and float(lam.min()) >= 0 and float(lam.max()) <= bound
        assert abs(float(lam.mean()) - bound / 2) < 0.01 * bound and float(lam.max()) > 0.99 * bound
    batch = sample_gan_lam(None, lam_dist="uniform", lam_bound=0.2, generator=torch.Generator().manual_seed(0))
    assert batch.shape == () and 0 <= float(batch) <= 0.2
    out = gan_mixup_batch(torch.ones(6, 2), torch.zeros(6, 2), lam_dist="uniform", lam_bound=0.1, per_sample=False)
    assert out.lam.shape == () and float(out.target.max()) <= 0.1  # real–fake pairs: λ is the real's weight


def test_saturating_generator_loss_is_the_minimax_one() -> None:
    logits = torch.tensor([-2.0, 0.0, 3.0], requires_grad=True)
    loss = generator_loss(logits, "saturating")
    torch.testing.assert_close(loss, torch.log(1 - torch.sigmoid(logits.detach())).mean())
    (grad,) = torch.autograd.grad(loss, logits)
    torch.testing.assert_close(grad, -torch.sigmoid(logits.detach()) / 3)  # vanishes where D says "fake"
    torch.testing.assert_close(
        generator_loss(logits.detach(), "non_saturating"), -torch.log(torch.sigmoid(logits.detach())).mean()
    )
    module = small_gan(n_critic=1)
    module.generator_loss = "saturating"
    _fit(module)
    assert module.g_steps == 6 and all(torch.isfinite(p).all() for p in module.parameters())


def test_the_callback_trains_the_discriminator_on_pooled_uniform_mixes() -> None:
    module = small_gan(n_critic=3)
    _fit(module, DiscriminatorMixup(pairs="pooled", lam_dist="uniform", lam_bound=0.2, seed=3))
    oracle = torch.Generator().manual_seed(mixing_seed(3, 0))
    for real, fake, inputs, targets in module.records:
        expected = gan_mixup_batch(real, fake, pairs="pooled", lam_dist="uniform", lam_bound=0.2, generator=oracle)
        assert inputs.shape == (2 * B, 2)
        torch.testing.assert_close(inputs, expected.input)
        torch.testing.assert_close(targets, expected.target)
    assert DiscriminatorMixup().state_key == DiscriminatorMixup(lam_bound=1.0).state_key  # old checkpoints load
    assert DiscriminatorMixup(pairs="pooled").state_key != DiscriminatorMixup().state_key


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"pairs": "fake_fake"}, ValueError, "pairs must be one of \\('real_fake', 'pooled'\\), got 'fake_fake'"),
        ({"pairs": 1}, TypeError, "pairs must be a str, got 1"),
        ({"lam_dist": "normal"}, ValueError, "lam_dist must be one of \\('beta', 'uniform'\\), got 'normal'"),
        ({"lam_bound": 0.0}, ValueError, "lam_bound must be a number in \\(0, 1\\], got 0.0"),
        ({"lam_bound": 1.5}, ValueError, "lam_bound must be a number in \\(0, 1\\], got 1.5"),
        ({"lam_bound": "0.2"}, TypeError, "lam_bound must be a number in \\(0, 1\\], got '0.2'"),
    ],
)
def test_bad_recipe_options_are_quoted(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        DiscriminatorMixup(**kwargs)
    with pytest.raises(error, match=message):
        gan_mixup_batch(torch.ones(2, 2), torch.zeros(2, 2), **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"generator_loss": "wasserstein"}, ValueError, "generator_loss must be one of .* got 'wasserstein'"),
        ({"generator_loss": None}, TypeError, "generator_loss must be a str, got None"),
        ({"num_threads": 0}, ValueError, "num_threads must be a positive int, got 0"),
        ({"num_threads": 1.0}, TypeError, "num_threads must be a positive int, got 1.0"),
    ],
)
def test_bad_module_options_are_quoted(kwargs: dict, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        GANModule(MLP(), MLP(2, 1), latent_dim=2, **kwargs)


def test_the_released_codes_data_sizes() -> None:
    grid, ring = mixture_modes("grid25", scale=0.5), mixture_modes("ring8", scale=1.0)
    axis = sorted({round(v, 6) for v in grid[:, 0].tolist()})
    assert axis == [-1.0, -0.5, 0.0, 0.5, 1.0] and len(grid) == 25
    torch.testing.assert_close(ring.norm(dim=1), torch.ones(8))
    angles = sorted(round(math.degrees(math.atan2(y, x))) % 360 for x, y in ring.tolist())
    assert angles == list(range(0, 360, 45))  # the released (sin t, cos t) ring: the same 8 points
    dm = GaussianMixtureDataModule("grid25", std=0.01, scale=0.5, batch_size=500, batches_per_epoch=20)
    dm.setup("fit")
    x = dm.train_set.tensors[0]
    cover = mode_coverage(x, dm.modes, dm.mode_std)
    assert cover.modes == 25 and cover.high_quality > 0.98 and float(x.abs().max()) < 1.06
    for bad, error in ((0.0, ValueError), (True, TypeError)):
        with pytest.raises(error, match=f"scale must be a finite number > 0, got {bad!r}"):
            GaussianMixtureDataModule(scale=bad)


def test_official_preset_has_the_released_settings(tmp_path: Path) -> None:
    cfg = _compose(tmp_path, "gan_preset=official")
    assert (cfg.gan_net.hidden, cfg.gan_net.depth, cfg.gan_net.latent_dim, cfg.data.batch_size) == (512, 3, 2, 128)
    assert (cfg.data.name, cfg.data.std, cfg.data.scale) == ("grid25", 0.01, 0.5)
    assert (cfg.model.n_critic, cfg.model.generator_loss) == (5, "saturating")
    assert cfg.model.d_optimizer.lr == cfg.model.g_optimizer.lr == 1e-3
    assert list(cfg.model.d_optimizer.betas) == list(cfg.model.g_optimizer.betas) == [0.9, 0.999]
    assert (cfg.mix.pairs, cfg.mix.lam_dist, cfg.mix.lam_bound) == ("pooled", "uniform", 0.2)
    assert cfg.trainer.max_epochs * cfg.data.batches_per_epoch // cfg.model.n_critic == 20_000
    ring = _compose(tmp_path, "gan_preset=official", "data=gaussians8_official")
    assert (ring.data.name, ring.data.std, ring.data.scale) == ("ring8", 0.01, 1.0)
    ours = _compose(tmp_path)
    assert (ours.mix.pairs, ours.mix.lam_dist, ours.model.generator_loss) == ("real_fake", "beta", "non_saturating")


def test_official_preset_runs_and_ends_with_a_result_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    torch.set_num_threads(2)
    caplog.set_level("INFO")
    metrics = train(_compose(tmp_path, "gan_preset=official", "gan_net.hidden=16", "trainer.fast_dev_run=5"))
    assert torch.get_num_threads() == 2  # model.num_threads=1 held during fit only
    assert "mix/lam" in metrics and float(metrics["mix/lam"]) <= 0.2
    assert re.search(
        r"GAN result: modes covered \d+/25  high-quality \d\.\d{3}  \(2500 samples, 1 iterations\)",
        caplog.text,
    )


def test_num_threads_is_set_during_fit_and_restored() -> None:
    torch.set_num_threads(2)
    seen: list[int] = []

    class Spy(GANMonitor):
        def on_train_epoch_end(self, trainer, pl_module) -> None:
            seen.append(torch.get_num_threads())

    module = small_gan()
    module.num_threads = 1
    _fit(module, Spy(n_samples=10))
    assert seen == [1] and torch.get_num_threads() == 2


def _gan_run(run: Path, seed: int, modes: list[float], max_epochs: int, mix: str | None) -> Path:
    (run / ".hydra").mkdir(parents=True)
    cfg = {
        "seed": seed,
        "model": {"_target_": "lightning_mixup.models.gan.GANModule"},
        "mix": {"_target_": mix} if mix else None,
        "data": {"_target_": "lightning_mixup.data.GaussianMixtureDataModule", "name": "grid25"},
        "trainer": {"max_epochs": max_epochs},
    }
    OmegaConf.save(OmegaConf.create(cfg), run / ".hydra" / "config.yaml")
    OmegaConf.save(
        OmegaConf.create([f"seed={seed}"] + ([] if mix else ["mix=none"])), run / ".hydra" / "overrides.yaml"
    )
    rows = ["epoch,gan/high_quality,gan/iterations,gan/modes,step,train/d_loss"]
    rows += [f"{e},{0.5 + e / 100},{(e + 1) * 1000},{m},{(e + 1) * 5000},0.6" for e, m in enumerate(modes)]
    (run / "csv" / "version_0").mkdir(parents=True)
    (run / "csv" / "version_0" / "metrics.csv").write_text("\n".join(rows) + "\n")
    return run


def test_report_collects_finished_gan_runs_and_skips_unfinished_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    mixup = "lightning_mixup.callbacks.gan_mixup.DiscriminatorMixup"
    runs = [_gan_run(tmp_path / f"s{s}", s, [20, 22, 24 - s], 3, mixup) for s in (0, 1)]
    runs.append(_gan_run(tmp_path / "plain", 0, [10, 12, 11], 3, None))
    unfinished = _gan_run(tmp_path / "short", 0, [10], 3, mixup)
    with pytest.warns(UserWarning, match="unfinished GAN run \\(epoch 1 of 3"):
        assert [r["seed"] for r in collect_gan([*runs, unfinished])] == [0, 1, 0]
    assert collect(runs) == []  # no "unfinished run" warning for a GAN: it has no test split
    assert main([str(r) for r in runs]) == 0
    out = capsys.readouterr().out
    assert (
        "| `defaults` | DiscriminatorMixup | grid25 | 3000 | 0, 1 | 23.5 ± 0.7 | 0.520 ± 0.000 | 22–24 | 0.510–0.520 |"
        in out
    )
    assert "| `mix=none` | none | grid25 | 3000 | 0 | 11.0 | 0.520 | 11–12 | 0.510–0.520 |" in out

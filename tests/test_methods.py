"""The method registry is complete: every registered method has its config, gallery picture, functional test file,
README row and docs, and an unknown name is an error everywhere it can be given."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_mixup import gallery
from lightning_mixup.bench import run
from lightning_mixup.callbacks import MixingCallback
from lightning_mixup.functional import MixedBatch
from lightning_mixup.methods import KINDS, METHODS, get, markdown_table, names
from lightning_mixup.train import config_dir

REPO = Path(__file__).resolve().parent.parent
NOT_METHODS = {"none", "random_choice"}  # the mix configs that are no registered method: no mixing, a combinator


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_has_a_config_a_picture_a_test_file_and_docs(name: str) -> None:
    method = get(name)
    config = Path(config_dir(), "mix", f"{name}.yaml").read_text()
    assert f"{method.callback.__module__.split('.callbacks')[0]}" in config and method.callback.__name__ in config
    assert (REPO / "docs" / "images" / f"{name}.png").is_file(), "python -m lightning_mixup.gallery --out docs/images"
    tests = REPO / "tests" / method.tests
    assert tests.is_file() and method.batch_op.__name__ in tests.read_text(), f"{tests} must test {method.batch_op}"
    assert method.arxiv in (method.callback.__doc__ or "") + (inspect.getmodule(method.batch_op).__doc__ or "")
    assert method.batch_op.__name__ in (method.callback.__doc__ or ""), "the callback's docstring names its op"
    assert ">>>" in (method.callback.__doc__ or "") and ">>>" in (method.batch_op.__doc__ or ""), "examples"
    assert name in gallery.examples.__globals__["METHODS"]


def test_every_mix_config_is_a_registered_method_or_says_why_not() -> None:
    configs = {p.stem for p in Path(config_dir(), "mix").glob("*.yaml")}
    assert configs == set(METHODS) | NOT_METHODS


def test_kinds_are_known_and_names_filter_by_kind() -> None:
    assert {m.kind for m in METHODS.values()} <= set(KINDS)
    assert names() == list(METHODS)
    assert sum(len(names(kind)) for kind in KINDS) == len(METHODS)
    with pytest.raises(ValueError, match=r"unknown kind\(s\) \['inputs'\]"):
        names("inputs")


def test_the_readme_method_table_is_the_registry() -> None:
    readme = (REPO / "README.md").read_text()
    assert markdown_table() in readme, "paste `python -m lightning_mixup.methods` into the README's Methods section"


@pytest.mark.parametrize("name", names("input", "hidden", "saliency"))
def test_examples_are_mixing_callbacks_with_their_registered_name(name: str) -> None:
    callback = get(name).make(seed=0)
    assert isinstance(callback, MixingCallback) and type(callback) is get(name).callback


@pytest.mark.parametrize("name", list(METHODS))
def test_every_op_returns_a_mask_of_one_polarity(name: str) -> None:
    """``input = mask·first + (1 − mask)·second`` and λ = the mask's mean, 1 = the sample's own (the gallery's
    pairs: each image its own class)."""
    for ex in gallery.examples(name, n=4).values():
        torch.testing.assert_close(ex.mixed, ex.mask * ex.first + (1 - ex.mask) * ex.second, atol=1e-6, rtol=0)
        if getattr(get(name).callback, "LABELS_FOLLOW_AREA", True):  # not SnapMix (CAM mass), Remix (rebalanced)
            torch.testing.assert_close(ex.mask.mean(dim=(1, 2)), ex.lam, atol=1e-6, rtol=0)


def test_mixed_batch_mask_is_the_own_share() -> None:
    x, y = torch.randn(6, 3, 8, 8), torch.arange(6) % 3
    out = get("cutmix").batch_op(x, y, 3, per_sample=True, generator=torch.Generator().manual_seed(0))
    assert isinstance(out, MixedBatch) and out.mask.dtype == torch.bool
    torch.testing.assert_close(out.mask.float().mean(dim=(1, 2, 3)), out.lam)
    assert torch.equal(out.input[out.mask.expand_as(x)], x[out.mask.expand_as(x)])  # own pixels kept exactly


@pytest.mark.parametrize(
    "call",
    [
        lambda: get("puzzlemx"),
        lambda: gallery.examples("puzzlemx"),
        lambda: run(["puzzlemx"], quick=True),
    ],
)
def test_an_unknown_method_name_is_an_error_everywhere(call) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="puzzlemx"):
        call()


def test_the_gallery_and_bench_command_lines_refuse_unknown_names() -> None:
    for module in ("lightning_mixup.gallery", "lightning_mixup.bench"):
        args = ["--methods", "puzzlemx"] if module.endswith("gallery") else ["--quick", "puzzlemx"]
        proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and "invalid choice: 'puzzlemx'" in proc.stderr, proc.stderr


def test_functional_imports_without_lightning() -> None:
    code = (
        "import sys; sys.modules['lightning'] = None; sys.modules['lightning.pytorch'] = None; "
        "sys.modules['hydra'] = None; sys.modules['omegaconf'] = None\n"
        "import lightning_mixup.functional as F, lightning_mixup.functional.puzzlemix as P, torch\n"
        "out = F.cutmix_batch(torch.randn(4, 3, 8, 8), torch.arange(4) % 2, 2)\n"
        "assert out.input.shape == (4, 3, 8, 8) and P.puzzlemix_batch\n"
        "assert not any(m == 'lightning' or m.startswith(('lightning.', 'lightning_mixup.callbacks')) "
        "for m in sys.modules if sys.modules[m] is not None)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_the_lazy_top_level_exports_every_name() -> None:
    import lightning_mixup

    assert sorted(lightning_mixup.__all__) == sorted([*lightning_mixup._HOME_OF, "__version__"])
    assert all(getattr(lightning_mixup, name) is not None for name in lightning_mixup.__all__)
    with pytest.raises(AttributeError, match="no attribute 'CutMixx'"):
        lightning_mixup.CutMixx  # noqa: B018

"""Pictures of what each mixer does, from the bundled digits and the functional API, and the mixup paper's
decision-boundary figure (Zhang et al., arXiv 1710.09412, Figure 1b) on 2-D toy data.

``python -m lightning_mixup.gallery --out docs/images`` writes one small PNG per method (``mixup.png``,
``cutmix.png``, ...) and ``decision_boundaries.png``. matplotlib (``pip install "lightning-mixup[plot]"``) is
needed for the figures only: the examples are plain tensors.
"""

from __future__ import annotations

import argparse
import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from lightning import Trainer, seed_everything
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from lightning_mixup.callbacks import ManifoldMixup, MixUp
from lightning_mixup.data import Toy2DDataModule, load_digits
from lightning_mixup.functional import partner_index
from lightning_mixup.methods import METHODS, Method, get
from lightning_mixup.models import Classifier
from lightning_mixup.models.nets import MLP, SmallCNN

if TYPE_CHECKING:
    from matplotlib.figure import Figure

IMAGE_SIZE = 32
SEED = 5  # its first λ ~ Beta(1, 1) is 0.55: both images of a pair show in the batch-mode pictures


class Example(NamedTuple):
    """One method applied to pairs of images: everything ``[n, H, W]`` except ``lam [n]``.

    ``mask`` is the share of each pixel (or feature) that comes from ``first``; ``lam`` the weight of
    ``first``'s label in the mixed target (the package's λ: the fraction of the sample that is its own).
    Hidden-state methods show one channel of a feature map instead of the pixels.
    """

    first: Tensor
    second: Tensor
    mask: Tensor
    mixed: Tensor
    lam: Tensor


def digit_pairs(n: int = 4, size: int = IMAGE_SIZE) -> tuple[Tensor, Tensor]:
    """``n`` bundled digits of the classes ``0 .. n−1`` (the first image of each), in [0, 1], resized to
    ``size``², ``[n, 1, size, size]``, and their partners: the reversed batch (``"flip"``), so each digit
    is mixed with another class.

    Example:
        >>> x, index = digit_pairs(4)
        >>> x.shape, index.tolist()
        (torch.Size([4, 1, 32, 32]), [3, 2, 1, 0])
    """
    if not 2 <= n <= 10 or n % 2:
        raise ValueError(f"n must be an even number of classes between 2 and 10, got {n!r}")
    images, labels = load_digits()
    first = (labels.long().unsqueeze(1) == torch.arange(n)).float().argmax(dim=0)  # first image of each class
    x = F.interpolate(
        images[first].unsqueeze(1).float() / 16.0, size=(size, size), mode="bilinear", align_corners=False
    )
    return x.clamp(0, 1), partner_index(n, "flip")


@functools.cache
def _feature_net() -> nn.Module:
    """The first stage of an untrained :class:`SmallCNN` with fixed weights, in eval mode: a stand-in layer."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return SmallCNN(in_channels=1, width=8).layer1.eval()


@torch.no_grad()
def _features(x: Tensor) -> Tensor:
    """The most active channel of ``x``'s feature map after :func:`_feature_net`, ``[n, 1, H, W]``: what the
    hidden-state methods mix in the gallery."""
    h = _feature_net()(x)
    return h[:, h.mean(dim=(0, 2, 3)).argmax()].unsqueeze(1)


def example(method: Method, x: Tensor, per_sample: bool, generator: torch.Generator) -> Example:
    """``method``'s functional op (with its :attr:`~lightning_mixup.methods.Method.gallery` options) applied to the
    pairs ``(x, x flipped)`` of ``x [n, 1, H, W]``, each image its own class, so that the weight of its own label
    is the diagonal of the mixed targets.

    Hidden-state methods mix a hidden feature map (:func:`_features`) instead of the pixels; saliency methods
    take the digits' own strokes as saliency; the GAN method mixes each digit ("real") with its partner standing
    in for a generated sample, the target being λ. Without a mask (mixup), the mask is λ everywhere.
    """
    n = x.shape[0]
    source = _features(x) if method.kind == "hidden" else x
    options = {**method.gallery, "per_sample": per_sample, "generator": generator}
    if method.kind == "gan":
        mixed = method.batch_op(source, source.flip(0), **options)
        own = mixed.target
    elif "multiclass" not in method.callback.TASKS:  # C-Mixup: regression values, partners drawn by label distance
        mixed = method.batch_op(source, torch.arange(n, dtype=source.dtype), **options)
        own = mixed.lam.expand(n)
    else:
        if method.kind == "saliency":
            options["saliency"] = source[:, 0] + 1e-3
        mixed = method.batch_op(source, torch.arange(n), n, partner="flip", **options)
        if mixed.input.shape[0] == 2 * n:  # RegMixup: the clean batch, then its mixed copy: show the copy
            mixed = mixed._replace(input=mixed.input[n:], target=mixed.target[n:])
        own = mixed.target.diagonal()
    partners = source.flip(0) if mixed.index is None else source[mixed.index]
    first, second = mixed.sources if mixed.sources is not None else (source, partners)
    lam = mixed.lam.expand(n)
    mask = lam.view(n, 1, 1, 1) if mixed.mask is None else mixed.mask
    mask = mask.to(source.dtype).expand_as(source)
    return Example(first[:, 0], second[:, 0], mask[:, 0], mixed.input[:, 0], own)


TITLES = {
    "manifold_mixup": "Manifold Mixup (a hidden feature map)",
    "patchup": "PatchUp, soft (a hidden feature map)",
    "puzzlemix": "PuzzleMix (transported sources)",
    "resizemix": "ResizeMix (second row: the resized partner, where it is pasted)",
    "snapmix": "SnapMix (second row: the partner's box resized into the image's; strokes stand in for the CAMs)",
    "gan_mixup": "mixup for GAN discriminators (partner: a stand-in fake; λ is the target)",
}
"""Titles that say more than the method's own."""

MODES = {"one λ per batch": False, "one λ per sample": True}


def examples(name: str, n: int = 4, seed: int = SEED) -> dict[str, Example]:
    """Method ``name`` (see :mod:`lightning_mixup.methods`) applied to :func:`digit_pairs` in both modes:
    ``{"one λ per batch": ..., "one λ per sample": ...}``, each drawn from a generator seeded with ``seed``.

    In every method the mix is ``mask·first + (1 − mask)·second``; λ is the mask's mean in every method but SnapMix,
    whose labels are weighed by CAM mass (tests/test_methods.py checks both for the whole registry).

    Example:
        >>> ex = examples("cutmix", n=4)["one λ per sample"]
        >>> ex.mixed.shape
        torch.Size([4, 32, 32])
        >>> bool(torch.allclose(ex.mixed, ex.mask * ex.first + (1 - ex.mask) * ex.second, atol=1e-6))
        True
        >>> bool(torch.allclose(ex.mask.mean(dim=(1, 2)), ex.lam, atol=1e-6))
        True
    """
    method = get(name)
    x, _ = digit_pairs(n)
    return {
        mode: example(method, x, per_sample, torch.Generator().manual_seed(seed)) for mode, per_sample in MODES.items()
    }


def example_figure(groups: Mapping[str, Example], title: str = "") -> Figure:
    """Side-by-side groups of pairs: rows first image, partner, mask (share of the first) and mix, with the
    target's λ over each pair."""
    Figure = figure_class()

    rows = ("image", "partner", "mask", "mix")
    n = sum(ex.lam.shape[0] for ex in groups.values())
    figure = Figure(figsize=(0.75 * n + 0.5, 3.6), dpi=80, layout="constrained")
    columns = figure.subfigures(1, len(groups), squeeze=False)[0]
    for column, (label, ex) in zip(columns, groups.items()):
        axes = column.subplots(len(rows), ex.lam.shape[0], squeeze=False)
        column.suptitle(label, fontsize=9)
        for j in range(ex.lam.shape[0]):
            brightest = float(torch.maximum(ex.first[j].max(), ex.second[j].max()))
            for i, picture in enumerate((ex.first[j], ex.second[j], ex.mask[j], ex.mixed[j])):
                ax = axes[i, j]
                vmax = 1.0 if rows[i] == "mask" else brightest  # images and feature maps are >= 0
                ax.imshow(picture.numpy(), cmap="gray", vmin=0.0, vmax=vmax, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if j == 0:
                    ax.set_ylabel(rows[i], fontsize=8)
            axes[0, j].set_title(f"λ={float(ex.lam[j]):.2f}", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def method_figure(name: str, n: int = 4, seed: int = SEED) -> Figure:
    """The gallery figure of method ``name``: both modes side by side (see :func:`examples`)."""
    return example_figure(examples(name, n, seed), TITLES.get(name, get(name).title))


# ---- decision boundaries (mixup paper, Figure 1b) ---------------------------------------------------------------

TOY_METHODS: dict[str, Callable[[], list[Callback]]] = {
    "ERM": lambda: [],
    "mixup (α = 1)": lambda: [MixUp(alpha=1.0)],
    "Manifold Mixup (α = 2)": lambda: [ManifoldMixup(layers=["net.layers.0", "net.layers.1"], alpha=2.0)],
}
"""The trainings of the decision-boundary figure: the callbacks of each, made fresh for each fit."""


def fit_toy_classifiers(epochs: int = 100, seed: int = 0) -> tuple[Toy2DDataModule, dict[str, Classifier]]:
    """Train one MLP (3 × 64, ReLU, Adam lr 0.01, batch 128) per entry of :data:`TOY_METHODS` on the two moons
    (1,000 points, noise 0.1), each from the same seed; returns the datamodule and the trained classifiers."""
    data = Toy2DDataModule("moons", n_samples=1000, noise=0.1, batch_size=128)
    models = {}
    for name, callbacks in TOY_METHODS.items():
        seed_everything(seed, verbose=False)
        model = Classifier(MLP(2, 2, hidden=64, depth=3), 2, optimizer=functools.partial(torch.optim.Adam, lr=0.01))
        trainer = Trainer(
            accelerator="cpu",
            max_epochs=epochs,
            callbacks=callbacks(),
            limit_val_batches=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(model, data)
        models[name] = model
    return data, models


@torch.no_grad()
def probability_maps(
    models: Mapping[str, nn.Module], x: Tensor, y: Tensor, resolution: int = 150, margin: float = 0.5
) -> Figure:
    """Side by side, each model's predicted probability of class 1 over the plane of the 2-D points ``x [N, 2]``
    (labels ``y [N]`` drawn on top): the mixup paper's Figure 1b. The models are put in eval mode."""
    Figure = figure_class()

    levels = [i / 10 for i in range(11)]  # flat bands: a small PNG
    low, high = x.min(dim=0).values - margin, x.max(dim=0).values + margin
    xs = torch.linspace(float(low[0]), float(high[0]), resolution)
    ys = torch.linspace(float(low[1]), float(high[1]), resolution)
    plane = torch.cartesian_prod(ys, xs).flip(1)  # row-major over (y, x): points (x, y)
    figure = Figure(figsize=(3.0 * len(models) + 0.6, 3.0), dpi=80, layout="constrained")
    axes = figure.subplots(1, len(models), squeeze=False)[0]
    image = None
    for ax, (name, model) in zip(axes, models.items()):
        prob = model.eval()(plane).softmax(dim=1)[:, 1].reshape(resolution, resolution)
        image = ax.contourf(xs.numpy(), ys.numpy(), prob.numpy(), levels=levels, cmap="Blues", vmin=0, vmax=1)
        for label, color in ((0, "tab:green"), (1, "tab:orange")):
            ax.scatter(*x[y == label].T.numpy(), s=4, c=color, edgecolors="none")
        ax.set_title(name, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(image, ax=list(axes), label="p(y = 1 | x)", shrink=0.9)
    return figure


def decision_boundary_figure(epochs: int = 100, seed: int = 0) -> Figure:
    """Train :func:`fit_toy_classifiers` and draw their :func:`probability_maps` over the test points."""
    data, models = fit_toy_classifiers(epochs, seed)
    x, y = data.test_set.tensors
    return probability_maps(models, x, y)


PLOT_EXTRA = 'pip install "lightning-mixup[plot]" (from a clone: pip install ".[plot]")'


def figure_class() -> type[Figure]:
    """matplotlib's ``Figure``, or ``ModuleNotFoundError`` saying how to install it (the ``plot`` extra)."""
    try:
        from matplotlib.figure import Figure
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(f"the gallery draws with matplotlib, which is not installed: {PLOT_EXTRA}") from err
    return Figure


def main(argv: list[str] | None = None) -> None:
    """``python -m lightning_mixup.gallery --out docs/images``: one PNG per method and ``decision_boundaries.png``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="folder of the PNG files")
    parser.add_argument("--methods", nargs="*", choices=list(METHODS), default=list(METHODS), help="methods drawn")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of the decision-boundary trainings")
    parser.add_argument("--no-boundaries", action="store_true", help="skip decision_boundaries.png")
    args = parser.parse_args(argv)
    figure_class()  # before any training: fail now without matplotlib
    args.out.mkdir(parents=True, exist_ok=True)
    figures = {name: functools.partial(method_figure, name) for name in args.methods}
    if not args.no_boundaries:
        figures["decision_boundaries"] = functools.partial(decision_boundary_figure, args.epochs)
    for name, make in figures.items():
        path = args.out / f"{name}.png"
        make().savefig(path)
        print(f"{path}  {path.stat().st_size / 1024:.1f} KB")


if __name__ == "__main__":
    main()

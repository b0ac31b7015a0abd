"""The method registry: every mixing method of the package, named once.

A method's ``name`` is the same everywhere: its functional op, its callback, its Hydra config
(``conf/mix/<name>.yaml``), its gallery picture (``docs/images/<name>.png``), the benchmark and the tests.
The benchmark, the gallery, the test suite and the README's method table are driven by :data:`METHODS`;
an unknown name is an error (:func:`get`), never a fallback.

``python -m lightning_mixup.methods`` prints the README's method table.

Example:
    >>> get("cutmix").callback.__name__, get("cutmix").kind
    ('CutMix', 'input')
    >>> get("cutmx")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown method 'cutmx'; the methods are ['mixup', 'cutmix', 'fmix', ...]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from lightning.pytorch.callbacks import Callback

from lightning_mixup.callbacks import (
    AlignMix,
    CMixup,
    CoMixup,
    CutMix,
    DiscriminatorMixup,
    FMix,
    GridMix,
    ManifoldMixup,
    MixUp,
    PatchUp,
    PuzzleMix,
    RegMixup,
    Remix,
    ResizeMix,
    SaliencyMix,
    SmoothMix,
    SnapMix,
    TransMix,
)
from lightning_mixup.functional import (
    alignmix_batch,
    cmixup_batch,
    comixup_batch,
    cutmix_batch,
    fmix_batch,
    gan_mixup_batch,
    gridmix_batch,
    mixup_batch,
    patchup_batch,
    regmixup_batch,
    remix_batch,
    resizemix_batch,
    saliencymix_batch,
    smoothmix_batch,
    snapmix_batch,
    transmix_batch,
)
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.comixup import CoMixupParams
from lightning_mixup.functional.puzzlemix import PuzzleMixParams, puzzlemix_batch

KINDS = {
    "input": "mixes the input before the forward",
    "hidden": "mixes the output of a hidden layer during the forward (a forward hook)",
    "saliency": "mixes the input, guided by the saliency of an extra forward and backward pass",
    "attention": "mixes the input; the targets re-weighted by the network's attention during the forward (a hook)",
    "gan": "mixes real and generated samples for a GAN's discriminator",
}
"""The kinds of method, with what each mixes and when."""


def _frozen(mapping: Mapping[str, Any] | None = None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Method:
    """One registered method.

    Args:
        name: the one name (``conf/mix/<name>.yaml``, ``docs/images/<name>.png``, ``python -m
            lightning_mixup.bench <name>``).
        title: its display name.
        kind: one of :data:`KINDS`.
        callback: the callback class.
        batch_op: the functional ``*_batch`` op (pure torch), which returns a
            :class:`~lightning_mixup.functional.MixedBatch`.
        paper: authors, venue and year; ``arxiv``: the arXiv id ("" for a paper without one); ``official``: the
            official code's repository (or the reimplementation followed, where there is none).
        mixes: what it mixes, in a few words; ``defaults``: its key hyper-parameters (official defaults).
        example: constructor arguments of a small, quick instance for a :class:`~lightning_mixup.models.nets.SmallCNN`
            as ``pl_module.net`` (the tests, the benchmark and the DDP checks start from it).
        gallery: keyword arguments of ``batch_op`` for its gallery picture.
        tests: the test file of its functional op, under ``tests/``.
    """

    name: str
    title: str
    kind: str
    callback: type[Callback]
    batch_op: Callable[..., MixedBatch]
    paper: str
    arxiv: str
    official: str
    mixes: str
    defaults: str
    tests: str
    example: Mapping[str, Any] = field(default_factory=_frozen)
    gallery: Mapping[str, Any] = field(default_factory=_frozen)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.name}: kind must be one of {tuple(KINDS)}, got {self.kind!r}")
        object.__setattr__(self, "example", _frozen(self.example))
        object.__setattr__(self, "gallery", _frozen(self.gallery))

    def make(self, **kwargs: Any) -> Callback:
        """The callback with :attr:`example`'s arguments, updated by ``kwargs``."""
        return self.callback(**{**self.example, **kwargs})


METHODS: Mapping[str, Method] = MappingProxyType(
    {
        m.name: m
        for m in (
            Method(
                "mixup", "mixup", "input", MixUp, mixup_batch,
                "Zhang et al., ICLR 2018", "1710.09412", "facebookresearch/mixup-cifar10",
                "`λx + (1−λ)x[j]`, any input shape", "`alpha` (1.0 on CIFAR, 0.2 on ImageNet)",
                "test_functional_mixup.py",
                gallery={"alpha": 1.0},
            ),
            Method(
                "cutmix", "CutMix", "input", CutMix, cutmix_batch,
                "Yun et al., ICCV 2019", "1905.04899", "clovaai/CutMix-PyTorch",
                "a box of side `√(1−λ)·H × √(1−λ)·W` pasted from the partner", "`alpha=1.0`, `p` (0.5 on CIFAR)",
                "test_functional_cutmix.py",
                gallery={"alpha": 1.0},
            ),
            Method(
                "fmix", "FMix", "input", FMix, fmix_batch,
                "Harris et al., 2020", "2002.12047", "ecs-vlc/FMix",
                "a binary mask from low-frequency Fourier noise",
                "`alpha=1.0`, `decay_power=3`, `max_soft=0`, `reformulate=False`",
                "test_functional_fmix.py",
                gallery={"alpha": 1.0, "decay_power": 3.0},
            ),
            Method(
                "manifold_mixup", "Manifold Mixup", "hidden", ManifoldMixup, mixup_batch,
                "Verma et al., ICML 2019", "1806.05236", "vikasverma1077/manifold_mixup",
                "mixup of the hidden state of a layer drawn each batch", "`layers`, `include_input=True`, `alpha=2.0`",
                "test_hidden.py",
                example={"layers": ["net.layer1", "net.layer2"]},
                gallery={"alpha": 2.0},
            ),
            Method(
                "patchup", "PatchUp", "hidden", PatchUp, patchup_batch,
                "Faramarzi et al., AAAI 2022", "2006.07794", "chandar-lab/PatchUp",
                "DropBlock-style blocks of a hidden feature map, swapped or interpolated",
                "`layers`, `mode` (`soft`/`hard`), `block_size=7`, `gamma` (0.75/0.5), `p` (1.0/0.7), `alpha=2.0`",
                "test_hidden.py",
                example={"layers": ["net.layer1"], "block_size": 3, "p": 1.0},
                gallery={"alpha": 2.0, "mode": "soft", "block_size": 7, "gamma": 0.75},
            ),
            Method(
                "puzzlemix", "PuzzleMix", "saliency", PuzzleMix, puzzlemix_batch,
                "Kim et al., ICML 2020", "2009.06962", "snu-mllab/PuzzleMix",
                "a block mask optimised per pair to keep both images' salient regions, after moving salient "
                "blocks into the kept region",
                "`alpha=1`, `beta=1.2`, `gamma=0.5`, `eta=0.2`, `neigh_size=4`, `n_labels=3`, `grids=(2,4,8,16)`, "
                "`transport=True`, `t_eps=0.8`, `t_size=4`, `adv_p=0`, `adv_eps=10`, `clean_lam=0`",
                "test_puzzlemix.py",
                example={"grids": (2, 4)},
                gallery={"alpha": 1.0, "params": PuzzleMixParams(grids=(4,))},
            ),
            Method(
                "resizemix", "ResizeMix", "input", ResizeMix, resizemix_batch,
                "Qin et al., 2020", "2012.11101", "— (reimplemented: Westlake-AI/openmixup, open-mmlab/mmpretrain)",
                "the whole partner, resized by τ ~ U(scope), pasted at a random place (λ = the kept area)",
                "`scope=(0.1, 0.8)`, `sampling='uniform'`, `interpolation='nearest'`, `placement='clip'`",
                "test_functional_resizemix.py",
                gallery={"scope": (0.3, 0.6)},
            ),
            Method(
                "saliencymix", "SaliencyMix", "input", SaliencyMix, saliencymix_batch,
                "Uddin et al., ICLR 2021", "2006.01791", "afm-shahab-uddin/SaliencyMix",
                "a CutMix box centred on the peak of the partner's spectral-residual saliency",
                "`alpha=1.0`, `p` (0.5 on CIFAR), `saliency_size=64`",
                "test_functional_saliencymix.py",
                gallery={"alpha": 1.0},
            ),
            Method(
                "gridmix", "GridMix", "input", GridMix, gridmix_batch,
                "Baek, Bang & Shim, Pattern Recognition 2021", "", "— (reimplemented: Westlake-AI/openmixup)",
                "g×g cells, each whole from one image (`mode='holes'`: OpenMixup's grid of partner holes)",
                "`alpha=1`, `grid_size=(2,6)`, `cell_rule='bernoulli'`; holes: `n_holes=(2,6)`, "
                "`cut_area_ratio=(0.5,1)`, `cut_aspect_ratio=(0.5,2)`",
                "test_functional_gridmix.py",
                gallery={"alpha": 1.0, "grid_size": 4},
            ),
            Method(
                "smoothmix", "SmoothMix", "input", SmoothMix, smoothmix_batch,
                "Lee et al., CVPR Workshops 2020", "", "— (reimplemented: Westlake-AI/openmixup)",
                "the partner blended in through a soft Gaussian bump (circle or square) around a random centre",
                "`shape='circle'`, `sigma_range=(0.25, 0.5)` (σ as a share of the side)",
                "test_functional_smoothmix.py",
                gallery={"shape": "circle"},
            ),
            Method(
                "snapmix", "SnapMix", "saliency", SnapMix, snapmix_batch,
                "Huang, Wang & Tao, AAAI 2021", "2012.04846", "Shaoli-Huang/SnapMix",
                "a box of the partner resized into a box of another size; labels weighted by each image's CAM mass "
                "(the weights need not sum to 1)",
                "`alpha=5` (`--beta 5`), `p=1` (0.5 from scratch), `feature_layer`, `classifier_layer`",
                "test_functional_snapmix.py",
                example={"feature_layer": "net.layer3", "classifier_layer": "net.head.2"},
                gallery={"alpha": 5.0},
            ),
            Method(
                "alignmix", "AlignMixup", "hidden", AlignMix, alignmix_batch,
                "Venkataramanan et al., CVPR 2022", "2103.15375", "shashankvkt/AlignMixup_CVPR22",
                "a hidden feature map and its partner's, aligned position to position by Sinkhorn optimal transport, "
                "then interpolated",
                "`layers` (the last feature map), `include_input=True`, `alpha=2.0`, `eps=0.1`, `iterations=100`, "
                "`tol=0.1`, `direction='random'`",
                "test_alignmix.py",
                example={"layers": ["net.layer3"]},
                gallery={"alpha": 2.0, "direction": "to_sample"},
            ),
            Method(
                "remix", "Remix", "input", Remix, remix_batch,
                "Chou et al., ECCV Workshops 2020", "2007.03943",
                "— (no official code; the paper's equations, cf. ntucllab/imbalanced-DL)",
                "mixup's input; the label weight set to 0 or 1 toward the minority class when n_i/n_j ≥ κ and λ is "
                "on the majority's side of τ",
                "`alpha=1.0`, `kappa=3`, `tau=0.5`, `class_counts` (or the datamodule's)",
                "test_remix.py",
                example={"class_counts": (122, 94, 73, 56, 43, 33, 26, 20, 15, 12)},
                gallery={"alpha": 1.0, "class_counts": (100, 30, 10, 1)},
            ),
            Method(
                "cmixup", "C-Mixup", "input", CMixup, cmixup_batch,
                "Yao et al., NeurIPS 2022", "2210.05775", "huaxiuyao/C-Mixup",
                "mixup for regression, each partner drawn ∝ exp(−‖y_i − y_j‖²/(2σ²)) (close labels)",
                "`alpha=2.0`, `bandwidth` σ (per data set, in label units; 1.0), `kernel='gaussian'`",
                "test_cmixup.py",
                example={"bandwidth": 1.0},
                gallery={"alpha": 2.0, "bandwidth": 1.0},
            ),
            Method(
                "regmixup", "RegMixup", "input", RegMixup, regmixup_batch,
                "Pinto et al., NeurIPS 2022", "2206.14502", "FrancescoPinto/RegMixup",
                "the clean batch and its mixup in one forward (2B rows): the clean loss plus η × the mixup loss",
                "`alpha` (20 on CIFAR-10, 10 on CIFAR-100), `eta=1`, `reduction='mean'` (the official ½·(clean + mix))",
                "test_regmixup.py",
                example={"alpha": 10.0},
                gallery={"alpha": 20.0},
            ),
            Method(
                "comixup", "Co-Mixup", "saliency", CoMixup, comixup_batch,
                "Kim et al., ICLR 2021", "2102.03065", "snu-mllab/Co-Mixup",
                "partitions of `m_part` inputs; each output a block mosaic of several of them, chosen jointly to keep "
                "saliency and keep the outputs diverse; labels weighted by each input's share",
                "`alpha=2` (Dirichlet), `grids=(4,)`, `m_part=20`, `beta=0.32`, `gamma=1.0`, `eta=0.05`, "
                "`omega=0.001`, `thres=0.83`, `niter=4`, `set_resolve=True`, `clean_lam=1`",
                "test_comixup.py",
                example={"grids": (2, 4), "m_part": 4, "niter": 2},
                gallery={"params": CoMixupParams(m_part=4)},
            ),
            Method(
                "transmix", "TransMix", "attention", TransMix, transmix_batch,
                "Chen et al., CVPR 2022", "2111.09833", "Beckschen/TransMix",
                "CutMix (or mixup, switched per batch); a CutMix batch's label weights re-computed from the class "
                "token's attention on each image's patches (averaged with the area)",
                "`alpha=1.0` (CutMix), `mixup_alpha=0.8`, `switch_prob=0.8`, `area_weight=0.5`, `attention_layer`",
                "test_transmix.py",
                example={"attention_layer": "net.blocks.3.attn.attn_drop"},
                gallery={"alpha": 1.0, "switch_prob": 1.0},
            ),
            Method(
                "gan_mixup", "mixup for GAN discriminators", "gan", DiscriminatorMixup, gan_mixup_batch,
                "Zhang et al., ICLR 2018, §3.7", "1710.09412", "—",
                "real and generated samples, for a GAN's discriminator, with λ as its target",
                "`alpha=0.2`, `per_sample=True`",
                "test_gan.py",
                gallery={"alpha": 0.2},
            ),
        )
    }
)  # fmt: skip
"""Every method, by name."""


def get(name: str) -> Method:
    """The method called ``name``; ``ValueError`` listing the methods for any other name."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; the methods are {list(METHODS)}")
    return METHODS[name]


def names(*kinds: str, task: str | None = None) -> list[str]:
    """The names of the methods of these kinds (all methods without ``kinds``) that mix ``task``'s targets (any
    task when None), in registry order.

    Example:
        >>> names("hidden")
        ['manifold_mixup', 'patchup', 'alignmix']
        >>> names("input", task="regression")[-2:]
        ['cmixup', 'regmixup']
    """
    unknown = [kind for kind in kinds if kind not in KINDS]
    if unknown:
        raise ValueError(f"unknown kind(s) {unknown}; the kinds are {list(KINDS)}")
    return [
        m.name
        for m in METHODS.values()
        if (not kinds or m.kind in kinds) and (task is None or task in getattr(m.callback, "TASKS", (task,)))
    ]


COMBINATOR_ROW = (
    "| `RandomChoice` | `random_choice` | — (timm's mixup/CutMix switch, generalised) "
    "| one of several mixers per batch | `mixers`, `weights` | — |"
)
"""The README method table's last row: :class:`~lightning_mixup.RandomChoice`, a combinator, not a method."""


def markdown_table() -> str:
    """The README's method table: one row per registered method, then :class:`RandomChoice`."""
    lines = [
        "| callback | `mix=` | paper | what it mixes | key hyper-parameters (official defaults) | functional op |",
        "|---|---|---|---|---|---|",
    ]
    for m in METHODS.values():
        paper = f"{m.paper}, [arXiv {m.arxiv}](https://arxiv.org/abs/{m.arxiv})" if m.arxiv else m.paper
        op = f"`{m.batch_op.__name__}`"
        lines.append(f"| `{m.callback.__name__}` | `{m.name}` | {paper} | {m.mixes} | {m.defaults} | {op} |")
    lines.append(COMBINATOR_ROW)
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())

"""The SnapMix callback."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lightning_mixup.callbacks.base import Mixer, MixStep
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.snapmix import class_activation_maps, snapmix_batch


def _check_name(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a submodule name such as 'net.layer3', got {value!r}")
    if not value:
        raise ValueError(f"{name} must be a submodule name such as 'net.layer3', got ''")
    return value


class SnapMix(Mixer):
    """SnapMix (Huang, Wang & Tao, AAAI 2021, arXiv 2012.04846): a box of the partner (of area drawn with λ′) is
    resized into a box of the image (of area drawn with λ, λ, λ′ ~ Beta(α, α)); each label is weighted by the share
    of its image's class activation map that the mixed image holds: ``λ_a = 1 − CAM_a(box)``, ``λ_b =
    CAM_b(box′)``. The targets are ``λ_a·onehot(y) + λ_b·onehot(y[j])``, rows that do not sum to 1 (the official
    loss is ``λ_a·CE(y) + λ_b·CE(y[j])``); a pair with identical labels gets ``λ_a + λ_b`` on both, as in the
    official code. Multiclass, mixed form only. Needs ``[B, C, H, W]``.

    The CAMs come from an extra forward ``pl_module(x)`` in eval mode without gradients: a forward hook on
    ``feature_layer`` captures the feature map ``[B, K, h, w]`` that is pooled into the classifier
    ``classifier_layer`` (an ``nn.Linear`` with ``K`` inputs); the CAM of the sample's label is
    ``Σ_k w[y, k]·relu(f_k) + b[y]``, upsampled to the image and normalised to sum 1 (official ``get_spm``). The
    pass costs about one more forward. Both names are checked in ``setup``.

    Args:
        alpha: λ, λ′ ~ Beta(α, α). Official: ``--beta 5`` for fine-grained data with pre-trained nets (the
            argparse default is 1).
        feature_layer: name of the submodule whose output is the last feature map, e.g. ``"net.layer3"`` for
            :class:`~lightning_mixup.models.nets.SmallCNN` in a Classifier, ``"net.final"`` for PreActResNet,
            ``"net.layer4"`` for a torchvision ResNet kept as ``net``.
        classifier_layer: name of the ``nn.Linear`` classifier on the pooled features, e.g. ``"net.head.2"``
            (SmallCNN), ``"net.head.1"`` (PreActResNet), ``"net.fc"`` (torchvision ResNet).
        **kwargs: ``p`` (official: 1.0 with pre-trained nets, 0.5 from scratch), ``per_sample`` (two boxes per
            sample instead of per batch, not in the official code), ``partner``, ... as for :class:`Mixer`.

    The functional op is :func:`~lightning_mixup.functional.snapmix.snapmix_batch` (with
    :func:`~lightning_mixup.functional.snapmix.class_activation_maps`).

    Example:
        >>> from lightning import Trainer
        >>> snapmix = SnapMix(alpha=5.0, feature_layer="net.layer3", classifier_layer="net.head.2")
        >>> trainer = Trainer(callbacks=[snapmix], logger=False, enable_checkpointing=False)
    """

    TASKS: ClassVar[tuple[str, ...]] = ("multiclass",)
    FORMS: ClassVar[tuple[str, ...]] = ("mixed",)
    LABELS_FOLLOW_AREA: ClassVar[bool] = False  # the CAM mass of each box, not the area

    def __init__(
        self,
        alpha: float = 5.0,
        feature_layer: str = "net.layer3",
        classifier_layer: str = "net.head.2",
        **kwargs: Any,
    ) -> None:
        super().__init__(alpha, **kwargs)
        self.feature_layer = _check_name("feature_layer", feature_layer)
        self.classifier_layer = _check_name("classifier_layer", classifier_layer)
        self._trainer: pl.Trainer | None = None
        self._module: pl.LightningModule | None = None

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "feature_layer": self.feature_layer, "classifier_layer": self.classifier_layer}

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        self._find(pl_module, self.feature_layer, "feature_layer")
        classifier = self._find(pl_module, self.classifier_layer, "classifier_layer")
        if not isinstance(classifier, nn.Linear):
            linears = [name for name, module in pl_module.named_modules() if isinstance(module, nn.Linear)]
            raise TypeError(
                f"SnapMix(classifier_layer={self.classifier_layer!r}) must name an nn.Linear, got "
                f"{type(classifier).__name__}; the nn.Linear modules of {type(pl_module).__name__} are {linears}"
            )
        if type(pl_module).forward in (pl.LightningModule.forward, torch.nn.Module.forward):
            raise TypeError(
                f"SnapMix computes the CAMs from pl_module(x), but {type(pl_module).__name__} defines no forward"
            )
        self._trainer, self._module = trainer, pl_module

    @staticmethod
    def _find(pl_module: pl.LightningModule, name: str, option: str) -> nn.Module:
        try:
            return pl_module.get_submodule(name)
        except AttributeError:
            names = [found for found, _ in pl_module.named_modules() if found]
            raise ValueError(
                f"SnapMix({option}={name!r}): {type(pl_module).__name__} has no such submodule; its submodules are "
                f"{names}"
            ) from None

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = self._module = None

    def mix(self, step: MixStep) -> MixedBatch:
        x = step.x
        if x.ndim != 4:
            raise ValueError(f"SnapMix expects a 4-D input [B, C, H, W], got shape {list(x.shape)}")
        targets = step.targets.read(step.target, x)
        labels = targets.value.argmax(dim=1)  # the class indices (or the top class of probability rows)
        cams = self.cams(x, labels)
        return snapmix_batch(x, step.target, step.targets, self.alpha, cams=cams, **self.batch_options(step))

    def cams(self, x: Tensor, labels: Tensor) -> Tensor:
        """The normalised CAMs ``[B, H, W]`` of ``labels`` from a no-grad eval forward of the module."""
        module, trainer = self._module, self._trainer
        if module is None or trainer is None:
            raise RuntimeError("SnapMix was not set up for fit: pass it to Trainer(callbacks=[...])")
        captured: list[Tensor] = []
        feature = module.get_submodule(self.feature_layer)
        classifier = module.get_submodule(self.classifier_layer)
        handle = feature.register_forward_hook(lambda _m, _i, output: captured.append(output))
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                module(x)
        finally:
            handle.remove()
            module.train(was_training)
        if not captured or not isinstance(captured[-1], Tensor) or captured[-1].ndim != 4:
            got = "nothing" if not captured else f"{type(captured[-1]).__name__} {getattr(captured[-1], 'shape', '')}"
            raise ValueError(
                f"SnapMix(feature_layer={self.feature_layer!r}) must output a feature map [B, K, h, w] during "
                f"pl_module(x), got {got}"
            )
        features = captured[-1]
        if features.shape[1] != classifier.in_features:
            raise ValueError(
                f"SnapMix: feature_layer={self.feature_layer!r} gives {features.shape[1]} channels but "
                f"classifier_layer={self.classifier_layer!r} takes {classifier.in_features} features"
            )
        return class_activation_maps(features, classifier.weight, classifier.bias, labels, (x.shape[2], x.shape[3]))

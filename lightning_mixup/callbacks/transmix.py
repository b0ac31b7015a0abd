"""The TransMix callback: CutMix/mixup inputs, targets re-weighted by the attention the network pays to them."""

from __future__ import annotations

from typing import Any, ClassVar

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from lightning_mixup.callbacks.base import ForwardHooks, Mixer, MixStep
from lightning_mixup.checks import check_int
from lightning_mixup.functional.batch import MixedBatch
from lightning_mixup.functional.targets import fill_
from lightning_mixup.functional.transmix import (
    AREA_WEIGHT,
    check_transmix_params,
    class_attention,
    patch_grid,
    transmix_batch,
    transmix_lam,
)

SUM_TOLERANCE = 5e-2  # softmax rows sum to 1; bfloat16 rounding stays far inside this


def _describe(value: object) -> str:
    if isinstance(value, Tensor):
        return f"a tensor of shape {list(value.shape)}"
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of ({', '.join(_describe(v) for v in value)})"
    return "None" if value is None else f"a {type(value).__name__}"


class TransMix(ForwardHooks, Mixer):
    """TransMix (Chen et al., CVPR 2022, arXiv 2111.09833): the input is mixed by CutMix (with probability
    ``switch_prob``, else by mixup, timm's switch), and the label weights of a CutMix batch are re-computed from the
    attention of a vision transformer: λ = ``area_weight``·(area kept) + (1 − ``area_weight``)·(share of the class
    token's attention, averaged over heads, that falls on the sample's own patches; the box mask is taken to the
    patch grid by nearest neighbour). λ is the share of each sample's own label, as in every method. A mixup batch
    keeps its λ (official code). Multiclass, multi-label and regression targets, mixed or pair form.

    **How the attention is read.** A forward hook on the module named ``attention_layer`` (registered in ``setup``,
    removed in ``teardown``) reads the last block's softmax attention ``[B, heads, N, N]`` during the training
    forward of the mixed batch, once per step, without gradient. The layer may be:

    - an ``nn.Dropout`` applied to the attention weights (timm's and :class:`~lightning_mixup.models.nets.ViT`'s
      ``attn_drop``): its *input* is read, the softmax before dropout, as the official code takes it; e.g.
      ``"net.blocks.3.attn.attn_drop"`` for ``ViT(depth=4)`` in a :class:`~lightning_mixup.Classifier`;
    - a module whose output is the weights ``[B, heads, N, N]`` or ``[B, N, N]`` (an ``nn.Softmax``);
    - a module returning a tuple whose last item is the weights: the official ``return_attn`` blocks' ``(x, attn)``,
      or an ``nn.MultiheadAttention`` called with ``need_weights=True`` (its head-averaged ``[B, N, N]``).

    Token 0 is the class token and the patches follow the ``num_prefix_tokens`` prefix tokens, in row-major order
    over a patch grid of the image's aspect ratio. An unknown name fails in ``setup`` with the attention-like
    module names; a layer that gives no attention weights fails on the first training batch with what it gave.

    **Fused attention.** ``F.scaled_dot_product_attention`` (timm's ``fused_attn``, PyTorch's fast paths) never
    materialises the weights, so there is nothing to read: for a timm ViT set ``model.blocks[-1].attn.fused_attn =
    False`` (only the last block needs it) and name ``"...blocks.11.attn.attn_drop"``; a module whose ``fused_attn``
    is True is refused in ``setup``. For ``nn.TransformerEncoderLayer`` (it calls its ``self_attn`` with
    ``need_weights=False``), compute the softmax in a small module of your own and name it.

    **The targets are filled in during the forward.** The weights exist only once the mixed batch has gone through
    the network, so at batch start a CutMix batch's targets are written into the batch as NaN, and the hook fills in
    the re-weighted targets *in place* (the same tensor, or the ``weight`` of a pair), before the loss reads them:
    read the targets after calling the model, as a ``training_step`` normally does; a loss computed from an earlier
    copy is NaN and fails loudly. The attention layer must run in the training forward; if not, the step fails.

    Args:
        attention_layer: the name (as ``pl_module.named_modules()`` gives it) of the module that gives the last
            block's attention weights.
        alpha: CutMix's λ ~ Beta(α, α) (official ``--cutmix 1.0``).
        mixup_alpha: mixup's λ ~ Beta(α, α) (official ``--mixup 0.8``); 0 turns mixup off (CutMix every batch).
        switch_prob: probability of CutMix rather than mixup per batch (official ``mixup_switch_prob: 0.8`` in the
            configs; timm's default is 0.5).
        area_weight: the weight of the kept area in λ (official ``transmix_label``: 0.5, ``(lam0 + lam1) / 2``);
            0 gives the paper's equation, the attention share alone.
        num_prefix_tokens: tokens before the patches (1: the class token; 2 for DeiT's distillation token).
        **kwargs: ``p`` (official ``--mixup-prob 1.0``), ``per_sample`` (one λ and box per sample; official: one per
            batch), ``partner`` (official: the flipped batch, ``"flip"``), ``stop_epoch`` (official
            ``--mixup-off-epoch``), ... as for :class:`Mixer`.

    Label smoothing (official ``--smoothing 0.1``, applied to both one-hot labels before they are mixed) is the
    loss's job here: ``Classifier(label_smoothing=0.1)`` gives the same targets, smoothing being affine.

    The functional ops are :func:`~lightning_mixup.functional.transmix.transmix_batch` (the input) and
    :func:`~lightning_mixup.functional.transmix.transmix_targets` (the re-weighting).

    Example:
        >>> from lightning import Trainer
        >>> transmix = TransMix("net.blocks.3.attn.attn_drop", alpha=1.0, mixup_alpha=0.8, switch_prob=0.8)
        >>> trainer = Trainer(callbacks=[transmix], logger=False, enable_checkpointing=False)
    """

    GLOBAL_PARTNERS: ClassVar[bool] = False  # its label weights come from the forward's attention

    TASKS: ClassVar[tuple[str, ...]] = ("multiclass", "multilabel", "regression")  # one λ per sample

    def __init__(
        self,
        attention_layer: str | None,
        alpha: float = 1.0,
        mixup_alpha: float = 0.8,
        switch_prob: float = 0.8,
        area_weight: float = AREA_WEIGHT,
        num_prefix_tokens: int = 1,
        **kwargs: Any,
    ) -> None:
        super().__init__(alpha, **kwargs)
        if attention_layer is None:
            raise ValueError(
                "TransMix needs attention_layer, the module that gives the last block's attention weights (e.g. "
                "'net.blocks.3.attn.attn_drop'); `mix=transmix` reads it from the net config's net_layers.transmix "
                "(net=vit has it)"
            )
        if not isinstance(attention_layer, str):
            raise TypeError(f"attention_layer must be a module name such as 'net.blocks.3.attn.attn_drop', got "
                            f"{attention_layer!r}")  # fmt: skip
        if not attention_layer:
            raise ValueError("attention_layer must be a module name such as 'net.blocks.3.attn.attn_drop', got ''")
        self.attention_layer = attention_layer
        self.mixup_alpha, self.switch_prob, self.area_weight = check_transmix_params(
            mixup_alpha, switch_prob, area_weight
        )
        self.num_prefix_tokens = check_int("num_prefix_tokens", num_prefix_tokens, 1)
        self._handles: list[RemovableHandle] = []
        self._checked = False
        self._seen = False

    def _hparams(self) -> dict[str, Any]:
        return {**super()._hparams(), "attention_layer": self.attention_layer, "mixup_alpha": self.mixup_alpha,
                "switch_prob": self.switch_prob, "area_weight": self.area_weight}  # fmt: skip

    # ---- the hook ------------------------------------------------------------------------------

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage != "fit":
            return
        modules = dict(pl_module.named_modules())
        layer = modules.get(self.attention_layer)
        if layer is None:
            names = [name for name in modules if name]
            attention = [name for name in names if "attn" in name.lower() or "attention" in name.lower()]
            which = f"its attention-like modules are {attention}" if attention else f"its modules are {names}"
            raise ValueError(
                f"TransMix(attention_layer={self.attention_layer!r}): {type(pl_module).__name__} has no such module; "
                f"{which}"
            )
        parent_name = self.attention_layer.rpartition(".")[0]
        for name in dict.fromkeys((self.attention_layer, parent_name)):
            if getattr(modules.get(name), "fused_attn", False):
                raise ValueError(
                    f"TransMix(attention_layer={self.attention_layer!r}): {name or 'the module'} "
                    f"({type(modules[name]).__name__}) has fused_attn=True, so F.scaled_dot_product_attention never "
                    "materialises the attention weights; set its fused_attn = False (only the last block needs it) "
                    "and name its attn_drop"
                )
        self._remove_hooks()
        self._checked, self._seen = False, False
        self._handles = [layer.register_forward_hook(self._hook)]

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        step = self._step
        if step is None:  # not in a training step (validation, test, predict, sanity check)
            return
        armed = step.forward_mix is not None and step.forward_mix[0] == self.attention_layer
        if self._checked and not armed:
            return
        attention = self._attention(module, args, output, step)
        self._seen = True
        if armed:
            fill, step.forward_mix = step.forward_mix[1], None
            fill(attention)

    def _attention(self, module: nn.Module, args: tuple[Any, ...], output: Any, step: MixStep) -> Tensor:
        """The attention weights the layer gives (checked on the first training forward)."""
        if isinstance(module, nn.Dropout):
            found = args[0] if args else None  # the weights before dropout, as the official code reads them
        elif isinstance(output, (tuple, list)) and output:
            found = output[-1]
        else:
            found = output
        if self._checked:
            return found
        name = f"TransMix(attention_layer={self.attention_layer!r})"
        hint = (
            "name the module that gives the last block's softmax attention [B, heads, N, N]: an attn_drop dropout "
            "(timm with fused_attn=False, our ViT), an nn.Softmax, or a module returning (x, attn)"
        )
        batch = step.x.shape[0]
        if (
            not isinstance(found, Tensor)
            or found.ndim not in (3, 4)
            or found.shape[0] != batch
            or found.shape[-1] != found.shape[-2]
        ):
            what = _describe(output) if not isinstance(module, nn.Dropout) else f"an input of {_describe(found)}"
            if isinstance(module, nn.MultiheadAttention) and isinstance(output, tuple) and output[-1] is None:
                what += " (nn.MultiheadAttention called with need_weights=False, e.g. by nn.TransformerEncoderLayer)"
            raise ValueError(
                f"{name}: the {type(module).__name__} gave {what}, not attention weights [B={batch}, heads, N, N] "
                f"or [B, N, N]; {hint}"
            )
        sums = found.detach().float().sum(dim=-1)
        if not bool(((sums - 1).abs() <= SUM_TOLERANCE).all()):
            raise ValueError(
                f"{name}: the {type(module).__name__} gave a tensor of shape {list(found.shape)} whose rows sum to "
                f"{float(sums.min()):.4g}..{float(sums.max()):.4g}, not softmax attention weights (rows summing to 1); "
                f"{hint}"
            )
        tokens = found.shape[-1]
        try:
            class_attention(found, self.num_prefix_tokens)
            patch_grid(tokens - self.num_prefix_tokens, step.x.shape[-2], step.x.shape[-1])
        except ValueError as err:
            raise ValueError(
                f"{name}: attention over {tokens} tokens with num_prefix_tokens={self.num_prefix_tokens} does not fit "
                f"the {step.x.shape[-2]}x{step.x.shape[-1]} images: {err}"
            ) from None
        return found

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = self._step
        if step is not None and not self._checked:
            if not self._seen:
                self._step = None
                raise RuntimeError(
                    f"TransMix(attention_layer={self.attention_layer!r}) was not called during the training forward; "
                    "name a module that the forward of the module runs"
                )
            self._checked = True
        if step is not None and step.forward_mix is not None and step.forward_mix[0] == self.attention_layer:
            step.forward_mix, self._step = None, None
            raise RuntimeError(
                f"TransMix(attention_layer={self.attention_layer!r}) was not called during this step's training "
                "forward, so the targets were never re-weighted (they are NaN)"
            )
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    # ---- the mixing step -----------------------------------------------------------------------

    def mix(self, step: MixStep) -> MixedBatch:
        targets = step.targets.read(step.target, step.x)
        mixed = transmix_batch(
            step.x, targets, step.targets, self.alpha, mixup_alpha=self.mixup_alpha, switch_prob=self.switch_prob,
            **self.batch_options(step),
        )  # fmt: skip
        step.stats["mix/cutmix"] = torch.tensor(float(mixed.mask is not None))
        if mixed.mask is None:  # mixup: λ stays, as in the official code
            return mixed
        index, mask, area = mixed.index, mixed.mask, mixed.lam
        batch = step.x.shape[0]
        pending = targets.mix(index, torch.full((batch,), float("nan"), device=index.device))

        def fill(attention: Tensor) -> Tensor:
            lam, lam_attn = transmix_lam(
                attention, mask, area, area_weight=self.area_weight, num_prefix_tokens=self.num_prefix_tokens
            )
            lam = lam.to(index.device)
            fill_(pending, targets.mix(index, lam))
            step.stats["mix/lam_attention"] = lam_attn.mean()
            step.stats["mix/lam_transmix"] = lam.mean()
            return lam

        step.forward_mix = (self.attention_layer, fill)
        return mixed._replace(target=pending)

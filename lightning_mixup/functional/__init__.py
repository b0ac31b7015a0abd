"""Pure-torch mixing ops: no Lightning, Hydra or OmegaConf. Randomness comes in as a ``torch.Generator``."""

from lightning_mixup.functional.cutmix import box_mask, cutmix, cutmix_batch, sample_boxes
from lightning_mixup.functional.fmix import binarise_masks, fmix, fmix_batch, fourier_noise, sample_masks
from lightning_mixup.functional.batch import MixedBatch, pair_up
from lightning_mixup.functional.alignmix import aligned_sources, alignment_plan, alignmix, alignmix_batch
from lightning_mixup.functional.remix import remix_batch, remix_label_weight
from lightning_mixup.functional.mixup import mixup, mixup_batch
from lightning_mixup.functional.gan import discriminator_mixup, gan_mixup_batch
from lightning_mixup.functional.gridmix import cell_masks, gridmix, gridmix_batch, hole_masks
from lightning_mixup.functional.resizemix import resizemix, resizemix_batch, sample_paste_boxes, sample_scales
from lightning_mixup.functional.saliencymix import saliency_boxes, saliencymix_batch, spectral_residual_saliency
from lightning_mixup.functional.snapmix import class_activation_maps, paste_resized, snapmix_batch
from lightning_mixup.functional.smoothmix import smooth_masks, smoothmix, smoothmix_batch
from lightning_mixup.functional.patchup import (
    block_masks,
    own_weight,
    patchup,
    patchup_batch,
    patchup_hidden,
    patchup_own_share,
    patchup_targets,
    unchanged_fraction,
)
from lightning_mixup.functional.saliency import input_saliency, loss_input_grad
from lightning_mixup.functional.sampling import expand_lam, partner_index, sample_beta, sample_lam
from lightning_mixup.functional.targets import PairTarget, TargetBatch, Targets, mix_targets, pair_loss, to_probs

__all__ = [
    "MixedBatch",
    "PairTarget",
    "TargetBatch",
    "Targets",
    "aligned_sources",
    "alignment_plan",
    "alignmix",
    "alignmix_batch",
    "binarise_masks",
    "block_masks",
    "box_mask",
    "cell_masks",
    "class_activation_maps",
    "cutmix",
    "cutmix_batch",
    "discriminator_mixup",
    "expand_lam",
    "fmix",
    "fmix_batch",
    "fourier_noise",
    "gan_mixup_batch",
    "gridmix",
    "gridmix_batch",
    "hole_masks",
    "input_saliency",
    "loss_input_grad",
    "mix_targets",
    "mixup",
    "mixup_batch",
    "own_weight",
    "pair_loss",
    "pair_up",
    "partner_index",
    "paste_resized",
    "patchup",
    "patchup_batch",
    "patchup_hidden",
    "patchup_own_share",
    "patchup_targets",
    "remix_batch",
    "remix_label_weight",
    "resizemix",
    "resizemix_batch",
    "saliency_boxes",
    "saliencymix_batch",
    "sample_beta",
    "sample_boxes",
    "sample_lam",
    "sample_masks",
    "sample_paste_boxes",
    "sample_scales",
    "smooth_masks",
    "smoothmix",
    "smoothmix_batch",
    "snapmix_batch",
    "spectral_residual_saliency",
    "to_probs",
    "unchanged_fraction",
]

"""Pure-torch mixing ops: no Lightning, Hydra or OmegaConf. Randomness comes in as a ``torch.Generator``."""

from lightning_mixup.functional.cutmix import box_mask, cutmix, cutmix_batch, sample_boxes
from lightning_mixup.functional.fmix import binarise_masks, fmix, fmix_batch, fourier_noise, sample_masks
from lightning_mixup.functional.batch import MixedBatch, pair_up
from lightning_mixup.functional.alignmix import aligned_sources, alignment_plan, alignmix, alignmix_batch
from lightning_mixup.functional.remix import remix_batch, remix_label_weight
from lightning_mixup.functional.cmixup import cmixup_batch, label_distances, partner_probabilities, sample_partners
from lightning_mixup.functional.regmixup import concat_targets, regmixup_batch
from lightning_mixup.functional.comixup import CoMixupParams, comixup_batch
from lightning_mixup.functional.transmix import (
    attention_lam,
    class_attention,
    patch_grid,
    patch_mask,
    transmix_batch,
    transmix_lam,
    transmix_targets,
)
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
from lightning_mixup.functional.sampling import expand_lam, partner_index, partners, sample_beta, sample_lam
from lightning_mixup.functional.targets import PairTarget, TargetBatch, Targets, mix_targets, pair_loss, to_probs

__all__ = [
    "CoMixupParams",
    "MixedBatch",
    "PairTarget",
    "TargetBatch",
    "Targets",
    "aligned_sources",
    "alignment_plan",
    "alignmix",
    "alignmix_batch",
    "attention_lam",
    "binarise_masks",
    "block_masks",
    "box_mask",
    "cell_masks",
    "class_activation_maps",
    "class_attention",
    "cmixup_batch",
    "comixup_batch",
    "concat_targets",
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
    "label_distances",
    "loss_input_grad",
    "mix_targets",
    "mixup",
    "mixup_batch",
    "own_weight",
    "pair_loss",
    "pair_up",
    "partner_index",
    "partners",
    "partner_probabilities",
    "paste_resized",
    "patch_grid",
    "patch_mask",
    "patchup",
    "patchup_batch",
    "patchup_hidden",
    "patchup_own_share",
    "patchup_targets",
    "regmixup_batch",
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
    "sample_partners",
    "sample_paste_boxes",
    "sample_scales",
    "smooth_masks",
    "smoothmix",
    "smoothmix_batch",
    "snapmix_batch",
    "spectral_residual_saliency",
    "to_probs",
    "transmix_batch",
    "transmix_lam",
    "transmix_targets",
    "unchanged_fraction",
]

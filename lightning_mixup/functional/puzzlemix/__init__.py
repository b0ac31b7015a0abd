"""PuzzleMix (Kim, Choo & Song, ICML 2020, arXiv 2009.06962): mask energy, batched solver, transport, mixing."""

from lightning_mixup.functional.puzzlemix.energy import MaskProblem, energy, mask_problem
from lightning_mixup.functional.puzzlemix.mix import (
    PuzzleMixParams,
    adversarial_noise,
    adversarial_start,
    optimal_mask,
    puzzlemix,
    puzzlemix_batch,
    puzzlemix_sources,
    transport_plans,
)
from lightning_mixup.functional.saliency import input_saliency
from lightning_mixup.functional.puzzlemix.solver import solve_masks
from lightning_mixup.functional.puzzlemix.transport import move_blocks, transport_plan

__all__ = [
    "MaskProblem",
    "PuzzleMixParams",
    "adversarial_noise",
    "adversarial_start",
    "energy",
    "input_saliency",
    "mask_problem",
    "move_blocks",
    "optimal_mask",
    "puzzlemix",
    "puzzlemix_batch",
    "puzzlemix_sources",
    "solve_masks",
    "transport_plan",
    "transport_plans",
]

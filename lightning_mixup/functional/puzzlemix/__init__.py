"""PuzzleMix (Kim, Choo & Song, ICML 2020, arXiv 2009.06962): mask energy, batched solver, transport, mixing."""

from lightning_mixup.functional.puzzlemix.energy import MaskProblem, energy, mask_problem
from lightning_mixup.functional.puzzlemix.mix import (
    PuzzleMixParams,
    input_saliency,
    optimal_mask,
    puzzlemix,
    puzzlemix_batch,
    transport_sources,
)
from lightning_mixup.functional.puzzlemix.solver import solve_masks
from lightning_mixup.functional.puzzlemix.transport import move_blocks, transport_plan

__all__ = [
    "MaskProblem",
    "PuzzleMixParams",
    "energy",
    "input_saliency",
    "mask_problem",
    "move_blocks",
    "optimal_mask",
    "puzzlemix",
    "puzzlemix_batch",
    "solve_masks",
    "transport_plan",
    "transport_sources",
]

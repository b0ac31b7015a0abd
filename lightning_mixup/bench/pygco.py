"""What PuzzleMix's solver is measured against: pyGCO's α-β swap (the official code's solver, from the optional
``gco-wrapper`` package) and a fixed family of random problems. Used by the tests and the benchmark only."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.functional.puzzlemix.energy import MaskProblem, mask_problem

INT_RANGE = 1e8  # integer scale of the largest energy handed to pyGCO (int32 holds 2.1e9)


def random_problems(batch: int, grid: int, n_labels: int, seed: int = 0, side: int = 32) -> MaskProblem:
    """PuzzleMix energies from smooth random images and blob-like saliency, λ ~ U(0, 1), official weights."""
    g = torch.Generator().manual_seed(seed)
    images = F.interpolate(torch.rand(batch, 3, 8, 8, generator=g), size=side, mode="bilinear", align_corners=False)
    images = (images + 0.15 * torch.rand(batch, 3, side, side, generator=g)).clamp(0, 1)
    blobs = torch.rand(batch, 1, 6, 6, generator=g) ** 3
    saliency = F.interpolate(blobs, size=side, mode="bilinear", align_corners=False)[:, 0]
    saliency = saliency * (0.5 + torch.rand(batch, side, side, generator=g))
    index = torch.randperm(batch, generator=g)
    lam = torch.rand(batch, generator=g)
    return mask_problem(saliency, images, index, lam, grid, n_labels=n_labels)


def gco_labels(problem: MaskProblem) -> Tensor:
    """Labels ``[B, n, n]`` from pyGCO's α-β swap run per sample on the integer-scaled energy, as the official
    code calls it. Raises ``ImportError`` naming the extra when ``gco-wrapper`` is not installed."""
    try:
        import gco
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError('the reference solver needs pyGCO: pip install "lightning-mixup[gco]"') from err
    unary = problem.unary.double().cpu().numpy()
    weight_v = problem.weight_v.double().cpu().numpy()
    weight_h = problem.weight_h.double().cpu().numpy()
    n_labels = unary.shape[-1]
    jumps = np.subtract.outer(np.arange(n_labels), np.arange(n_labels)).astype(np.int32) ** 2
    labels = []
    for u, wv, wh in zip(unary, weight_v, weight_h):
        scale = INT_RANGE / (np.abs(u).max(-1).sum() + wv.sum() + wh.sum() + 1e-12)
        edge_scale = scale / (n_labels - 1) ** 2  # (v_p − v_q)² = (k_p − k_q)² / (L−1)²
        labels.append(
            gco.cut_grid_graph(
                np.round(u * scale).astype(np.int32),
                jumps,
                np.round(wv * edge_scale).astype(np.int32),
                np.round(wh * edge_scale).astype(np.int32),
                algorithm="swap",
            ).reshape(u.shape[:2])
        )
    return torch.from_numpy(np.stack(labels)).long().to(problem.unary.device)

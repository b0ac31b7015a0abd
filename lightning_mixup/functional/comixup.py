"""Co-Mixup: each output mixes several inputs of its partition under block masks chosen jointly.

Kim, Choo, Jeong & Song, "Co-Mixup: Saliency Guided Joint Mixup with Supermodular Diversity", ICLR 2021,
arXiv 2102.03065; defaults are the official code's CIFAR-100 settings (snu-mllab/Co-Mixup, ``main.py``).

The batch is cut into partitions of ``m_part`` inputs; each partition gives ``m_part`` outputs. Every block of an
``n × n`` grid of every output takes one input (or, after the first iteration, the half-half blend of two inputs
the output already uses: the official "extension to multi-label"). The labelling ``z`` minimises

``Σ_o Σ_p ⟨c_p, z_op⟩ + β/2 Σ_o Σ_(p,q) ‖z_op − z_oq‖² + γ Σ_o ⟨s_o, h(A (S − s_o))⟩``

with ``c`` the negative normalised block saliency plus the Dirichlet prior ``−η log π``, ``s_o`` the number of
blocks of each input in output ``o``, ``S = Σ_o s_o``, ``A`` the inputs' compatibility and ``h`` the threshold
``h(t) = t·[t > τ]`` (``'hard'``) or ``(t − τ)₊`` (``'soft'``). As in the paper, the supermodular term is replaced
by its modular approximation around the current labelling and the outputs' sub-problems are solved again, a few
times (``m_niter``). The official code solves one output at a time with pyGCO's α-β swap on the CPU, one
partition after the other; here output ``o`` of every partition is solved at once on the batch's device, every
candidate label's α-expansion in parallel (a binary submodular problem each, solved by PuzzleMix's batched mask
solver :func:`~lightning_mixup.functional.puzzlemix.solve_masks`), then output ``o + 1``: a loop over the ``m_part``
output slots remains (see :func:`solve_labelling`), none over partitions, labels or blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from lightning_mixup.checks import check_bool, check_choice, check_int, check_number
from lightning_mixup.functional.batch import MixedBatch, pair_targets
from lightning_mixup.functional.puzzlemix.energy import MaskProblem, pool_saliency
from lightning_mixup.functional.puzzlemix.solver import solve_masks
from lightning_mixup.functional.sampling import check_alpha
from lightning_mixup.functional.targets import TargetBatch, Targets
from lightning_mixup.functional.validation import check_input

GRIDS = (2, 4, 8, 16)  # the official m_block_num = -1 draws 2**randint(1, 5)
BLEND_BONUS = 5e-4  # the official graph cut's bonus on a half-half blend
_BIG = 1e4  # cost of a label that cannot be taken (padding, a blend not on offer)


@dataclass(frozen=True)
class CoMixupParams:
    """Every option of Co-Mixup's labelling; defaults are the official CIFAR-100 settings.

    Args:
        grids: blocks per side, one drawn uniformly per batch (official ``--m_block_num 4``; ``-1`` there draws from
            ``(2, 4, 8, 16)``).
        m_part: inputs per partition, each giving as many outputs (``--m_part 20``).
        beta: label smoothness β (``--m_beta 0.32``), divided by ``n²``.
        gamma: supermodular diversity γ (``--m_gamma 1.0``), divided by ``n²``.
        eta: weight of the Dirichlet prior η (``--m_eta 0.05``), divided by ``n²``.
        omega: weight ω of the compatibility between inputs (``--m_omega 0.001``).
        thres: the threshold τ, a fraction of the ``n²`` blocks of an output (``--m_thres 0.83``).
        thres_type: ``'hard'`` or ``'soft'`` thresholding (``--m_thres_type hard``).
        niter: outer iterations of the modular approximation (``--m_niter 4``).
        set_resolve: push apart outputs that use the same set of inputs before the last iteration
            (``--set_resolve True``).
        blends: after the first iteration, also offer each output the half-half blends of the (up to three) inputs
            it uses most (official: always; False gives binary masks).
        compat_kernel: side of the window whose saliency peak locates each input for the compatibility (official 8).
        init: the starting labelling: ``'identity'`` (each output its own input: a feasible start that keeps
            output ``i`` mostly input ``i``, but rarely leaves it: few mixes) or ``'random'`` (official: each block a
            random input).
        expansions: rounds of parallel α-expansion per output and pass (our solver; 4 matches or beats the official
            swap on average).

    Example:
        >>> CoMixupParams().m_part, CoMixupParams().grids
        (20, (4,))
    """

    grids: tuple[int, ...] = (4,)
    m_part: int = 20
    beta: float = 0.32
    gamma: float = 1.0
    eta: float = 0.05
    omega: float = 0.001
    thres: float = 0.83
    thres_type: str = "hard"
    niter: int = 4
    set_resolve: bool = True
    blends: bool = True
    compat_kernel: int = 8
    init: str = "random"
    expansions: int = 4

    def __post_init__(self) -> None:
        if isinstance(self.grids, int) or not isinstance(self.grids, Sequence) or len(self.grids) == 0:
            raise ValueError(f"grids must be a non-empty sequence of ints >= 1, got {self.grids!r}")
        for g in self.grids:
            check_int("grids", g, 1)
        object.__setattr__(self, "grids", tuple(self.grids))
        check_int("m_part", self.m_part, 1)
        for name in ("beta", "gamma", "eta", "thres"):
            object.__setattr__(self, name, check_number(name, getattr(self, name), 0.0))
        object.__setattr__(self, "omega", check_number("omega", self.omega, 0.0, 1.0))
        check_choice("thres_type", self.thres_type, ("hard", "soft"))
        check_int("niter", self.niter, 1)
        check_bool("set_resolve", self.set_resolve)
        check_bool("blends", self.blends)
        check_int("compat_kernel", self.compat_kernel, 1)
        check_choice("init", self.init, ("identity", "random"))

    def check_image(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is a batch of square images that every grid divides."""
        if x.ndim != 4:
            raise ValueError(f"Co-Mixup needs a batch of images [B, C, H, W], got shape {list(x.shape)}")
        side = x.shape[-1]
        if x.shape[-2] != side:
            raise ValueError(f"Co-Mixup needs square images, got H×W = {x.shape[-2]}×{side}")
        bad = [g for g in self.grids if g > side or side % g]
        if bad:
            fit = tuple(g for g in self.grids if g not in bad)
            raise ValueError(
                f"Co-Mixup: grids={self.grids} do not fit {side}×{side} images: {bad} do not divide {side}"
                + (f"; pass grids={fit}" if fit else "")
            )


class LabellingProblem(NamedTuple):
    """A batch of Co-Mixup labelling problems, one per partition (``P`` partitions of ``m`` slots, ``n × n`` grid),
    with the weights already divided by ``n²`` as in the official code.

    ``cost [P, m, n, n]``: unary cost of each input at each block (prior included); ``compat [P, m, m]``: ``A``;
    ``valid [P, m]``: which slots hold an input (the last partition may be short); ``thres``: τ in blocks.
    """

    cost: Tensor
    compat: Tensor
    valid: Tensor
    beta: float
    gamma: float
    thres: float
    thres_type: str


def labelling_problem(
    block_saliency: Tensor, compat: Tensor, valid: Tensor, prior: Tensor, params: CoMixupParams = CoMixupParams()
) -> LabellingProblem:
    """Build the problems from ``block_saliency [P, m, n, n]`` (normalised to sum 1 per input), the compatibility
    distances ``compat [P, m, m]``, ``valid [P, m]`` and the Dirichlet draw ``prior [P or 1, m]``."""
    n = block_saliency.shape[-1]
    area = n * n
    valid_f = valid.to(block_saliency.dtype)
    cost = -block_saliency - params.eta / area * torch.log(prior + 1e-8).view(-1, valid.shape[1], 1, 1)
    cost = torch.where(valid.view(*valid.shape, 1, 1), cost, torch.full_like(cost, _BIG))
    compat = compat * valid_f.unsqueeze(1) * valid_f.unsqueeze(2)
    total = compat.flatten(1).sum(1).clamp_min(torch.finfo(compat.dtype).tiny).view(-1, 1, 1)
    compat = compat / total * valid_f.sum(1).view(-1, 1, 1)
    eye = torch.diag_embed(valid_f)
    a = (1 - params.omega) * eye + params.omega * compat
    return LabellingProblem(
        cost, a, valid, params.beta / area, params.gamma / area, params.thres * area, params.thres_type
    )


def _threshold(t: Tensor, thres: float, kind: str) -> Tensor:
    return t * (t > thres) if kind == "hard" else (t - thres).clamp_min(0)


def objective(problem: LabellingProblem, z: Tensor) -> Tensor:
    """``[P]`` the objective of labellings ``z [P, m_out, n, n, m_in]`` (each block a distribution over the inputs):
    unary + β/2·smoothness + γ·thresholded diversity (the official ``obj_fn_thres``, with ``A``)."""
    unary = torch.einsum("pkhw,pohwk->p", problem.cost, z)
    smooth = ((z[:, :, 1:] - z[:, :, :-1]) ** 2).flatten(1).sum(1) + ((z[:, :, :, 1:] - z[:, :, :, :-1]) ** 2).flatten(
        1
    ).sum(1)
    s = z.sum((2, 3))  # [P, m_out, m_in]
    others = (s.sum(1, keepdim=True) - s) @ problem.compat.transpose(1, 2)
    diversity = (_threshold(others, problem.thres, problem.thres_type) * s).flatten(1).sum(1)
    return unary + problem.beta / 2 * smooth + problem.gamma * diversity


def _penalty(problem: LabellingProblem, z: Tensor) -> Tensor:
    """``[P, m_out, m_in]`` the modular approximation of the diversity seen by each output: ``2γ·h(A(S − s_o))``."""
    s = z.sum((2, 3))
    others = (s.sum(1, keepdim=True) - s) @ problem.compat.transpose(1, 2)
    return 2 * problem.gamma * _threshold(others, problem.thres, problem.thres_type)


def _sub_energy(unary: Tensor, z: Tensor, beta: float, bonus: Tensor) -> Tensor:
    """``[P, m_out]`` energy of each output's own sub-problem (fixed penalty)."""
    e = (unary * z).sum(-1).flatten(2).sum(2) - BLEND_BONUS * bonus.flatten(2).sum(2)
    e = e + beta / 2 * ((z[:, :, 1:] - z[:, :, :-1]) ** 2).flatten(2).sum(2)
    return e + beta / 2 * ((z[:, :, :, 1:] - z[:, :, :, :-1]) ** 2).flatten(2).sum(2)


def _blend_candidates(z: Tensor) -> tuple[Tensor, Tensor]:
    """The official multi-label extension: the half-half blends of the inputs an output uses — the one pair when
    it uses two, the three pairs of its three most used when it uses more. ``([P, m_out, 3, m_in], [P, m_out, 3])``."""
    counts = z.sum((2, 3))
    m_in = counts.shape[-1]
    used = (counts > 0).sum(-1)  # [P, m_out]
    top = counts.topk(min(3, m_in), dim=-1).indices
    if m_in < 3:
        top = torch.cat([top, top[..., :1].expand(*top.shape[:-1], 3 - m_in)], -1)
    pairs = torch.tensor([[0, 1], [0, 2], [1, 2]], device=z.device)
    first, second = top[..., pairs[:, 0]], top[..., pairs[:, 1]]  # [P, m_out, 3]
    eye = torch.eye(m_in, device=z.device, dtype=z.dtype)
    vectors = (eye[first] + eye[second]) / 2
    enabled = torch.stack([used >= 2, used >= 3, used >= 3], -1)
    return vectors, enabled


def _resolve_cost(z: Tensor) -> Tensor:
    """``[P, m_out, m_in]`` the official ``set_resolve``: of two outputs that use the same set of (two or more)
    inputs, the first is charged for its first input and the second for its second."""
    used = z.sum((2, 3)) > 0
    n_used = used.sum(-1)
    same = (used.unsqueeze(2) == used.unsqueeze(1)).all(-1)
    same = torch.triu(same, diagonal=1) & (n_used >= 2).unsqueeze(-1)
    rank = used.cumsum(-1) * used  # 1 at the first used input, 2 at the second
    first = (rank == 1) & same.any(-1, keepdim=True)
    second = (rank == 2) & same.any(-2).unsqueeze(-1)
    return (first | second).to(z.dtype)


def _expand(unary: Tensor, z: Tensor, target: Tensor, allowed: Tensor, beta: float, bonus: Tensor) -> Tensor:
    """One α-expansion move for every output at once: each block keeps its label or takes ``target [P, m_out,
    m_in]``; the binary problem (submodular after truncating the rare non-metric edges) goes to PuzzleMix's
    solver. Returns the new labelling."""
    p, m_out, n, _, m_in = z.shape
    b = p * m_out
    a = target.view(p, m_out, 1, 1, m_in)
    u_cur = (unary * z).sum(-1)
    u_new = (unary * a).sum(-1) - bonus.view(p, m_out, 1, 1)
    half = beta / 2

    def edge(first: Tensor, second: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        e00 = half * ((first - second) ** 2).sum(-1)
        e01 = half * ((first - a) ** 2).sum(-1)
        e10 = half * ((a - second) ** 2).sum(-1)
        e00 = torch.minimum(e00, e01 + e10)  # truncation: the move energy stays submodular
        weight = (e01 + e10 - e00) / 2
        return e10 - e00 - weight, e01 - e00 - weight, weight

    lin = torch.zeros_like(u_cur)
    fv, sv, wv = edge(z[:, :, :-1], z[:, :, 1:])
    lin[:, :, :-1] += fv
    lin[:, :, 1:] += sv
    fh, sh, wh = edge(z[:, :, :, :-1], z[:, :, :, 1:])
    lin[:, :, :, :-1] += fh
    lin[:, :, :, 1:] += sh
    take = u_new + lin
    take = torch.where(allowed.view(p, m_out, 1, 1), take, torch.full_like(take, _BIG))
    unary2 = torch.stack([u_cur, take], -1)  # [P, m_out, n, n, 2]
    problem = MaskProblem(unary2.reshape(b, n, n, 2), wv.reshape(b, n - 1, n), wh.reshape(b, n, n - 1))
    if n == 1:
        labels = (unary2.reshape(b, 1, 1, 2).argmin(-1)).view(p, m_out, 1, 1)
    else:
        labels = solve_masks(problem).view(p, m_out, n, n)
    return torch.where(labels.unsqueeze(-1).bool(), a.expand_as(z), z)


def solve_labelling(problem: LabellingProblem, params: CoMixupParams, generator: torch.Generator | None) -> Tensor:
    """``[P, m_out, n, n, m_in]`` a labelling of low :func:`objective`.

    As the official code: a random start, then ``niter`` passes of block coordinate descent over the outputs (output
    ``o`` of every partition re-solved against the modular penalty of the others, then the next), the blends offered
    after the first pass, ``set_resolve`` before the last. Each output's multi-label sub-problem is solved, for all
    partitions at once, by ``expansions`` rounds of "every label's α-expansion in parallel, the best kept"; each
    expansion is a binary submodular problem for :func:`~lightning_mixup.functional.puzzlemix.solve_masks`.
    Updating all the outputs of a partition at once (Jacobi) instead of in turn sends them all to the same salient
    inputs and ends far worse than the official algorithm, so the outputs are the one loop left."""
    cost, valid = problem.cost, problem.valid
    p, m, n, _ = cost.shape
    device, dtype = cost.device, cost.dtype
    gen_device = generator.device if generator is not None else device
    eye = torch.eye(m, device=device, dtype=dtype)
    if params.init == "random":
        count = valid.sum(1).view(p, 1, 1, 1)
        start = torch.rand(p, m, n, n, generator=generator, device=gen_device).to(device)
        labels = (start * count).long().clamp_max(count - 1)
    else:  # each output starts as its own input
        labels = torch.arange(m, device=device).view(1, m, 1, 1).expand(p, m, n, n)
    z = eye[labels] * valid.view(p, m, 1, 1, 1)
    unary_base = cost.permute(0, 2, 3, 1).unsqueeze(1)  # [P, 1, n, n, m_in]
    extra = torch.zeros(p, m, m, device=device, dtype=dtype)
    hard = eye.expand(p, m, m)
    for it in range(params.niter):
        for o in range(m):  # block coordinate descent over the outputs, as the official code; batched over partitions
            pen = _penalty(problem, z)[:, o] + problem.gamma * extra[:, o]  # [P, m_in]
            unary = (unary_base[:, 0] + pen.view(p, 1, 1, m)).unsqueeze(1)  # [P, 1, n, n, m_in]
            z_o = z[:, o : o + 1]
            targets, allowed, bonus = hard, valid, torch.zeros(p, m, device=device, dtype=dtype)
            if params.blends and it > 0:
                vectors, enabled = _blend_candidates(z_o)
                targets = torch.cat([hard, vectors[:, 0]], 1)
                allowed = torch.cat([valid, enabled[:, 0]], 1)
                bonus = torch.cat([bonus, torch.full_like(enabled[:, 0], BLEND_BONUS, dtype=dtype)], 1)
            allowed = allowed & valid[:, o : o + 1]
            n_offers = targets.shape[1]
            for _ in range(params.expansions):  # every label's expansion at once; the best one is kept
                current = z_o.expand(p, n_offers, n, n, m)
                moved = _expand(unary, current, targets, allowed, problem.beta, bonus)
                energy = _sub_energy(unary, moved, problem.beta, ((moved > 0) & (moved < 1)).any(-1))
                best = energy.argmin(1)
                now = _sub_energy(unary, z_o, problem.beta, ((z_o > 0) & (z_o < 1)).any(-1))[:, 0]
                pick = moved[torch.arange(p, device=device), best].unsqueeze(1)
                better = energy.gather(1, best.unsqueeze(1))[:, 0] < now - 1e-9
                z_o = torch.where(better.view(p, 1, 1, 1, 1), pick, z_o)
            z = torch.cat([z[:, :o], z_o, z[:, o + 1 :]], 1)
        if params.set_resolve and it == params.niter - 2:
            extra = _resolve_cost(z)
    return z


def align_outputs(shares: Tensor, valid: Tensor) -> Tensor:
    """``[P, m]``: which output goes to slot ``j`` (the position of input ``j``), greedily matching outputs to the
    inputs they hold most of (``shares [P, m_out, m_in]``), so that an output is mostly its own input where it can
    be; the outputs of a partition are exchangeable, so this changes nothing but the order (and λ's meaning).

    Example:
        >>> align_outputs(torch.tensor([[[0.0, 5.0], [3.0, 1.0]]]), torch.tensor([[True, True]]))
        tensor([[1, 0]])
    """
    p, m, _ = shares.shape
    score = shares.clone().float()
    score = torch.where(valid.unsqueeze(1) & valid.unsqueeze(2), score, torch.full_like(score, -1.0))
    slot_of = torch.arange(m, device=shares.device).expand(p, m).clone()
    rows = torch.arange(p, device=shares.device)
    taken = torch.full_like(score, -2.0)
    for _ in range(int(valid.sum(1).max())):  # one match per partition per step: the largest share left
        flat = score.flatten(1).argmax(1)
        out, inp = flat // m, flat % m
        slot_of[rows, inp] = out
        score[rows, out, :] = taken[rows, out, :]
        score[rows, :, inp] = taken[rows, :, inp]
    return slot_of


def compatibility(saliency: Tensor, kernel: int = 8) -> Tensor:
    """``[B, B]`` L1 distance between the saliency peaks (the centre of the most salient ``kernel²`` window) of the
    inputs, the official ``A_dist``."""
    k = min(kernel, saliency.shape[-1], saliency.shape[-2])
    pooled = F.avg_pool2d(saliency.unsqueeze(1), k, stride=1)[:, 0]
    width = pooled.shape[-1]
    peak = pooled.flatten(1).argmax(1)
    pos = torch.stack([peak // width, peak % width], -1).to(saliency.dtype)
    return (pos.unsqueeze(1) - pos.unsqueeze(0)).abs().sum(-1)


def sample_dirichlet(alpha: float, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device):
    """``Dirichlet(α·1)`` draws over the last dim of ``shape``, float32 on ``device``."""
    dev = generator.device if generator is not None else device
    dtype = torch.float32 if dev.type == "mps" else torch.float64
    gammas = torch._standard_gamma(torch.full(shape, float(alpha), dtype=dtype, device=dev), generator=generator)
    return (gammas / gammas.sum(-1, keepdim=True)).to(device=device, dtype=torch.float32)


def _mix_targets(targets: TargetBatch, weights: Tensor, order: Tensor, valid: Tensor, binary: bool) -> Tensor:
    """The targets of the outputs from the block weights ``[P, m_out, m_in, n, n]`` of the inputs ``order [P, m]``."""
    p, m, _, n, _ = weights.shape
    value = targets.value
    gathered = value[order.clamp_min(0).flatten()].view(p, m, *value.shape[1:])
    if not targets.spec.dense:
        shares = weights.mean((3, 4))  # [P, m_out, m_in]
        flat = gathered.reshape(p, m, -1).to(shares.dtype)
        return (
            (shares @ flat).view(p * m, *value.shape[1:]).to(value.dtype if value.is_floating_point() else shares.dtype)
        )
    side = value.shape[-1]
    pixel = weights.repeat_interleave(side // n, -2).repeat_interleave(side // n, -1)  # [P, m_out, m_in, H, W]
    if value.is_floating_point():
        return torch.einsum("pokhw,pkchw->pochw", pixel.to(value.dtype), gathered).reshape(p * m, -1, side, side)
    labels = gathered[:, :, 0]  # [P, m_in, H, W]
    if binary:
        source = pixel.argmax(2)  # [P, m_out, H, W]
        return labels.gather(1, source).reshape(p * m, side, side)
    c = targets.spec.num_classes
    ok = (labels >= 0) & (labels < c)
    onehot = F.one_hot(torch.where(ok, labels, 0).long(), c).to(pixel.dtype) * ok.unsqueeze(-1)
    return torch.einsum("pokhw,pkhwc->pochw", pixel, onehot).reshape(p * m, c, side, side)


def comixup_batch(
    x: Tensor,
    target: Tensor | TargetBatch,
    num_classes: int | Targets,
    saliency: Tensor,
    alpha: float = 2.0,
    params: CoMixupParams = CoMixupParams(),
    *,
    per_sample: bool = True,
    partner: str = "perm",
    generator: torch.Generator | None = None,
) -> MixedBatch:
    """Co-Mixup of a batch ``x [B, C, S, S]`` guided by ``saliency [B, S, S]``.

    The batch, shuffled by ``partner`` (``"perm"``: a random permutation, ``"flip"``: reversed), is cut into
    partitions of ``params.m_part`` inputs; each partition gives as many outputs, which take the batch positions of
    its inputs. ``alpha``: the Dirichlet(α) prior on the inputs' shares (official ``--mixup_alpha 2``), drawn once per
    partition with ``per_sample`` (the official code), else once for the batch. The targets mix up to ``m_part``
    labels, each weighted by its input's share of the output (multi-label rows and regression values the same way;
    segmentation masks follow the pixels). Only the mixed target form exists (a pair cannot hold many labels).

    Returned: ``lam [B]`` and ``mask [B, 1, S, S]`` the share of each input in the output at its position (bool
    when ``params.blends`` is False); ``sources`` ``(x, rest)`` where ``rest`` is the blend of the other inputs,
    so ``input = mask·x + (1 − mask)·rest``; ``index`` the input with the largest other share.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x, y = torch.rand(8, 3, 32, 32, generator=g), torch.arange(8) % 4
        >>> out = comixup_batch(x, y, 4, saliency=x.mean(1), params=CoMixupParams(m_part=4), generator=g)
        >>> torch.allclose(out.target.sum(1), torch.ones(8)), out.lam.shape
        (True, torch.Size([8]))
    """
    check_alpha(alpha)
    check_input(x, ndim=4, method="Co-Mixup")
    params.check_image(x)
    if saliency.shape != (x.shape[0], *x.shape[2:]):
        raise ValueError(f"saliency must have shape {[x.shape[0], *x.shape[2:]]}, got {list(saliency.shape)}")
    targets, perm = pair_targets(x, target, num_classes, partner, generator)
    b, side = x.shape[0], x.shape[-1]
    gen_device = generator.device if generator is not None else x.device
    pick = torch.randint(len(params.grids), (), generator=generator, device=gen_device)
    n = params.grids[int(pick)]
    m = min(params.m_part, b)
    p = -(-b // m)
    order = torch.full((p * m,), -1, dtype=torch.long, device=x.device)
    order[:b] = perm
    order = order.view(p, m)
    valid = order >= 0
    safe = order.clamp_min(0)

    sal = saliency.detach().to(torch.float32)
    block = pool_saliency(sal, n)[safe] * valid.view(p, m, 1, 1)  # [P, m, n, n]
    peaks = compatibility(sal, params.compat_kernel)
    compat = peaks[safe.unsqueeze(2), safe.unsqueeze(1)]
    prior = sample_dirichlet(alpha, (p if per_sample else 1, m), generator, x.device)
    prior = torch.where(valid, prior, torch.ones_like(prior))
    problem = labelling_problem(block, compat, valid, prior, params)
    with torch.no_grad():
        z = solve_labelling(problem, params, generator)  # [P, m_out, n, n, m_in]
    z = z[torch.arange(p, device=x.device).view(p, 1), align_outputs(z.sum((2, 3)), valid)]
    weights = z.permute(0, 1, 4, 2, 3).to(x.dtype)  # [P, m_out, m_in, n, n]

    up = side // n
    pixel = weights.repeat_interleave(up, -2).repeat_interleave(up, -1)
    parts = x[safe.flatten()].view(p, m, *x.shape[1:])
    mixed = torch.einsum("pokhw,pkchw->pochw", pixel, parts).reshape(p * m, *x.shape[1:])
    mixed_targets = _mix_targets(targets, weights, order, valid, not params.blends)

    keep = valid.flatten()
    pos = order.flatten()[keep]
    out = torch.empty_like(x)
    out[pos] = mixed[keep]
    tgt_flat = mixed_targets[keep]
    target_out = torch.empty_like(tgt_flat)
    target_out[pos] = tgt_flat
    own_weight = weights.diagonal(dim1=1, dim2=2).permute(0, 3, 1, 2)  # [P, m, n, n]: share of input j in output j
    own = own_weight.reshape(p * m, n, n)[keep]
    own_mask = torch.empty_like(own)
    own_mask[pos] = own
    mask = own_mask.repeat_interleave(up, -2).repeat_interleave(up, -1).unsqueeze(1)
    lam = own_mask.flatten(1).mean(1)
    shares = weights.mean((3, 4))  # [P, m_out, m_in]
    shares = shares - 2 * torch.eye(m, device=x.device, dtype=shares.dtype)  # never the input itself
    shares = torch.where(valid.unsqueeze(1), shares, torch.full_like(shares, -3.0))
    partner_slot = shares.argmax(-1)  # [P, m_out]
    partners = order.gather(1, partner_slot).flatten()[keep]
    index = torch.empty_like(partners)
    index[pos] = partners
    rest = torch.where(mask < 1, (out - mask * x) / (1 - mask).clamp_min(1e-12), x[index])
    if not params.blends:
        mask = mask.bool()
    return MixedBatch(out, target_out, lam, mask, (x, rest), index)

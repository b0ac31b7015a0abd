"""PuzzleMix: the energy against a slow oracle, the solver against brute force and pyGCO, transport, the mix,
and the callback in a Trainer."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from conftest import NUM_CLASSES, Recorder, UserModule, make_trainer
from lightning_mixup import Classifier, PuzzleMix
from lightning_mixup.functional.puzzlemix import (
    MaskProblem,
    PuzzleMixParams,
    energy,
    mask_problem,
    move_blocks,
    puzzlemix,
    puzzlemix_batch,
    solve_masks,
    transport_plan,
)
from lightning_mixup.bench.pygco import gco_labels, random_problems
from lightning_mixup.functional.puzzlemix.solver import (
    EXACT_STATES,
    GridLayout,
    coordinate_sweeps,
    exact_rows,
    primal_dual,
    round_layers,
)
from lightning_mixup.functional.puzzlemix.transport import position_cost
from lightning_mixup.models.nets import SmallCNN


def brute_force(problem: MaskProblem) -> torch.Tensor:
    """The exact minimum energy ``[B]`` by enumerating every labelling."""
    b, n, _, n_labels = problem.unary.shape
    labellings = torch.tensor(list(itertools.product(range(n_labels), repeat=n * n))).view(-1, n, n)
    best = []
    for i in range(b):
        one = MaskProblem(*(t[i : i + 1].expand(len(labellings), *t.shape[1:]) for t in problem))
        best.append(energy(one, labellings).min())
    return torch.stack(best)


# ---- the energy -----------------------------------------------------------------------------------


def test_energy_equals_a_per_edge_loop() -> None:
    p = random_problems(3, 4, 3, seed=5)
    labels = torch.randint(0, 3, (3, 4, 4), generator=torch.Generator().manual_seed(0))
    for i in range(3):
        v = labels[i].double() / 2
        total = sum(float(p.unary[i, r, c, labels[i, r, c]]) for r in range(4) for c in range(4))
        total += sum(float(p.weight_v[i, r, c]) * float(v[r, c] - v[r + 1, c]) ** 2 for r in range(3) for c in range(4))
        total += sum(float(p.weight_h[i, r, c]) * float(v[r, c] - v[r, c + 1]) ** 2 for r in range(4) for c in range(3))
        assert float(energy(p, labels)[i]) == pytest.approx(total, rel=1e-5)


def test_two_label_energy_is_the_papers_energy_up_to_a_constant() -> None:
    """For L = 2 the decomposition must equal, up to a constant per sample: the saliency lost, the prior,
    β' per cut edge, and the data cost βγ·|pixels of one side − pixels of the other| across each boundary."""
    g = torch.Generator().manual_seed(1)
    n, side, neigh, beta, gamma, eta = 2, 8, 2, 1.2, 0.5, 0.2
    images, saliency = torch.rand(2, 3, side, side, generator=g), torch.rand(2, side, side, generator=g)
    index, lam = torch.tensor([1, 0]), torch.tensor(0.3)
    p = mask_problem(saliency, images, index, lam, n, beta=beta, gamma=gamma, eta=eta, neigh_size=neigh, n_labels=2)
    beta_n = beta / n / 16
    pooled = F.avg_pool2d(images, neigh)
    block_sal = F.avg_pool2d(saliency.unsqueeze(1), side // n)[:, 0]
    block_sal = block_sal / block_sal.sum((1, 2), keepdim=True)
    k = side // n // neigh

    def direct(i: int, lab: torch.Tensor) -> float:
        src = [pooled[index[i]], pooled[i]]  # label 0: partner, 1: itself
        e = 0.0
        for r, c in itertools.product(range(n), repeat=2):
            own = int(lab[r, c])
            e += float(block_sal[index[i], r, c] if own else block_sal[i, r, c])
            e += -eta * float(torch.log((lam if own else 1 - lam) + 1e-8)) / n**2
        for r, c in itertools.product(range(n - 1), range(n)):  # vertical boundaries
            a, b = src[int(lab[r, c])], src[int(lab[r + 1, c])]
            upper, lower = a[:, (r + 1) * k - 1, c * k : (c + 1) * k], b[:, (r + 1) * k, c * k : (c + 1) * k]
            e += beta_n * float(lab[r, c] != lab[r + 1, c]) + beta_n * gamma * float((upper - lower).abs().mean())
        for r, c in itertools.product(range(n), range(n - 1)):
            a, b = src[int(lab[r, c])], src[int(lab[r, c + 1])]
            left, right = a[:, r * k : (r + 1) * k, (c + 1) * k - 1], b[:, r * k : (r + 1) * k, (c + 1) * k]
            e += beta_n * float(lab[r, c] != lab[r, c + 1]) + beta_n * gamma * float((left - right).abs().mean())
        return e

    for i in range(2):
        labellings = torch.tensor(list(itertools.product(range(2), repeat=n * n))).view(-1, n, n)
        ours = energy(MaskProblem(*(t[i : i + 1].expand(16, *t.shape[1:]) for t in p)), labellings)
        theirs = torch.tensor([direct(i, lab) for lab in labellings], dtype=ours.dtype)
        torch.testing.assert_close(ours - ours[0], theirs - theirs[0], atol=1e-6, rtol=1e-5)


# ---- the solver -----------------------------------------------------------------------------------


@pytest.mark.parametrize("n_labels", [2, 3, 4])
@pytest.mark.parametrize("grid", [2, 3])
def test_dynamic_programming_finds_the_exact_minimum(grid: int, n_labels: int) -> None:
    if n_labels**grid > 81:
        pytest.skip("not on the exact path")
    p = random_problems(12, grid, n_labels, seed=grid * 10 + n_labels, side=8 * grid)
    exact = brute_force(p)
    torch.testing.assert_close(energy(p, exact_rows(p)), exact)
    if n_labels**grid <= EXACT_STATES:  # solve_masks takes this path
        torch.testing.assert_close(energy(p, solve_masks(p)), exact)
    else:
        assert float(energy(p, solve_masks(p)).mean()) <= 1.01 * float(exact.mean())


def _relaxed_path(p: MaskProblem, iterations: int, thresholds: tuple[float, ...]) -> torch.Tensor:
    grid = GridLayout(p)
    padded = grid.pad(round_layers(primal_dual(grid, iterations), thresholds))
    coordinate_sweeps(grid, padded, 2)
    return grid.labels(grid.lowest(padded))


@pytest.mark.parametrize("n_labels", [2, 3])
def test_primal_dual_path_is_near_the_exact_minimum(n_labels: int) -> None:
    """The path used for larger grids, forced on grids small enough to enumerate."""
    grid = 4 if n_labels == 2 else 3
    p = random_problems(6, grid, n_labels, seed=3, side=8 * grid)
    labels = _relaxed_path(p, 30, (0.5,))
    assert float(energy(p, labels).mean()) <= 1.01 * float(brute_force(p).mean())


@pytest.mark.parametrize("n_labels", [2, 3, 5])
def test_layout_energies_equal_the_energy(n_labels: int) -> None:
    """The solver's energies on its padded layout (used to keep the best rounding) against :func:`energy`."""
    p = random_problems(7, 5, n_labels, seed=11, side=20)
    grid = GridLayout(p)
    labels = torch.randint(0, n_labels, (3, 7, 5, 5), generator=torch.Generator().manual_seed(0))
    padded = grid.pad(torch.stack([grid.values(one) for one in labels]))
    torch.testing.assert_close(grid.energies(padded), torch.stack([energy(p, one) for one in labels]))
    assert torch.equal(grid.labels(padded[0, grid.row : grid.row + grid.size]), labels[0])


def test_more_iterations_and_roundings_reach_the_minimum() -> None:
    """Convergence of the primal-dual steps (the dual step is larger than the textbook one): with enough
    iterations the energy is the exact one (LP relaxation of a convex-prior problem is tight)."""
    for n_labels in (2, 3):
        grid = 4 if n_labels == 2 else 3
        p = random_problems(8, grid, n_labels, seed=21, side=8 * grid)
        labels = _relaxed_path(p, 200, (0.5,))
        torch.testing.assert_close(energy(p, labels), brute_force(p))


@pytest.mark.parametrize("n_labels", [2, 3])
@pytest.mark.parametrize("grid", [2, 4, 8, 16])
def test_mean_energy_within_one_percent_of_pygco(grid: int, n_labels: int) -> None:
    pytest.importorskip("gco", reason="the reference solver comes from the optional gco-wrapper package")
    p = random_problems(48, grid, n_labels, seed=100 + grid)
    ours, reference = energy(p, solve_masks(p)).mean(), energy(p, gco_labels(p)).mean()
    assert float(ours) <= 1.01 * float(reference), (float(ours), float(reference))


@pytest.mark.parametrize("n_labels", [2, 3, 4])
def test_labels_are_in_range_and_sweeps_never_raise_the_energy(n_labels: int) -> None:
    p = random_problems(16, 8, n_labels, seed=7)
    start = torch.randint(0, n_labels, (16, 8, 8), generator=torch.Generator().manual_seed(0))
    grid = GridLayout(p)
    padded = grid.pad(grid.values(start)[None])
    coordinate_sweeps(grid, padded, 1)
    swept = grid.labels(padded[0, grid.row : grid.row + grid.size])
    assert (energy(p, swept) <= energy(p, start) + 1e-6).all()
    assert (energy(p, swept) < energy(p, start)).any()
    labels = solve_masks(p)
    assert labels.dtype == torch.int64 and int(labels.min()) >= 0 and int(labels.max()) <= n_labels - 1


# ---- transport ------------------------------------------------------------------------------------


def _is_permutation(plan: torch.Tensor) -> bool:
    return bool((plan.sort(-1).values == torch.arange(plan.shape[-1])).all())


def test_transport_plan_is_a_permutation_and_large_eps_keeps_blocks_home() -> None:
    g = torch.Generator().manual_seed(0)
    keep = torch.rand(10, 8, 8, generator=g) > 0.5
    saliency = torch.rand(10, 8, 8, generator=g)
    saliency = saliency / saliency.sum((1, 2), keepdim=True)
    assert _is_permutation(transport_plan(keep, saliency, 0.8))
    assert torch.equal(transport_plan(keep, saliency, 1e6), torch.arange(64).expand(10, 64))


def _transport_reference(keep: torch.Tensor, saliency: torch.Tensor, eps: float) -> torch.Tensor:
    """The greedy rounds as written, with a full ``argmin`` of every row each round (the eager path)."""
    b, m, _ = keep.shape
    n = m * m
    cost = eps * position_cost(m, saliency) - saliency.reshape(b, n, 1) * keep.reshape(b, 1, n).float()
    sources = torch.arange(n).expand(b, n)
    for _ in range(m):
        choice = cost.argmin(-1)
        bid = cost.gather(2, choice.unsqueeze(-1)).squeeze(-1)
        best = torch.full_like(bid, torch.inf).scatter_reduce(1, choice, bid, "amin")
        contender = torch.where(bid == best.gather(1, choice), sources, n)
        winner = torch.full((b, n), n).scatter_reduce(1, choice, contender, "amin")
        won = winner.gather(1, choice) == sources
        cost.scatter_add_(2, choice.unsqueeze(-1), (~won).float().unsqueeze(-1))
    free_dest = torch.sort((winner < n).to(torch.uint8) * n + sources, dim=-1).indices
    free_src = torch.sort(won.to(torch.uint8) * n + sources, dim=-1).indices
    return torch.where(winner < n, winner, torch.empty_like(winner).scatter_(-1, free_dest, free_src))


@pytest.mark.parametrize("m", [4, 8, 16])
def test_transport_plan_equals_the_eager_rounds(m: int) -> None:
    """The fast path (vectorised first-argmin, only the losers' rows re-proposed) is bit-identical, ties included
    (zero saliency and symmetric distances tie)."""
    g = torch.Generator().manual_seed(m)
    keep = torch.rand(12, m, m, generator=g) > 0.5
    saliency = torch.rand(12, m, m, generator=g) ** 3 * (torch.rand(12, m, m, generator=g) > 0.3)
    saliency = saliency / saliency.sum((1, 2), keepdim=True)
    for eps in (0.8, 0.05):
        assert torch.equal(transport_plan(keep, saliency, eps), _transport_reference(keep, saliency, eps))


def test_transport_moves_salient_blocks_into_the_kept_region() -> None:
    keep = torch.zeros(1, 4, 4, dtype=torch.bool)
    keep[0, :2, :2] = True
    saliency = torch.zeros(1, 4, 4)
    saliency[0, 3, 3] = saliency[0, 2, 3] = 0.5
    plan = transport_plan(keep, saliency, eps=0.1)
    moved = saliency.flatten(1)[0, plan[0]].view(4, 4)
    assert float(moved[:2, :2].sum()) == pytest.approx(1.0)


def test_moved_image_is_a_rearrangement_of_its_blocks() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 16, 16, generator=g)
    plan = torch.stack([torch.randperm(16, generator=g) for _ in range(3)])
    moved = move_blocks(x, plan)
    for i in range(3):
        for dest in range(16):
            src = int(plan[i, dest])
            r, c, sr, sc = dest // 4, dest % 4, src // 4, src % 4
            torch.testing.assert_close(
                moved[i, :, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4], x[i, :, 4 * sr : 4 * sr + 4, 4 * sc : 4 * sc + 4]
            )


# ---- the mix --------------------------------------------------------------------------------------


def _images(b: int = 8, side: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, side, side, generator=g), torch.rand(b, side, side, generator=g)


@pytest.mark.parametrize("n_labels", [2, 3])
@pytest.mark.parametrize("grid", [2, 4, 8, 16])
def test_mask_values_lam_and_kept_pixels(grid: int, n_labels: int) -> None:
    x, sal = _images()
    index = torch.roll(torch.arange(8), 1)
    params = PuzzleMixParams(n_labels=n_labels)
    mixed, lam, mask = puzzlemix(x, index, sal, torch.tensor(0.4), grid, params)
    values = torch.linspace(0, 1, n_labels)
    assert torch.isin(mask, values).all()
    torch.testing.assert_close(lam, mask.flatten(1).mean(1))
    # where the mask is 1 the pixels are the sample's own blocks, rearranged; where 0, the partner's
    t = min(4, 32 // grid)
    blocks = lambda img: img.unfold(1, t, t).unfold(2, t, t).reshape(3, -1, t, t).permute(1, 0, 2, 3).flatten(1)  # noqa: E731
    for i in range(8):
        own_blocks, partner_blocks = blocks(x[i]), blocks(x[index[i]])
        out_blocks, m = blocks(mixed[i]), blocks(mask[i].expand(3, -1, -1))[:, 0]
        for j in range(len(out_blocks)):
            pool = own_blocks if m[j] == 1 else partner_blocks if m[j] == 0 else None
            if pool is not None:
                assert (pool == out_blocks[j]).all(1).any(), (i, j)


def test_without_transport_a_self_partner_is_the_identity() -> None:
    x, sal = _images()
    params = PuzzleMixParams(transport=False)
    mixed, _, _ = puzzlemix(x, torch.arange(8), sal, torch.tensor(0.5), 4, params)
    torch.testing.assert_close(mixed, x, rtol=0, atol=0)


def test_batch_targets_follow_the_mask_mean() -> None:
    x, sal = _images()
    y = torch.arange(8) % NUM_CLASSES
    out = puzzlemix_batch(x, y, NUM_CLASSES, sal, per_sample=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(out.target.sum(1), torch.ones(8))
    own = out.target[torch.arange(8), y]
    assert (own >= out.lam - 1e-6).all()  # its own class gets at least its mask mean


def test_adversarial_noise_is_added_to_the_chosen_images_only() -> None:
    x, sal = _images()
    noise = torch.full_like(x, 0.01)
    params = PuzzleMixParams(transport=False, n_labels=2)
    clean, _, mask = puzzlemix(x, torch.roll(torch.arange(8), 1), sal, torch.tensor(0.5), 4, params)
    noisy, _, _ = puzzlemix(
        x, torch.roll(torch.arange(8), 1), sal, torch.tensor(0.5), 4, params, noise=noise, perturb=(True, False)
    )
    changed = (noisy != clean).any(1, keepdim=True)
    assert (mask == 1).any() and (mask == 0).any()
    assert not changed[mask == 0].any()
    assert changed[mask == 1].float().mean() > 0.9


# ---- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"n_labels": 1}, "n_labels must be an int >= 2, got 1"),
        ({"beta": -1.0}, "beta must be a finite number >= 0, got -1.0"),
        ({"gamma": -0.5}, "gamma must be a finite number >= 0, got -0.5"),
        ({"eta": -0.1}, "eta must be a finite number >= 0, got -0.1"),
        ({"t_eps": -2}, "t_eps must be a finite number >= 0, got -2"),
        ({"grids": (2, 1)}, "grids must be an int >= 2, got 1"),
        ({"t_size": 0}, "t_size (or -1) must be an int >= 1, got 0"),
        ({"adv_p": 1.5}, "adv_p must be a finite number in [0, 1], got 1.5"),
        ({"adv_eps": -1}, "adv_eps must be a finite number >= 0, got -1"),
        ({"clean_lam": -1}, "clean_lam must be a finite number >= 0, got -1"),
        (
            {"std": [1.0, 0.0, 1.0]},
            "std must be a finite number > 0 or a sequence of them (one per channel), got [1.0, 0.0, 1.0]",
        ),
    ],
)
def test_bad_hyper_parameters_fail_in_init(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        PuzzleMix(**kwargs)


@pytest.mark.parametrize(
    "shape, grids, message",
    [
        ((8, 3, 32), (2,), r"needs a batch of images \[B, C, H, W\], got shape \[8, 3, 32\]"),
        ((8, 3, 32, 16), (2,), "needs square images, got H×W = 32×16"),
        (
            (8, 3, 30, 30),
            (4,),
            r"grids=\(4,\) do not fit 30×30 images: grid 4 does not divide 30; the grids that fit "
            r"are \(10, 15, 30\)",
        ),
        ((8, 3, 32, 32), (2, 16, 32, 3), r"grid 3 does not divide 32; the grids that fit are \(2, 4, 8, 16, 32\)"),
    ],
)
def test_batches_that_do_not_fit_are_refused(shape: tuple[int, ...], grids: tuple[int, ...], message: str) -> None:
    x = torch.rand(shape)
    sal = torch.rand(shape[0], *shape[2:]) if len(shape) == 4 else torch.rand(shape[0], shape[-1])
    with pytest.raises(ValueError, match=message):
        puzzlemix_batch(x, torch.zeros(8, dtype=torch.long), 2, sal, params=PuzzleMixParams(grids=grids))


# ---- the callback ---------------------------------------------------------------------------------


@pytest.fixture
def images() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(32, 3, 16, 16, generator=g), torch.randint(0, NUM_CLASSES, (32,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=8)


class GradSpy(Recorder):
    """Records whether any parameter has a gradient, and the module's mode, after the mixer's hook."""

    def __init__(self) -> None:
        super().__init__()
        self.states: list[tuple[bool, bool]] = []

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        self.states.append((any(p.grad is not None for p in pl_module.parameters()), pl_module.training))


def test_saliency_pass_leaves_no_parameter_gradient_and_restores_train_mode(images: DataLoader) -> None:
    module, spy = UserModule(), GradSpy()
    make_trainer([PuzzleMix(grids=(2, 4), seed=0), spy], limit_train_batches=1).fit(module, images)
    assert spy.states == [(False, True)]
    x, y = spy.batches[0]
    assert y.shape == (8, NUM_CLASSES) and x.shape == (8, 3, 16, 16)


def test_clean_loss_needs_the_protocol_and_reaches_the_classifier(images: DataLoader) -> None:
    with pytest.raises(TypeError, match=r"PuzzleMix\(clean_lam=0.5\) .* UserModule has no add_auxiliary_loss"):
        make_trainer([PuzzleMix(clean_lam=0.5, grids=(2,))], limit_train_batches=1).fit(UserModule(), images)
    model = Classifier(SmallCNN(in_channels=3, num_classes=NUM_CLASSES, width=8), num_classes=NUM_CLASSES)
    trainer = make_trainer([PuzzleMix(clean_lam=0.5, adv_p=1.0, grids=(2, 4))], limit_train_batches=2)
    trainer.fit(model, images)
    assert "train/puzzlemix_clean" in trainer.callback_metrics
    assert model._auxiliary_losses == {}


def test_a_module_whose_output_is_not_logits_fails_clearly(images: DataLoader) -> None:
    module = UserModule()
    module.forward = lambda x: module.net(x)[:, :1].squeeze(1)  # [B] instead of [B, C]
    shape = r"must return an output of shape \[8, 4\] for these multiclass targets; got shape \[8\]"
    with pytest.raises(ValueError, match=r"pl_module\(x\), which " + shape):
        make_trainer([PuzzleMix(grids=(2,))], limit_train_batches=1).fit(module, images)


def test_inside_random_choice_and_validation_untouched(images: DataLoader) -> None:
    from lightning_mixup import MixUp, RandomChoice

    module, after = UserModule(), Recorder()
    mixer = RandomChoice([MixUp(), PuzzleMix(grids=(2, 4))], weights=[1, 3], seed=0)
    make_trainer([mixer, after], max_epochs=2).fit(module, images, images)
    raw = [x for x, _ in images]
    assert module.seen["val"] and all(any(torch.equal(x, r) for r in raw) for x, _ in module.seen["val"])
    # a batch drawn with λ near 1 can keep every image whole (as mixup with λ = 1 would)
    assert sum(not any(torch.equal(x, r) for r in raw) for x, _ in after.batches) >= 6

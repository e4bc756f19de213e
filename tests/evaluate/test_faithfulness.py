"""The batched faithfulness path: ROAD's imputation against the sparse solve, what the path costs in
forward inputs, the end points it shares, and that it never waits for the host inside its loop.

The metrics' values against other libraries are in ``test_evaluate_metrics.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from gradcam_cli.metrics import road_imputation
from gradcam_cli.metrics.faithfulness import (
    ROAD_PERCENTAGES,
    FaithfulnessSample,
    inputs_per_map,
    measure_faithfulness,
    relevance_ranks,
    rise_blur,
)
from gradcam_cli.metrics.road_imputation import impute_removed, neighbour_sum, noisy_linear_imputation


class SmallNet(nn.Module):
    """conv -> ReLU -> global average -> linear: cheap enough to run many perturbed inputs."""

    def __init__(self, classes: int = 4) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


def _setup(images: int = 3, size=(20, 24), seed: int = 0):
    torch.manual_seed(seed)
    model = SmallNet().eval()
    inputs = torch.randn(images, 3, *size)
    maps = torch.rand(images, *size)
    return model, inputs, maps


def _samples(model, inputs, maps, classes):
    with torch.no_grad():
        probs = torch.softmax(model(inputs), dim=1)
    return [FaithfulnessSample(b, c, maps[b], float(probs[b, c])) for b, c in classes]


# ---------------------------------------------------------------- the imputation against the sparse solve


def _residual_bound(image: np.ndarray, removed: np.ndarray, solved: np.ndarray) -> float:
    """``||b - A x||_2 / lambda_min(A)``, an upper bound of the solution's error ``||x - x*||_2`` (hence
    of its largest pixel error), from the float64 residual of ``solved`` and the system's smallest
    eigenvalue (dense, the systems here are small)."""
    height, width = removed.shape
    inside = torch.ones(1, 1, height, width, dtype=torch.float64)
    mask = torch.from_numpy(removed.astype(np.float64))[None, None]
    u = torch.from_numpy(solved)[None]
    residual = ((neighbour_sum(u) - neighbour_sum(inside) * u) * mask).flatten(2).norm(dim=2).max().item()
    unknown = np.flatnonzero(removed)
    # A = D - W on the unknowns: the columns of the operator applied to unit vectors.
    basis = torch.zeros(unknown.size, 1, height * width, dtype=torch.float64)
    basis[torch.arange(unknown.size), 0, torch.from_numpy(unknown)] = 1
    basis = basis.view(-1, 1, height, width)
    columns = (neighbour_sum(inside) * basis - neighbour_sum(basis)).flatten(1)[:, unknown]
    smallest = torch.linalg.eigvalsh((columns + columns.T) / 2).min().item()
    return residual / smallest


@pytest.mark.parametrize("size", [(20, 30), (17, 26), (9, 40)])
def test_imputation_matches_the_sparse_solve_on_random_masks(size) -> None:
    """Within 1e-4 of SciPy's direct solve, noise off. Why 1e-4 holds: the solver keeps the solution and its
    residual r = b - A x in float64 (float32 alone could not promise it: its rounding of b and A x, ~1e-7,
    comes back amplified by ||A^-1||, ~1e3 and more on large removed regions, to errors of ~1e-4), and stops
    when its estimate of the error, the multigrid V-cycle applied to r (~ A^-1 r = x* - x), is at most 1e-5
    at every pixel. The error is at most ||r|| / lambda_min(A): the test computes that bound for every system
    and checks it is below 1e-4 too, so the agreement follows from the residual, not from luck."""
    rng = np.random.default_rng(1)
    height, width = size
    images, masks = [], []
    for share in (0.1, 0.5, 0.9):
        images.append(rng.standard_normal((3, height, width)).astype(np.float32))
        masks.append(rng.random((height, width)) < share)
    ours = impute_removed(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks))).double().numpy()
    for image, removed, mine in zip(images, masks, ours):
        reference = noisy_linear_imputation(image, removed.ravel(), noise=0.0)
        assert np.abs(mine - reference).max() < 1e-4
        assert _residual_bound(image, removed, mine) < 1e-4
        assert (mine[:, ~removed] == image[:, ~removed]).all()  # kept pixels untouched, bit for bit


def test_imputation_with_the_same_noise_draws_matches() -> None:
    """Noise on: the sparse solve's own seeded draws, placed at its unknowns, given to the batched solve."""
    rng = np.random.default_rng(2)
    image = rng.standard_normal((3, 18, 22)).astype(np.float32)
    removed = rng.random((18, 22)) < 0.4
    reference = noisy_linear_imputation(image, removed.ravel(), noise=0.01, rng=np.random.default_rng(7))
    draws = np.random.default_rng(7).standard_normal((int(removed.sum()), 3))
    noise = np.zeros((3, 18 * 22))
    noise[:, np.flatnonzero(removed)] = 0.01 * draws.T
    ours = impute_removed(
        torch.from_numpy(image)[None],
        torch.from_numpy(removed)[None],
        torch.from_numpy(noise.reshape(1, 3, 18, 22)).float(),
    )
    assert np.abs(ours[0].double().numpy() - reference).max() < 1e-4
    assert np.abs(reference - noisy_linear_imputation(image, removed.ravel(), noise=0.0)).max() > 1e-3  # noise on


def test_imputation_matches_on_relevance_masks_of_a_photo_sized_input() -> None:
    """ROAD's masks proper: MoRF and LeRF at every percentage of a smooth map, on a 96 x 130 input
    (large removed regions, the solver's hardest case, and sides that need padding)."""
    torch.manual_seed(3)
    height, width = 96, 130
    image = torch.randn(3, height, width)
    smooth = torch.nn.functional.interpolate(torch.rand(1, 1, 4, 5), size=(height, width), mode="bilinear")[0, 0]
    ranks = relevance_ranks(smooth[None])[0]
    counts = torch.tensor([height * width * p // 100 for p in ROAD_PERCENTAGES])
    removed = torch.cat([ranks[None] < counts[:, None], ranks[None] >= height * width - counts[:, None]])
    ours = impute_removed(image.expand(len(removed), -1, -1, -1), removed.view(-1, height, width))
    worst = 0.0
    for k in range(len(removed)):
        reference = noisy_linear_imputation(image.numpy(), removed[k].numpy(), noise=0.0)
        worst = max(worst, float(np.abs(ours[k].double().numpy() - reference).max()))
    assert worst < 1e-4


def test_grids_halve_exactly_and_end_small() -> None:
    for height, width in [(256, 256), (256, 388), (300, 256), (16, 16), (9, 40), (3, 700)]:
        levels = road_imputation.grid_levels(height, width)
        sides = [road_imputation.padded_side(s, levels) for s in (height, width)]
        assert all(s >= n and (s - 1) % 2**levels == 0 for s, n in zip(sides, (height, width)))
        coarsest = [(s - 1) // 2**levels + 1 for s in sides]
        assert coarsest[0] * coarsest[1] <= road_imputation.COARSEST_UNKNOWNS or min(coarsest) <= 2
    assert road_imputation.padded_side(256, 5) == 257


# ---------------------------------------------------------------- forward inputs and shared end points


class _Recorder:
    """Counts the inputs of every forward pass, and which of them are all zeros or a blurred image."""

    def __init__(self, model, inputs):
        self.sizes: list[int] = []
        self.zeros = 0
        self.blurred = [0] * inputs.shape[0]
        self.blur = rise_blur(inputs)
        model.register_forward_pre_hook(self)

    def __call__(self, module, args):
        x = args[0]
        self.sizes.append(x.shape[0])
        self.zeros += int((x.flatten(1) == 0).all(dim=1).sum())
        for b in range(self.blur.shape[0]):
            self.blurred[b] += int((x == self.blur[b]).flatten(1).all(dim=1).sum())


def test_forward_inputs_are_as_many_as_the_plan_and_end_points_are_shared() -> None:
    model, inputs, maps = _setup(images=3)
    picks = [(0, 1), (0, 2), (1, 0), (2, 3), (2, 1)]  # two maps on images 0 and 2, as two classes or methods give
    samples = _samples(model, inputs, maps, picks)
    recorder = _Recorder(model, inputs)
    steps = 6
    curves = measure_faithfulness(model, inputs, samples, steps, batch_size=16)
    per_map = inputs_per_map(steps, 20 * 24)
    assert per_map == 2 * (steps - 1) + 1 + 2 * len(ROAD_PERCENTAGES)
    assert sum(recorder.sizes) == len(samples) * per_map + 3 + 1  # + each image blurred + one all-zeros input
    assert recorder.zeros == 1 and recorder.blurred == [1, 1, 1]  # computed once, not once per map
    assert max(recorder.sizes) <= 16
    with torch.no_grad():
        at_zero = torch.softmax(model(torch.zeros(1, 3, 20, 24)), dim=1)[0]
        at_blur = torch.softmax(model(rise_blur(inputs)), dim=1)
    for (b, c), curve in zip(picks, curves):
        assert curve.deletion[-1] == pytest.approx(float(at_zero[c]), abs=1e-6)
        assert curve.insertion[0] == pytest.approx(float(at_blur[b, c]), abs=1e-6)
        assert len(curve.deletion) == len(curve.insertion) == steps + 1


def test_curves_do_not_depend_on_the_chunk_size(monkeypatch) -> None:
    """Chunks, and how many maps share one ROAD solve (one on a CPU, more on a GPU), change only how
    inputs are grouped; ROAD's noise is seeded per map, not per chunk or solve."""
    from gradcam_cli.metrics import faithfulness

    model, inputs, maps = _setup(images=2)
    samples = _samples(model, inputs, maps, [(0, 1), (1, 2), (1, 0)])
    runs = [measure_faithfulness(model, inputs, samples, 5, batch_size=size) for size in (1, 7, 1000)]
    monkeypatch.setattr(faithfulness, "CPU_ROAD_MAPS", 2)
    runs.append(measure_faithfulness(model, inputs, samples, 5))
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            for field in ("deletion", "insertion", "road_morf", "road_lerf"):
                assert np.abs(getattr(a, field) - getattr(b, field)).max() < 1e-6
            assert a.masked == pytest.approx(b.masked, abs=1e-6)
    noisy = measure_faithfulness(model, inputs, samples, 5, seed=1)
    assert any(np.abs(a.road_morf - b.road_morf).max() > 0 for a, b in zip(runs[0], noisy))  # the seed matters


# ---------------------------------------------------------------- no host round trip inside the loop


def test_the_loop_never_waits_for_the_host(monkeypatch) -> None:
    """Every way a tensor's value reaches Python (``.cpu``, ``.item``, ``.numpy``, ``.tolist``, ``bool``,
    ``int``, ``float``) is counted during a call. On a GPU each one waits for the queue; here the count
    shows where they are: one copy of the results at the end, and the imputation's residual check
    (one ``bool`` per round of iterations, a few per map); none of them grows with the steps."""
    model, inputs, maps = _setup(images=2)
    samples = _samples(model, inputs, maps, [(0, 1), (1, 2)])
    counts: dict[str, int] = {}
    for name in ("cpu", "item", "numpy", "tolist", "__bool__", "__int__", "__float__", "__index__"):
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _name=name, _original=original, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    rounds = []
    solve = road_imputation._Problem.residual
    monkeypatch.setattr(road_imputation._Problem, "residual", lambda self, x: rounds.append(1) or solve(self, x))
    measured = {}
    for steps in (4, 12):
        counts.clear(), rounds.clear()
        measure_faithfulness(model, inputs, samples, steps)
        measured[steps] = dict(counts)
        assert counts.pop("cpu") == 1 and counts.pop("numpy") == 1  # the results table, once
        assert counts.pop("__bool__") == len(rounds) <= len(samples) * road_imputation.MAX_ROUNDS
        assert counts == {}
    assert measured[4] == measured[12]

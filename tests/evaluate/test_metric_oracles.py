"""Every metric of ``gradcam evaluate`` against an independent implementation, on the same maps.

IoU and MaxBoxAcc against hand-computed cases; the pointing game and ROAD against Quantus 0.6;
ROAD's combined score and imputation against pytorch-grad-cam; deletion/insertion against a slow
loop transcribed from RISE's own evaluation code and against torchcam; Average Drop and Increase
in Confidence against torchcam; the sanity check's cascade, Spearman correlation and SSIM against
Quantus' MPRT. Models and inputs are tiny so that the oracles' slow loops stay fast.

The faithfulness metrics run their model in float32 whatever its dtype (they cast the inputs), so
those comparisons are bounded by what float32 gives: a first-order bound on TinyNet's float32
logits through its Jacobian (``_probability_error``), through the softmax and each metric.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from functools import partial

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradcam_cli.maps.boxes import region_boxes, regions_from_map
from gradcam_cli.metrics.faithfulness import (
    ROAD_PERCENTAGES,
    FaithfulnessSample,
    impute_removed,
    measure_faithfulness,
    noisy_linear_imputation,
    relevance_ranks,
    step_counts,
)
from gradcam_cli.metrics.localisation import (
    SWEEP,
    box_accuracy,
    box_ious,
    localise,
    max_box_acc,
    max_box_acc_v2,
    near_boxes,
    pointing_hit,
)

from helpers import U32, gamma32

warnings.filterwarnings("ignore", module="quantus")


class TinyNet(nn.Module):
    """conv -> ReLU -> conv -> ReLU -> global average -> linear: a CNN small enough for slow oracle loops."""

    def __init__(self, channels: int = 3, classes: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, 6, 3, padding=1)
        self.act1 = nn.ReLU()
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.act2 = nn.ReLU()
        self.fc = nn.Linear(8, classes)

    def forward(self, x):
        return self.fc(self.act2(self.conv2(self.act1(self.conv1(x)))).mean(dim=(2, 3)))


def _model_and_maps(seed: int = 0, channels: int = 3, classes: int = 3, size=(16, 16), images: int = 3):
    torch.manual_seed(seed)
    model = TinyNet(channels, classes).eval()
    inputs = torch.randn(images, channels, *size)
    # Distinct values (no ties), exactly representable, so every implementation orders pixels alike.
    pixels = size[0] * size[1]
    maps = torch.stack(
        [
            torch.randperm(pixels, generator=torch.Generator().manual_seed(seed + i)).float() / pixels
            for i in range(images)
        ]
    ).view(images, *size)
    return model, inputs, maps


def _samples(model, inputs, maps, classes):
    with torch.no_grad():
        probs = torch.softmax(model(inputs), dim=1)
    return [FaithfulnessSample(b, c, maps[b], float(probs[b, c])) for b, c in enumerate(classes)]


def _probability_error(model: TinyNet, inputs: torch.Tensor, input_error: torch.Tensor | float = 0.0) -> float:
    """How far float32 can put any class probability of TinyNet for any of ``inputs`` (each value of which is
    off by at most ``input_error``), to first order, whatever the order of its sums.

    A layer's sums of n terms are each off by at most gamma_n of their terms' magnitudes (|W| |a| + |b|, from
    the float64 activations), and every such error, and the input's, reaches a logit through the network's
    Jacobian: |d logit / d value| x error, summed (Higham 2002, sec. 3.5). A probability p_c is then off by
    p_c (|dl_c| + sum_j p_j |dl_j|), and the softmax rounds a few times more: (classes + 5) U32 of p_c.
    """
    w1, b1, w2, b2, wf, bf = (
        p.detach().double()
        for p in (
            model.conv1.weight,
            model.conv1.bias,
            model.conv2.weight,
            model.conv2.bias,
            model.fc.weight,
            model.fc.bias,
        )
    )
    x = inputs.detach().double().requires_grad_(True)
    z1 = F.conv2d(x, w1, b1, padding=1)
    z2 = F.conv2d(torch.relu(z1), w2, b2, padding=1)
    pooled = torch.relu(z2).mean(dim=(2, 3))
    logits = pooled @ wf.T + bf
    with torch.no_grad():  # each layer's own rounding
        rounding = [
            torch.as_tensor(input_error, dtype=torch.float64).expand_as(x),
            gamma32(w1[0].numel() + 1) * F.conv2d(x.abs(), w1.abs(), b1.abs(), padding=1),
            gamma32(w2[0].numel() + 1) * F.conv2d(torch.relu(z1), w2.abs(), b2.abs(), padding=1),
            gamma32(z2.shape[-2] * z2.shape[-1]) * torch.relu(z2).mean(dim=(2, 3)),
        ]
        rounding_logits = gamma32(wf.shape[1] + 1) * (pooled @ wf.T.abs() + bf.abs())
    logit_errors = []
    for c in range(logits.shape[1]):
        gradients = torch.autograd.grad(logits[:, c].sum(), (x, z1, z2, pooled), retain_graph=True)
        logit_errors.append(
            sum((g.abs() * r).flatten(1).sum(1) for g, r in zip(gradients, rounding)) + rounding_logits[:, c]
        )
    errors, p = torch.stack(logit_errors, dim=1), torch.softmax(logits.detach(), dim=1)
    return (p * (errors + (p * errors).sum(1, keepdim=True) + (logits.shape[1] + 5) * U32)).max().item()


def _curve_inputs(inputs: torch.Tensor, maps: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every deletion and insertion input of the curves (float64: the most relevant pixels set to 0, or restored
    onto RISE's blurred image), and each value's float32 error: a blurred value is a sum of 363 terms (RISE's
    11x11 kernel over 3 channels), rounded on each side."""
    kernel = _rise_gkern().double()
    x = inputs.double()
    blurred = F.conv2d(x, kernel, padding=5)
    blur_error = gamma32(363) * F.conv2d(x.abs(), kernel.abs(), padding=5)
    ranks = relevance_ranks(maps)
    perturbed, errors = [], []
    for j, rank in enumerate(ranks):
        for count in step_counts(rank.numel(), steps):
            first = (rank < count).view(1, *x.shape[-2:])
            perturbed += [torch.where(first, 0.0, x[j]), torch.where(first, x[j], blurred[j])]
            errors += [torch.zeros_like(x[j]), torch.where(first, 0.0, blur_error[j])]
    return torch.stack(perturbed), torch.stack(errors)


# ---------------------------------------------------------------- localisation


def test_box_iou_hand_computed_cases() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 15], [20, 20, 30, 30], [2, 3, 4, 9]], dtype=float)
    truth = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], dtype=float)
    ious = box_ious(boxes, truth)
    assert ious[0].tolist() == [1.0, 50 / 150]  # identical; half overlap: 50 / (100 + 100 - 50)
    assert ious[1].tolist() == pytest.approx([25 / 175, 50 / 150])  # corner overlap 5x5; 5x10 strip
    assert ious[2].tolist() == [0.0, 0.0]  # disjoint
    assert ious[3].tolist() == pytest.approx([12 / 100, 0.0])  # inside: its area over the big one's
    assert box_ious(np.array([[0, 0, 1, 1.5]]), np.array([[0.5, 0, 1, 1.5]]))[0, 0] == pytest.approx(0.5)  # floats


def _two_blobs() -> np.ndarray:
    """A 40x60 map with a 20x20 square at 1.0 and a 10x10 square at 0.6, 0 elsewhere."""
    m = np.zeros((40, 60), dtype=np.float32)
    m[10:30, 5:25] = 1.0
    m[5:15, 40:50] = 0.6
    return m


def test_localise_boxes_at_each_threshold_hand_computed() -> None:
    m = _two_blobs()
    small_truth = np.array([[40, 5, 50, 15]], dtype=float)  # exactly the small square
    near = near_boxes(small_truth, 60, 40, 15)
    loc = localise(m, small_truth, near, operating=0.5)
    # Up to 0.60 both squares are regions: the largest (the big one) misses the truth, the small one matches it.
    below, above = SWEEP.index(0.6), SWEEP.index(0.61)
    assert loc.iou_largest[: below + 1].tolist() == [0.0] * (below + 1)
    assert loc.iou_any[1 : below + 1].tolist() == [1.0] * below
    assert loc.iou_any[0] == 1.0  # at 0 the regions are the positive pixels: the same two squares
    # Above 0.6 only the big square is left: both IoUs are 0 against the small truth.
    assert loc.iou_largest[above:].max() == 0.0 and loc.iou_any[above:].max() == 0.0
    assert loc.iou == 0.0  # the box at the operating threshold 0.5 is the big square's
    assert loc.hit is False  # the maximum (1.0) lies in the big square, over 15 px from the truth
    big_truth = np.array([[5, 10, 25, 30]], dtype=float)
    loc = localise(m, big_truth, near_boxes(big_truth, 60, 40, 15), operating=0.5)
    assert loc.iou == 1.0 and loc.hit is True
    assert loc.iou_largest.tolist() == [1.0] * 100  # the big square is the largest region at every threshold


def test_maxboxacc_and_v2_hand_computed() -> None:
    # Three samples' IoUs over a 4-threshold sweep (rows: samples).
    largest = np.array([[0.6, 0.4, 0.2, 0.0], [0.3, 0.55, 0.8, 0.1], [0.0, 0.0, 0.5, 0.9]])
    assert box_accuracy(largest, 0.5).tolist() == pytest.approx([1 / 3, 1 / 3, 2 / 3, 1 / 3])
    value, tau = max_box_acc(largest, 0.5, thresholds=(0.1, 0.2, 0.3, 0.4))
    assert (value, tau) == (pytest.approx(2 / 3), 0.3)
    every = np.array([[0.75, 0.4, 0.2, 0.0], [0.3, 0.55, 0.8, 0.1], [0.35, 0.0, 0.5, 0.9]])
    # delta 0.3: all three at threshold 0 (0.75, 0.3, 0.35); 0.5: 2/3 (third column); 0.7: 2/3 at column 2 or 3.
    assert max_box_acc_v2(every) == pytest.approx((1 + 2 / 3 + 1 / 3) / 3)


def test_region_boxes_equal_the_regions_explain_draws() -> None:
    """The sweep's fast path gives exactly regions_from_map's boxes, in its order, on maps with holes and islands."""
    rng = np.random.default_rng(3)
    for trial in range(120):
        grid = torch.from_numpy(rng.random((1, 1, *rng.integers(2, 9, 2))).astype(np.float32))
        m = F.interpolate(grid, size=tuple(int(v) for v in rng.integers(5, 70, 2)), mode="bilinear")[0, 0].numpy()
        m = (m - m.min()) / (m.max() - m.min())
        if trial % 3 == 0:
            m[rng.random(m.shape) < 0.3] = 0  # speckle: many regions, holes, regions inside holes
        for tau in np.linspace(0, 0.95, 12):
            assert region_boxes(m, tau) == [r.box for r in regions_from_map(m, tau)], (trial, tau)


def test_pointing_game_against_quantus_with_a_brute_force_tolerance() -> None:
    import quantus

    rng = np.random.default_rng(0)
    height, width, n = 48, 64, 40
    maps = rng.random((n, 1, height, width)).astype(np.float32)
    masks = np.zeros((n, 1, height, width), dtype=np.float32)
    ours, baselines = [], []
    ys, xs = np.mgrid[:height, :width]
    for i in range(n):
        x0, y0 = rng.integers(0, width - 5), rng.integers(0, height - 5)
        box = np.array([[x0, y0, x0 + rng.integers(2, 12), y0 + rng.integers(2, 12)]], dtype=float)
        # The tolerance, written out: every pixel within 15 px (Euclidean) of a pixel of the box.
        bx0, by0, bx1, by1 = (int(v) for v in box[0])
        dx = np.maximum(np.maximum(bx0 - xs, 0), xs - (min(bx1, width) - 1))
        dy = np.maximum(np.maximum(by0 - ys, 0), ys - (min(by1, height) - 1))
        masks[i, 0] = (dx**2 + dy**2) <= 15**2
        near = near_boxes(box, width, height, 15)
        assert (near == masks[i, 0].astype(bool)).all()
        ours.append(pointing_hit(maps[i, 0], near))
        baselines.append(near.mean())
    metric = quantus.PointingGame(disable_warnings=True, abs=False, normalise=False)
    theirs = metric(
        model=None,
        x_batch=np.zeros((n, 3, height, width), np.float32),
        y_batch=np.zeros(n, int),
        a_batch=maps,
        s_batch=masks,
        channel_first=True,
    )
    assert [bool(t) for t in theirs] == ours
    assert 0 < sum(ours) < n  # both outcomes occur
    # A uniformly random point's hit rate is the area within the tolerance: by hand for one box.
    near = near_boxes(np.array([[10, 10, 20, 20]], dtype=float), 100, 100, 0)
    assert near.mean() == pytest.approx(100 / 10_000)
    assert np.mean(baselines) == pytest.approx(masks.mean())


# ---------------------------------------------------------------- deletion and insertion


def _rise_gkern(klen: int = 11, nsig: float = 5) -> torch.Tensor:
    """RISE's ``gkern`` (evaluation.py), as published."""
    from scipy.ndimage import gaussian_filter

    inp = np.zeros((klen, klen))
    inp[klen // 2, klen // 2] = 1
    k = gaussian_filter(inp, nsig)
    kern = np.zeros((3, 3, klen, klen))
    kern[0, 0], kern[1, 1], kern[2, 2] = k, k, k
    return torch.from_numpy(kern.astype("float32"))


def _rise_causal_metric(model, img, explanation, c, mode, step):
    """RISE's ``CausalMetric.single_run``, one image at a time, one forward pass per step, as published."""
    kern = _rise_gkern()
    substrate = torch.zeros_like if mode == "del" else (lambda x: F.conv2d(x, kern, padding=11 // 2))
    _, _, height, width = img.shape
    hw = height * width
    n_steps = (hw + step - 1) // step
    start, finish = (img.clone(), substrate(img)) if mode == "del" else (substrate(img), img.clone())
    scores = np.empty(n_steps + 1)
    salient_order = np.flip(np.argsort(explanation.reshape(-1, hw), axis=1), axis=-1)
    for i in range(n_steps + 1):
        with torch.no_grad():
            scores[i] = torch.softmax(model(start), dim=1)[0, c]
        if i < n_steps:
            coords = salient_order[:, step * i : step * (i + 1)]
            start.numpy().reshape(1, 3, hw)[0, :, coords] = finish.numpy().reshape(1, 3, hw)[0, :, coords]
    return (scores.sum() - scores[0] / 2 - scores[-1] / 2) / (scores.shape[0] - 1)  # RISE's auc()


def test_deletion_and_insertion_match_rises_own_loop() -> None:
    model, inputs, maps = _model_and_maps(size=(12, 16))
    classes = [0, 2, 1]
    steps = 8  # 192 pixels: 24 per step, so RISE's evenly spaced AUC and ours agree on the x axis
    curves = measure_faithfulness(model, inputs, _samples(model, inputs, maps, classes), steps)
    # float32 on both sides: every point of either curve is off by at most the probability error; the trapezoids'
    # weights (float64, both) sum to 1.
    bound = 2 * _probability_error(model, *_curve_inputs(inputs, maps, steps))
    for b, c in enumerate(classes):
        img, expl = inputs[b : b + 1].clone(), maps[b].numpy()
        assert curves[b].deletion_auc == pytest.approx(_rise_causal_metric(model, img, expl, c, "del", 24), abs=bound)
        assert curves[b].insertion_auc == pytest.approx(_rise_causal_metric(model, img, expl, c, "ins", 24), abs=bound)
    assert len({round(c.deletion_auc, 4) for c in curves}) == 3  # the images give different curves


class _GivenMaps:
    """torchcam's CAM-extractor protocol, answering with maps computed elsewhere."""

    def __init__(self, model, maps):
        self.model, self.maps = model, maps

    def __call__(self, class_idx=None, scores=None, normalized=True, **kwargs):
        return [self.maps]

    def fuse_cams(self, cams):
        return cams[0]

    @contextmanager
    def _hooks_off(self):
        yield


@pytest.mark.parametrize("size,steps", [((12, 16), 8), ((13, 11), 7)])
def test_deletion_and_insertion_match_torchcam(size, steps) -> None:
    from torchcam.metrics import DeletionInsertionMetric

    model, inputs, maps = _model_and_maps(seed=1, size=size)
    classes = [2, 0, 1]
    curves = measure_faithfulness(model, inputs, _samples(model, inputs, maps, classes), steps)
    softmax = partial(torch.softmax, dim=-1)
    zeros = DeletionInsertionMetric(_GivenMaps(model, maps), softmax, steps=steps)
    zeros.update(inputs, class_idx=classes)
    # float32 on both sides: each curve point off by the probability error at most; torchcam's trapezoids and
    # mean are float32 sums of probabilities (<= 1): gamma over their terms.
    bound = 2 * _probability_error(model, *_curve_inputs(inputs, maps, steps)) + gamma32(2 * steps + 2) + gamma32(3)
    assert np.mean([c.deletion_auc for c in curves]) == pytest.approx(zeros.summary()["deletion_auc"], abs=bound)
    kern = _rise_gkern()
    blurred = DeletionInsertionMetric(
        _GivenMaps(model, maps), softmax, steps=steps, baseline=lambda x: F.conv2d(x, kern, padding=5)
    )
    blurred.update(inputs, class_idx=classes)
    assert np.mean([c.insertion_auc for c in curves]) == pytest.approx(blurred.summary()["insertion_auc"], abs=bound)


def test_step_counts_follow_torchcams_rule() -> None:
    assert step_counts(10, 4) == [0, 3, 6, 9, 10]
    assert step_counts(10, 6) == [0, 2, 4, 6, 8, 10]  # at most `steps` intervals
    assert step_counts(192, 8) == list(range(0, 193, 24))


def test_faithfulness_costs_its_documented_forward_inputs_in_chunks() -> None:
    model, inputs, maps = _model_and_maps(size=(16, 16), images=4)
    calls = []
    model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    samples = _samples(model, inputs, maps, [0, 1, 2, 0]) * 2  # two maps per image, as two methods give
    per_map = 2 * (5 - 1) + 1 + 2 * len(ROAD_PERCENTAGES)  # inside both curves, Average Drop, ROAD both ways
    for chunk in (None, 7):
        calls.clear()
        measure_faithfulness(model, inputs, samples, steps=5, batch_size=chunk)
        # The shared end points first: everything deleted (one input for the call), each image blurred once.
        assert calls[0] == len(inputs) + 1
        # Then every map's own inputs, batched across maps and curves in chunks of at most the chunk size.
        assert sum(calls[1:]) == len(samples) * per_map
        total = len(samples) * per_map
        size = chunk or total  # 16 x 16 inputs: the default chunk holds them all
        assert calls[1:] == [size] * (total // size) + ([total % size] if total % size else [])


# ---------------------------------------------------------------- ROAD


def test_noisy_linear_imputation_matches_pytorch_grad_cam_and_quantus() -> None:
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from quantus.functions.perturb_func import noisy_linear_imputation as quantus_imputation

    rng = np.random.default_rng(0)
    image = rng.standard_normal((3, 20, 30)).astype(np.float32)
    for removed_share in (0.1, 0.5, 0.9):
        removed = rng.random(600) < removed_share
        ours = noisy_linear_imputation(image, removed, noise=0.0)
        keep = torch.from_numpy((~removed).reshape(20, 30).astype(np.float32))
        pgc = NoisyLinearImputer(noise=0.0)(torch.from_numpy(image), keep).numpy()
        quantus = quantus_imputation(image.astype(np.float64), np.flatnonzero(removed), noise=0.0)
        # Three float64 direct solves of one system from the same float32 values; pytorch-grad-cam rounds its
        # solution to float32 (values within the image's range, weighted means of their neighbours: U32 max
        # |image|). 1e-9 is far above the solves' float64 rounding; a wrong weight or neighbour moves values 1e-2.
        assert np.abs(ours - pgc).max() <= U32 * np.abs(image).max() + 1e-9
        assert np.abs(ours - quantus).max() < 1e-9
        assert (ours.reshape(3, -1)[:, ~removed] == image.reshape(3, -1)[:, ~removed]).all()  # kept pixels untouched


def _pgc_road_counts_match(pixels: int) -> bool:
    """pytorch-grad-cam removes by percentile thresholds: check they remove as many pixels as we do."""
    values = np.arange(pixels) / pixels
    return all(int((values >= np.percentile(values, 100 - p)).sum()) == pixels * p // 100 for p in ROAD_PERCENTAGES)


def test_road_combined_matches_pytorch_grad_cam(monkeypatch) -> None:
    from pytorch_grad_cam.metrics import road
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    assert _pgc_road_counts_match(160) and not _pgc_road_counts_match(256)
    model, inputs, maps = _model_and_maps(seed=2, size=(10, 16))
    classes = [1, 0, 2]
    curves = measure_faithfulness(model, inputs, _samples(model, inputs, maps, classes), 10, road_noise=0.0)
    monkeypatch.setattr(road.NoisyLinearImputer.__init__, "__defaults__", (0.0, road.neighbors_weights))
    theirs = road.ROADCombined(percentiles=list(range(10, 100, 10)))(
        inputs, maps.numpy(), [ClassifierOutputSoftmaxTarget(c) for c in classes], model
    )
    # float32 on both sides: each ROAD probability is off by the probability error of its imputed input, whose
    # values are off by the imputations' error (``_road_inputs``). (LeRF - MoRF) / 2 and the means over
    # percentiles do not grow it.
    error = _probability_error(model, *_road_inputs(road, inputs, maps))
    assert [c.road for c in curves] == pytest.approx(theirs.tolist(), abs=2 * error)
    morf = road.ROADMostRelevantFirstAverage(list(range(10, 100, 10)))(
        inputs, maps.numpy(), [ClassifierOutputSoftmaxTarget(c) for c in classes], model
    )
    base = np.array([s.probability for s in _samples(model, inputs, maps, classes)])
    # pytorch-grad-cam's figure is the mean MoRF probability less its own unperturbed one, to which ours is added.
    assert [float(np.mean(c.road_morf)) for c in curves] == pytest.approx((morf + base).tolist(), abs=4 * error)


def _road_inputs(road, inputs: torch.Tensor, maps: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Every ROAD input these maps make (the most and least relevant 10%, ..., 90% of the pixels removed and
    imputed by a float64 direct solve), and the largest error of both sides' imputations against it: ours solves
    by conjugate gradients to a residual tolerance and returns float32; pytorch-grad-cam solves directly from the
    float32 image and rounds the solution to float32."""
    size, worst, imputed = inputs.shape[-2:], 0.0, []
    ranks = relevance_ranks(maps)
    removed_counts = torch.tensor([ranks.shape[1] * p // 100 for p in ROAD_PERCENTAGES])
    for image, rank in zip(inputs, ranks):
        removed = torch.cat(
            [rank[None] < removed_counts[:, None], rank[None] >= rank.numel() - removed_counts[:, None]]
        )
        ours = impute_removed(image.expand(removed.shape[0], -1, -1, -1), removed.view(-1, *size))
        for mask, mine in zip(removed, ours):
            exact = noisy_linear_imputation(image.numpy(), mask.numpy(), noise=0.0)
            theirs = road.NoisyLinearImputer(noise=0.0)(image, (~mask).view(*size).float()).numpy()
            worst = max(worst, np.abs(mine.numpy() - exact).max(), np.abs(theirs - exact).max())
            imputed.append(torch.from_numpy(exact))
    return torch.cat([inputs.double(), torch.stack(imputed)]), worst


def test_road_most_relevant_first_matches_quantus() -> None:
    """Quantus' ROAD scores whether the prediction survives; with two classes that is the probability above 1/2."""
    import quantus

    model = nn.Sequential(nn.Conv2d(1, 1, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2)).eval()
    with torch.no_grad():  # class 1 when the image is bright on average
        model[0].weight.fill_(1.0), model[0].bias.zero_()
        model[3].weight.copy_(torch.tensor([[-4.0], [4.0]])), model[3].bias.copy_(torch.tensor([0.8, -0.8]))
    torch.manual_seed(4)
    inputs = 0.3 * torch.randn(8, 1, 16, 16)
    inputs[:, :, 4:10, 3:9] += torch.linspace(1.5, 4.0, 8)[:, None, None, None]  # a bright square, brighter each image
    maps = torch.rand(8, 16, 16) * 0.5
    maps[:, 4:10, 3:9] += 0.5
    with torch.no_grad():
        labels = model(inputs).argmax(1)
    samples = _samples(model, inputs, maps, labels.tolist())
    curves = measure_faithfulness(model, inputs, samples, 10, road_noise=0.0)
    metric = quantus.ROAD(
        noise=0.0, percentages=list(ROAD_PERCENTAGES), abs=False, normalise=False, disable_warnings=True
    )
    theirs = metric(
        model=model,
        x_batch=inputs.numpy(),
        y_batch=labels.numpy(),
        a_batch=maps[:, None].numpy(),
        channel_first=True,
        device="cpu",
    )
    ours = np.mean([c.road_morf > 0.5 for c in curves], axis=0)
    assert ours.tolist() == pytest.approx([theirs[p] for p in ROAD_PERCENTAGES])
    assert len(set(ours.tolist())) > 1  # removing more changes the outcome: the comparison has teeth


# ---------------------------------------------------------------- Average Drop, Increase in Confidence


def test_average_drop_and_increase_match_torchcam_and_pytorch_grad_cam() -> None:
    from pytorch_grad_cam.metrics.cam_mult_image import CamMultImageConfidenceChange
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
    from torchcam.metrics import ClassificationMetric

    model, inputs, maps = _model_and_maps(seed=5, size=(14, 14), images=6)
    classes = [0, 1, 2, 0, 1, 2]  # likely and unlikely classes: the masked input raises some, lowers others
    curves = measure_faithfulness(model, inputs, _samples(model, inputs, maps, classes), 3)
    metric = ClassificationMetric(_GivenMaps(model, maps), partial(torch.softmax, dim=-1))
    metric.update(inputs, class_idx=classes)
    summary = metric.summary()
    # float32 on both sides: the probabilities Y (input) and O (input x map, one rounding per value) are off by
    # the probability error E at most, so max(0, Y - O) / Y by 3 E / Y (as Y - O <= Y), on each side.
    masked = inputs.double() * maps[:, None].double()  # one float32 rounding per value on each side
    error = _probability_error(
        model, torch.cat([inputs.double(), masked]), torch.cat([torch.zeros_like(masked), U32 * masked.abs()])
    )
    smallest = min(s.probability for s in _samples(model, inputs, maps, classes)) - error
    assert np.mean([c.drop for c in curves]) == pytest.approx(summary["avg_drop"], abs=6 * error / smallest)
    assert np.mean([c.increase for c in curves]) == pytest.approx(summary["conf_increase"])  # a share of counts
    change = CamMultImageConfidenceChange()(
        inputs, maps.numpy(), [ClassifierOutputSoftmaxTarget(c) for c in classes], model
    )
    assert [c.masked - c.probability for c in curves] == pytest.approx(change.tolist(), abs=4 * error)
    assert summary["avg_drop"] > 0 and 0 < sum(c.increase for c in curves) < len(curves)


# ---------------------------------------------------------------- sanity: cascading randomisation


def test_spearman_and_ssim_match_quantus() -> None:
    from quantus.functions.similarity_func import correlation_spearman
    from quantus.functions.similarity_func import ssim as quantus_ssim

    from gradcam_cli.metrics.sanity import spearman, ssim

    rng = np.random.default_rng(0)
    for _ in range(5):
        a = rng.random((20, 24))
        b = 0.6 * a + 0.4 * rng.random((20, 24))
        a, b = ((m - m.min()) / (m.max() - m.min()) for m in (a, b))
        # float64 on both sides: approx's 1e-6 relative is far above float64's rounding.
        assert spearman(a, b) == pytest.approx(correlation_spearman(a.ravel(), b.ravel()))
        assert ssim(a, b) == pytest.approx(quantus_ssim(a, b))
    assert spearman(np.zeros((4, 4)), rng.random((4, 4))) == 0.0  # a constant map shares no ranking


def _loaded(model, size):
    from gradcam_cli.maps.preprocess import PreprocessConfig
    from gradcam_cli.model.loading import LoadedModel

    return LoadedModel(model, "test/TinyNet", PreprocessConfig(size, size), 3, None, "test")


def _explain_fn(layer: str, size):
    """An explain_func for Quantus: our Grad-CAM on whatever model Quantus hands over."""
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.maps.scale import normalize_minmax, upsample_to
    from gradcam_cli.options import ExplainOptions

    def explain(model, inputs, targets, **kwargs):
        explainer = Explainer(_loaded(model, size), ExplainOptions(layers=(layer,), outputs=()))
        x = torch.as_tensor(inputs)
        result = explainer.run_passes(x, torch.as_tensor(targets)[:, None])
        maps = upsample_to(normalize_minmax(result.maps["gradcam", layer])[0], size)
        return maps.numpy()  # (B, 1, H, W)

    return explain


def test_cascading_randomisation_matches_quantus_mprt() -> None:
    import quantus

    from gradcam_cli.metrics.measure import SanityImages, sanity_curves
    from gradcam_cli.metrics.sanity import module_units

    size = (16, 16)
    torch.manual_seed(6)
    model = TinyNet().eval()
    inputs = torch.randn(4, 3, *size)
    with torch.no_grad():
        classes = model(inputs).argmax(1)
    explain = _explain_fn("conv2", size)
    original = explain(model, inputs.numpy(), classes.numpy())
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def quantus_reset(unit, step):  # Quantus' generator: the same seed before every layer's reset
        torch.manual_seed(42 + 1)
        unit.modules[0].reset_parameters()

    from gradcam_cli.explainer import Explainer
    from gradcam_cli.options import ExplainOptions

    explainer = Explainer(_loaded(model, size), ExplainOptions(layers=("conv2",), outputs=()))
    kept = [SanityImages(inputs, classes[:, None], [1] * 4, {("gradcam", "conv2"): original})]
    ours = sanity_curves(explainer, kept, [("gradcam", "conv2")], units_of=module_units, reset=quantus_reset)
    curve = ours["gradcam", "conv2"]
    metric = quantus.MPRT(
        similarity_func=quantus.similarity_func.correlation_spearman,
        layer_order="top_down",
        seed=42,
        abs=False,
        normalise=False,
        disable_warnings=True,
    )
    theirs = metric(
        model=model,
        x_batch=inputs.numpy(),
        y_batch=classes.numpy(),
        a_batch=original,
        explain_func=explain,
        channel_first=True,
        device="cpu",
    )
    assert theirs.pop("original") == pytest.approx([1.0] * 4)
    assert curve.steps == list(theirs) == ["fc", "conv2", "conv1"]
    # Both sides' maps come from our Grad-CAM on identically randomised copies, the same float32 operations on
    # the same values (the same bits); the rank correlations are float64: 1e-6 is far above their rounding.
    for step, values in zip(curve.steps, curve.spearman):
        assert values == pytest.approx(theirs[step], abs=1e-6), step
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # randomised a copy only

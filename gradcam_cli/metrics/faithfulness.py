"""Faithfulness: does the model's confidence follow the map when the input is perturbed by it?

Every perturbation works on the model's input (after normalisation), ranks pixels by the map
upsampled to that input (most relevant first, ties in pixel order), and reads the softmax
probability of the explained class. With ``steps`` = N and P pixels, the curves have points at
``0, s, 2s, ..., P`` pixels with ``s = ceil(P / N)`` (at most N intervals, as in torchcam):

- *Deletion* and *insertion* (Petsiuk et al. 2018, "RISE"): the most relevant pixels first replaced
  by 0 (the mean colour), or first restored onto a blurred copy (RISE's 11x11 Gaussian of sigma 5);
  the area under each curve over the fraction of pixels (trapezoids). Low deletion, high insertion
  are good.
- *ROAD* (Rong et al. 2022, "A Consistent and Efficient Evaluation Strategy for Attribution
  Methods"): 10%, 20%, ..., 90% of the pixels removed, most relevant first (MoRF) and least relevant
  first (LeRF), each removed pixel filled by noisy linear imputation (the average of its 8
  neighbours, solved as one sparse linear system, plus N(0, 0.01) noise). ``road`` is the mean of
  (LeRF - MoRF) / 2, pytorch-grad-cam's ROADCombined: high is good.
- *Average Drop* and *Increase in Confidence* (Chattopadhay et al. 2018, "Grad-CAM++"): the input
  multiplied by the map; drop = max(0, Y - O) / Y, increase = [O > Y].

Cost: every perturbed input a step needs (all maps, all curves, the whole batch) goes through the
model in one forward pass, so a batch of images costs at most N forward passes in all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.outputs import logits_of
from ..model.device import autocast_for, input_memory_format

ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ROAD_NOISE = 0.01  # absolute, on the normalised input, as in the ROAD code
RISE_BLUR = (11, 5.0)  # kernel side and sigma of RISE's insertion substrate
# ROAD's imputation weights: the 4 direct neighbours count twice as much as the 4 diagonal ones.
NEIGHBOURS = ((1, 1, 1 / 12), (0, 1, 1 / 6), (-1, 1, 1 / 12), (1, -1, 1 / 12),
              (0, -1, 1 / 6), (-1, -1, 1 / 12), (1, 0, 1 / 6), (-1, 0, 1 / 6))


@dataclass
class FaithfulnessSample:
    """One map to test: which image of the batch, which class, the map over the model's input."""

    image: int
    class_index: int
    map: torch.Tensor  # (H, W) in [0, 1], on the inputs' device
    probability: float  # the class's probability on the unperturbed input


@dataclass
class Curves:
    """One sample's perturbation curves (class probabilities)."""

    fractions: np.ndarray  # (n + 1,) share of the pixels perturbed at each point
    deletion: np.ndarray  # (n + 1,)
    insertion: np.ndarray  # (n + 1,)
    road_morf: np.ndarray  # (len(ROAD_PERCENTAGES),)
    road_lerf: np.ndarray
    probability: float  # Y: unperturbed
    masked: float  # O: the input multiplied by the map

    @property
    def deletion_auc(self) -> float:
        return trapezoid_auc(self.deletion, self.fractions)

    @property
    def insertion_auc(self) -> float:
        return trapezoid_auc(self.insertion, self.fractions)

    @property
    def road(self) -> float:
        return float(np.mean((self.road_lerf - self.road_morf) / 2))

    @property
    def drop(self) -> float:
        # torchcam's form: the small constant keeps a zero probability from dividing by zero.
        return max(0.0, self.probability - self.masked) / (self.probability + 1e-7)

    @property
    def increase(self) -> bool:
        return self.masked > self.probability


def step_counts(pixels: int, steps: int) -> list[int]:
    """Pixels perturbed at each curve point: ``0, s, 2s, ..., pixels`` with ``s = ceil(pixels / steps)``."""
    size = math.ceil(pixels / steps)
    return [*range(0, pixels, size), pixels]


def trapezoid_auc(values: np.ndarray, fractions: np.ndarray) -> float:
    return float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(fractions)))


def relevance_ranks(maps: torch.Tensor) -> torch.Tensor:
    """``(J, H, W)`` maps -> ``(J, H * W)`` rank of each pixel, 0 the most relevant (ties in pixel order)."""
    flat = maps.flatten(1)
    order = torch.argsort(flat, dim=1, descending=True, stable=True)
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(flat.shape[1], device=flat.device).expand_as(order))
    return ranks


def rise_blur(inputs: torch.Tensor) -> torch.Tensor:
    """RISE's insertion substrate: each channel convolved with its Gaussian kernel (zero padding)."""
    from scipy.ndimage import gaussian_filter

    side, sigma = RISE_BLUR
    delta = np.zeros((side, side))
    delta[side // 2, side // 2] = 1
    kernel = torch.from_numpy(gaussian_filter(delta, sigma).astype(np.float32)).to(inputs)
    channels = inputs.shape[1]
    return F.conv2d(inputs, kernel.expand(channels, 1, side, side), padding=side // 2, groups=channels)


def noisy_linear_imputation(image: np.ndarray, removed: np.ndarray, noise: float = ROAD_NOISE,
                            rng: np.random.Generator | None = None) -> np.ndarray:
    """``(C, H, W)`` image with the ``removed`` pixels (flat bool mask) filled in: each one the weighted
    mean of its in-image neighbours (:data:`NEIGHBOURS`), all solved at once, plus Gaussian ``noise``."""
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    channels, height, width = image.shape
    flat = image.reshape(channels, -1).astype(np.float64)
    unknown = np.flatnonzero(removed)
    if unknown.size == 0:
        return image.copy()
    variable = np.full(height * width, -1)
    variable[unknown] = np.arange(unknown.size)
    ys, xs = np.divmod(unknown, width)
    rows, cols, vals = [], [], []
    weight_sum = np.zeros(unknown.size)
    rhs = np.zeros((unknown.size, channels))
    for dy, dx, w in NEIGHBOURS:
        ny, nx = ys + dy, xs + dx
        valid = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        eq, neighbour = np.flatnonzero(valid), ny[valid] * width + nx[valid]
        weight_sum[eq] += w
        free = removed[neighbour]
        rows.append(eq[free])
        cols.append(variable[neighbour[free]])
        vals.append(np.full(int(free.sum()), -w))
        np.add.at(rhs, eq[~free], w * flat[:, neighbour[~free]].T)
    # For every removed pixel i: sum_j w_ij x_i - sum_{j removed} w_ij x_j = sum_{j kept} w_ij v_j.
    rows.append(np.arange(unknown.size))
    cols.append(np.arange(unknown.size))
    vals.append(weight_sum)
    system = sparse.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(unknown.size, unknown.size))
    solved = spsolve(system, rhs).reshape(unknown.size, channels)
    if noise:
        solved = solved + noise * (rng or np.random.default_rng()).standard_normal(solved.shape)
    out = flat.copy()
    out[:, unknown] = solved.T
    return out.reshape(channels, height, width)


def class_probabilities(model: nn.Module, x: torch.Tensor, classes: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """One forward pass: the softmax probability of ``classes[i]`` for each input ``x[i]``."""
    with torch.inference_mode(), autocast_for(x.device, precision):
        logits = logits_of(model(x.contiguous(memory_format=input_memory_format(model))))
    return torch.softmax(logits.float(), dim=1).gather(1, classes[:, None])[:, 0]


def measure_faithfulness(model: nn.Module, inputs: torch.Tensor, samples: Sequence[FaithfulnessSample],
                         steps: int, precision: str = "fp32", seed: int = 0,
                         road_noise: float = ROAD_NOISE) -> list[Curves]:
    """Every curve of every sample, from at most ``steps`` forward passes for the whole batch."""
    if not samples:
        return []
    channels, height, width = inputs.shape[1:]
    pixels = height * width
    counts = step_counts(pixels, steps)
    n = len(counts) - 1
    maps = torch.stack([s.map.float() for s in samples])
    ranks = relevance_ranks(maps)
    which = torch.tensor([s.image for s in samples], device=inputs.device)
    classes = torch.tensor([s.class_index for s in samples], device=inputs.device)
    x = inputs.float().flatten(2)[which]  # (J, C, P)
    blurred = rise_blur(inputs.float()).flatten(2)[which]
    road = _RoadInputs(inputs, samples, ranks, seed, road_noise)
    road_slot = [min(n, max(1, round(k * n / len(ROAD_PERCENTAGES)))) for k in range(1, len(ROAD_PERCENTAGES) + 1)]
    probability = np.array([s.probability for s in samples])
    deletion = np.tile(probability[:, None], (1, n + 1))
    insertion = deletion.copy()
    morf = np.zeros((len(samples), len(ROAD_PERCENTAGES)))
    lerf = np.zeros_like(morf)
    masked = np.zeros(len(samples))
    for s in range(1, n + 1):
        parts = [torch.where((ranks < counts[s])[:, None], 0.0, x),  # deletion point s
                 torch.where((ranks < counts[s - 1])[:, None], x, blurred)]  # insertion point s - 1
        targets = [(deletion, s), (insertion, s - 1)]
        if s == 1:
            parts.append(x * maps.flatten(1)[:, None])
            targets.append((masked, None))
        for r in (r for r, slot in enumerate(road_slot) if slot == s):
            parts += [road.removed(ROAD_PERCENTAGES[r], most_relevant=True), road.removed(ROAD_PERCENTAGES[r], most_relevant=False)]
            targets += [(morf, r), (lerf, r)]
        batch = torch.cat(parts).view(-1, channels, height, width)
        probs = class_probabilities(model, batch, classes.repeat(len(parts)), precision).cpu().numpy()
        for (array, column), chunk in zip(targets, probs.reshape(len(parts), len(samples))):
            if column is None:
                array[:] = chunk
            else:
                array[:, column] = chunk
    fractions = np.asarray(counts, dtype=np.float64) / pixels
    return [Curves(fractions, deletion[j], insertion[j], morf[j], lerf[j], float(probability[j]), float(masked[j]))
            for j in range(len(samples))]


class _RoadInputs:
    """ROAD's imputed inputs, on the CPU (a sparse solve per input, several at once in threads: SciPy's
    solver runs without the GIL), moved to the inputs' device. Each input's noise has its own seed, so
    the result does not depend on the threads' order."""

    def __init__(self, inputs: torch.Tensor, samples: Sequence[FaithfulnessSample], ranks: torch.Tensor,
                 seed: int, noise: float) -> None:
        self.device, self.noise, self.seed = inputs.device, noise, seed
        self.images = inputs.float().cpu().numpy()
        self.samples = samples
        self.ranks = ranks.cpu().numpy()
        self.workers = max(1, min(len(samples), os.cpu_count() or 1))

    def removed(self, percentage: int, most_relevant: bool) -> torch.Tensor:
        """``(J, C, P)``: every sample's image with ``percentage`` % of its pixels imputed."""
        from concurrent.futures import ThreadPoolExecutor

        pixels = self.ranks.shape[1]
        count = pixels * percentage // 100

        def one(j: int) -> np.ndarray:
            ranks, image = self.ranks[j], self.images[self.samples[j].image]
            mask = ranks < count if most_relevant else ranks >= pixels - count
            rng = np.random.default_rng([self.seed, percentage, int(most_relevant), j])
            return noisy_linear_imputation(image, mask, self.noise, rng).reshape(image.shape[0], -1)

        with ThreadPoolExecutor(self.workers) as pool:
            out = list(pool.map(one, range(len(self.samples))))
        return torch.from_numpy(np.stack(out).astype(np.float32)).to(self.device)

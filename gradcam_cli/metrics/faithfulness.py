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
  neighbours, solved as one linear system, plus N(0, 0.01) noise; see ``road_imputation.py``).
  ``road`` is the mean of (LeRF - MoRF) / 2, pytorch-grad-cam's ROADCombined: high is good.
- *Average Drop* and *Increase in Confidence* (Chattopadhay et al. 2018, "Grad-CAM++"): the input
  multiplied by the map; drop = max(0, Y - O) / Y, increase = [O > Y].

Cost: each map needs ``2 (N - 1) + 1 + 18`` perturbed inputs; the points every map of an image
shares are computed once: the unperturbed input (its probability comes with the sample), the
fully deleted input (all zeros: once per call) and the fully blurred one (once per image). The
inputs go through the model in chunks of a moderate batch (`forward_batch_size`), built on
the model's device as they are needed; the probabilities stay there until the end, so the whole
path runs on a GPU without a host round trip per chunk (the imputation's solver checks its
residual once per round of iterations).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..model.device import autocast_for, input_memory_format
from ..model.outputs import logits_of
from .road_imputation import NEIGHBOURS, impute_removed, noisy_linear_imputation  # noqa: F401 (re-exported)

ROAD_PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)
ROAD_NOISE = 0.01  # absolute, on the normalised input, as in the ROAD code
RISE_BLUR = (11, 5.0)  # kernel side and sigma of RISE's insertion substrate
# Pixels per forward chunk: on a CPU, 8 inputs of 256 x 256 keep the activations near the caches
# (EfficientNet-Lite0 costs 4x more per input at batch 64); a GPU wants larger batches.
CPU_CHUNK_PIXELS = 8 * 256 * 256
GPU_CHUNK_PIXELS = 64 * 256 * 256
# Maps whose ROAD inputs are imputed in one solve: 18 systems fill a CPU's caches; a GPU takes more
# at once (4 maps of 256 x 256 hold about 0.5 GB of solver state).
CPU_ROAD_MAPS, GPU_ROAD_MAPS = 1, 4
ROAD_IN_BACKGROUND = True  # on a CPU: each group's solve in a thread of its own (see `_RoadSolves`)


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


def class_probabilities(
    model: nn.Module, x: torch.Tensor, classes: torch.Tensor, precision: str = "fp32"
) -> torch.Tensor:
    """One forward pass: the softmax probability of ``classes[i]`` for each input ``x[i]``."""
    with torch.inference_mode(), autocast_for(x.device, precision):
        logits = logits_of(model(x.contiguous(memory_format=input_memory_format(model))))
    return torch.softmax(logits.float(), dim=1).gather(1, classes[:, None])[:, 0]


def forward_batch_size(device: torch.device, height: int, width: int) -> int:
    """Inputs per forward chunk: `CPU_CHUNK_PIXELS` or `GPU_CHUNK_PIXELS` worth of pixels."""
    budget = CPU_CHUNK_PIXELS if device.type == "cpu" else GPU_CHUNK_PIXELS
    return max(1, budget // (height * width))


def inputs_per_map(steps: int, pixels: int) -> int:
    """Perturbed inputs one map costs beyond the shared points: deletion and insertion inside the
    curve, the map-weighted input, ROAD's MoRF and LeRF inputs."""
    inner = len(step_counts(pixels, steps)) - 2
    return 2 * inner + 1 + 2 * len(ROAD_PERCENTAGES)


def measure_faithfulness(
    model: nn.Module,
    inputs: torch.Tensor,
    samples: Sequence[FaithfulnessSample],
    steps: int,
    precision: str = "fp32",
    seed: int = 0,
    road_noise: float = ROAD_NOISE,
    *,
    batch_size: int | None = None,
    timings: dict[str, float] | None = None,
) -> list[Curves]:
    """Every curve of every sample. ``batch_size``: inputs per forward chunk (default
    `forward_batch_size`); ``timings``: a dict that collects the seconds spent in ``forward``,
    ``imputation`` and ``perturbation`` and the count of ``forward_inputs`` (synchronising a GPU to do so)."""
    if not samples:
        return []
    with torch.inference_mode():
        plan = _Plan(inputs, samples, steps, timings)
        batcher = _Batcher(
            model,
            precision,
            batch_size or forward_batch_size(inputs.device, *plan.size),
            plan.classes,
            plan.columns,
            timings,
        )
        shared = batcher.full_rows(plan.shared_inputs())  # all zeros, then each image blurred
        cpu = inputs.device.type == "cpu"
        group = CPU_ROAD_MAPS if cpu else GPU_ROAD_MAPS
        groups = [range(first, min(len(samples), first + group)) for first in range(0, len(samples), group)]
        with _RoadSolves(plan, seed, road_noise, background=cpu and ROAD_IN_BACKGROUND) as solves:
            solves.start(groups[0])
            for g, maps in enumerate(groups):
                for j in maps:
                    column = 0
                    for block in plan.curve_inputs(j):
                        batcher.add(block, j, column)
                        column += block.shape[0]
                with _timed(timings, "imputation", inputs.device):  # the wait for the solve, not its length
                    road = solves.result()
                if g + 1 < len(groups):
                    solves.start(groups[g + 1])  # solved while this group's ROAD inputs and the next curves run
                _add_road_inputs(batcher, plan, maps, road)
        batcher.flush()
        if timings is not None:
            timings["imputation_solve"] = timings.get("imputation_solve", 0.0) + solves.seconds
        table = torch.cat([batcher.results.view(len(samples), plan.columns), plan.shared_columns(shared)], dim=1)
        return plan.curves(table.cpu().numpy())


def _add_road_inputs(batcher: _Batcher, plan: _Plan, maps: Sequence[int], road: torch.Tensor) -> None:
    columns = 2 * len(ROAD_PERCENTAGES)
    for k, j in enumerate(maps):
        batcher.add(road[k * columns : (k + 1) * columns], j, plan.columns - columns)


class _RoadSolves:
    """ROAD's imputations, one group of maps at a time: in the caller's thread, or (on a CPU) in one thread of
    its own with one intra-op thread, so that the next group's solve runs while the forward passes do.

    The solver is a long chain of small operations; with several intra-op threads on a loaded CPU each one
    waits for every thread (the same solve took 2 s in one thread and 9 to 13 s in two on this project's
    2-core machine with other jobs running), while the forward passes' large operations keep both cores."""

    def __init__(self, plan: _Plan, seed: int, noise: float, background: bool) -> None:
        self.plan, self.seed, self.noise = plan, seed, noise
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="road-imputation") if background else None
        self.pending = None
        self.seconds = 0.0  # the solves' own time, wherever they ran

    def __enter__(self) -> _RoadSolves:
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def start(self, maps: Sequence[int]) -> None:
        self.pending = self.pool.submit(self._solve, maps) if self.pool else maps

    def result(self) -> torch.Tensor:
        return self.pending.result() if self.pool else self._solve(self.pending)

    def _solve(self, maps: Sequence[int]) -> torch.Tensor:
        start = time.perf_counter()
        threads = torch.get_num_threads()
        if self.pool is not None:
            torch.set_num_threads(1)  # OpenMP's count is per thread: the caller's forward passes keep theirs
        try:
            with torch.inference_mode():  # per thread too
                return self.plan.road_inputs(maps, self.seed, self.noise)
        finally:
            torch.set_num_threads(threads)
            self.seconds += time.perf_counter() - start


class _Plan:
    """What one call perturbs: the samples' inputs, maps and pixel ranks, on the inputs' device.

    Per sample the results table has ``columns`` slots: deletion at curve points 1..n-1, insertion at
    1..n-1, the map-weighted input, then ROAD's MoRF and LeRF inputs at each percentage."""

    def __init__(
        self, inputs: torch.Tensor, samples: Sequence[FaithfulnessSample], steps: int, timings: dict | None
    ) -> None:
        device = inputs.device
        self.samples, self.timings = samples, timings
        self.size = tuple(inputs.shape[-2:])
        self.pixels = self.size[0] * self.size[1]
        self.counts = step_counts(self.pixels, steps)
        self.inner = torch.tensor(self.counts[1:-1], device=device)
        self.columns = inputs_per_map(steps, self.pixels)
        with _timed(timings, "perturbation", device):
            self.images = sorted({s.image for s in samples})  # the images that have samples
            self.x = inputs.float().flatten(2)  # (B, C, P)
            self.blurred = rise_blur(inputs.float()[self.images]).flatten(2)
            self.maps = torch.stack([s.map.float() for s in samples]).flatten(1)
            self.ranks = relevance_ranks(self.maps)
        self.classes = torch.tensor([s.class_index for s in samples], device=device)
        self.image_slot = torch.tensor([self.images.index(s.image) for s in samples], device=device)
        removed = [self.pixels * p // 100 for p in ROAD_PERCENTAGES]
        self.road_thresholds = torch.tensor(removed, device=device)

    def shared_inputs(self) -> torch.Tensor:
        """The fully deleted input (zeros, the same for every image) and each image fully blurred."""
        channels = self.x.shape[1]
        zeros = torch.zeros(1, channels, self.pixels, device=self.x.device)
        return torch.cat([zeros, self.blurred]).view(-1, channels, *self.size)

    def curve_inputs(self, j: int) -> Iterator[torch.Tensor]:
        """Sample j's deletion inputs inside the curve, its insertion inputs, then its map-weighted input,
        each block built when the batcher takes it."""
        x, ranks = self.x[self.samples[j].image], self.ranks[j]
        first = (ranks[None] < self.inner[:, None])[:, None]  # (n - 1, 1, P): the pixels perturbed so far
        with _timed(self.timings, "perturbation", x.device):
            block = torch.where(first, 0.0, x)
        yield block.view(-1, x.shape[0], *self.size)
        with _timed(self.timings, "perturbation", x.device):
            block = torch.where(first, x, self.blurred[self.image_slot[j]])
        yield block.view(-1, x.shape[0], *self.size)
        with _timed(self.timings, "perturbation", x.device):
            block = x * self.maps[j]
        yield block.view(1, x.shape[0], *self.size)

    def road_inputs(self, maps: Sequence[int], seed: int, noise: float) -> torch.Tensor:
        """The ROAD inputs of samples ``maps``, one solve for all: per sample MoRF at each percentage, then
        LeRF. Each sample's noise has its own seed, (seed, j): the draws do not depend on the grouping."""
        removed, images, draws = [], [], []
        for j in maps:
            x, ranks = self.x[self.samples[j].image], self.ranks[j]
            most = ranks[None] < self.road_thresholds[:, None]
            least = ranks[None] >= self.pixels - self.road_thresholds[:, None]
            removed.append(torch.cat([most, least]).view(-1, *self.size))
            images.append(x.view(1, x.shape[0], *self.size).expand(removed[-1].shape[0], -1, -1, -1))
            if noise:
                generator = torch.Generator(device=x.device)
                generator.manual_seed(int(np.random.SeedSequence([seed, j]).generate_state(1)[0]))
                draws.append(noise * torch.randn(images[-1].shape, generator=generator, device=x.device))
        return impute_removed(torch.cat(images), torch.cat(removed), torch.cat(draws) if draws else None)

    def shared_columns(self, shared: torch.Tensor) -> torch.Tensor:
        """``(J, 2)``: each sample's class probability on the all-zeros input and on its blurred image."""
        zeros = shared[0, self.classes]
        blurred = shared[1 + self.image_slot, self.classes]
        return torch.stack([zeros, blurred], dim=1)

    def curves(self, table: np.ndarray) -> list[Curves]:
        """The results table (J, columns + 2), on the host, as each sample's curves."""
        inner = len(self.counts) - 2
        fractions = np.asarray(self.counts, dtype=np.float64) / self.pixels
        out = []
        for j, s in enumerate(self.samples):
            row = table[j].astype(np.float64)
            deletion = np.concatenate([[s.probability], row[:inner], row[-2:-1]])
            insertion = np.concatenate([row[-1:], row[inner : 2 * inner], [s.probability]])
            road = row[2 * inner + 1 : self.columns]
            half = len(ROAD_PERCENTAGES)
            out.append(
                Curves(
                    fractions,
                    deletion,
                    insertion,
                    road[:half],
                    road[half:],
                    float(s.probability),
                    float(row[2 * inner]),
                )
            )
        return out


class _Batcher:
    """Perturbed inputs in, forward chunks of ``size`` out: each result lands in its slot of ``results``
    (on the device), so nothing waits for the host between chunks."""

    def __init__(
        self, model: nn.Module, precision: str, size: int, classes: torch.Tensor, columns: int, timings: dict | None
    ) -> None:
        self.model, self.precision, self.size, self.timings = model, precision, size, timings
        self.classes, self.columns = classes, columns  # each sample's class; its slots in the table
        self.memory_format = input_memory_format(model)
        self.results = torch.empty(len(classes) * columns, device=classes.device)
        self.pending: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []  # (inputs, classes, slots)
        self.waiting = 0

    def add(self, inputs: torch.Tensor, sample: int, first_column: int) -> None:
        """Queue ``inputs`` of ``sample`` for its columns ``first_column, first_column + 1, ...``."""
        device = inputs.device
        slots = torch.arange(inputs.shape[0], device=device) + sample * self.columns + first_column
        self.pending.append((inputs, self.classes[sample].expand(inputs.shape[0]), slots))
        self.waiting += inputs.shape[0]
        while self.waiting >= self.size:
            self._run(self.size)

    def flush(self) -> None:
        while self.waiting:
            self._run(min(self.size, self.waiting))

    def full_rows(self, inputs: torch.Tensor) -> torch.Tensor:
        """Every class's probability for each of ``inputs`` (a few shared points), in chunks."""
        rows = []
        for chunk in inputs.split(self.size):
            with _timed(self.timings, "forward", chunk.device):
                with autocast_for(chunk.device, self.precision):
                    logits = logits_of(self.model(chunk.contiguous(memory_format=self.memory_format)))
                rows.append(torch.softmax(logits.float(), dim=1))
            _count(self.timings, chunk.shape[0])
        return torch.cat(rows)

    def _run(self, count: int) -> None:
        with _timed(self.timings, "perturbation", self.results.device):
            batch, classes, slots = self._take(count)
        with _timed(self.timings, "forward", batch.device):
            probabilities = class_probabilities(self.model, batch, classes, self.precision)
        self.results.index_copy_(0, slots, probabilities)
        _count(self.timings, count)

    def _take(self, count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first ``count`` queued inputs as one batch in the model's memory format."""
        first = self.pending[0][0]
        batch = torch.empty((count, *first.shape[1:]), device=first.device, memory_format=self.memory_format)
        classes, slots, filled = [], [], 0
        while filled < count:
            inputs, cls, slot = self.pending[0]
            take = min(count - filled, inputs.shape[0])
            batch[filled : filled + take].copy_(inputs[:take])
            classes.append(cls[:take])
            slots.append(slot[:take])
            if take == inputs.shape[0]:
                self.pending.pop(0)
            else:
                self.pending[0] = (inputs[take:], cls[take:], slot[take:])
            filled += take
        self.waiting -= count
        return batch, torch.cat(classes), torch.cat(slots)


@contextmanager
def _timed(timings: dict | None, name: str, device: torch.device):
    """Adds the block's seconds to ``timings[name]`` (waiting for a GPU's queue at both ends)."""
    if timings is None:
        yield
        return
    _synchronise(device)
    start = time.perf_counter()
    try:
        yield
    finally:
        _synchronise(device)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _count(timings: dict | None, inputs: int) -> None:
    if timings is not None:
        timings["forward_inputs"] = timings.get("forward_inputs", 0) + inputs

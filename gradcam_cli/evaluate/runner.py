"""The pass over the images: photos decoded ahead in worker threads (the job machinery's), one engine
call per batch for every method and layer, then each map measured against the ground truth.

Every (image, annotated class) is a *sample*: the map explained for that class is what the
localisation, faithfulness and sanity metrics judge (the "GT-known" setting of Choe et al.).
Images without annotations are skipped and reported; an image that cannot be decoded fails
alone; a stop request (SIGINT/SIGTERM in the CLI) ends the pass after the batch in flight.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import GradcamError
from ..explainer import Explainer, same_size_groups
from ..job.inputs import InputImage
from ..job.runner import JobSummary, _Loaded, _prefetched_batches
from ..maps.placement import place_on_original
from ..maps.scale import normalize_minmax, upsample_to
from ..model.device import host_to_device
from ..options import EvaluateOptions, JobOptions
from .annotations import Annotations, ImageTruth
from .faithfulness import Curves, FaithfulnessSample, measure_faithfulness
from .localisation import SampleLocalisation, clip_boxes, localise, near_boxes
from .sanity import SanityCurve, cascade, compare

Key = tuple[str, str]  # (method, layer)


@dataclass
class Sample:
    """One (image, annotated class)."""

    image: str
    class_index: int
    predicted: int  # the image's top-1 class
    probability: float  # of class_index


@dataclass
class Measurements:
    """Everything measured, per (method, layer), each list in sample order."""

    keys: list[Key]
    view: str
    threshold: float  # the operating box threshold (--bbox-threshold) of the samples' `iou`
    samples: list[Sample] = field(default_factory=list)
    localisation: dict[Key, list[SampleLocalisation]] = field(default_factory=dict)
    faithfulness: dict[Key, list[Curves]] = field(default_factory=dict)
    sanity: dict[Key, SanityCurve] = field(default_factory=dict)

    @classmethod
    def of(cls, explainer: Explainer) -> "Measurements":
        """Nothing measured yet, for every (method, layer) of ``explainer``."""
        state = cls(explainer.map_keys(), explainer.view, explainer.options.bbox_threshold)
        for key in state.keys:
            state.localisation[key], state.faithfulness[key] = [], []
        return state

    def images(self) -> dict[str, list[int]]:
        """Sample indices by image, in order."""
        out: dict[str, list[int]] = {}
        for i, s in enumerate(self.samples):
            out.setdefault(s.image, []).append(i)
        return out


@dataclass
class _Kept:
    """What the sanity check needs of one batch: its inputs, classes and original maps."""

    inputs: torch.Tensor  # CPU
    classes: torch.Tensor  # (B, K) padded
    valid: list[list[int]]  # per image, the explained class positions k that are real samples
    maps: dict[Key, np.ndarray]  # (B, K, H, W) maps over the model's input


def evaluate_images(explainer: Explainer, items: Sequence[InputImage], annotations: Annotations,
                    options: EvaluateOptions, job: JobOptions | None = None, *,
                    stop: threading.Event | None = None,
                    on_progress: Callable[[JobSummary], None] | None = None,
                    on_message: Callable[[str], None] | None = None) -> tuple[Measurements, JobSummary]:
    """Measure every map of every annotated image; returns the measurements and the job's counts."""
    job = job or JobOptions()
    stop = stop or threading.Event()
    progress = on_progress or (lambda s: None)
    message = on_message or (lambda m: None)
    summary = JobSummary(total=len(items))
    started = time.perf_counter()
    state = Measurements.of(explainer)
    truths = annotated(items, annotations, summary, message)
    progress(summary)
    kept: list[_Kept] = []
    loaders = ThreadPoolExecutor(job.workers, thread_name_prefix="gradcam-load") if job.workers > 0 else None
    try:
        for batch in _prefetched_batches(explainer, list(truths), explainer.options.batch_size, loaders, stop):
            for b in batch:
                if b.error is not None:
                    summary.failed += 1
                    message(b.error)
            good = [b for b in batch if b.error is None]
            for group in same_size_groups([b.tensor for b in good]):
                _measure_chunk(explainer, [good[i] for i in group], truths, options, state, kept, summary, message)
            progress(summary)
            if summary.failed and job.fail_fast:
                summary.stopped_on_failure = True
                stop.set()
            if stop.is_set():
                break
    finally:
        if loaders is not None:
            loaders.shutdown(wait=True, cancel_futures=True)
    summary.interrupted = stop.is_set() and not summary.stopped_on_failure
    if options.sanity and kept and not stop.is_set():
        state.sanity = sanity_curves(explainer, kept, state.keys)
    summary.seconds = time.perf_counter() - started
    return state, summary


def annotated(items: Sequence[InputImage], annotations: Annotations, summary: JobSummary,
              message: Callable[[str], None]) -> dict[InputImage, ImageTruth]:
    """The items that have annotations, with them; the others counted as skipped and reported."""
    truths: dict[InputImage, ImageTruth] = {}
    for item in items:
        truth = annotations.for_image(item.path)
        if truth is None:
            summary.skipped += 1
            message(f"{item.path}: no annotations; skipped")
        else:
            truths[item] = truth
    return truths


def _measure_chunk(explainer, chunk, truths, options, state, kept, summary, message) -> None:
    """Same-sized photos measured together; nothing is added to ``state`` unless the whole chunk is measured."""
    room = options.sanity_images - sum(len(k.inputs) for k in kept) if options.sanity else 0
    try:
        measured, kept_part = measure_batch(explainer, chunk, [truths[b.item] for b in chunk], options, max(0, room))
    except GradcamError:
        raise
    except Exception as err:  # e.g. out of memory: this batch fails, the pass goes on
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        for b in chunk:
            summary.failed += 1
            message(f"{b.item.path}: model failed ({type(err).__name__}: {first})")
        return
    measured.add_to(state)
    kept += [kept_part] if kept_part is not None else []
    summary.done += len(chunk)


def _padded_classes(truths: Sequence[ImageTruth]) -> list[list[int]]:
    """Each image's annotated classes, repeated to one length so the batch has one (B, K) tensor."""
    lists = [t.class_indices() for t in truths]
    width = max(len(c) for c in lists)
    return [c + [c[0]] * (width - len(c)) for c in lists]


@dataclass
class BatchMeasurements:
    """What one batch measured: its samples and, per (method, layer), each sample's metrics in sample order."""

    samples: list[Sample]
    localisation: dict[Key, list[SampleLocalisation]]
    faithfulness: dict[Key, list[Curves]]

    def add_to(self, state: Measurements) -> None:
        state.samples += self.samples
        for key in state.keys:
            state.localisation[key] += self.localisation.get(key, [])
            state.faithfulness[key] += self.faithfulness.get(key, [])


def measure_batch(explainer: Explainer, batch: Sequence[_Loaded], truths: Sequence[ImageTruth],
                  options: EvaluateOptions, keep: int = 0) -> tuple[BatchMeasurements, _Kept | None]:
    """One engine call for the batch, then every sample's metrics for every (method, layer); with ``keep``,
    what the sanity check needs of the first ``keep`` images."""
    inputs = host_to_device(torch.stack([b.tensor for b in batch]), explainer.device)
    padded = _padded_classes(truths)
    classes = torch.tensor(padded, device=inputs.device)
    result = explainer.run_engine(inputs, classes)
    probs = torch.softmax(result.logits, dim=1)
    predicted = probs.argmax(dim=1).tolist()
    counts = [len(t.class_indices()) for t in truths]
    samples = [Sample(loaded.item.path, c, predicted[b], float(probs[b, c]))
               for b, loaded in enumerate(batch) for c in padded[b][:counts[b]]]
    truth_boxes, near = _ground_truth(batch, truths, padded, counts, options.pointing_tolerance)
    threshold = explainer.options.bbox_threshold
    located: dict[Key, list[SampleLocalisation]] = {}
    over_input: dict[Key, torch.Tensor] = {}
    for key, raw in result.maps.items():
        scaled, _ = normalize_minmax(raw.float())  # (B, K, h, w)
        located[key] = []
        for b, loaded in enumerate(batch):
            placed = place_on_original(scaled[b][:counts[b], None], loaded.geometry)[:, 0].cpu().numpy()
            located[key] += [localise(placed[k], truth_boxes[b][k], near[b][k], threshold) for k in range(counts[b])]
        if options.faithfulness or keep:
            over_input[key] = upsample_to(scaled, tuple(inputs.shape[-2:]))
    curves = _faithfulness(explainer, inputs, padded, counts, probs, over_input, list(result.maps), options) \
        if options.faithfulness else {}
    kept = _Kept(inputs[:keep].cpu(), classes[:keep].cpu(), [list(range(n)) for n in counts[:keep]],
                 {key: m[:keep].cpu().numpy() for key, m in over_input.items()}) if keep else None
    return BatchMeasurements(samples, located, curves), kept


def _ground_truth(batch, truths, padded, counts, tolerance):
    """Per image and explained class: the clipped ground-truth boxes and the pointing game's target."""
    boxes, near = [], []
    for b, (loaded, truth) in enumerate(zip(batch, truths)):
        width, height = loaded.geometry.original_size
        clipped = [clip_boxes(truth.boxes_of(c), width, height) for c in padded[b][:counts[b]]]
        boxes.append(clipped)
        near.append([near_boxes(t, width, height, tolerance) for t in clipped])
    return boxes, near


def _faithfulness(explainer, inputs, padded, counts, probs, over_input, keys, options) -> dict[Key, list[Curves]]:
    """Every map's perturbation curves, all methods and layers sharing the forward passes."""
    samples, owners = [], []
    for key in keys:
        for b in range(inputs.shape[0]):
            for k in range(counts[b]):
                c = padded[b][k]
                samples.append(FaithfulnessSample(b, c, over_input[key][b, k], float(probs[b, c])))
                owners.append(key)
    curves = measure_faithfulness(explainer.loaded.model, inputs, samples, options.faithfulness_steps,
                                  explainer.options.precision)
    out: dict[Key, list[Curves]] = {key: [] for key in keys}
    for key, curve in zip(owners, curves):
        out[key].append(curve)
    return out


def sanity_curves(explainer: Explainer, kept: Sequence[_Kept], keys: Sequence[Key], **cascade_args) -> dict[Key, SanityCurve]:
    """The cascade on a copy of the model: each step's maps for the kept images against the originals."""
    curves = {key: SanityCurve([], [], []) for key in keys}
    twin_explainer = None
    for name, twin in cascade(explainer.loaded, **cascade_args):
        if twin_explainer is None:
            twin_explainer = Explainer(twin, dataclasses.replace(explainer.options, view=explainer.view))
        step_rho = {key: [] for key in keys}
        step_ssim = {key: [] for key in keys}
        for part in kept:
            inputs = host_to_device(part.inputs, twin_explainer.device)
            result = twin_explainer.run_engine(inputs, part.classes.to(inputs.device))
            for key, raw in result.maps.items():
                maps = upsample_to(normalize_minmax(raw.float())[0], tuple(inputs.shape[-2:])).cpu().numpy()
                pairs = [(part.maps[key][b, k], maps[b, k]) for b, ks in enumerate(part.valid) for k in ks
                         if np.ptp(part.maps[key][b, k]) > 0]  # an empty original map has nothing to keep
                rho, sim = compare([a for a, _ in pairs], [r for _, r in pairs])
                step_rho[key] += rho
                step_ssim[key] += sim
        for key in keys:
            curves[key].steps.append(name)
            curves[key].spearman.append(step_rho[key])
            curves[key].ssim.append(step_ssim[key])
    return curves

"""Measuring maps against the ground truth and the model: one batch at a time, then the sanity check.

Every (image, annotated class) is a *sample*: the map explained for that class is what the
localisation, faithfulness and sanity metrics judge (the "GT-known" setting of Choe et al.). A detector's
samples are its annotated objects, one each (`detections.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..maps.placement import place_on_original
from ..maps.scale import normalize_minmax, upsample_to
from ..model.device import host_to_device
from ..model.tasks import DETECTOR
from ..options import EvaluateOptions
from .annotations import ImageTruth
from .detections import measure_detections
from .faithfulness import Curves, FaithfulnessSample, measure_faithfulness
from .localisation import SampleLocalisation, clip_boxes, localise, near_boxes
from .measurements import BatchMeasurements, BoxCheck, Key, Sample
from .sanity import SanityCurve, cascade, compare


def padded_classes(truths: Sequence[ImageTruth]) -> list[list[int]]:
    """Each image's annotated classes, repeated to one length so the batch has one (B, K) tensor."""
    lists = [t.class_indices() for t in truths]
    width = max(len(c) for c in lists)
    return [c + [c[0]] * (width - len(c)) for c in lists]


def measure_batch(
    explainer, batch: Sequence, truths: Sequence[ImageTruth], options: EvaluateOptions
) -> BatchMeasurements:
    """One pass of the model for a batch of same-sized decoded images, then every sample's metrics for every
    (method, layer)."""
    checks = [check_boxes(decoded, truth) for decoded, truth in zip(batch, truths)]
    inside = [(d, t) for d, t in ((d, inside_photo(t, c)) for d, t, c in zip(batch, truths, checks)) if t.objects]
    if not inside:  # no annotated box in any of these photos: nothing to measure
        return BatchMeasurements([], {}, {}, checks)
    batch, truths = [d for d, _ in inside], [t for _, t in inside]
    if explainer.loaded.kind == DETECTOR:  # one sample per annotated object
        return dataclasses.replace(measure_detections(explainer, batch, truths, options), box_checks=checks)
    inputs = host_to_device(torch.stack([b.tensor for b in batch]), explainer.device)
    padded = padded_classes(truths)
    result = explainer.run_passes(inputs, torch.tensor(padded, device=inputs.device))
    probs = torch.softmax(result.logits, dim=1)
    predicted = probs.argmax(dim=1).tolist()
    counts = [len(t.class_indices()) for t in truths]
    samples = [
        Sample(decoded.item.path, c, predicted[b], float(probs[b, c]))
        for b, decoded in enumerate(batch)
        for c in padded[b][: counts[b]]
    ]
    truth_boxes, near = _ground_truth(batch, truths, padded, counts, options.pointing_tolerance)
    threshold = explainer.options.bbox_threshold
    located: dict[Key, list[SampleLocalisation]] = {}
    over_input: dict[Key, torch.Tensor] = {}
    for key, raw in result.maps.items():
        scaled, _ = normalize_minmax(raw.float())  # (B, K, h, w)
        located[key] = []
        for b, decoded in enumerate(batch):
            placed = place_on_original(scaled[b][: counts[b], None], decoded.geometry)[:, 0].cpu().numpy()
            located[key] += [localise(placed[k], truth_boxes[b][k], near[b][k], threshold) for k in range(counts[b])]
        if options.faithfulness:
            over_input[key] = upsample_to(scaled, tuple(inputs.shape[-2:]))
    curves = (
        _faithfulness(explainer, inputs, padded, counts, probs, over_input, list(result.maps), options)
        if options.faithfulness
        else {}
    )
    return BatchMeasurements(samples, located, curves, checks)


def check_boxes(decoded, truth: ImageTruth) -> BoxCheck:
    """Which of an image's annotated boxes reach outside its photo."""
    width, height = decoded.full_size or decoded.geometry.original_size
    check = BoxCheck(decoded.item.path, (int(width), int(height)), len(truth.objects))
    for obj in truth.objects:
        x0, y0, x1, y1 = obj.box
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            check.outside.append(obj.box)
        elif x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            check.clipped.append(obj.box)
    return check


def inside_photo(truth: ImageTruth, check: BoxCheck) -> ImageTruth:
    """The image's objects less those wholly outside its photo (a class left with no box has no sample)."""
    if not check.outside:
        return truth
    kept = [(o, c) for o, c in zip(truth.objects, truth.classes) if o.box not in check.outside]
    return ImageTruth([o for o, _ in kept], [c for _, c in kept])


def _ground_truth(batch, truths, padded, counts, tolerance):
    """Per image and explained class: the clipped ground-truth boxes and the pointing game's target."""
    boxes, near = [], []
    for b, (decoded, truth) in enumerate(zip(batch, truths)):
        width, height = decoded.geometry.original_size  # the photo the maps are placed on
        full = decoded.full_size or (width, height)  # the original, whose pixels the annotations are in
        scale = np.array([width / full[0], height / full[1]] * 2)
        clipped = [
            clip_boxes(np.asarray(truth.boxes_of(c), np.float64).reshape(-1, 4) * scale, width, height)
            for c in padded[b][: counts[b]]
        ]
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
    curves = measure_faithfulness(
        explainer.loaded.model, inputs, samples, options.faithfulness_steps, explainer.options.precision
    )
    out: dict[Key, list[Curves]] = {key: [] for key in keys}
    for key, curve in zip(owners, curves):
        out[key].append(curve)
    return out


@dataclass
class SanityImages:
    """The images the sanity check compares maps on: inputs of one size, their annotated classes and the trained
    model's maps over the input."""

    inputs: torch.Tensor  # CPU
    classes: torch.Tensor  # (B, K) padded
    counts: list[int]  # per image, how many of its K classes are real samples
    maps: dict[Key, np.ndarray]  # (B, K, H, W)


def sanity_images(explainer, batch: Sequence, truths: Sequence[ImageTruth]) -> SanityImages:
    """The trained model's maps of a batch of same-sized decoded images, for `sanity_curves`."""
    inputs = torch.stack([b.tensor for b in batch])
    padded = padded_classes(truths)
    classes = torch.tensor(padded)
    result = explainer.run_passes(host_to_device(inputs, explainer.device), classes.to(explainer.device))
    maps = {
        key: upsample_to(normalize_minmax(raw.float())[0], tuple(inputs.shape[-2:])).cpu().numpy()
        for key, raw in result.maps.items()
    }
    return SanityImages(inputs, classes, [len(t.class_indices()) for t in truths], maps)


def sanity_curves(
    explainer, parts: Sequence[SanityImages], keys: Sequence[Key], **cascade_args
) -> dict[Key, SanityCurve]:
    """The cascade on a copy of the model: each step's maps for the images against the trained model's."""
    from ..explainer import Explainer

    curves = {key: SanityCurve([], [], []) for key in keys}
    twin_explainer = None
    for name, twin in cascade(explainer.loaded, **cascade_args):
        if twin_explainer is None:
            twin_explainer = Explainer(twin, dataclasses.replace(explainer.options, view=explainer.view))
        step_rho: dict[Key, list[float]] = {key: [] for key in keys}
        step_ssim: dict[Key, list[float]] = {key: [] for key in keys}
        for part in parts:
            inputs = host_to_device(part.inputs, twin_explainer.device)
            result = twin_explainer.run_passes(inputs, part.classes.to(inputs.device))
            for key, raw in result.maps.items():
                maps = upsample_to(normalize_minmax(raw.float())[0], tuple(inputs.shape[-2:])).cpu().numpy()
                pairs = [
                    (part.maps[key][b, k], maps[b, k])
                    for b, n in enumerate(part.counts)
                    for k in range(n)
                    if np.ptp(part.maps[key][b, k]) > 0
                ]  # an empty original map has nothing to keep
                rho, sim = compare([a for a, _ in pairs], [r for _, r in pairs])
                step_rho[key] += rho
                step_ssim[key] += sim
        for key in keys:
            curves[key].steps.append(name)
            curves[key].spearman.append(step_rho[key])
            curves[key].ssim.append(step_ssim[key])
    return curves

"""Measuring a detector's maps: one sample per annotated object.

Each annotated object (its box and class) is matched to the detection of its class that overlaps it most
(`gradcam_cli.targets.detection.AnnotatedObjects`), and that detection's map is measured against the object's
own box as a classifier's map is measured against its class's boxes: the pointing game and the box metrics
(`localisation.localise`). An object that no detection of its class overlaps is a sample all the same: its map
explains the annotated box as ``--box`` would, which is empty unless a detection of its class overlaps it by
more than the IoU threshold, and an empty map misses. The sample's ``predicted`` class is the matched
detection's label (-1: none), its probability the detection's score, so top-1 localisation counts the objects
that were both detected and localised.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..maps.placement import place_on_original
from ..maps.scale import normalize_minmax
from ..model.device import host_to_device
from ..options import EvaluateOptions
from ..targets.detection import AnnotatedObjects
from .annotations import ImageTruth
from .localisation import SampleLocalisation, clip_boxes, localise, near_boxes
from .measurements import BatchMeasurements, Sample


def input_boxes(decoded, truth: ImageTruth) -> list[list[float]]:
    """The image's annotated boxes (in the original photo's pixels) in the model input's pixels."""
    geometry = decoded.geometry
    full_w, full_h = decoded.full_size or geometry.original_size
    (rw, rh), (left, top, _, _) = geometry.resized_size, geometry.crop_box
    sx, sy = rw / full_w, rh / full_h
    return [
        [x0 * sx - left, y0 * sy - top, x1 * sx - left, y1 * sy - top]
        for x0, y0, x1, y1 in (o.box for o in truth.objects)
    ]


def annotated_requests(batch: Sequence, truths: Sequence[ImageTruth], device) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B, K, 4)`` boxes in the input's pixels (rows of -1: padding) and ``(B, K)`` their classes."""
    rows = [input_boxes(d, t) for d, t in zip(batch, truths)]
    width = max(len(r) for r in rows)
    boxes = [r + [[-1.0] * 4] * (width - len(r)) for r in rows]
    classes = [list(t.classes) + [t.classes[0]] * (width - len(t.classes)) for t in truths]
    return torch.tensor(boxes, dtype=torch.float32, device=device), torch.tensor(classes, device=device)


def measure_detections(explainer, batch: Sequence, truths: Sequence[ImageTruth], options: EvaluateOptions):
    """One pass of the detector for same-sized photos whose objects all lie (at least partly) inside them; every
    object's map measured for every (method, layer)."""

    inputs = host_to_device(torch.stack([b.tensor for b in batch]), explainer.device)
    boxes, classes = annotated_requests(batch, truths, inputs.device)
    base = explainer.target
    target = AnnotatedObjects(base.score_threshold, base.iou_threshold, base.max_detections)
    result = explainer.run_passes(inputs, classes, boxes, target=target)
    samples, objects, near = [], [], []
    threshold, tolerance = explainer.options.bbox_threshold, options.pointing_tolerance
    for b, (decoded, truth) in enumerate(zip(batch, truths)):
        width, height = decoded.geometry.original_size  # the photo the maps are placed on
        full = decoded.full_size or (width, height)  # the original, whose pixels the annotations are in
        scale = np.array([width / full[0], height / full[1]] * 2)
        for k, (obj, c) in enumerate(zip(truth.objects, truth.classes)):
            detection = result.slots.detail(b, k).get("detection") or {}
            matched = result.slots.detail(b, k).get("match_iou", 0.0) > 0
            samples.append(
                Sample(decoded.item.path, c, detection["label"] if matched else -1, detection.get("score") or 0.0)
            )
            own = clip_boxes(np.asarray(obj.box, np.float64).reshape(1, 4) * scale, width, height)
            objects.append(own)
            near.append(near_boxes(own, width, height, tolerance))
    located: dict[tuple[str, str], list[SampleLocalisation]] = {}
    for key, raw in result.maps.items():
        scaled, _ = normalize_minmax(raw.float())
        located[key], i = [], 0
        for b, decoded in enumerate(batch):
            n = len(truths[b].objects)
            placed = place_on_original(scaled[b][:n, None], decoded.geometry)[:, 0].cpu().numpy()
            for k in range(n):
                located[key].append(localise(placed[k], objects[i], near[i], threshold))
                i += 1
    return BatchMeasurements(samples, located, {})

"""Boxes from maps against ground-truth boxes, and the pointing game.

Definitions (maps are min-max normalised, at the photo's resolution; boxes are ``(x0, y0, x1, y1)``
with ``x1, y1`` exclusive, so IoU is the ratio of continuous areas):

- For a threshold τ the map's regions are the 8-connected components of ``map >= τ`` (and > 0), as
  ``gradcam explain`` draws its boxes (`gradcam_cli.maps.boxes.region_boxes`).
- *Largest-box IoU* at τ: the box of the largest region against its best-matching ground-truth box of
  the explained class. ``BoxAcc(τ, δ)`` is the share of samples whose IoU is at least δ.
- *MaxBoxAcc* (Choe et al. 2020, "Evaluating Weakly Supervised Object Localization Methods Right"):
  the best ``BoxAcc(τ, 0.5)`` over the sweep τ = 0.00, 0.01, ..., 0.99. *MaxBoxAccV2*: every region's
  box may match any ground-truth box (the best pair counts), and the best over the sweep is averaged
  over δ = 0.3, 0.5 and 0.7.
- *GT-known loc* at δ: ``BoxAcc(τ*, δ)`` at the operating threshold τ* (``--bbox-threshold``), the box
  ``gradcam explain`` reports; *top-1 loc* also needs the image's top-1 class to be the annotated one.
- *Pointing game* (Zhang et al. 2016, "Top-down Neural Attention by Excitation Backprop"): a hit when
  the map's maximum lies within ``tolerance`` pixels (15) of a ground-truth box of the class. The
  baseline is the hit rate of a uniformly random point: the share of the photo within the tolerance.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..maps.boxes import WHOLE_PHOTO_SHARE, box_share, region_boxes
from .annotations import Box

IOU_THRESHOLDS = (0.3, 0.5, 0.7)
SWEEP = tuple(i / 100 for i in range(100))  # Choe et al.'s threshold interval of 0.01


@dataclass
class SampleLocalisation:
    """One (image, class) sample's boxes against its ground truth, for one method and layer."""

    iou_largest: np.ndarray  # (T,) per sweep threshold
    iou_any: np.ndarray  # (T,) best over every region's box
    iou: float  # the largest region's box at the operating threshold
    hit: bool  # pointing game
    baseline: float  # a random point's chance of a hit
    whole_photo: bool = False  # the box at the operating threshold covers (nearly) the whole photo


def box_ious(boxes: np.ndarray, truths: np.ndarray) -> np.ndarray:
    """``(n, 4)`` x ``(m, 4)`` boxes -> ``(n, m)`` intersection over union of their areas."""
    x0 = np.maximum(boxes[:, None, 0], truths[None, :, 0])
    y0 = np.maximum(boxes[:, None, 1], truths[None, :, 1])
    x1 = np.minimum(boxes[:, None, 2], truths[None, :, 2])
    y1 = np.minimum(boxes[:, None, 3], truths[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    area_b = (truths[:, 2] - truths[:, 0]) * (truths[:, 3] - truths[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def clip_boxes(truths: Sequence[Box], width: int, height: int) -> np.ndarray:
    """Ground-truth boxes clipped to the photo, as an ``(m, 4)`` float array."""
    arr = np.asarray(truths, dtype=np.float64).reshape(-1, 4)
    arr[:, 0::2] = np.clip(arr[:, 0::2], 0, width)
    arr[:, 1::2] = np.clip(arr[:, 1::2], 0, height)
    return arr


def near_boxes(truths: np.ndarray, width: int, height: int, tolerance: float) -> np.ndarray:
    """``(H, W)`` bool: the pixels within ``tolerance`` (Euclidean, pixel to pixel) of a box's pixels.

    A box covers every pixel it overlaps, ``floor(x0) .. ceil(x1) - 1``.
    """
    from scipy.ndimage import distance_transform_edt

    inside = np.zeros((height, width), dtype=bool)
    for x0, y0, x1, y1 in truths:
        inside[int(np.floor(y0)) : int(np.ceil(y1)), int(np.floor(x0)) : int(np.ceil(x1))] = True
    if not inside.any():
        return inside
    if tolerance <= 0:
        return inside
    return distance_transform_edt(~inside) <= tolerance


def pointing_hit(map01: np.ndarray, near: np.ndarray) -> bool:
    """Whether the map's maximum (the first one in row-major order) is near a box; an empty map misses."""
    flat = np.nan_to_num(map01).ravel()
    top = int(flat.argmax())
    return bool(flat[top] > 0 and near.ravel()[top])


def localise(
    map01: np.ndarray, truths: np.ndarray, near: np.ndarray, operating: float, thresholds: Sequence[float] = SWEEP
) -> SampleLocalisation:
    """One sample: the largest and the best-matching box at every sweep threshold and at ``operating``."""
    values = np.nan_to_num(map01)
    levels = list(thresholds)
    largest = np.zeros(len(levels))
    best = np.zeros(len(levels))
    top = float(values.max()) if values.size else 0.0
    for i, tau in enumerate(levels):
        if tau > top:
            break  # no pixel reaches this threshold or any higher one
        largest[i], best[i] = _ious_at(values, truths, tau)
    at_operating = largest[levels.index(operating)] if operating in levels else _ious_at(values, truths, operating)[0]
    baseline = float(near.mean()) if near.size else 0.0
    boxes = region_boxes(values, operating) if operating <= top else []
    whole = bool(boxes) and box_share(boxes[0], values.shape) >= WHOLE_PHOTO_SHARE
    return SampleLocalisation(largest, best, float(at_operating), pointing_hit(values, near), baseline, whole)


def _ious_at(values: np.ndarray, truths: np.ndarray, tau: float) -> tuple[float, float]:
    """(largest region's best IoU, best IoU of any region) at threshold ``tau``."""
    boxes = region_boxes(values, tau)
    if not boxes or not len(truths):
        return 0.0, 0.0
    ious = box_ious(np.asarray(boxes, dtype=np.float64), truths)
    return float(ious[0].max()), float(ious.max())


def box_accuracy(ious: np.ndarray, delta: float) -> np.ndarray:
    """``(N, T)`` IoUs -> ``(T,)`` share of samples with IoU >= ``delta`` at each threshold."""
    return (ious >= delta).mean(axis=0) if len(ious) else np.zeros(ious.shape[1:])


def max_box_acc(
    iou_largest: np.ndarray, delta: float = 0.5, thresholds: Sequence[float] = SWEEP
) -> tuple[float, float]:
    """(MaxBoxAcc at ``delta``, the sweep threshold that reaches it: the lowest such one)."""
    acc = box_accuracy(iou_largest, delta)
    best = int(acc.argmax())
    return float(acc[best]), thresholds[best]


def max_box_acc_v2(iou_any: np.ndarray) -> float:
    """MaxBoxAccV2: the best accuracy over the sweep, every box allowed to match, averaged over δ = 0.3/0.5/0.7."""
    return float(np.mean([box_accuracy(iou_any, d).max() for d in IOU_THRESHOLDS]))

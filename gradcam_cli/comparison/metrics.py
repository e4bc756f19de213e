"""How alike two explanations of one photo are: the maps' rank correlation and structure, their top regions and
boxes, and the class and its probability.

Every map is an ``(H, W)`` float map in [0, 1] placed on the photo (what ``--save-raw`` writes as ``*_map.npy``);
both maps of a pair have one size (see `same_size`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TOP_PERCENTS = (10, 25)  # the top-k% regions whose overlap is measured
SSIM_WINDOW = 7  # scikit-image's default window: a smaller map has no SSIM
# Each metric: higher is more alike. probability_change is signed (the candidate's minus the baseline's).
METRICS = (
    "spearman",
    "ssim",
    *(f"top{k}_iou" for k in TOP_PERCENTS),
    "box_iou",
    "same_class",
    "probability_change",
)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """The 1-based ranks of the flattened values in float64, tied values sharing their average rank (the ranks of
    Spearman's correlation, as ``scipy.stats.rankdata(method="average")`` gives them)."""
    flat = np.ravel(values)
    order = np.argsort(flat)
    ordered = flat[order]
    first = np.empty(flat.size, bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])  # where each run of equal values starts
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], flat.size)
    ranks = np.empty(flat.size, np.float64)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(first) - 1]
    return ranks


def map_spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps: the Pearson correlation of their average ranks, in float64.

    As the sanity check's ``gradcam_cli.metrics.sanity.spearman`` (scipy's ``spearmanr``, which it equals to
    float64 rounding, tested), a constant map shares no ranking with another (0); two equal maps correlate fully,
    even constant ones. Computed here rather than through that module, which loads torch: a comparison of two
    folders runs no model, and torch's import would be most of its time.
    """
    if np.array_equal(a, b):
        return 1.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    x, y = average_ranks(a), average_ranks(b)
    x -= x.mean()
    y -= y.mean()
    return float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))


def map_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """Structural similarity as the sanity check measures it (scikit-image, 7x7 windows, data range 1, float64): 1
    for equal maps, None for other maps under 7 pixels a side."""
    if np.array_equal(a, b):
        return 1.0
    if min(a.shape) < SSIM_WINDOW:
        return None
    from skimage.metrics import structural_similarity

    return float(structural_similarity(np.asarray(a, np.float64), np.asarray(b, np.float64), data_range=1.0))


def top_region(values: np.ndarray, percent: float) -> np.ndarray:
    """The map's top ``percent``% region as a boolean mask: the pixels at or above the value of the
    ``ceil(percent% of N)``-th largest pixel (ties at that value all belong to it). Where that value is the map's
    minimum (a map positive on less than ``percent``% of the photo), the region is the pixels above the minimum:
    the floor is not evidence. A constant map's region is the whole map."""
    flat = values.ravel()
    count = max(1, int(np.ceil(flat.size * percent / 100.0)))
    cut = np.partition(flat, flat.size - count)[flat.size - count]
    low = flat.min()
    if cut > low or cut == flat.max():
        return values >= cut
    return values > low


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks (two empty masks agree: 1)."""
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else np.count_nonzero(a & b) / union


def box_iou(a: Sequence[int] | None, b: Sequence[int] | None) -> float | None:
    """IoU of two boxes ``(x0, y0, x1, y1)`` (x1/y1 exclusive); None where neither map has a box (both empty),
    0 where only one has."""
    if a is None and b is None:
        return None
    if a is None or b is None:
        return 0.0
    from ..metrics.localisation import box_ious

    return float(box_ious(np.asarray([a], np.float64), np.asarray([b], np.float64))[0, 0])


def same_size(candidate: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``candidate`` resampled to ``shape`` (area averaging when shrinking, bilinear when enlarging)."""
    if candidate.shape == tuple(shape):
        return candidate
    import cv2

    height, width = shape
    shrink = candidate.shape[0] * candidate.shape[1] > height * width
    return cv2.resize(
        candidate.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def map_metrics(a: np.ndarray, b: np.ndarray) -> dict[str, float | None]:
    """The map metrics of a pair of equally sized maps: Spearman, SSIM, and the top-k% regions' IoU."""
    a = np.nan_to_num(np.asarray(a, np.float32))
    b = np.nan_to_num(np.asarray(b, np.float32))
    found: dict[str, float | None] = {"spearman": map_spearman(a, b), "ssim": map_ssim(a, b)}
    for k in TOP_PERCENTS:
        found[f"top{k}_iou"] = mask_iou(top_region(a, k), top_region(b, k))
    return found


def record_metrics(baseline: dict, candidate: dict) -> dict[str, float | None]:
    """What the two records say: their boxes' IoU, whether they explain the same class, the probability's change."""
    change = None
    if baseline.get("probability") is not None and candidate.get("probability") is not None:
        change = round(float(candidate["probability"]) - float(baseline["probability"]), 6)
    return {
        "box_iou": box_iou(baseline.get("bbox"), candidate.get("bbox")),
        "same_class": float(baseline.get("class_index") == candidate.get("class_index")),
        "probability_change": change,
    }

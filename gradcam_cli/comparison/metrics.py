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
SSIM_K1, SSIM_K2 = 0.01, 0.03  # SSIM's constants (Wang et al. 2004, scikit-image's defaults)
# Each metric: higher is more alike. probability_change is signed (the candidate's minus the baseline's).
METRICS = (
    "spearman",
    "ssim",
    *(f"top{k}_iou" for k in TOP_PERCENTS),
    "box_iou",
    "same_class",
    "probability_change",
)


def average_ranks(values: np.ndarray, order: np.ndarray | None = None) -> np.ndarray:
    """The 1-based ranks of the flattened values in float64, tied values sharing their average rank (the ranks of
    Spearman's correlation, as ``scipy.stats.rankdata(method="average")`` gives them). ``order``: the values'
    ``argsort``, where the caller has it."""
    flat = np.ravel(values)
    order = np.argsort(flat) if order is None else order
    ordered = flat[order]
    first = np.empty(flat.size, bool)
    first[:1] = True
    np.not_equal(ordered[1:], ordered[:-1], out=first[1:])  # where each run of equal values starts
    starts = np.flatnonzero(first)
    ends = np.append(starts[1:], flat.size)
    ranks = np.empty(flat.size, np.float64)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(first) - 1]
    return ranks


def map_spearman(a: np.ndarray, b: np.ndarray, orders: tuple | None = None) -> float:
    """Spearman rank correlation of two maps: the Pearson correlation of their average ranks, in float64.

    As the sanity check's ``gradcam_cli.metrics.sanity.spearman`` (scipy's ``spearmanr``, which it equals to
    float64 rounding, tested), a constant map shares no ranking with another (0); two equal maps correlate fully,
    even constant ones. Computed here rather than through that module, which loads torch: a comparison of two
    folders runs no model, and torch's import would be most of its time. ``orders``: both maps' ``argsort``.
    """
    if np.array_equal(a, b):
        return 1.0
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return 0.0
    x, y = (average_ranks(m, o) for m, o in zip((a, b), orders or (None, None)))
    x -= x.mean()
    y -= y.mean()
    return float(np.dot(x, y) / np.sqrt(np.dot(x, x) * np.dot(y, y)))


def map_ssim(a: np.ndarray, b: np.ndarray) -> float | None:
    """Structural similarity as scikit-image's ``structural_similarity(a, b, data_range=1)`` computes it (the
    sanity check's: 7x7 uniform windows, sample covariance, float64, the mean over the windows that lie within
    the map), equal to it to float64 rounding (tested): 1 for equal maps, None for other maps under 7 pixels a
    side. Computed here with OpenCV's box filter, several times faster than scipy's (the filter dominates a
    comparison), and without loading scikit-image."""
    if np.array_equal(a, b):
        return 1.0
    if min(a.shape) < SSIM_WINDOW:
        return None
    import cv2

    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    window, samples = (SSIM_WINDOW, SSIM_WINDOW), SSIM_WINDOW * SSIM_WINDOW
    pad = SSIM_WINDOW // 2  # only windows within the map count: the border mode never matters

    def mean(values: np.ndarray) -> np.ndarray:
        return cv2.blur(values, window, borderType=cv2.BORDER_REFLECT)[pad:-pad, pad:-pad]

    ux, uy = mean(x), mean(y)
    cov_norm = samples / (samples - 1.0)
    vx, vy = cov_norm * (mean(x * x) - ux * ux), cov_norm * (mean(y * y) - uy * uy)
    vxy = cov_norm * (mean(x * y) - ux * uy)
    c1, c2 = SSIM_K1**2, SSIM_K2**2  # data range 1
    s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean(dtype=np.float64))


def top_region(values: np.ndarray, percent: float, ordered: np.ndarray | None = None) -> np.ndarray:
    """The map's top ``percent``% region as a boolean mask: the pixels at or above the value of the
    ``ceil(percent% of N)``-th largest pixel (ties at that value all belong to it). Where that value is the map's
    minimum (a map positive on less than ``percent``% of the photo), the region is the pixels above the minimum:
    the floor is not evidence. A constant map's region is the whole map. ``ordered``: the values sorted, where
    the caller has them."""
    flat = values.ravel()
    count = max(1, int(np.ceil(flat.size * percent / 100.0)))
    if ordered is None:
        cut, low, high = np.partition(flat, flat.size - count)[flat.size - count], flat.min(), flat.max()
    else:
        cut, low, high = ordered[flat.size - count], ordered[0], ordered[-1]
    if cut > low or cut == high:
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
    """The map metrics of a pair of equally sized maps: Spearman, SSIM, and the top-k% regions' IoU. Each map is
    sorted once, for its ranks and its top regions."""
    a, b = _finite(a), _finite(b)
    if np.array_equal(a, b):  # equal maps are alike in every map metric (the usual case in CI: nothing sorted)
        return {"spearman": 1.0, "ssim": 1.0, **{f"top{k}_iou": 1.0 for k in TOP_PERCENTS}}
    orders = np.argsort(a, axis=None), np.argsort(b, axis=None)
    ordered = a.ravel()[orders[0]], b.ravel()[orders[1]]
    found: dict[str, float | None] = {"spearman": map_spearman(a, b, orders), "ssim": map_ssim(a, b)}
    for k in TOP_PERCENTS:
        found[f"top{k}_iou"] = mask_iou(top_region(a, k, ordered[0]), top_region(b, k, ordered[1]))
    return found


def _finite(values: np.ndarray) -> np.ndarray:
    """A map as float32, NaN and infinities replaced as ``np.nan_to_num`` does (copied only where there are any)."""
    values = np.asarray(values, np.float32)
    return values if np.isfinite(values).all() else np.nan_to_num(values)


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

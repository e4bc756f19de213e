"""Boxes from maps: the connected regions where the normalised map is at or above a threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # options.py imports BBOX_MODES: `gradcam --help` must not pay for OpenCV and numpy
    import numpy as np

BBox = tuple[int, int, int, int]  # (x0, y0, x1, y1), original pixels, x1/y1 exclusive
BBOX_MODES = ("largest", "all")


@dataclass(frozen=True)
class Region:
    """One connected region above the threshold: its box, its area and its share of the map's mass."""

    box: BBox
    area: int  # pixels
    share: float  # the map's sum inside the region over its sum everywhere


def regions_from_map(map01: np.ndarray, threshold: float) -> list[Region]:
    """Every 8-connected region where the map is ``>= threshold`` (and positive), largest first."""
    import cv2
    import numpy as np

    values = np.nan_to_num(map01)
    mask = (values >= threshold) & (values > 0)
    if not mask.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    mass = np.bincount(labels.ravel(), weights=values.ravel().astype(np.float64), minlength=count)
    total = float(values.sum(dtype=np.float64)) or 1.0
    found = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i, :5])
        found.append(Region((x, y, x + w, y + h), area, float(mass[i]) / total))
    return sorted(found, key=lambda r: (-r.area, r.box))


def bbox_from_map(map01: np.ndarray, threshold: float) -> BBox | None:
    """Box around the largest connected region where the map is >= ``threshold`` (of its max, 1)."""
    regions = regions_from_map(map01, threshold)
    return regions[0].box if regions else None

"""Boxes from maps: the region where the normalised map is above a threshold."""

from __future__ import annotations

import cv2
import numpy as np

BBox = tuple[int, int, int, int]  # (x0, y0, x1, y1), original pixels, x1/y1 exclusive


def bbox_from_map(map01: np.ndarray, threshold: float) -> BBox | None:
    """Box around the largest connected region where the map is >= ``threshold`` (of its max, 1)."""
    mask = (np.nan_to_num(map01) >= threshold) & (map01 > 0)
    if not mask.any():
        return None
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    best = 1 + int(np.argmax(stats[1:count, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[best, :4])
    return x, y, x + w, y + h

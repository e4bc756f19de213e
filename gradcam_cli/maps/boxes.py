"""Boxes from maps: the connected regions where the normalised map is at or above a threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy and OpenCV load in the functions: options.py imports this module for BBOX_MODES,
    import numpy as np  # and `gradcam --help` or a bad request must not pay for them

BBox = tuple[int, int, int, int]  # (x0, y0, x1, y1), original pixels, x1/y1 exclusive
# A box over this share of the photo or more says nothing about where the evidence is: it is flagged.
WHOLE_PHOTO_SHARE = 0.9


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

    values = map01 if np.isfinite(map01).all() else np.nan_to_num(map01)
    mask = values >= threshold
    if threshold <= 0:
        mask &= values > 0
    if not mask.any():
        return []
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    mass = np.bincount(labels[mask], weights=values[mask], minlength=count)  # only the pixels in regions
    total = float(values.sum(dtype=np.float64)) or 1.0
    found = []
    for i in range(1, count):
        x, y, w, h, area = (int(v) for v in stats[i, :5])
        found.append(Region((x, y, x + w, y + h), area, float(mass[i]) / total))
    return sorted(found, key=lambda r: (-r.area, r.box))


def region_boxes(values: np.ndarray, threshold: float) -> list[BBox]:
    """The boxes of `regions_from_map`, in its order (largest first), without the masses.

    For a sweep over many thresholds: when the regions' outer borders (OpenCV's contours, whose
    8-connected outer boundaries match the 8-connected regions one to one) show a single region,
    its bounding rectangle is the answer, found several times faster than by labelling every
    pixel; with more regions their pixel areas are needed to order them, and they are labelled.
    ``values`` must be finite (no NaN).
    """
    import cv2
    import numpy as np

    mask = ((values >= threshold) & (values > 0)).view(np.uint8)
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    outer = [c for c, h in zip(contours, hierarchy[0]) if h[3] < 0] if hierarchy is not None else []
    if len(outer) <= 1:
        return [_box_of(*cv2.boundingRect(c)) for c in outer]
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    found = [(-int(stats[i, 4]), _box_of(*(int(v) for v in stats[i, :4]))) for i in range(1, count)]
    return [box for _, box in sorted(found)]


def _box_of(x: int, y: int, w: int, h: int) -> BBox:
    return (x, y, x + w, y + h)


def box_share(box: BBox, shape: tuple[int, ...]) -> float:
    """The part of a ``(H, W)`` photo a box covers."""
    x0, y0, x1, y1 = box
    return (x1 - x0) * (y1 - y0) / max(1, shape[0] * shape[1])


def whole_photo_note(box: BBox, shape: tuple[int, ...]) -> str:
    """The warning of a box that covers (nearly) the whole photo."""
    return (
        f"the box covers {box_share(box, shape):.0%} of the photo: the map singles out no region "
        f"(boxes of {WHOLE_PHOTO_SHARE:.0%} or more are flagged)"
    )


def no_box_reason(map01: np.ndarray, threshold: float, grid: tuple[int, int]) -> str:
    """Why a map that is not empty gave no box: no pixel of the photo reaches the threshold."""
    import numpy as np

    peak = float(np.nanmax(map01)) if map01.size else 0.0
    why = f"no box: no pixel of the photo reaches --bbox-threshold {threshold:g} (the highest is {peak:.2f})"
    height, width = map01.shape[:2]
    if height * width < grid[0] * grid[1]:
        why += (
            f"; the {width}x{height} photo has fewer pixels than the map's {grid[1]}x{grid[0]} cells, "
            f"too few to sample its peak"
        )
    return why

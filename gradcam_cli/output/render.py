"""Turning maps into pictures: colour maps, overlays, guided images, boxes.

numpy and OpenCV on the CPU; the guided image's standardisation is torch, so that it
runs on the model's device before anything is copied back.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import torch

from ..maps.boxes import BBox
from . import fonts
from .colormaps import COLORMAPS, DEFAULT_COLORMAP

GUIDED_SPREAD = 2.0  # standard deviations of the guided gradient from mid-grey to black or white


@lru_cache(maxsize=len(COLORMAPS))
def colormap_lut(name: str = DEFAULT_COLORMAP) -> np.ndarray:
    """The colour map as a ``(256, 3)`` uint8 RGB table: row ``i`` is the colour of the value ``i / 255``."""
    if name not in COLORMAPS:
        raise ValueError(f"unknown colour map {name!r}; choose from {', '.join(COLORMAPS)}")
    levels = np.arange(256, dtype=np.uint8)[:, None]
    lut = cv2.applyColorMap(levels, getattr(cv2, f"COLORMAP_{name.upper()}"))[:, 0, ::-1]
    lut = np.ascontiguousarray(lut)
    lut.flags.writeable = False  # shared by every caller
    return lut


def colorize(map01: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """``(H, W)`` map in [0, 1] -> ``(H, W, 3)`` uint8 RGB in the colour map (JET by default)."""
    levels = np.multiply(map01, np.float32(255.0), dtype=np.float32)  # one float buffer, changed in place
    np.nan_to_num(levels, copy=False)
    levels += np.float32(0.5)
    levels = np.clip(levels, 0, 255, out=levels).astype(np.uint8)
    return colormap_lut(colormap)[levels]


def overlay(photo: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The colour-mapped map (`colorize`) blended over the photo: ``alpha * heat + (1 - alpha) * photo``."""
    return cv2.addWeighted(heat, float(alpha), photo, 1.0 - float(alpha), 0.0)


def guided_image(
    guided: torch.Tensor, reference: torch.Tensor | None = None, spread: float = GUIDED_SPREAD, consume: bool = False
) -> torch.Tensor:
    """``(K, 3, H, W)`` guided gradients -> ``(K, H, W, 3)`` uint8 RGB for display, in torch on the tensors' device.

    Zero-centred: a zero gradient is mid-grey, positive brighter, negative darker. The scale is
    the gradient's standard deviation about zero (its root mean square) over the values that
    are not exactly zero (outside the model's center crop the map, and so the product, is
    zero), and ``spread`` deviations reach black or white; the values beyond are clipped (on
    the sample photos 1.6-2.7% of them at the default 2). The usual ``mean 0.5, 0.1 per
    standard deviation`` spends the range on +-5 deviations, which leaves these heavy-tailed
    gradients (kurtosis in the hundreds) a low-contrast grey.

    ``reference`` (default: ``guided``) supplies each image's scale. ``consume``: ``guided``
    is a float temporary of the caller's that may be overwritten (no second photo-sized buffer).
    """
    if consume and guided.dtype == torch.float32:
        img = torch.nan_to_num_(guided, nan=0.0, posinf=0.0, neginf=0.0)
    else:
        img = torch.nan_to_num(guided.float(), nan=0.0, posinf=0.0, neginf=0.0)  # a copy: changed in place below
    ref = img if reference is None else torch.nan_to_num(reference.float(), nan=0.0, posinf=0.0, neginf=0.0)
    flat = ref.flatten(1)
    if flat.shape[1]:
        counted = (flat != 0).sum(dim=1).clamp_min(1)
        # float64 sums: squares of large gradients would overflow float32
        rms = (torch.linalg.vector_norm(flat, dim=1, dtype=torch.float64) / counted.double().sqrt()).float()
    else:
        rms = torch.zeros(flat.shape[0], device=flat.device)
    rms = rms.masked_fill(~torch.isfinite(rms), 0.0)
    scale = 0.5 / (spread * rms + 1e-12)  # an all-zero gradient stays mid-grey
    # In place, one buffer of the photo's size: x * scale + 0.5, clipped, to bytes.
    img.mul_(scale[:, None, None, None]).add_(0.5).clamp_(0, 1).mul_(255.0).add_(0.5)
    out = torch.empty((img.shape[0], *img.shape[2:], img.shape[1]), dtype=torch.uint8, device=img.device)
    return out.copy_(img.permute(0, 2, 3, 1))  # truncating the +0.5 rounds


BOX_COLOURS = ((0, 255, 0), (255, 200, 0), (0, 200, 255), (255, 90, 255))  # the largest box green, then others


def draw_bbox(photo: np.ndarray, box: BBox | None, label: str) -> np.ndarray:
    """The photo with ``box`` drawn and captioned; without a box, the caption says so."""
    if box is None:
        return draw_boxes(photo, [], f"{label} (no region above threshold)")
    return draw_boxes(photo, [(box, label)])


def draw_boxes(photo: np.ndarray, boxes: list[tuple[BBox, str]], note: str | None = None) -> np.ndarray:
    """The photo with every box drawn and labelled (largest first; ``note`` at the top left if given).

    Labels are drawn in order, so the first (largest) box's label is never covered by a later one's.
    """
    out = photo.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(height, width) / 200))
    size = max(fonts.MIN_TEXT_PX, round(min(height, width) / 28))
    for i, (box, _) in enumerate(boxes):
        x0, y0, x1, y1 = box
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), BOX_COLOURS[min(i, len(BOX_COLOURS) - 1)], thickness)
    for i, (box, label) in reversed(list(enumerate(boxes))):
        _label(out, label, box[0], box[1], size, BOX_COLOURS[min(i, len(BOX_COLOURS) - 1)])
    if note is not None:
        _label(out, note, 0, 0, size, BOX_COLOURS[0])
    return out


def _label(out: np.ndarray, text: str, x: int, y: int, size: int, colour) -> None:
    """A filled label on the box's top edge: above it where there is room, else just inside."""
    patch = fonts.text_patch(text, size, fg=(0, 0, 0), bg=colour, pad=max(1, size // 6))
    ty = y - patch.shape[0] if y - patch.shape[0] >= 0 else y
    fonts.paste(out, patch, min(x, max(0, out.shape[1] - patch.shape[1])), ty)

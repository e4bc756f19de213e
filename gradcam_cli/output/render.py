"""Turning maps into pictures: colour maps, overlays, guided images, boxes.

numpy and OpenCV on the CPU; the guided image's standardisation is torch, so that it
runs on the model's device before anything is copied back.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..maps.boxes import BBox


def colorize(map01: np.ndarray) -> np.ndarray:
    """``(H, W)`` map in [0, 1] -> ``(H, W, 3)`` uint8 RGB with the JET colour map."""
    levels = np.multiply(map01, np.float32(255.0), dtype=np.float32)  # one float buffer, changed in place
    np.nan_to_num(levels, copy=False)
    levels += np.float32(0.5)
    levels = np.clip(levels, 0, 255, out=levels).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(photo: np.ndarray, heat: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The colour-mapped map (:func:`colorize`) blended over the photo: ``alpha * heat + (1 - alpha) * photo``."""
    return cv2.addWeighted(heat, float(alpha), photo, 1.0 - float(alpha), 0.0)


def guided_image(guided: torch.Tensor, reference: torch.Tensor | None = None, consume: bool = False) -> torch.Tensor:
    """``(K, 3, H, W)`` guided gradients -> ``(K, H, W, 3)`` uint8 RGB, standardised for display
    (mean 0.5, 0.1 per standard deviation), computed in torch on the tensors' device.

    ``reference`` (default: ``guided``) supplies each image's mean and spread, so pixels
    outside the model's crop can be rendered with the statistics of the part it saw.
    ``consume``: ``guided`` is a float temporary of the caller's that may be overwritten
    (no copy of a photo-sized buffer).
    """
    if consume and guided.dtype == torch.float32:
        img = torch.nan_to_num_(guided, nan=0.0, posinf=0.0, neginf=0.0)
    else:
        img = torch.nan_to_num(guided.float(), nan=0.0, posinf=0.0, neginf=0.0)  # a copy: changed in place below
    ref = img if reference is None else torch.nan_to_num(reference.float(), nan=0.0, posinf=0.0, neginf=0.0)
    flat = ref.flatten(1)
    if flat.shape[1]:
        std, mean = torch.std_mean(flat, dim=1, correction=0)
    else:
        std = mean = torch.zeros(flat.shape[0], device=flat.device)
    bad = ~(torch.isfinite(mean) & torch.isfinite(std))  # overflow in float32 statistics
    mean, std = mean.masked_fill(bad, 0.0), std.masked_fill(bad, 0.0)
    # In place, one buffer of the photo's size: (x - mean) / (std + 1e-5) * 0.1 + 0.5, to bytes.
    img.sub_(mean[:, None, None, None]).div_(std[:, None, None, None] + 1e-5).mul_(0.1).add_(0.5)
    img.clamp_(0, 1).mul_(255.0).add_(0.5)
    out = torch.empty((img.shape[0], *img.shape[2:], img.shape[1]), dtype=torch.uint8, device=img.device)
    return out.copy_(img.permute(0, 2, 3, 1))  # truncating the +0.5 rounds


def draw_bbox(photo: np.ndarray, box: BBox | None, label: str) -> np.ndarray:
    """The photo with ``box`` drawn and captioned; without a box, the caption says so."""
    out = photo.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(min(height, width) / 200))
    scale = max(0.35, min(height, width) / 700)
    colour = (0, 255, 0)
    if box is None:
        label = f"{label} (no region above threshold)"
        x0, y0 = 0, 0
    else:
        x0, y0, x1, y1 = box
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = y0 - base - 2 if y0 - th - base - 2 >= 0 else min(height - 1, y0 + th + 2)
    cv2.rectangle(out, (x0, ty - th - 1), (min(width - 1, x0 + tw + 2), ty + base), colour, -1)
    cv2.putText(out, label, (x0 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out

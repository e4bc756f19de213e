"""How pictures show what a map explains: a few words for it, and a detection's box."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import render


def describe(e) -> str:
    """What an explanation explains, in a few words: ``tabby 0.83``, ``husky vs wolf``, ``d1 person 0.91``."""
    fields = getattr(e, "target_fields", {}) or {}
    name = e.class_name or (f"class {e.class_index}" if e.class_index is not None else getattr(e, "target", ""))
    if "versus_index" in fields:
        return f"{name} vs {fields.get('versus_name') or fields['versus_index']}"
    if "reference" in fields:
        return f"similarity {e.target_value:.2f} to {Path(fields['reference']).name}"
    text = f"{name} {e.probability:.2f}" if e.probability is not None else name
    return f"{e.slot} {text}" if "detection" in fields else text


def with_detection(picture: np.ndarray, e, scale: float = 1.0) -> np.ndarray:
    """The picture with the explained detection's box drawn and labelled (``scale``: picture pixels per photo
    pixel); unchanged for other targets."""
    found = (getattr(e, "target_fields", {}) or {}).get("detection")
    if found is None:
        return picture
    height, width = picture.shape[:2]
    x0, y0, x1, y1 = (v * scale for v in found["box"])
    box = (int(max(0, x0)), int(max(0, y0)), int(min(width, max(x0 + 1, x1))), int(min(height, max(y0 + 1, y1))))
    return render.draw_boxes(picture, [(box, describe(e))])

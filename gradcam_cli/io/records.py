"""The JSON record of one explanation (schema: ``gradcam_cli/record.schema.json``)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command imports this module before it decides to load numpy and torch
    import numpy as np


def explanation_record(
    model_name: str,
    weights: str,
    source: str,
    photo: np.ndarray,
    e,
    files: dict,
    seconds: float,
    full_size: tuple[int, int] | None = None,
) -> dict:
    """One line of ``--json`` and ``results.jsonl`` for explanation ``e`` of the photo at ``source``.

    ``photo`` is the picture the map was placed on and the outputs show; ``full_size``
    is the original photo's ``(width, height)`` when it was scaled down to that picture
    (``--max-output-pixels``). Boxes are always in the original photo's pixels.
    """
    shown = (int(photo.shape[1]), int(photo.shape[0]))
    size = tuple(full_size) if full_size is not None else shown
    to_original = _box_scaler(shown, size)
    return {
        "input": source,
        "model": model_name,
        "weights": weights,
        "layer": e.layer,
        "method": e.method,
        "class_specific": e.class_specific,
        "rank": e.rank,
        "class_index": e.class_index,
        "class_name": e.class_name,
        "probability": finite_or_none(e.probability) if e.probability is not None else None,
        "score": finite_or_none(e.score),
        "bbox": to_original(e.bbox) if e.bbox else None,
        "boxes": [{"box": to_original(r.box), "share": round(r.share, 6)} for r in e.regions],
        "box_covers_photo": e.box_covers_photo,
        "view": e.view,
        "image_size": list(size),
        "output_size": list(shown),
        "grid": list(e.grid),
        "layout": e.layout,
        "prefix_tokens": e.prefix_tokens,
        "map_empty": e.empty,
        "files": {k: str(v) for k, v in files.items()},
        "time_s": round(seconds, 4),
        "warnings": list(e.warnings),
        **target_fields(e, _float_scaler(shown, size)),
    }


def target_fields(e, to_original) -> dict:
    """What the explanation's target adds to its record: the target's name and value, and what it needs
    (the versus class, the head, the reference, the detection, the mask's area); none for an older explanation."""
    name = getattr(e, "target", None)
    if name is None:
        return {}
    fields = {"target": name, "target_value": finite_or_none(e.target_value) if e.target_value is not None else None}
    extra = dict(getattr(e, "target_fields", {}) or {})
    if "detection" in extra:
        found = dict(extra["detection"])
        found["box"] = to_original(found["box"])
        found["score"] = finite_or_none(found["score"]) if found.get("score") is not None else None
        extra["detection"] = found
    if "mask_area" in extra:
        extra["mask_area"] = round(float(extra["mask_area"]), 6)
    return {**fields, **extra}


def _float_scaler(shown: tuple[int, int], size: tuple[int, int]):
    """A box in the shown picture's pixels (floats) -> the original's pixels, to 0.01 px."""
    sx, sy = size[0] / shown[0], size[1] / shown[1]
    return lambda box: [round(box[0] * sx, 2), round(box[1] * sy, 2), round(box[2] * sx, 2), round(box[3] * sy, 2)]


def _box_scaler(shown: tuple[int, int], size: tuple[int, int]):
    """Box in the shown picture's pixels -> the smallest box covering it in the original's pixels."""
    sx, sy = size[0] / shown[0], size[1] / shown[1]

    def scale(box) -> list[int]:
        x0, y0, x1, y1 = box
        return [
            int(math.floor(x0 * sx)),
            int(math.floor(y0 * sy)),
            min(size[0], int(math.ceil(x1 * sx))),
            min(size[1], int(math.ceil(y1 * sy))),
        ]

    return scale


def error_record(source: str, message: str) -> dict:
    return {"input": source, "error": message}


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a non-finite number is reported as null (with a warning in the record)."""
    return round(value, 6) if math.isfinite(value) else None

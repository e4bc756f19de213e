"""The JSON record of one explanation (schema: ``gradcam_cli/record.schema.json``)."""

from __future__ import annotations

import math

import numpy as np


def explanation_record(model_name: str, weights: str, source: str, photo: np.ndarray, e, files: dict,
                       seconds: float) -> dict:
    """One line of ``--json`` and ``results.jsonl`` for explanation ``e`` of the photo at ``source``."""
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
        "probability": finite_or_none(e.probability),
        "score": finite_or_none(e.score),
        "bbox": list(e.bbox) if e.bbox else None,
        "boxes": [{"box": list(r.box), "share": round(r.share, 6)} for r in e.regions],
        "image_size": [int(photo.shape[1]), int(photo.shape[0])],
        "grid": list(e.grid),
        "layout": e.layout,
        "prefix_tokens": e.prefix_tokens,
        "map_empty": e.empty,
        "files": {k: str(v) for k, v in files.items()},
        "time_s": round(seconds, 4),
        "warnings": list(e.warnings),
    }


def error_record(source: str, message: str) -> dict:
    return {"input": source, "error": message}


def finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a non-finite number is reported as null (with a warning in the record)."""
    return round(value, 6) if math.isfinite(value) else None

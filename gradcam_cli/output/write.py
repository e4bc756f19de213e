"""The files of one explanation: which paths, and their encoded bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import render
from .encode import encode_npy, encode_png
from .files import output_path


def planned_files(directory: Path, image_stem: str, explanation, kinds, save_raw: bool) -> dict[str, Path]:
    """The files one explanation is written to, by kind (``raw`` for the ``.npy`` map)."""
    e = explanation
    files = {kind: output_path(directory, image_stem, e.method, e.layer, e.class_index, kind) for kind in kinds}
    if save_raw:
        files["raw"] = output_path(directory, image_stem, e.method, e.layer, e.class_index, "map", ".npy")
    return files


def encode_outputs(photo: np.ndarray, explanation, files: dict[str, Path], alpha: float) -> dict[Path, bytes]:
    """Render and encode every requested output of one explanation (bytes by path).

    Serially: with fpng a PNG takes 1-2 ms, and a thread per file measured no faster;
    batch jobs already encode different images in their writer threads.
    """
    e = explanation
    heat = render.colorize(e.map) if {"heatmap", "overlay"} & files.keys() else None  # shared by both

    def encode(kind: str) -> bytes:
        if kind == "heatmap":
            return encode_png(heat)
        if kind == "overlay":
            return encode_png(render.overlay(photo, heat, alpha), photographic=True)
        if kind == "guided":
            return encode_png(e.guided)
        if kind == "bbox":
            label = f"{e.class_name or e.class_index} {e.probability:.2f}"
            return encode_png(render.draw_bbox(photo, e.bbox, label), photographic=True)
        if kind == "raw":
            return encode_npy(e.map)
        raise ValueError(kind)

    return {path: encode(kind) for kind, path in files.items()}

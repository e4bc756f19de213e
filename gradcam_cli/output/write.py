"""The files of one explanation, or of one image: which paths, and their encoded bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import render
from .colormaps import DEFAULT_COLORMAP
from .encode import encode_npy, encode_png
from .files import output_path, sheet_path
from .targets import describe, with_detection


@dataclass(frozen=True)
class Look:
    """How pictures are drawn: colour map, labels on heatmap and overlay, and the sheets' labels."""

    colormap: str = DEFAULT_COLORMAP
    caption: bool = False  # on heatmap and overlay files
    colorbar: bool = False
    sheet_caption: bool = True
    sheet_colorbar: bool = True
    all_boxes: bool = False  # label every box with its share of the map (--bbox-mode all)

    @classmethod
    def of(cls, options) -> Look:
        """From explain options: ``--caption``/``--colorbar`` are off for files unless given, on for sheets
        unless turned off (None means "not given")."""
        caption, colorbar = getattr(options, "caption", None), getattr(options, "colorbar", None)
        return cls(
            colormap=getattr(options, "colormap", DEFAULT_COLORMAP),
            caption=caption is True,
            colorbar=colorbar is True,
            sheet_caption=caption is not False,
            sheet_colorbar=colorbar is not False,
            all_boxes=getattr(options, "bbox_mode", "largest") == "all",
        )


def planned_files(directory: Path, image_stem: str, explanation, kinds, save_raw: bool) -> dict[str, Path]:
    """The files one explanation is written to, by kind (``raw`` for the ``.npy`` map, ``guided_raw`` for
    the guided gradient's)."""
    e = explanation
    key = file_key(e)
    files = {kind: output_path(directory, image_stem, e.method, e.layer, key, kind) for kind in kinds}
    if save_raw:
        files["raw"] = output_path(directory, image_stem, e.method, e.layer, key, "map", ".npy")
        if "guided" in kinds:
            files["guided_raw"] = output_path(directory, image_stem, e.method, e.layer, key, "guided", ".npy")
        if getattr(e, "mask", None) is not None:
            files["mask"] = output_path(directory, image_stem, e.method, e.layer, key, "mask", ".npy")
    return files


def file_key(e) -> int | str:
    """What the explanation's file names say it explains: its class index, or its target's slot (``d1``, ``sim``)."""
    slot = getattr(e, "slot", "")
    return slot if slot and slot != f"c{e.class_index}" else e.class_index


def sheet_key(e) -> int | str:
    """Which sheet an explanation is drawn on: one per class, or one per image for a detector (every detection)."""
    return "detections" if getattr(e, "target", "") == "detection" else file_key(e)


def plan_image(directory: Path, image_stem: str, explanations, options) -> list[tuple[object, dict[str, Path]]]:
    """Every explanation of one image with its files; with ``options.sheet``, each also names its class's sheet."""
    planned = []
    for e in explanations:
        files = planned_files(directory, image_stem, e, options.outputs, options.save_raw)
        if getattr(options, "sheet", False):
            files["sheet"] = sheet_path(directory, image_stem, sheet_key(e))
        planned.append((e, files))
    return planned


def encode_image(photo: np.ndarray, planned, options, layer_order=(), source: str = "") -> dict[Path, bytes]:
    """Every file of one image (`plan_image`): each explanation's outputs, then one sheet per class."""
    look = Look.of(options)
    encoded: dict[Path, bytes] = {}
    sheets: dict[Path, list] = {}
    for e, files in planned:
        encoded.update(encode_outputs(photo, e, {k: p for k, p in files.items() if k != "sheet"}, options.alpha, look))
        if "sheet" in files:
            sheets.setdefault(files["sheet"], []).append(e)
    for path, exps in sheets.items():
        encoded[path] = encode_sheet(photo, exps, layer_order, source, options.alpha, look)
    return encoded


def encode_sheet(photo: np.ndarray, explanations, layer_order, source: str, alpha: float, look: Look) -> bytes:
    from .sheet import render_sheet, sheet_caption

    count = len({getattr(e, "slot", "") for e in explanations})
    caption = sheet_caption(source, explanations[0], count) if look.sheet_caption else None
    return encode_png(
        render_sheet(
            photo,
            explanations,
            layer_order,
            caption=caption,
            colormap=look.colormap,
            colorbar=look.sheet_colorbar,
            alpha=alpha,
        ),
        photographic=True,
    )


def caption_of(e) -> str:
    """``class p · method · layer``: what a labelled heatmap or overlay shows."""
    return f"{describe(e)} · {e.method} · {e.layer}"


def encode_outputs(
    photo: np.ndarray, explanation, files: dict[str, Path], alpha: float, look: Look | None = None
) -> dict[Path, bytes]:
    """Render and encode every requested output of one explanation (bytes by path).

    Serially: with fpng a PNG takes 1-2 ms, and a thread per file measured no faster;
    batch jobs already encode different images in their writer threads.
    """
    e = explanation
    look = look or Look()
    heat = render.colorize(e.map, look.colormap) if {"heatmap", "overlay"} & files.keys() else None  # shared by both

    def labelled(picture: np.ndarray) -> np.ndarray:
        if not (look.caption or look.colorbar):
            return picture
        from .labels import labelled as with_labels

        return with_labels(picture, caption_of(e) if look.caption else None, look.colormap if look.colorbar else None)

    def encode(kind: str) -> bytes:
        if kind == "heatmap":
            return encode_png(labelled(heat))
        if kind == "overlay":
            return encode_png(labelled(with_detection(render.overlay(photo, heat, alpha), e)), photographic=True)
        if kind == "guided":
            return encode_png(e.guided)
        if kind == "bbox":
            return encode_png(boxed(photo, e, look.all_boxes), photographic=True)
        if kind == "raw":
            return encode_npy(e.map)
        if kind == "guided_raw":
            return encode_npy(e.guided_raw)
        if kind == "mask":
            return encode_npy(e.mask)
        raise ValueError(kind)

    return {path: encode(kind) for kind, path in files.items()}


def boxed(photo: np.ndarray, e, all_boxes: bool) -> np.ndarray:
    """The photo with the explanation's box (or, with ``all_boxes``, every region's, each with its share)."""
    fields = getattr(e, "target_fields", {}) or {}
    plain = e.probability is not None and not {"versus_index", "reference", "detection"} & fields.keys()
    label = f"{e.class_name or e.class_index} {e.probability:.2f}" if plain else describe(e)
    if getattr(e, "box_covers_photo", False):
        label += " · box is the whole photo"
    if not all_boxes:
        return render.draw_bbox(photo, e.bbox, label)
    if not e.regions:
        return render.draw_boxes(photo, [], f"{label} (no region above threshold)")
    boxes = [(r.box, f"{label} · {r.share:.0%}" if i == 0 else f"{r.share:.0%}") for i, r in enumerate(e.regions)]
    return render.draw_boxes(photo, boxes)

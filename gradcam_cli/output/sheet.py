"""Sheets: one picture per image and class with every method at every layer side by side.

The grid: the photo first, then one column per layer in model order, one row per method
(and, when guided images were computed, a row of Guided <method> under it). Each cell is
the overlay (or guided image) scaled so its longer side is `CELL` pixels, titled
``layer · method``. A caption above names the input, class and probability; a colour bar
at the right gives the colour map's scale. A method on the model's input (occlusion) has its
map in the first cell of its row; cells with no explanation stay blank.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import fonts
from .labels import BACKGROUND, TEXT, Rect, colorbar_width, draw_colorbar
from .render import colorize, draw_boxes, overlay
from .targets import describe, with_detection

CELL = 256  # longer side of a cell, pixels
TITLE_PX = 13  # cell titles
CAPTION_PX = 16  # the sheet's caption (bold)
TICK_PX = 12  # the colour bar's labels
PAD = 10  # around the sheet
GAP = 8  # between cells
PHOTO_TITLE = "photo"


@dataclass(frozen=True)
class Cell:
    row: int
    col: int
    image: Rect  # the picture
    title: str  # as drawn (shortened with an ellipsis if it did not fit)
    title_box: Rect  # the band above the picture
    kind: str  # "photo", "overlay", "guided" or "blank"


@dataclass(frozen=True)
class SheetLayout:
    size: tuple[int, int]  # (width, height)
    cells: tuple[Cell, ...]  # row by row, left to right
    caption: Rect | None
    bar: Rect | None


def cell_size(width: int, height: int) -> tuple[int, int]:
    """A photo's cell: its longer side `CELL` pixels, aspect kept."""
    scale = CELL / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def sheet_rows(explanations) -> list[tuple[str, str, str]]:
    """``(slot, method, kind)`` per row: each method's overlays, then its guided images if it has them; a sheet
    of several slots (a detector's detections) has these rows for each slot in turn."""
    rows: list[tuple[str, str, str]] = []
    for slot in dict.fromkeys(_slot(e) for e in explanations):
        mine = [e for e in explanations if _slot(e) == slot]
        for method in dict.fromkeys(e.method for e in mine):
            rows.append((slot, method, "overlay"))
            if any(e.guided is not None for e in mine if e.method == method):
                rows.append((slot, method, "guided"))
    return rows


def _slot(e) -> str:
    return getattr(e, "slot", "") or f"c{e.class_index}"


def sheet_columns(explanations, layer_order) -> list[str]:
    """The layers present, in model order (``layer_order``), any others after them. A method on the model's
    input (occlusion) or on several layers fused (refinecam: their paths joined by ``+``) has no column of its
    own when there are layers: its map sits in its row's first cell."""
    present = list(dict.fromkeys(e.layer for e in explanations))
    ordered = [layer for layer in layer_order if layer in present]
    columns = ordered + [layer for layer in present if layer not in ordered]
    on_input = {e.layer for e in explanations if getattr(e, "layout", "") == "input"}
    fused = {c for c in columns if c not in layer_order and all(p in layer_order for p in c.split("+"))}
    return [c for c in columns if c not in on_input | fused] or columns


def found_cells(explanations, columns: list[str]) -> dict[tuple[str, str, str], object]:
    """Each explanation by (slot, method, column): a map on the input or fused from layers goes in the first column."""
    return {(_slot(e), e.method, e.layer if e.layer in columns else columns[0]): e for e in explanations}


def cell_title(method: str, kind: str, layer: str, empty: bool = False, what: str = "") -> str:
    name = f"guided {method}" if kind == "guided" else method
    return (f"{what} · " if what else "") + f"{layer} · {name}" + (" (empty)" if empty else "")


def sheet_layout(photo_size: tuple[int, int], explanations, layer_order, caption: bool, colorbar: bool) -> SheetLayout:
    """Where every cell, title, the caption and the colour bar go (the explanations of one image and class)."""
    cw, ch = cell_size(*photo_size)
    rows, cols = sheet_rows(explanations), sheet_columns(explanations, layer_order)
    found = found_cells(explanations, cols)
    title_h = fonts.line_height(TITLE_PX) + 4
    top = PAD + (fonts.line_height(CAPTION_PX) + PAD if caption else 0)
    cells = []
    several = len({slot for slot, _, _ in rows}) > 1
    for r, (slot, method, kind) in enumerate(rows):
        y = top + r * (title_h + ch + GAP)
        for c in range(len(cols) + 1):
            x = PAD + c * (cw + GAP)
            if c == 0:
                title, what = (PHOTO_TITLE, "photo") if r == 0 else ("", "blank")
            else:
                e = found.get((slot, method, cols[c - 1]))
                title = cell_title(method, kind, e.layer, bool(e.empty), describe(e) if several else "") if e else ""
                what = kind if e is not None else "blank"
            shown, _ = fonts.fit_text(title, TITLE_PX, cw, min_size=TITLE_PX) if title else ("", TITLE_PX)
            cells.append(Cell(r, c, Rect(x, y + title_h, cw, ch), shown, Rect(x, y, cw, title_h), what))
    grid_w = (len(cols) + 1) * (cw + GAP) - GAP
    grid_h = len(rows) * (title_h + ch + GAP) - GAP
    bar = None
    width = PAD + grid_w + PAD
    if colorbar:
        tick_pad = max(2, TICK_PX // 3)
        bar = Rect(PAD + grid_w + tick_pad, top + title_h, max(8, round(TICK_PX * 0.9)), grid_h - title_h)
        width = PAD + grid_w + colorbar_width(TICK_PX, tick_pad) + PAD
    caption_rect = Rect(PAD, PAD, width - 2 * PAD, fonts.line_height(CAPTION_PX)) if caption else None
    return SheetLayout((width, top + grid_h + PAD), tuple(cells), caption_rect, bar)


def sheet_caption(source: str, e, count: int = 1) -> str:
    if getattr(e, "target", "") == "detection":
        return f"{source} · {count} detection{'s' if count != 1 else ''}"
    if e.class_index is None or e.probability is None or (getattr(e, "target_fields", None) or {}).get("versus_index"):
        return f"{source} · {describe(e)}"
    name = f"{e.class_name} ({e.class_index})" if e.class_name else f"class {e.class_index}"
    return f"{source} · {name} · p = {e.probability:.3f}"


def render_sheet(
    photo: np.ndarray, explanations, layer_order, *, caption: str | None, colormap: str, colorbar: bool, alpha: float
) -> np.ndarray:
    """The sheet of one image and class as an RGB uint8 array."""
    layout = sheet_layout((photo.shape[1], photo.shape[0]), explanations, layer_order, caption is not None, colorbar)
    canvas = np.empty((layout.size[1], layout.size[0], 3), np.uint8)
    canvas[:] = BACKGROUND
    cw, ch = layout.cells[0].image.w, layout.cells[0].image.h
    small = cv2.resize(photo, (cw, ch), interpolation=cv2.INTER_AREA)
    rows = sheet_rows(explanations)
    cols = sheet_columns(explanations, layer_order)
    found = found_cells(explanations, cols)
    scale = cw / photo.shape[1]
    for cell in layout.cells:
        picture = None
        if cell.kind == "photo":
            picture = photo_cell(small, explanations, scale)
        elif cell.kind != "blank":
            slot, method, _ = rows[cell.row]
            e = found[(slot, method, cols[cell.col - 1])]
            picture = with_detection(cell_picture(small, e, cell.kind, colormap, alpha), e, scale)
        if picture is not None:
            r = cell.image
            canvas[r.y : r.y + r.h, r.x : r.x + r.w] = picture
        if cell.title:
            fonts.paste(
                canvas, fonts.text_patch(cell.title, TITLE_PX, TEXT, BACKGROUND), cell.title_box.x, cell.title_box.y + 1
            )
    if layout.caption is not None:
        text, px = fonts.fit_text(caption, CAPTION_PX, layout.caption.w, bold=True)
        fonts.paste(canvas, fonts.text_patch(text, px, TEXT, BACKGROUND, bold=True), layout.caption.x, layout.caption.y)
    if layout.bar is not None:
        draw_colorbar(canvas, layout.bar, colormap, TICK_PX)
    return canvas


def photo_cell(small_photo: np.ndarray, explanations, scale: float) -> np.ndarray:
    """The photo's cell; a detector's sheet shows every detection on it."""
    found = {_slot(e): e for e in explanations if (getattr(e, "target_fields", None) or {}).get("detection")}
    if not found:
        return small_photo
    height, width = small_photo.shape[:2]
    boxes = []
    for e in found.values():
        x0, y0, x1, y1 = (v * scale for v in e.target_fields["detection"]["box"])
        box = (int(max(0, x0)), int(max(0, y0)), int(min(width, max(x0 + 1, x1))), int(min(height, max(y0 + 1, y1))))
        boxes.append((box, e.slot))
    return draw_boxes(small_photo, boxes)


def cell_picture(small_photo: np.ndarray, e, kind: str, colormap: str, alpha: float) -> np.ndarray:
    """One cell: the overlay of ``e``'s map on the cell-sized photo, or its guided image, at cell size."""
    size = (small_photo.shape[1], small_photo.shape[0])
    if kind == "guided":
        return cv2.resize(e.guided, size, interpolation=cv2.INTER_AREA)
    heat = colorize(cv2.resize(e.map, size, interpolation=cv2.INTER_AREA), colormap)
    return overlay(small_photo, heat, alpha)

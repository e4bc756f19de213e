"""Labelled pictures: a caption band above an image and a colour bar beside it.

Sizes follow the image's width, so the text reads the same at 224 px and at 4,000 px once
the picture is shown at screen size; a very narrow or short image gets a canvas large
enough for the text and the bar. Every size comes from the font size alone (not from the
rendered glyphs), so the layout is the same whichever font is found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import fonts
from .render import colormap_lut

BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
TICKS = ((1.0, "1"), (0.5, "0.5"), (0.0, "0"))  # value and label, top to bottom


def text_size_for(width: int) -> int:
    """Caption size for an image ``width`` pixels wide: 3% of it, never below readable."""
    return max(fonts.MIN_TEXT_PX, round(0.03 * width))


@dataclass(frozen=True)
class Rect:
    x: int
    y: int
    w: int
    h: int


@dataclass(frozen=True)
class LabelLayout:
    """Where everything goes on the labelled canvas."""

    size: tuple[int, int]  # canvas (width, height)
    image: Rect
    caption: Rect | None  # the band, text inside it with ``pad`` on the left
    bar: Rect | None  # the colour bar itself; ticks and their labels to its right
    text_px: int  # font size of the caption and the tick labels
    pad: int


def colorbar_width(text_px: int, pad: int) -> int:
    """Width of a colour bar with its tick labels (gap before it included)."""
    return pad + _bar_width(text_px) + _tick_length(text_px) + 1 + _label_room(text_px) + pad


def _label_room(text_px: int) -> int:
    """Room for the widest tick label, "0.5" (1.6 em in DejaVu Sans), from the size alone."""
    return 2 * text_px


def _bar_width(text_px: int) -> int:
    return max(8, round(text_px * 0.9))


def _tick_length(text_px: int) -> int:
    return max(2, text_px // 4)


def label_layout(width: int, height: int, caption: str | None, colorbar: bool) -> LabelLayout:
    """The canvas for an image of ``width`` x ``height`` with a caption and/or a colour bar."""
    px = text_size_for(width)
    pad = max(2, px // 3)
    line = fonts.line_height(px)
    canvas_w = width + (colorbar_width(px, pad) if colorbar else 0)
    top = 0
    caption_rect = None
    if caption is not None:
        text, px_fit = fonts.fit_text(caption, px, canvas_w - 2 * pad, shorten=False)
        canvas_w = max(canvas_w, fonts.text_width(text, px_fit) + 2 * pad)  # narrow image: widen, don't hide
        top = line + 2 * pad
        caption_rect = Rect(0, 0, canvas_w, top)
    body_h = height
    bar = None
    if colorbar:
        inset = (line + 1) // 2  # room for the end labels, centred on the bar's ends
        body_h = max(height, 2 * inset + 3 * line)
        bar = Rect(width + pad, top + inset, _bar_width(px), body_h - 2 * inset)
    return LabelLayout((canvas_w, top + body_h), Rect(0, top, width, height), caption_rect, bar, px, pad)


def labelled(image: np.ndarray, caption: str | None, colormap: str | None) -> np.ndarray:
    """``image`` (H, W, 3 uint8) with ``caption`` above it and, if ``colormap``, that map's colour bar."""
    height, width = image.shape[:2]
    layout = label_layout(width, height, caption, colormap is not None)
    canvas = np.empty((layout.size[1], layout.size[0], 3), np.uint8)
    canvas[:] = BACKGROUND
    r = layout.image
    canvas[r.y : r.y + r.h, r.x : r.x + r.w] = image
    if caption is not None:
        text, px = fonts.fit_text(caption, layout.text_px, layout.size[0] - 2 * layout.pad, shorten=False)
        fonts.paste(canvas, fonts.text_patch(text, px, TEXT, BACKGROUND), layout.pad, layout.pad)
    if layout.bar is not None:
        draw_colorbar(canvas, layout.bar, colormap, layout.text_px)
    return canvas


def draw_colorbar(canvas: np.ndarray, bar: Rect, colormap: str, text_px: int) -> None:
    """A vertical bar from the colour of 1 (top row) to that of 0 (bottom row), ticks labelled at 1, 0.5, 0."""
    lut = colormap_lut(colormap)
    values = np.linspace(1.0, 0.0, bar.h) if bar.h > 1 else np.ones(1)
    canvas[bar.y : bar.y + bar.h, bar.x : bar.x + bar.w] = lut[np.round(values * 255).astype(np.intp)][:, None, :]
    tick = _tick_length(text_px)
    line = fonts.line_height(text_px)
    for value, text in TICKS:
        y = bar.y + round((1.0 - value) * (bar.h - 1))
        canvas[y : y + max(1, text_px // 12), bar.x + bar.w : bar.x + bar.w + tick] = TEXT
        patch = fonts.text_patch(text, text_px, TEXT, BACKGROUND)
        fonts.paste(canvas, patch, bar.x + bar.w + tick + 1, y - line // 2)

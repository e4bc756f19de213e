"""Text for pictures: a scalable font that works offline, and text rendered to small RGB patches.

The font is found at run time, first match wins: ``$GRADCAM_FONT`` (a .ttf/.otf path),
DejaVu Sans or Liberation Sans or Arial among the system's fonts, matplotlib's bundled
DejaVu Sans when matplotlib is installed (found without importing it), and Pillow's own
bundled scalable font (Pillow >= 10.1 with FreeType). Only if none of those exist is
Pillow's fixed-size bitmap font used, which cannot scale.

Text is drawn into a patch of its own and pasted into numpy images, so a caption on a
4,000-pixel photo costs a few milliseconds, not a copy of the photo into Pillow.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MIN_TEXT_PX = 11  # smaller than this is not readable on a screen
_FILES = {
    False: ("DejaVuSans.ttf", "LiberationSans-Regular.ttf", "Arial.ttf", "arial.ttf", "Helvetica.ttc"),
    True: ("DejaVuSans-Bold.ttf", "LiberationSans-Bold.ttf", "Arial Bold.ttf", "arialbd.ttf", "Helvetica.ttc"),
}
# FreeType faces are not safe to share between threads; writer threads render text too.
_LOCK = threading.Lock()


def _font_dirs() -> list[Path]:
    home = Path.home()
    dirs = [
        Path("/usr/share/fonts"),
        Path("/usr/local/share/fonts"),
        home / ".fonts",
        home / ".local/share/fonts",
        Path("/Library/Fonts"),
        Path("/System/Library/Fonts"),
        home / "Library/Fonts",
    ]
    if sys.platform == "win32":
        dirs.append(Path(os.environ.get("WINDIR", r"C:\Windows")) / "Fonts")
    return [d for d in dirs if d.is_dir()]


@lru_cache(maxsize=2)
def font_file(bold: bool = False) -> str | None:
    """The path of the font used for text (bold or regular), or None for Pillow's bundled font."""
    override = os.environ.get("GRADCAM_FONT")
    if override and Path(override).is_file():
        return override
    wanted = _FILES[bold]
    for directory in _font_dirs():
        for name in wanted:  # the common Debian/Fedora layouts first, then a walk
            for sub in ("", "truetype/dejavu", "dejavu", "truetype/liberation", "liberation"):
                candidate = directory / sub / name
                if candidate.is_file():
                    return str(candidate)
    for directory in _font_dirs():
        for root, _dirs, files in os.walk(directory):
            for name in wanted:
                if name in files:
                    return str(Path(root) / name)
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin:
        bundled = (
            Path(spec.origin).parent
            / "mpl-data"
            / "fonts"
            / "ttf"
            / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")
        )
        if bundled.is_file():
            return str(bundled)
    return None


@lru_cache(maxsize=64)
def get_font(size: int, bold: bool = False) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """The font at ``size`` pixels (em height)."""
    size = max(1, int(size))
    path = font_file(bold)
    if path is not None:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)  # Pillow's bundled scalable font (needs FreeType)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def printable(text: str) -> str:
    """``text`` as one line that a font can lay out: control characters and line or paragraph separators (a
    file name may hold any of them) shown as the replacement character."""
    import unicodedata

    return "".join("\ufffd" if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs") else ch for ch in text)


def text_width(text: str, size: int, bold: bool = False) -> int:
    """Width in pixels of ``text`` at ``size``."""
    with _LOCK:
        return int(np.ceil(get_font(size, bold).getlength(printable(text))))


def fit_text(
    text: str, size: int, width: int, bold: bool = False, min_size: int = MIN_TEXT_PX, shorten: bool = True
) -> tuple[str, int]:
    """``(text, size)`` that fit in ``width`` pixels: a smaller size down to ``min_size``, then (if
    ``shorten``) an ellipsis in the middle (layer paths differ at both ends, so both ends are kept)."""
    text = printable(text)
    while size > min_size and text_width(text, size, bold) > width:
        size = max(min_size, int(size * 0.9))
    if not shorten or text_width(text, size, bold) <= width or len(text) <= 3:
        return text, size
    keep = len(text) - 1
    while keep > 2:
        head = (keep + 1) // 2
        short = f"{text[:head]}…{text[len(text) - (keep - head) :]}"
        if text_width(short, size, bold) <= width:
            return short, size
        keep -= 1
    return text[:1] + "…", size


def line_height(size: int) -> int:
    """The height of a line of text at ``size``, from the size alone (so layouts do not depend on the font)."""
    return int(round(size * 1.25))


def text_patch(text: str, size: int, fg=(0, 0, 0), bg=(255, 255, 255), bold: bool = False, pad: int = 0) -> np.ndarray:
    """``text`` rendered as an RGB uint8 patch of height ``line_height(size) + 2 * pad``."""
    height = line_height(size) + 2 * pad
    text = printable(text)
    with _LOCK:
        font = get_font(size, bold)
        width = int(np.ceil(font.getlength(text))) + 2 * pad
        image = Image.new("RGB", (max(1, width), height), tuple(bg))
        draw = ImageDraw.Draw(image)
        if isinstance(font, ImageFont.FreeTypeFont):  # centred between ascender and descender, any font
            draw.text((pad, pad + line_height(size) / 2), text, fill=tuple(fg), font=font, anchor="lm")
        else:  # the bitmap fallback knows no anchors
            draw.text((pad, pad), text, fill=tuple(fg), font=font)
    return np.asarray(image, dtype=np.uint8)


def paste(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """Copy ``patch`` into ``canvas`` at ``(x, y)``, clipped to the canvas."""
    h, w = canvas.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(w, x + patch.shape[1]), min(h, y + patch.shape[0])
    if x1 > x0 and y1 > y0:
        canvas[y0:y1, x0:x1] = patch[y0 - y : y1 - y, x0 - x : x1 - x]

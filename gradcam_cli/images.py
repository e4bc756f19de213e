"""Reading photos from disk into RGB arrays, with one clear error type for every failure."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

# Pillow's own bomb guard fires at ~179 Mpx; anything that large is not a photo we can explain.
Image.MAX_IMAGE_PIXELS = 120_000_000


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        high = arr.max() if arr.size else 0.0
        scale = 255.0 / high if high > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8))
    if img.mode == "P" or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode ``path`` into an ``(H, W, 3) uint8`` RGB array, EXIF orientation applied.

    Raises :class:`ImageError` naming the file and the cause for anything unusable.
    """
    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(p) as img:
                img.seek(0)  # first frame of GIF / first page of TIFF
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
                arr = np.asarray(rgb, dtype=np.uint8).copy()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{p}: image too large to decode safely ({err})") from None
    except UnidentifiedImageError:
        raise ImageError(f"{p}: not an image file Pillow can read") from None
    except IsADirectoryError:
        raise ImageError(f"{p}: is a directory, not an image") from None
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except PermissionError:
        raise ImageError(f"{p}: permission denied") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, TypeError) as err:
        cause = str(err).strip() or type(err).__name__
        raise ImageError(f"{p}: cannot decode image ({cause})") from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"{p}: image has no pixels")
    return arr

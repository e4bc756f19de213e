"""Reading photos from disk into RGB arrays, with one clear error type for every failure.

Every failure is an :class:`ImageError` whose message is one line, ``"PATH: cause"``.
Untrusted files are handled defensively: the declared size is checked before any
pixel is decoded (decompression bombs), PNG chunk checksums are verified, truncated
data is an error (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set), and anything
that is not a regular file (directories, FIFOs, devices) is refused without reading.
"""

from __future__ import annotations

import io
import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import ImageError
from .formats import claimed_format, format_of_head

# The most pixels a photo may declare. Decoding one costs ~3 bytes per pixel several
# times over (decode, mode conversion, the array), so this bounds one image's memory.
MAX_PIXELS = 120_000_000

# Pillow's own bomb guard warns above MAX_IMAGE_PIXELS and refuses above twice that; we
# refuse above MAX_PIXELS ourselves (below), so Pillow's limit only backs ours up.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Image.open and its DecompressionBombWarning go through the process-wide warnings filters,
# which are not thread-safe to change: loader threads take turns while a header is parsed.
_OPEN_LOCK = threading.Lock()

_16BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N")


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparency is composited on white."""
    if img.mode in _16BIT_MODES or img.mode in ("I", "F"):
        arr = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        high = float(arr.max()) if arr.size else 0.0
        if img.mode in _16BIT_MODES or 255 < high <= 65535:
            scale = 255.0 / 65535.0  # 16-bit samples span 0..65535: keep the photo's brightness
        elif high > 255:
            scale = 255.0 / high  # wider integer or float data: fit its range
        else:
            scale = 1.0
        img = Image.fromarray(np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8))
    if img.mode == "P" or (img.mode in ("L", "RGB") and "transparency" in img.info):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())  # one line, whatever the library put in it
    return text[:200] or type(err).__name__


def _open_image(fh) -> Image.Image:
    """``Image.open`` on an open file, refusing declared sizes above ``MAX_PIXELS`` before decoding."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we decide below
        img = Image.open(fh)
    width, height = img.size
    if width * height > MAX_PIXELS:
        img.close()
        raise Image.DecompressionBombError(
            f"{width}x{height} = {width * height} pixels, the limit is {MAX_PIXELS}")
    return img


def _decode(fh) -> np.ndarray:
    img = _open_image(fh)
    try:
        if img.format == "PNG":
            # Pillow skips the checksums of the image data unless asked: verify every chunk
            # (a bad CRC or a missing IEND is a corrupt file), then open again to decode.
            img.verify()  # leaves ``fh`` open: we opened it, Pillow does not close it
            fh.seek(0)
            img = _open_image(fh)
        img.seek(0)  # first frame of GIF / APNG / WebP, first page of TIFF
        img.load()
        upright = ImageOps.exif_transpose(img)
        arr = np.asarray(_to_rgb(upright), dtype=np.uint8).copy()
    finally:
        img.close()
    return arr


def load_rgb(path: str | os.PathLike, data: bytes | None = None) -> np.ndarray:
    """Decode ``path`` into an ``(H, W, 3) uint8`` RGB array, EXIF orientation applied.

    With ``data``, those bytes are decoded instead of reading the file (``path`` then
    only names it in messages: the bytes may come from an object store).
    Raises :class:`ImageError` naming the file and the cause for anything unusable,
    and nothing else.
    """
    p = Path(path)
    try:
        if data is None:
            st = os.stat(p)
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError
            if not stat.S_ISREG(st.st_mode):
                raise ImageError(f"{p}: not a regular file (a device, pipe or socket)")
        if (st.st_size if data is None else len(data)) == 0:
            raise ImageError(f"{p}: empty file (0 bytes)")
        with open(p, "rb") if data is None else io.BytesIO(data) as fh:
            arr = _decode(fh)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{p}: image too large to decode safely ({_first_line(err)})") from None
    except UnidentifiedImageError:
        kind = claimed_format(p) if data is None else format_of_head(data[:12])
        cause = f"corrupt {kind} file (its header cannot be read)" if kind else "not an image file Pillow can read"
        raise ImageError(f"{p}: {cause}") from None
    except IsADirectoryError:
        raise ImageError(f"{p}: is a directory, not an image") from None
    except FileNotFoundError:
        raise ImageError(f"{p}: no such file") from None
    except PermissionError:
        raise ImageError(f"{p}: permission denied") from None
    except MemoryError:
        raise ImageError(f"{p}: not enough memory to decode this image") from None
    except OSError as err:
        cause = err.strerror if err.strerror and err.errno else _first_line(err)
        raise ImageError(f"{p}: cannot decode image ({cause})") from None
    except Exception as err:  # SyntaxError, ValueError, struct.error, ...: a corrupt file, never a crash
        raise ImageError(f"{p}: cannot decode image ({_first_line(err)})") from None
    if arr.ndim != 3 or arr.shape[0] < 1 or arr.shape[1] < 1 or arr.shape[2] != 3:
        raise ImageError(f"{p}: image has no pixels")
    return arr

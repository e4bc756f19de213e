"""Reading photos from disk into RGB arrays, with one clear error type for every failure.

Every failure is an `ImageError` whose message is one line, ``"PATH: cause"``.
Untrusted files are handled defensively: the declared size is checked before any
pixel is decoded (decompression bombs), PNG chunk checksums are verified, truncated
data is an error (``ImageFile.LOAD_TRUNCATED_IMAGES`` is never set), and anything
that is not a regular file (directories, FIFOs, devices) is refused without reading.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError, features

from ..allocator import release_free_memory
from ..errors import ImageError
from .formats import FORMAT_FIXES, claimed_format, format_of_head, suffix_format

# The most pixels a photo may declare (120 Mpx). Pillow holds a decoded photo at 4 bytes
# per pixel, so this bounds one decode to 480 MB; the photo is then scaled down to
# ``max_pixels`` (``--max-output-pixels``) before anything else touches it.
MAX_PIXELS = 120_000_000

# Pillow's own bomb guard warns above MAX_IMAGE_PIXELS and refuses above twice that; we
# refuse above MAX_PIXELS ourselves (below), so Pillow's limit only backs ours up, and a
# refusal by Pillow is reworded to state our limit (one limit, one message).
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

# Image.open and its DecompressionBombWarning go through the process-wide warnings filters,
# which are not thread-safe to change: loader threads take turns while a header is parsed.
_OPEN_LOCK = threading.Lock()
_LARGE_DECODE = threading.Lock()  # see _decoded_smaller

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
        rgba = img if img.mode == "RGBA" else img.convert("RGBA")
        white = Image.new("RGB", rgba.size, (255, 255, 255))
        white.paste(rgba, mask=rgba)  # blended by alpha, in place: no extra photo-sized copies
        return white
    return img.convert("RGB")


def _first_line(err: BaseException) -> str:
    text = " ".join(str(err).split())  # one line, whatever the library put in it
    return text[:200] or type(err).__name__


def _too_large(pixels: str) -> Image.DecompressionBombError:
    return Image.DecompressionBombError(f"{pixels}; the limit is {MAX_PIXELS // 1_000_000} Mpx, {MAX_PIXELS:,} pixels")


def _open_image(fh) -> Image.Image:
    """``Image.open`` on an open file, refusing declared sizes above ``MAX_PIXELS`` before decoding."""
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we decide below
        try:
            img = Image.open(fh)
        except Image.DecompressionBombError as err:  # Pillow's guard, at twice our limit: state ours
            declared = re.search(r"\((\d+) pixels\)", str(err))
            raise _too_large(f"{int(declared.group(1)):,} pixels" if declared else "more pixels") from None
    width, height = img.size
    if width * height > MAX_PIXELS:
        img.close()
        raise _too_large(f"{width}x{height} = {width * height:,} pixels")
    return img


def fitted_size(width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """``(width, height)`` scaled down, aspect kept, to at most ``max_pixels`` pixels (unchanged if it fits)."""
    if max_pixels is None or width * height <= max_pixels:
        return width, height
    scale = (max_pixels / (width * height)) ** 0.5
    w, h = max(1, int(width * scale)), max(1, int(height * scale))
    if w == 1 or h == 1:  # a strip: the short side stays one pixel, the long side takes the rest
        w, h = (min(width, max_pixels), 1) if h == 1 else (1, min(height, max_pixels))
    return w, h


def _scaled_down(img: Image.Image, max_pixels: int | None) -> Image.Image:
    """``img`` (loaded) averaged down to at most ``max_pixels`` pixels, band by band.

    An area average (BOX: each output pixel is the mean of the photo's pixels under it,
    as good as any filter for shrinking, and the fastest). Each band of output rows is
    made from its own slice of the photo, the exact source rectangle passed to Pillow,
    so the result is the same area average as one resize of the whole photo (up to a
    rounding where a slice begins), while no conversion (palette to colours, Pillow's
    premultiplied alpha) ever holds a copy of the full photo.
    """
    size = fitted_size(*img.size, max_pixels)
    if size == img.size:
        return img
    width, height = img.size
    scale_y = height / size[1]
    band = max(1, (16 << 20) // (4 * width) // max(1, math.ceil(scale_y)))  # output rows per ~16 MB slice
    out = None
    for row in range(0, size[1], band):
        end = min(size[1], row + band)
        top = max(0, math.floor(row * scale_y) - 1)
        bottom = min(height, math.ceil(end * scale_y) + 1)
        part = img.crop((0, top, width, bottom))
        if part.mode == "1":  # Pillow resizes bilevel and palette images by nearest neighbour: average colours
            part = part.convert("L")
        elif part.mode in ("P", "PA") or (part.mode in ("L", "RGB") and "transparency" in img.info):
            part = part.convert("RGBA")  # a palette, or a transparent colour, would not survive averaging
        part = part.resize(
            (size[0], end - row), Image.Resampling.BOX, box=(0, row * scale_y - top, width, end * scale_y - top)
        )
        if out is None:
            out = Image.new(part.mode, size)
        out.paste(part, (0, row))
    return out


_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}  # EXIF orientation -> the turn that shows the photo upright
_QUARTER_TURNS = {_UPRIGHT[k] for k in (5, 6, 7, 8)}


def _decoded_smaller(img: Image.Image, max_pixels: int) -> tuple[Image.Image, bool]:
    """A photo above ``max_pixels`` decoded, scaled down and turned upright; and whether it turned a quarter.

    One at a time in the process: until it is scaled down, each holds up to 480 MB, and
    loader threads decoding several at once would add those up.
    """
    with _LARGE_DECODE:
        if img.format == "JPEG":
            img.draft(None, fitted_size(*img.size, max_pixels))  # decoded at 1/2, 1/4 or 1/8 scale, no smaller
        img.load()
        turn = _UPRIGHT.get(img.getexif().get(ExifTags.Base.Orientation, 1))  # the scaled copy has no metadata
        small = _scaled_down(img, max_pixels)
        img.close()  # the full-size pixels are not needed any more: hand them back
        release_free_memory()
    return (small.transpose(turn) if turn is not None else small), turn in _QUARTER_TURNS


def _decode(fh, max_pixels: int | None) -> tuple[np.ndarray, tuple[int, int]]:
    img = _open_image(fh)
    try:
        if img.format == "PNG":
            # Pillow skips the checksums of the image data unless asked: verify every chunk
            # (a bad CRC or a missing IEND is a corrupt file), then open again to decode.
            img.verify()  # leaves ``fh`` open: we opened it, Pillow does not close it
            fh.seek(0)
            img = _open_image(fh)
        img.seek(0)  # first frame of GIF / APNG / WebP, first page of TIFF
        full_size = img.size
        if max_pixels is None or full_size[0] * full_size[1] <= max_pixels:
            img.load()
            upright = ImageOps.exif_transpose(img)
            quarter_turn = upright.size != img.size
        else:
            upright, quarter_turn = _decoded_smaller(img, max_pixels)
        if quarter_turn:
            full_size = full_size[::-1]  # the original's sides swap too
        arr = np.asarray(_to_rgb(upright), dtype=np.uint8).copy()
    finally:
        img.close()
    return arr, full_size


_HEIF: list[bool] = []  # [True] once pillow-heif's opener is registered, [False] when it is not installed


def _enable_heif() -> bool:
    """Register the pillow-heif plugin with Pillow if it is installed; True only the first time.

    Lazily, at the first HEIC file: importing it costs start-up time, and registering
    an opener changes Pillow for the whole process.
    """
    with _OPEN_LOCK:
        if _HEIF:
            return False
        try:
            from pillow_heif import register_heif_opener
        except ImportError:
            _HEIF.append(False)
            return False
        register_heif_opener()
        _HEIF.append(True)
        return True


def _unidentified_cause(p: Path, claimed: str | None) -> str:
    """Why Pillow could not identify ``p``: a format it cannot read here (and the fix), or a corrupt file."""
    kind = claimed or suffix_format(p)
    readable_here = {"AVIF": features.check("avif"), "HEIF": _HEIF == [True]}
    if kind in FORMAT_FIXES and not readable_here.get(kind, False):
        return FORMAT_FIXES[kind]
    return f"corrupt {claimed} file (its header cannot be read)" if claimed else "not an image file Pillow can read"


def load_rgb(path: str | os.PathLike, data: bytes | None = None) -> np.ndarray:
    """Decode ``path`` into an ``(H, W, 3) uint8`` RGB array, EXIF orientation applied.

    With ``data``, those bytes are decoded instead of reading the file (``path`` then
    only names it in messages: the bytes may come from an object store).
    Raises `ImageError` naming the file and the cause for anything unusable,
    and nothing else.
    """
    return load_photo(path, data=data)[0]


def load_photo(
    path: str | os.PathLike, max_pixels: int | None = None, data: bytes | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Like `load_rgb`, scaled down to at most ``max_pixels`` pixels while decoding.

    Returns ``(rgb, (width, height))``: the array, and the upright photo's full size.
    With ``data``, those bytes are decoded instead of reading the file (``path`` then only
    names it in messages).
    A JPEG is decoded at a reduced scale straight away; other formats are decoded in
    full (at most `MAX_PIXELS`) and averaged down before any conversion, so
    memory stays bounded whatever the photo's size.
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
            arr, full_size = _decode(fh, max_pixels)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageError(f"{p}: image too large to decode safely ({_first_line(err)})") from None
    except UnidentifiedImageError:
        claimed = claimed_format(p) if data is None else format_of_head(data[:12])
        if claimed == "HEIF" and _enable_heif():
            return load_photo(p, max_pixels, data)  # the plugin is installed and now registered: once more
        raise ImageError(f"{p}: {_unidentified_cause(p, claimed)}") from None
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
    return arr, full_size

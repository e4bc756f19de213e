"""Encoding pictures and maps to bytes: PNG (fpng, or libpng through OpenCV) and .npy."""

from __future__ import annotations

import io

import cv2
import numpy as np


def encode_png(rgb: np.ndarray, photographic: bool = False) -> bytes:
    """PNG bytes for an RGB uint8 image (H, W, 3), with fast settings: these are previews, not archives.

    fpng writes a PNG about ten times faster than libpng at its fastest level; files are
    larger (photos, overlays and guided images by 5-15%, smooth heatmaps about twice).
    OpenCV's libpng is the fallback where fpng is missing or refuses the image; there
    ``photographic`` images (overlays, the boxed photo) skip zlib's string matching, which
    finds little in camera noise, while smooth ones keep it.
    """
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ValueError(f"encode_png needs a non-empty (H, W, 3) uint8 array, got {rgb.dtype} {rgb.shape}")
    if _fpng is not None:
        data = _fpng.from_ndarray(rgb)
        if data:  # fpng reports failure with empty bytes
            return data
    params = _PNG_PHOTO if photographic else _PNG_SMOOTH
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError("PNG encoding failed")
    return buf.tobytes()


try:
    import fpng as _fpng
except ImportError:  # no wheel for this platform: libpng through OpenCV does the job, slower
    _fpng = None

# zlib level 1 with the "up" filter only: about twice as fast as libpng's adaptive filter
# choice, with files as small; Huffman-only coding on photos is faster again, at files
# about 15% larger (measured on the samples).
_PNG_FILTER = [cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP] if hasattr(cv2, "IMWRITE_PNG_FILTER") else []
_PNG_SMOOTH = [cv2.IMWRITE_PNG_COMPRESSION, 1, *_PNG_FILTER]
_PNG_PHOTO = [*_PNG_SMOOTH, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]


def encode_npy(array: np.ndarray) -> bytes:
    """``.npy`` bytes of a float32 map."""
    buf = io.BytesIO()
    np.save(buf, array.astype(np.float32), allow_pickle=False)
    return buf.getvalue()

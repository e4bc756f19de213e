"""Output file names and atomic writes: a file exists complete, or not at all."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import cv2
import numpy as np

KINDS = ("heatmap", "overlay", "guided", "bbox")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def output_stem(image_stem: str, method: str, layer: str, class_index: int) -> str:
    """``<image>_<method>_<layer>_c<class>``: deterministic and filesystem-safe."""
    return f"{image_stem}_{method}_{_UNSAFE.sub('-', layer)}_c{class_index}"


def output_path(directory: Path, image_stem: str, method: str, layer: str, class_index: int, kind: str,
                suffix: str = ".png") -> Path:
    """Where one output of one (image, class, layer) goes."""
    return directory / f"{output_stem(image_stem, method, layer, class_index)}_{kind}{suffix}"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def encode_png(rgb: np.ndarray, photographic: bool = False) -> bytes:
    """PNG bytes for an RGB uint8 image (H, W, 3), with fast settings: these are previews, not archives.

    fpng writes a PNG about ten times faster than libpng at its fastest level; files are
    larger (photos, overlays and guided images by 5-15%, smooth heatmaps about twice). OpenCV's libpng is the fallback where fpng is missing or refuses the
    image; there ``photographic`` images (overlays, the boxed photo) skip zlib's string
    matching, which finds little in camera noise, while smooth ones keep it.
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
    import io

    buf = io.BytesIO()
    np.save(buf, array.astype(np.float32), allow_pickle=False)
    return buf.getvalue()


def write_all_atomic(files: dict[Path, bytes]) -> None:
    """Write several files atomically as a group: if one fails, the ones already written are removed."""
    written: list[Path] = []
    try:
        for path, data in files.items():
            write_bytes_atomic(path, data)
            written.append(path)
    except BaseException:
        for path in written:
            try:
                path.unlink()
            except OSError:
                pass
        raise

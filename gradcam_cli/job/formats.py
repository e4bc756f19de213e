"""Which files are images: by extension, or by the signature in their first bytes. One table for both."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"})
_SIGNATURES = ((b"\x89PNG\r\n\x1a\n", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
               (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))


def format_of_head(head: bytes) -> str | None:
    """The format the first 12 bytes of a file claim, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)


def claimed_format(path: Path) -> str | None:
    """The format a file's first bytes claim to be (None if unreadable or unknown)."""
    try:
        with open(path, "rb") as fh:
            return format_of_head(fh.read(12))
    except OSError:
        return None

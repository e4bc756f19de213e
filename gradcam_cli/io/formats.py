"""Which files are images: by extension, or by the signature in their first bytes. One table for both.

Formats that Pillow may not read here (HEIC without its plugin, AVIF in an older Pillow,
SVG, which is not a raster image) are still images: a folder's such files are taken,
and each is reported as failed with the reason and the fix, not skipped in silence.
"""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".webp",
        ".bmp",
        ".dib",
        ".tif",
        ".tiff",
        ".gif",
        ".psd",
        ".avif",
        ".heic",
        ".heif",
        ".svg",
        ".svgz",
    }
)
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"8BPS", "PSD"),
)
# ISO base media files ("....ftypBRAND"): the brand says which image format.
_FTYP_BRANDS = {
    b"avif": "AVIF",
    b"avis": "AVIF",
    b"heic": "HEIF",
    b"heix": "HEIF",
    b"hevc": "HEIF",
    b"hevx": "HEIF",
    b"heim": "HEIF",
    b"heis": "HEIF",
    b"mif1": "HEIF",
    b"msf1": "HEIF",
}
_SUFFIX_FORMATS = {".heic": "HEIF", ".heif": "HEIF", ".avif": "AVIF", ".svg": "SVG", ".svgz": "SVG", ".psd": "PSD"}
# What to do about a format that Pillow, as installed here, may not read.
FORMAT_FIXES = {
    "HEIF": "a HEIC/HEIF image, which needs the pillow-heif plugin (pip install pillow-heif)",
    "AVIF": "an AVIF image, which this Pillow cannot read (Pillow 11.3 or later can)",
    "SVG": "an SVG drawing, not a raster image: convert it to PNG first (e.g. rsvg-convert)",
}


def format_of_head(head: bytes) -> str | None:
    """The format the first 12 bytes of a file claim, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        return _FTYP_BRANDS.get(head[8:12])
    return next((name for sig, name in _SIGNATURES if head.startswith(sig)), None)


def claimed_format(path: Path) -> str | None:
    """The format a file's first bytes claim to be (None if unreadable or unknown)."""
    try:
        with open(path, "rb") as fh:
            return format_of_head(fh.read(12))
    except OSError:
        return None


def suffix_format(path: Path) -> str | None:
    """The format a file's extension names, for the formats that need more than core Pillow."""
    return _SUFFIX_FORMATS.get(path.suffix.lower())

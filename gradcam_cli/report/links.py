"""Links from the HTML report to the files of its folder: safe relative URLs, and which files are the folder's own.

A file name is data, never part of a URL's syntax. Each path segment is percent-encoded byte by byte (all
but ``A-Z a-z 0-9 - . _ ~``), so ``:`` cannot start a scheme, ``#`` and ``?`` cannot start a fragment or
a query, ``\\`` is not the separator a browser reads it as in ``file:`` URLs, and ``%2e%2e`` is not the
dot-segment a URL parser reads it as; the ``./`` prefix keeps even an encoded first segment a path.
"""

from __future__ import annotations

import os
import stat
from functools import lru_cache
from pathlib import Path, PurePosixPath
from urllib.parse import quote


def _segments(rel: str | PurePosixPath) -> list[str] | None:
    """The segments of a path below a folder, or None when it is not one (absolute, empty, '.', '..')."""
    parts = str(rel).split("/")
    return None if any(part in ("", ".", "..") for part in parts) else parts


@lru_cache(maxsize=4096)
def _encoded(segment: str) -> str:
    # surrogateescape: a name that is not UTF-8 on disk is encoded as the bytes it has there
    return quote(segment, safe="", encoding="utf-8", errors="surrogateescape")


def relative_url(rel: str | PurePosixPath) -> str:
    """The URL of the file at ``rel`` (a path below the page's folder, '/'-separated), relative to the page."""
    parts = _segments(rel)
    if parts is None:
        raise ValueError(f"not a path below the folder: {str(rel)!r}")
    return "./" + "/".join(map(_encoded, parts))


class FolderFiles:
    """Which relative paths name the folder's own files: regular files whose real path (every symbolic link
    followed) is inside the folder. A link to a file elsewhere, or into a linked folder elsewhere, is not."""

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.real = root.resolve()
        self._inside_dirs: dict[str, bool] = {}  # parent folder -> inside (one resolve per folder)

    def owns(self, rel: str | PurePosixPath) -> bool:
        parts = _segments(rel)
        if parts is None:
            return False
        parent = "/".join(parts[:-1])
        if parent not in self._inside_dirs:
            self._inside_dirs[parent] = self._inside(os.path.join(self.root, parent))
        if not self._inside_dirs[parent]:
            return False
        full = os.path.join(self.root, *parts)
        try:
            mode = os.lstat(full).st_mode
        except OSError:
            return False
        if stat.S_ISLNK(mode):
            return self._inside(full) and os.path.isfile(full)
        return stat.S_ISREG(mode)

    def _inside(self, path: str) -> bool:
        try:
            Path(path).resolve(strict=True).relative_to(self.real)
        except (OSError, RuntimeError, ValueError):  # missing, a link loop, or elsewhere
            return False
        return True

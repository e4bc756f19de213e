"""Turning command-line arguments into the list of images to explain, and where each one's outputs go.

Directories (``recursive`` to descend), glob patterns, plain files, and ``-`` for paths
on stdin. Every input gets a relative output location that mirrors the input tree and
can never point outside the output directory.
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .formats import IMAGE_SUFFIXES, claimed_format


@dataclass(frozen=True)
class InputImage:
    """One image to explain: where it is and where its outputs go (relative to the output dir)."""

    path: str  # as given / found
    rel: PurePosixPath  # relative output location: "sub/dog.jpg"
    unique_stem: str | None = None  # set when another input in the same folder has the same stem
    error: str | None = None  # known before any decoding: a folder that cannot be listed ("PATH: cause")

    @property
    def out_subdir(self) -> PurePosixPath:
        return self.rel.parent

    @property
    def stem(self) -> str:
        """The prefix of this image's output names ("dog", or "dog-png" next to a dog.jpg)."""
        return self.unique_stem or self.rel.stem


def looks_like_image(path: Path) -> bool:
    """Picked up from a folder: an image extension, or (any other name) an image signature.

    A file with an image extension is taken even when its bytes are not an image, so
    that a corrupt or mislabelled photo is reported instead of silently ignored.
    """
    return path.suffix.lower() in IMAGE_SUFFIXES or claimed_format(path) is not None


def _hidden(rel_parts: Iterable[str]) -> bool:
    return any(part.startswith(".") for part in rel_parts)


def _safe_rel(parts: Iterable[str]) -> PurePosixPath:
    """Drop anchors, '.', '..' and empty parts: a path that cannot climb out of the output dir."""
    kept = [p for p in parts if p not in ("", ".", "..", "/", "\\") and not p.endswith(":")]
    return PurePosixPath(*kept) if kept else PurePosixPath("image")


def scan_directory(root: Path, recursive: bool, skip: Path | None,
                   unreadable: list[tuple[Path, str]] | None = None) -> list[Path]:
    """Image files under ``root`` (sorted), skipping hidden entries and the ``skip`` directory.

    A folder that cannot be listed is added to ``unreadable`` as ``(folder, cause)``.
    """
    found: list[Path] = []
    skip_resolved = skip.resolve() if skip is not None else None

    def cannot_list(err: OSError) -> None:
        if unreadable is not None:
            unreadable.append((Path(err.filename or root), err.strerror or str(err)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=cannot_list):
        current = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (skip_resolved is None or (current / d).resolve() != skip_resolved))
        if not recursive:
            dirnames[:] = []
        for name in sorted(filenames):
            p = current / name
            if not name.startswith(".") and p.is_file() and looks_like_image(p):
                found.append(p)
    return found


def read_stdin_paths(nul_separated: bool, stream=None) -> list[str]:
    """Paths from stdin: one per line, the line ending (``\\n`` or ``\\r\\n``) removed and nothing else, so
    names keep their spaces; or NUL-separated (``-0``), for names that hold newlines. Empty entries are skipped."""
    data = (stream or sys.stdin.buffer).read()
    if isinstance(data, str):
        data = data.encode()
    if nul_separated:
        entries = data.split(b"\0")
    else:
        entries = [line[:-1] if line.endswith(b"\r") else line for line in data.split(b"\n")]
    return [os.fsdecode(e) for e in entries if e]


def collect_inputs(args: Iterable[str], *, recursive: bool = False, nul_separated: bool = False,
                   output_dir: Path | None = None, stdin=None) -> list[InputImage]:
    """Expand arguments into images with collision-free, contained output locations.

    Each file is anchored at its directory argument (files found in a folder) or at
    its own folder (files named directly, by glob or on stdin); outputs mirror each
    file's path below the deepest folder all anchors share. So one folder's tree is
    mirrored as it is, and a single file lands straight in the output dir.
    """
    anchored: list[tuple[Path, Path]] = []  # (file, anchor directory)
    unreadable: list[tuple[Path, str]] = []  # folders that could not be listed, and why
    for arg in args:
        if arg == "-":
            anchored += [(Path(p), Path(p).parent) for p in read_stdin_paths(nul_separated, stdin)]
            continue
        p = Path(arg)
        if p.is_dir():
            anchored += [(f, p) for f in scan_directory(p, recursive, output_dir, unreadable)]
        elif not p.exists() and glob.has_magic(arg):
            for match in sorted(glob.glob(arg, recursive=recursive)):
                m = Path(match)
                if m.is_file() and not _hidden(m.parts) and looks_like_image(m):
                    anchored.append((m, m.parent))
        else:
            anchored.append((p, p.parent))  # missing or unreadable files are reported by the loader
    folder_errors = [InputImage(str(folder), PurePosixPath("."), error=f"{folder}: cannot list this folder ({cause})")
                     for folder, cause in unreadable]
    if not anchored:
        return folder_errors
    # Only the files that are there place the outputs: a missing path (or a folder) in a list
    # fails on its own and must not move every other image's outputs.
    present = [a for f, a in anchored if os.path.isfile(f)] or [a for _, a in anchored]
    try:
        base = os.path.commonpath([os.path.abspath(a) for a in present])
    except ValueError:  # different drives
        base = ""
    items: list[InputImage] = []
    seen: set[str] = set()
    for f, _ in anchored:
        a = os.path.abspath(f)
        if a in seen:
            continue
        seen.add(a)
        rel = os.path.relpath(a, base) if base else a
        items.append(InputImage(str(f), _safe_rel(Path(rel).parts)))
    return _disambiguate_stems(items) + folder_errors


def _disambiguate_stems(items: list[InputImage]) -> list[InputImage]:
    """``dog.jpg`` and ``dog.png`` in one folder get output stems ``dog-jpg`` and ``dog-png``."""
    from collections import Counter

    counts = Counter((i.rel.parent, i.rel.stem) for i in items)
    return [i if counts[(i.rel.parent, i.rel.stem)] == 1 else
            InputImage(i.path, i.rel, f"{i.rel.stem}-{i.rel.suffix.lstrip('.').lower() or 'noext'}") for i in items]


def in_shard(item: InputImage, index: int, count: int) -> bool:
    """Deterministic membership of shard ``index`` of ``count``, by the item's output location."""
    digest = hashlib.sha1(str(item.rel).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count == index

"""From command-line arguments to the list of images of a job, and where each one's outputs go.

Directories (``recursive`` to descend), glob patterns, plain files, and ``-`` for paths
on stdin. Every input gets an output location that mirrors the input tree below the
deepest folder all inputs share, can never point outside the output directory, and is
distinct from every other input's (see `output_names`).
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path, PurePath, PurePosixPath

from .formats import IMAGE_SUFFIXES, claimed_format

# How many folder entries a non-recursive listing looks at below a folder to count the images it leaves out.
SUBFOLDER_SCAN_LIMIT = 20_000


@dataclass(frozen=True)
class InputImage:
    """One image of a job: where it is and where its outputs go (relative to the output dir)."""

    path: str  # as given / found
    rel: PurePosixPath  # output location below the output dir, each part made safe: "sub/dog.jpg"
    name: str | None = None  # the prefix of its output names; None: rel's stem
    error: str | None = None  # known before any decoding: a missing file, a folder that cannot be listed

    @property
    def out_subdir(self) -> PurePosixPath:
        return self.rel.parent

    @property
    def stem(self) -> str:
        """The prefix of this image's output names ("dog", or "dog-png" next to a dog.jpg)."""
        return self.name or self.rel.stem


def looks_like_image(path: Path) -> bool:
    """Picked up from a folder: an image extension, or (any other name) an image signature.

    A file with an image extension is taken even when its bytes are not an image, so
    that a corrupt or mislabelled photo is reported instead of silently ignored.
    """
    return path.suffix.lower() in IMAGE_SUFFIXES or claimed_format(path) is not None


def _hidden(rel_parts: Iterable[str]) -> bool:
    return any(part.startswith(".") for part in rel_parts)


def safe_part(name: str) -> str:
    """One path component as an output folder or name: ``%``, separators, ``:`` and control characters
    percent-encoded, ``.`` and ``..`` spelt out. Injective, so distinct components stay distinct."""
    if name in (".", ".."):
        return "%2E" * len(name)
    out = []
    for ch in name:
        out.append(f"%{ord(ch):02X}" if ch in "%/\\:" or ord(ch) < 0x20 or ord(ch) == 0x7F else ch)
    return "".join(out)


def safe_rel(parts: Iterable[str]) -> PurePosixPath:
    """A relative output location from path components: the root of an absolute path and empty parts dropped,
    every other part made safe (`safe_part`), so it cannot climb out of the output dir and no two inputs meet.

    Only a first part that is a root on this system (``/``; ``C:\\`` or ``\\`` on Windows) is dropped: on Linux a
    folder may be named ``\\``, and dropping it would give ``\\/x.png`` the outputs of ``x.png``."""
    parts = list(parts)
    if parts and parts[0] and PurePath(parts[0]).anchor == parts[0]:
        parts = parts[1:]
    kept = [safe_part(p) for p in parts if p]
    return PurePosixPath(*kept) if kept else PurePosixPath("image")


def scan_directory(
    root: Path, recursive: bool, skip: Path | None, unreadable: list[tuple[Path, str]] | None = None
) -> list[Path]:
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
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith(".") and (skip_resolved is None or (current / d).resolve() != skip_resolved)
        )
        if not recursive:
            dirnames[:] = []
        for name in sorted(filenames):
            p = current / name
            if not name.startswith(".") and p.is_file() and looks_like_image(p):
                found.append(p)
    return found


def images_in_subfolders(root: Path, skip: Path | None) -> tuple[int, bool]:
    """How many images the sub-folders of ``root`` hold (by extension), and whether the count stopped early
    (at `SUBFOLDER_SCAN_LIMIT` entries): what a listing without ``-r`` leaves out."""
    count, seen = 0, 0
    skip_resolved = skip.resolve() if skip is not None else None
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [
            d
            for d in dirnames
            if not d.startswith(".") and (skip_resolved is None or (Path(dirpath) / d).resolve() != skip_resolved)
        ]
        if Path(dirpath) != root:
            count += sum(1 for n in filenames if not n.startswith(".") and Path(n).suffix.lower() in IMAGE_SUFFIXES)
        seen += len(filenames) + len(dirnames)
        if seen > SUBFOLDER_SCAN_LIMIT:
            return count, True
    return count, False


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


def _expand(
    args: Iterable[str],
    recursive: bool,
    nul_separated: bool,
    output_dir: Path | None,
    stdin,
    unreadable: list,
    notices: list[str],
) -> list[tuple[Path, Path]]:
    """Every argument as ``(file, anchor directory)`` pairs: files found in a folder are anchored at it, files
    named directly, by glob or on stdin at their own folder."""
    anchored: list[tuple[Path, Path]] = []
    for arg in args:
        if arg == "-":
            anchored += [(Path(p), Path(p).parent) for p in read_stdin_paths(nul_separated, stdin)]
            continue
        p = Path(arg)
        if p.is_dir():
            anchored += [(f, p) for f in scan_directory(p, recursive, output_dir, unreadable)]
            if not recursive:
                notices += _left_in_subfolders(p, output_dir)
        elif not p.exists() and glob.has_magic(arg):
            for match in sorted(glob.glob(arg, recursive=recursive)):
                m = Path(match)
                if m.is_file() and not _hidden(m.parts) and looks_like_image(m):
                    anchored.append((m, m.parent))
        else:
            anchored.append((p, p.parent))  # unreadable files are reported by the loader
    return anchored


def _left_in_subfolders(folder: Path, output_dir: Path | None) -> list[str]:
    count, partial = images_in_subfolders(folder, output_dir)
    if not count:
        return []
    many = f"{count}{'+' if partial else ''} image{'s' if count > 1 or partial else ''}"
    return [f"{folder}: {many} in sub-folders left out; add -r to include them"]


def collect_inputs(
    args: Iterable[str],
    *,
    recursive: bool = False,
    nul_separated: bool = False,
    output_dir: Path | None = None,
    stdin=None,
    notices: list[str] | None = None,
) -> list[InputImage]:
    """Expand arguments into images with distinct, contained output locations.

    Outputs mirror each file's path below the deepest folder all anchors share: one
    folder's tree is mirrored as it is, and a single file lands straight in the output dir.
    A file named directly that does not exist is an item with its error. ``notices`` gets what a
    user should hear about the listing (images left in sub-folders without ``recursive``).
    """
    unreadable: list[tuple[Path, str]] = []  # folders that could not be listed, and why
    notices = [] if notices is None else notices
    anchored = _expand(args, recursive, nul_separated, output_dir, stdin, unreadable, notices)
    folder_errors = [
        InputImage(str(folder), PurePosixPath("."), error=f"{folder}: cannot list this folder ({cause})")
        for folder, cause in unreadable
    ]
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
        error = None if os.path.lexists(f) else f"{f}: no such file"
        items.append(InputImage(str(f), safe_rel(Path(rel).parts), error=error))
    return output_names(items) + folder_errors


def output_names(items: list[InputImage]) -> list[InputImage]:
    """Each item with its output name: its stem, or, where stems meet in one output folder, stem and extension
    (``dog-jpg``, ``dog-png``), and where those still meet, a short hash of the input's own path as well.

    Folders and names are compared case-insensitively, so two inputs never share a file even on a
    case-insensitive filesystem. The result depends only on the set of inputs (not their order): distinct
    inputs get distinct names, and the same inputs the same names in every run.
    """
    base = {i: item.rel.stem for i, item in enumerate(items)}
    for i in (i for clash in _clashes(items, base) for i in clash):
        base[i] = f"{base[i]}-{safe_part(items[i].rel.suffix.lstrip('.')) or 'noext'}"
    names, digits = dict(base), 8
    while (clashes := _clashes(items, names)) and digits <= 40:
        for i in (i for clash in clashes for i in clash):
            names[i] = f"{base[i]}-{_digest(items[i])[:digits]}"
        digits += 8
    return [replace(item, name=names[i]) if names[i] != item.rel.stem else item for i, item in enumerate(items)]


def _clashes(items: list[InputImage], names: dict[int, str]) -> list[list[int]]:
    """Groups of items whose output names meet (case-insensitively) in one output folder."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, item in enumerate(items):
        if item.rel != PurePosixPath("."):  # a folder that could not be listed writes nothing
            groups[(str(item.out_subdir).casefold(), names[i].casefold())].append(i)
    return [g for g in groups.values() if len(g) > 1]


def _digest(item: InputImage) -> str:
    return hashlib.sha1(str(item.rel).encode("utf-8", "surrogateescape")).hexdigest()


def in_shard(item: InputImage, index: int, count: int) -> bool:
    """Deterministic membership of shard ``index`` of ``count``, by the item's output location."""
    digest = hashlib.sha1(str(item.rel).encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") % count == index

"""Output file names and atomic writes: a file exists complete, or not at all."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

KINDS = ("heatmap", "overlay", "guided", "bbox")  # the pictures one explanation can have
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _process_umask() -> int:
    # Reading the umask means setting it; done once, at import, before any writer thread runs.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The mode a plain open() would give a new file: 0666 less the umask (0644 under umask 022).
NEW_FILE_MODE = 0o666 & ~_process_umask()


def slot_part(class_index: int | str) -> str:
    """The part of a file name that says what was explained: ``c<class>`` for a class index, else the target's
    own name for it (``c243-vs-250``, ``d1`` for a detection, ``sim``)."""
    return f"c{class_index}" if isinstance(class_index, int) else _UNSAFE.sub("-", class_index)


def output_stem(image_stem: str, method: str, layer: str, class_index: int | str) -> str:
    """``<image>_<method>_<layer>_c<class>``: deterministic and filesystem-safe."""
    return f"{image_stem}_{method}_{_UNSAFE.sub('-', layer)}_{slot_part(class_index)}"


def output_path(
    directory: Path, image_stem: str, method: str, layer: str, class_index: int | str, kind: str, suffix: str = ".png"
) -> Path:
    """Where one output of one (image, method, layer, class) goes."""
    return directory / f"{output_stem(image_stem, method, layer, class_index)}_{kind}{suffix}"


def sheet_path(directory: Path, image_stem: str, class_index: int | str) -> Path:
    """Where the sheet of one (image, class) goes: ``<image>_sheet_c<class>.png``."""
    return directory / f"{image_stem}_sheet_{slot_part(class_index)}.png"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename.

    The file gets the mode any other program's new file would (the umask applies);
    ``mkstemp`` alone would leave it readable by its owner only.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if hasattr(os, "fchmod"):
                os.fchmod(fh.fileno(), NEW_FILE_MODE)
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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


# What `gradcam evaluate` writes into its output folder (the HTML report reads them back).
EVALUATION_SUMMARY, EVALUATION_PER_IMAGE, EVALUATION_SWEEP = "evaluation.jsonl", "per_image.csv", "sweep.csv"
EVALUATION_PLOTS = ("sweep.png", "curves.png", "sanity.png")

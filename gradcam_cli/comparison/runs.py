"""One side of a comparison: the explanations of a run, each under the key it is paired by.

A key is ``(input, method, layer, slot)``: the input as a path below the folder all the run's inputs share (so
that a golden folder made elsewhere, from other absolute paths, still pairs), the method, the layer and the class
*slot*: ``top-1``, ``top-2``, ... where the run explained its likeliest classes (so that a changed top class is a
measured difference, not two unpaired explanations), ``class N`` where it explained classes it was given.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..io.manifest import read_records
from ..output.runinfo import read_run_info

Key = tuple[str, str, str, str]  # (input, method, layer, slot)
MAP_FILE = "raw"  # the records' name for the --save-raw map (*_map.npy)


@dataclass
class Entry:
    """One explanation: its record and its map (in memory, or the ``.npy`` file it is read from)."""

    record: dict
    path: Path | None = None
    array: object = None  # (H, W) float32 map in [0, 1]
    seen: tuple[int, int, int, int] | None = None  # (x0, y0, x1, y1): the part of the map the model saw

    def load_map(self):
        """The map, or None where the run kept none (made without --save-raw, or the file is gone)."""
        import numpy as np

        if self.array is not None:
            return self.array
        if self.path is None:
            return None
        try:
            return np.load(self.path, allow_pickle=False)
        except (OSError, ValueError):
            return None


@dataclass
class Side:
    """A run's explanations by key, the inputs it failed on, and what ``run.json`` says of it."""

    role: str  # "baseline" or "candidate"
    label: str  # the folder, or the model and weights of the one-process form
    info: dict | None
    entries: dict[Key, Entry] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # input key -> error
    layers: list[str] = field(default_factory=list)  # in the run's order


def slot_of(record: dict, explicit_classes: bool) -> str:
    """The class slot an explanation fills: its rank among the likeliest classes, or the class it was asked for."""
    if explicit_classes:
        return f"class {record.get('class_index')}"
    return f"top-{record.get('rank') or 1}"


def explicit_classes(info: dict | None) -> bool:
    """Whether the run explained classes it was given (``--class``) rather than its likeliest."""
    explain = ((info or {}).get("options") or {}).get("explain") or {}
    return bool(explain.get("classes"))


def input_keys(inputs: list[str]) -> dict[str, str]:
    """Each input as a path below the folder all of them share (its name, for a single input)."""
    try:
        common = os.path.commonpath([os.path.dirname(i) for i in inputs]) if inputs else ""
    except ValueError:  # absolute and relative paths mixed: kept whole
        return {i: i for i in inputs}
    return {i: os.path.relpath(i, common) if common else i for i in inputs}


def read_side(folder: str | os.PathLike, role: str) -> Side:
    """The run in ``folder`` (``gradcam explain ... --save-raw -o folder``): every manifest's records (a killed
    run's journal folded in) and ``run.json``."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{role} {root}: no such folder")
    manifests = sorted({p.name for p in root.glob("results*.jsonl")} | _journalled(root))
    if not manifests:
        raise UsageError(
            f"{role} {root}: no results.jsonl here; make it with `gradcam explain PHOTOS --save-raw -o {root}`"
        )
    records = [r for name in manifests for r in read_records(root / name) if isinstance(r.get("input"), str)]
    info = next((i for i in (read_run_info(root, name) for name in manifests) if i is not None), None)
    side = Side(role, str(root), info)
    keys = input_keys(list(dict.fromkeys(r["input"] for r in records)))
    by_class = explicit_classes(info)
    run_dir = info.get("output_dir") if info else None
    inside: dict[Path, bool] = {}  # folder -> inside the run's folder (one resolve per folder)
    for record in records:
        key = keys[record["input"]]
        if "error" in record:
            side.failed[key] = str(record["error"])
            continue
        raw = (record.get("files") or {}).get(MAP_FILE)
        path = locate(raw, root, run_dir, inside) if isinstance(raw, str) else None
        seen = seen_box(record.get("output_size"), info)
        side.entries[(key, record.get("method"), record.get("layer"), slot_of(record, by_class))] = Entry(
            record, path, seen=seen
        )
    if side.entries and all(e.path is None for e in side.entries.values()):
        raise UsageError(
            f"{role} {root}: its records name no raw maps (*_map.npy) found in the folder; make the run with --save-raw"
        )
    side.layers = list((info or {}).get("layers") or dict.fromkeys(k[2] for k in side.entries))
    return side


def seen_box(size, info: dict | None) -> tuple[int, int, int, int] | None:
    """The part of a ``size = (width, height)`` map that the run's model saw: its crop, placed on the photo
    (None: all of it, in the full view, or where run.json does not say)."""
    preprocess, view = (info or {}).get("preprocess"), (info or {}).get("view")
    if view != "crop" or not isinstance(preprocess, dict) or not size:
        return None
    try:
        width, height = int(size[0]), int(size[1])
        box = center_crop_in_photo(width, height, tuple(preprocess["input_size"]), preprocess["resize"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    return crop_in_map(box, width, height)


def center_crop_in_photo(width: int, height: int, input_size, resize) -> tuple[float, float, float, float]:
    """Where the crop view's resize and center crop takes the model's input from a ``width x height`` photo, as
    ``(x0, y0, x1, y1)`` in its pixels: ``gradcam_cli.maps.preprocess.geometry_for(...).crop_box_in_original()``
    (equal for every size, tested), computed here because that module loads torch, which a comparison of two
    folders does not need."""
    if isinstance(resize, int):  # the shorter side to ``resize``, the longer truncated (torchvision's rule)
        if width <= height:
            resized = resize, max(1, int(resize * height / width))
        else:
            resized = max(1, int(resize * width / height)), resize
    else:
        resized = int(resize[1]), int(resize[0])
    crop_h, crop_w = int(input_size[0]), int(input_size[1])
    left, top = int(round((resized[0] - crop_w) / 2.0)), int(round((resized[1] - crop_h) / 2.0))
    sx, sy = resized[0] / width, resized[1] / height
    return left / sx, top / sy, (left + crop_w) / sx, (top + crop_h) / sy


def crop_in_map(box, width: int, height: int) -> tuple[int, int, int, int]:
    """A crop ``(x0, y0, x1, y1)`` in photo pixels (floats) as whole pixels of a ``width x height`` map: every
    pixel it touches, within the map."""
    import math

    x0, y0, x1, y1 = box
    return (
        max(0, math.floor(x0)),
        max(0, math.floor(y0)),
        min(width, math.ceil(x1)),
        min(height, math.ceil(y1)),
    )


def _journalled(root: Path) -> set[str]:
    """Manifests a killed run left only in a journal."""
    return {p.name[1 : -len(".journal")] for p in root.glob(".results*.jsonl.journal")}


def locate(path: str, root: Path, run_dir: str | None, inside: dict | None = None) -> Path | None:
    """A file a record names, found in the folder wherever the folder is now: below the output folder as the
    run named it, else the longest tail of its path that exists in the folder (a folder moved, or restored
    from a CI cache). Only the folder's own files are read (``inside``: what is known of folders already)."""
    parts = Path(path).parts
    tails = []
    if run_dir:
        prefix = Path(run_dir).parts
        if parts[: len(prefix)] == prefix:
            tails.append(parts[len(prefix) :])
    tails += [parts[k:] for k in range(1, len(parts))] + [parts[-1:]]
    inside = {} if inside is None else inside
    for tail in tails:
        if not tail or ".." in tail:
            continue
        found = root.joinpath(*tail)
        if not found.is_file():
            continue
        if found.is_symlink():
            if _inside(found, root):
                return found
            continue
        if found.parent not in inside:
            inside[found.parent] = _inside(found.parent, root)
        if inside[found.parent]:
            return found
    return None


def _inside(path: Path, root: Path) -> bool:
    """Whether ``path``, every symbolic link followed, lies in ``root`` (itself resolved)."""
    try:
        path.resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return False
    return True

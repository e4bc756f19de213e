"""Ground-truth boxes: a CSV (``file,class,x0,y0,x1,y1``), a folder of Pascal VOC XML files, or a COCO
instances JSON.

Every box ends as ``(x0, y0, x1, y1)`` in the photo's own pixels with ``x1, y1`` exclusive (the
convention of the records' ``bbox``): a CSV gives exactly that; VOC's 1-based inclusive corners
``xmin..xmax`` become ``xmin - 1 .. xmax``; COCO's ``[x, y, w, h]`` becomes ``x .. x + w``. Classes are
kept as written (an index or a name) and resolved against the model's labels once it is loaded.

An input image is matched to its annotations by its path (relative paths in the annotations are
tried against the current folder and the annotation file's folder) or else by its file name, when
only one annotated file has that name.
"""

from __future__ import annotations

import csv
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

Box = tuple[float, float, float, float]
CSV_COLUMNS = ("file", "class", "x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class GroundTruth:
    """One annotated object: its class as written, its box, and where it was written (for messages)."""

    label: str
    box: Box
    where: str


@dataclass
class ImageTruth:
    """The objects annotated for one image, their classes resolved to the model's indices."""

    objects: list[GroundTruth]
    classes: list[int]  # one per object, filled by Annotations.resolve

    def class_indices(self) -> list[int]:
        return list(dict.fromkeys(self.classes))

    def boxes_of(self, index: int) -> list[Box]:
        return [o.box for o, c in zip(self.objects, self.classes) if c == index]


class Annotations:
    """Annotated files by path, with the lookup that matches input images to them."""

    def __init__(self, entries: dict[str, list[GroundTruth]], source: Path) -> None:
        self.source = source
        self.truths = {name: ImageTruth(objs, []) for name, objs in entries.items()}
        self._by_path: dict[str, str] = {}
        names: dict[str, set[str]] = {}
        base = source if source.is_dir() else source.parent
        for name in entries:
            for root in (Path.cwd(), base):
                self._by_path.setdefault(os.path.normcase(os.path.abspath(root / name)), name)
            names.setdefault(Path(name).name, set()).add(name)
        self._by_name = {n: next(iter(keys)) for n, keys in names.items() if len(keys) == 1}

    def __len__(self) -> int:
        return len(self.truths)

    def for_image(self, path: str) -> ImageTruth | None:
        """The annotations of the input image at ``path``, or ``None`` when it has none."""
        key = self._by_path.get(os.path.normcase(os.path.abspath(path))) or self._by_name.get(Path(path).name)
        return self.truths.get(key) if key is not None else None

    def resolve(self, labels: Sequence[str] | None, num_classes: int) -> None:
        """Class names or indices to the model's class indices; an unknown one is a usage error naming its row."""
        from ..model.labels import resolve_class

        cache: dict[str, int] = {}
        for truth in self.truths.values():
            truth.classes = []
            for obj in truth.objects:
                if obj.label not in cache:
                    try:
                        cache[obj.label] = resolve_class(obj.label, list(labels) if labels else None, num_classes)
                    except UsageError as err:
                        raise UsageError(f"--annotations {obj.where}: {str(err).removeprefix('--class ')}") from None
                truth.classes.append(cache[obj.label])


def read_annotations(path: str | os.PathLike) -> Annotations:
    """Read a CSV, a VOC folder (or one VOC file) or a COCO JSON; every problem is a one-line usage error."""
    source = Path(path)
    if not source.exists():
        raise UsageError(f"--annotations {source}: no such file or folder")
    suffix = source.suffix.lower()
    try:
        if source.is_dir():
            entries = _read_voc_folder(source)
        elif suffix == ".json":
            entries = _read_coco(source)
        elif suffix == ".xml":
            entries = _read_voc_files([source])
        else:
            entries = _read_csv(source)
    except UnicodeDecodeError:
        raise UsageError(f"--annotations {source}: not a text file") from None
    except OSError as err:
        raise UsageError(f"--annotations {source}: cannot read ({err.strerror or err})") from None
    if not entries:
        raise UsageError(f"--annotations {source}: no boxes found")
    return Annotations(entries, source)


def _box(values: Sequence[str | float], where: str) -> Box:
    try:
        x0, y0, x1, y1 = (float(v) for v in values)
    except (TypeError, ValueError):
        raise UsageError(f"--annotations {where}: box {list(values)} is not four numbers") from None
    if not all(map(_finite, (x0, y0, x1, y1))) or x1 <= x0 or y1 <= y0:
        raise UsageError(
            f"--annotations {where}: box {x0:g},{y0:g},{x1:g},{y1:g} is empty or not finite "
            "(x1 must exceed x0 and y1 exceed y0)"
        )
    return x0, y0, x1, y1


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


def _read_csv(path: Path) -> dict[str, list[GroundTruth]]:
    entries: dict[str, list[GroundTruth]] = {}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UsageError(
                f"--annotations {path}: the CSV needs the columns {','.join(CSV_COLUMNS)} (missing {','.join(missing)})"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not (row["file"] or "").strip():
                continue
            label = (row["class"] or "").strip()
            if not label:
                raise UsageError(f"--annotations {where}: no class given")
            box = _box([row[c] for c in CSV_COLUMNS[2:]], where)
            entries.setdefault(row["file"].strip(), []).append(GroundTruth(label, box, where))
    return entries


def _read_voc_folder(folder: Path) -> dict[str, list[GroundTruth]]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
    if not files:
        raise UsageError(f"--annotations {folder}: a folder must hold Pascal VOC .xml files; it has none")
    return _read_voc_files(files)


def _read_voc_files(files: Sequence[Path]) -> dict[str, list[GroundTruth]]:
    entries: dict[str, list[GroundTruth]] = {}
    for path in files:
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as err:
            raise UsageError(f"--annotations {path}: not valid XML ({err})") from None
        name = (root.findtext("filename") or "").strip()
        if not name:
            raise UsageError(f"--annotations {path}: no <filename>")
        for i, obj in enumerate(root.iter("object"), 1):
            where = f"{path}: object {i}"
            label = (obj.findtext("name") or "").strip()
            box = obj.find("bndbox")
            if not label or box is None:
                raise UsageError(f"--annotations {where}: needs <name> and <bndbox>")
            xmin, ymin, xmax, ymax = (box.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax"))
            try:
                corners = [float(xmin) - 1, float(ymin) - 1, float(xmax), float(ymax)]  # 1-based, inclusive
            except (TypeError, ValueError):
                raise UsageError(f"--annotations {where}: <bndbox> needs numeric xmin, ymin, xmax, ymax") from None
            entries.setdefault(name, []).append(GroundTruth(label, _box(corners, where), where))
    return entries


def _read_coco(path: Path) -> dict[str, list[GroundTruth]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        images = {img["id"]: img["file_name"] for img in data["images"]}
        categories = {cat["id"]: cat["name"] for cat in data["categories"]}
        annotations = data["annotations"]
    except json.JSONDecodeError as err:
        raise UsageError(f"--annotations {path}: not valid JSON ({err})") from None
    except (KeyError, TypeError) as err:
        raise UsageError(
            f"--annotations {path}: not a COCO instances file (needs images, categories and annotations; missing {err})"
        ) from None
    entries: dict[str, list[GroundTruth]] = {}
    for i, ann in enumerate(annotations):
        where = f"{path}: annotations[{i}]"
        try:
            name, label, (x, y, w, h) = images[ann["image_id"]], categories[ann["category_id"]], ann["bbox"]
        except (KeyError, TypeError, ValueError):
            raise UsageError(
                f"--annotations {where}: needs a known image_id and category_id and a bbox [x, y, w, h]"
            ) from None
        entries.setdefault(name, []).append(GroundTruth(label, _box([x, y, x + w, y + h], where), where))
    return entries

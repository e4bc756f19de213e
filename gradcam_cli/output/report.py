"""The HTML report of an output folder: ``index.html`` from its manifests, opened from ``file://``.

What it writes, all inside the output folder (nothing it shows lives outside it, so the
page makes no request that leaves the folder):

- ``index.html``: the page (Jinja2 template, its CSS and script inline): the run's options and
  versions, the evaluation's metrics and plots when ``gradcam evaluate`` left them there, the
  failed images with their errors, and a table of every result, sortable and filterable,
  with a detail view per image (all its outputs and sheets).
- ``report/data.js``: the table's rows, loaded by a script tag (``file://`` pages may not
  fetch JSON). The page renders rows in pages of a few hundred, so 10,000 results open as
  fast as 500.
- ``report/thumbs/``: one small JPEG per result, made once: a thumbnail newer than its
  picture is kept. A picture already as small as a thumbnail is used as it is.

The evaluation shown is what ``gradcam evaluate -o DIR`` wrote, with DIR the output folder
itself or its ``evaluation/`` folder: ``evaluation.jsonl`` as a table, and its plots.
"""

from __future__ import annotations

import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import UsageError
from .files import EVALUATION_PLOTS, EVALUATION_SUMMARY, write_bytes_atomic
from .runinfo import read_run_info

INDEX = "index.html"
ASSETS = "report"  # data.js and thumbs/ live here
THUMB_PX = 112  # longer side of a thumbnail (sharp at 56 CSS px on a 2x screen)
THUMB_SOURCES = ("overlay", "heatmap", "bbox", "guided", "sheet")  # the first a record has is its thumbnail
FAILED_LISTED = 1000  # failed images listed by name at the top; the table has all of them
TEMPLATES = Path(__file__).with_name("templates")


@dataclass
class ReportSummary:
    path: Path
    records: int
    images: int
    failed: int
    thumbs_made: int
    seconds: float = 0.0


@dataclass
class _Manifest:
    name: str
    records: list[dict]
    run: dict | None
    run_dir: str | None = field(default=None)  # the output dir as the run named it, to map its file paths


def manifests(output_dir: Path) -> list[_Manifest]:
    """``results.jsonl`` and the shards' ``results.I-of-N.jsonl``, with their ``run.json``."""
    paths = sorted(output_dir.glob("results*.jsonl"))
    found = []
    for path in paths:
        records = []
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as err:
            raise UsageError(f"{path}: cannot read ({err.strerror or err})") from None
        for line in lines:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a crash; the rest of the manifest still counts
            if isinstance(rec, dict) and isinstance(rec.get("input"), str):
                records.append(rec)
        run = read_run_info(output_dir, path.name)
        found.append(_Manifest(path.name, records, run, run.get("output_dir") if run else None))
    return found


class _Locator:
    """Maps the file paths in records (as the run wrote them, relative to its working directory or
    absolute) to paths relative to the output folder, wherever the folder is now."""

    def __init__(self, output_dir: Path) -> None:
        self.root = output_dir
        self.resolved = output_dir.resolve()
        self.by_parent: dict[tuple[str, str | None], PurePosixPath | None] = {}

    def relative(self, path: str, run_dir: str | None) -> str | None:
        p = Path(path)
        key = (str(p.parent), run_dir)
        if key not in self.by_parent:
            self.by_parent[key] = self._parent(p, run_dir)
        parent = self.by_parent[key]
        return None if parent is None else str(parent / p.name)

    def _parent(self, p: Path, run_dir: str | None) -> PurePosixPath | None:
        parent = p.parent
        if run_dir is not None:  # the run wrote its paths below the folder as it named it
            prefix = Path(run_dir).parts
            if parent.parts[:len(prefix)] == prefix and ".." not in parent.parts[len(prefix):]:
                return PurePosixPath(*parent.parts[len(prefix):])
        try:  # no run.json: the path as seen from here
            return PurePosixPath(*(Path.cwd() / parent).resolve().relative_to(self.resolved).parts)
        except ValueError:
            pass
        parts = parent.parts[1:] if parent.is_absolute() else parent.parts
        for k in range(len(parts) + 1):  # the folder was moved: the longest tail that exists here
            tail = PurePosixPath(*parts[k:])
            if ".." not in tail.parts and (self.root / tail / p.name).exists():
                return tail
        return None


def build_report(output_dir: Path, workers: int | None = None) -> ReportSummary:
    """Write ``index.html`` (and ``report/``) for the results in ``output_dir``."""
    start = time.perf_counter()
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise UsageError(f"{output_dir}: no such folder")
    found = manifests(output_dir)
    if not found:
        raise UsageError(f"{output_dir}: no results.jsonl here; run `gradcam explain ... -o {output_dir}` first")
    images, rows, thumbs = _rows(found, _Locator(output_dir), output_dir)
    ready, made = make_thumbnails(output_dir, thumbs, workers)
    for row in rows:
        if row.get("t") in thumbs and row["t"] not in ready:
            row["t"] = None
    data = {"images": images, "rows": rows}
    assets = output_dir / ASSETS
    write_bytes_atomic(assets / "data.js", _as_script(data))
    page = render_page(output_dir, found, images, rows)
    index = output_dir / INDEX
    write_bytes_atomic(index, page.encode("utf-8"))
    failed = sum(1 for r in rows if r.get("err"))
    return ReportSummary(index, len(rows) - failed, len(images), failed, made, time.perf_counter() - start)


def _as_script(data: dict) -> bytes:
    """The rows as a script that sets ``window.GRADCAM_REPORT`` (``</`` escaped, so no string can end a tag)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return ("window.GRADCAM_REPORT=" + text + ";\n").encode("utf-8")


def _rows(found: list[_Manifest], locator: _Locator, output_dir: Path) -> tuple[list[dict], list[dict], dict]:
    """The images (inputs), one row per record, and the thumbnails to make (thumbnail -> picture)."""
    images: list[dict] = []
    index: dict[str, int] = {}
    rows: list[dict] = []
    thumbs: dict[str, str] = {}
    for manifest in found:
        for rec in manifest.records:
            i = index.get(rec["input"])
            if i is None:
                i = index[rec["input"]] = len(images)
                images.append({"in": rec["input"]})
            if "error" in rec:
                rows.append({"i": i, "err": str(rec["error"])})
                continue
            files = {kind: rel for kind, path in (rec.get("files") or {}).items()
                     if isinstance(path, str) and (rel := locator.relative(path, manifest.run_dir)) is not None
                     and (output_dir / rel).is_file()}
            rows.append(_row(rec, i, files, _thumbnail(files, rec, thumbs)))
    _short_names(images)
    return images, rows, thumbs


def _short_names(images: list[dict]) -> None:
    """Each input as shown in the table (``d``): its path below the folder all inputs share."""
    try:
        common = os.path.commonpath([os.path.dirname(image["in"]) for image in images])
    except ValueError:  # absolute and relative paths mixed: show them whole
        return
    for image in images:
        image["d"] = os.path.relpath(image["in"], common) if common else image["in"]


def _thumbnail(files: dict[str, str], rec: dict, thumbs: dict[str, str]) -> str | None:
    """The record's thumbnail (planned in ``thumbs``): of its first picture in :data:`THUMB_SOURCES` order."""
    kind = next((k for k in THUMB_SOURCES if k in files and files[k].endswith(".png")), None)
    if kind is None:
        return None
    size = rec.get("image_size") or [THUMB_PX + 1]
    if kind != "sheet" and max(size) <= THUMB_PX:
        return files[kind]  # already thumbnail-sized: shown as it is
    thumb = f"{ASSETS}/thumbs/{PurePosixPath(files[kind]).with_suffix('.jpg')}"
    thumbs[thumb] = files[kind]
    return thumb


def _row(rec: dict, i: int, files: dict[str, str], thumb: str | None) -> dict:
    """One table row (short keys: the data file of 10,000 rows stays a few MB)."""
    width, height = (rec.get("image_size") or [0, 0])[:2]
    bbox = rec.get("bbox")
    boxes = rec.get("boxes") or []
    area = (bbox[2] - bbox[0]) * (bbox[3] - bbox[1]) / (width * height) if bbox and width * height else None
    row = {"i": i, "k": rec.get("class_index"), "c": rec.get("class_name"), "r": rec.get("rank"),
           "p": rec.get("probability"), "m": rec.get("method"), "l": rec.get("layer"), "g": rec.get("grid"),
           "e": bool(rec.get("map_empty")), "s": boxes[0].get("share") if boxes else None,
           "a": None if area is None else round(area, 4), "n": len(boxes), "b": bbox, "f": files, "t": thumb}
    if rec.get("warnings"):
        row["w"] = [str(w) for w in rec["warnings"]]
    stats = rec.get("map_stats", rec.get("stats"))
    if isinstance(stats, dict):  # per-map statistics, where a run recorded them
        row["x"] = {str(k): v for k, v in stats.items() if isinstance(v, (int, float, str, bool))}
    return row


def make_thumbnails(output_dir: Path, thumbs: dict[str, str], workers: int | None = None) -> tuple[set[str], int]:
    """Make the thumbnails that are missing or older than their picture; returns those that now exist
    and how many were made.

    Decoding, resizing and encoding run in OpenCV, which releases the GIL, so threads use every core.
    """
    todo, ready = [], set()
    for thumb, source in thumbs.items():
        t, src = output_dir / thumb, output_dir / source
        try:
            if t.stat().st_mtime_ns >= src.stat().st_mtime_ns:
                ready.add(thumb)
                continue
        except OSError:
            pass
        todo.append((t, src, thumb))
    made = 0
    if todo:
        with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
            for thumb, ok in zip((job[2] for job in todo), pool.map(lambda job: _make_thumbnail(job[0], job[1]), todo)):
                if ok:
                    ready.add(thumb)
                    made += 1
    return ready, made


def _make_thumbnail(thumb: Path, source: Path) -> bool:
    import cv2

    picture = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if picture is None:
        return False  # unreadable: the row shows no thumbnail rather than a broken one
    h, w = picture.shape[:2]
    scale = THUMB_PX / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        picture = cv2.resize(picture, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", picture, [cv2.IMWRITE_JPEG_QUALITY, 82])
    if not ok:
        return False
    write_bytes_atomic(thumb, data.tobytes())
    return True


# The columns of the evaluation table: (key in evaluation.jsonl, heading); dict values are read at IoU 0.5.
_EVALUATION_COLUMNS = (("images", "images"), ("samples", "samples"), ("view", "view"), ("top1_loc", "top-1 loc"),
                       ("gt_known_loc", "GT-known loc"), ("mean_iou", "mIoU"), ("maxboxacc", "MaxBoxAcc"),
                       ("maxboxacc_v2", "MaxBoxAccV2"), ("best_threshold", "best threshold"),
                       ("pointing_game", "pointing game"), ("deletion_auc", "deletion AUC"),
                       ("insertion_auc", "insertion AUC"), ("road", "ROAD"), ("average_drop", "average drop"),
                       ("increase_in_confidence", "increase in confidence"), ("sanity_last", "sanity ρ (all randomised)"))


def evaluation(output_dir: Path) -> dict | None:
    """What ``gradcam evaluate`` left in the folder or in its ``evaluation/`` folder: one row per method and
    layer from ``evaluation.jsonl``, and its plots; None when there is neither."""
    for folder in (output_dir, output_dir / "evaluation"):
        summary = folder / EVALUATION_SUMMARY
        plots = [folder / name for name in EVALUATION_PLOTS if (folder / name).is_file()]
        if summary.is_file() or plots:
            break
    else:
        return None
    tables = []
    if summary.is_file():
        try:
            rows = [json.loads(line) for line in summary.read_text(encoding="utf-8").splitlines() if line.strip()]
            tables.append(_evaluation_table(rows))
        except (OSError, ValueError, AttributeError, TypeError) as err:
            tables.append({"title": "metrics", "columns": ["value"],
                           "rows": [["error", f"cannot read {EVALUATION_SUMMARY}: {err}"]]})
    source = summary if summary.is_file() else folder
    return {"source": source.relative_to(output_dir).as_posix(), "tables": tables,
            "plots": [{"src": p.relative_to(output_dir).as_posix(), "name": p.stem} for p in plots]}


def _evaluation_table(rows: list[dict]) -> dict:
    """One row per method and layer; columns no row has a value for are left out."""
    def value(row: dict, key: str):
        if key == "sanity_last":
            return (row.get("sanity") or [{}])[-1].get("spearman")
        found = row.get(key)
        return found.get("0.5") if isinstance(found, dict) else found

    columns = [(k, h) for k, h in _EVALUATION_COLUMNS if any(value(r, k) is not None for r in rows)]
    return {"title": "per method and layer (localisation at IoU 0.5)", "columns": [h for _, h in columns],
            "rows": [[f"{r.get('method')} · {r.get('layer')}", *(_shown(value(r, k)) for k, _ in columns)]
                     for r in rows]}


def _scalar(value) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _shown(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_shown(v) for v in value)
    return "" if value is None else str(value)


def _run_rows(run: dict) -> list[tuple[str, str]]:
    """The run's information as label/value rows for the page's header."""
    rows = [(label, run[key]) for key, label in (("started", "started"), ("model", "model"), ("weights", "weights"),
                                                  ("device", "device")) if run.get(key)]
    if run.get("command"):
        import shlex

        rows.insert(0, ("command", shlex.join(run["command"])))
    if run.get("layers"):
        rows.append(("layers", ", ".join(run["layers"])))
    for group, values in (run.get("options") or {}).items():
        if isinstance(values, dict):
            shown = [f"{k}={_shown(v) if _scalar(v) or isinstance(v, list) else json.dumps(v)}"
                     for k, v in values.items() if v not in (None, (), [], "")]
            rows.append((f"{group} options", " · ".join(shown)))
    versions = run.get("versions") or {}
    if versions:
        rows.append(("versions", " · ".join(f"{k} {v}" for k, v in versions.items())))
    return [(label, str(value)) for label, value in rows]


def render_page(output_dir: Path, found: list[_Manifest], images: list[dict], rows: list[dict]) -> str:
    """``index.html`` from the Jinja2 templates (autoescaped: every name from the records is text, never markup)."""
    from datetime import datetime

    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    failed = [(images[r["i"]]["in"], r["err"]) for r in rows if r.get("err")]
    explained = len({r["i"] for r in rows if not r.get("err")})
    assets = {name: Markup((TEMPLATES / name).read_text(encoding="utf-8"))
              for name in ("report.css", "report.js")}
    return env.get_template("index.html.j2").render(
        title=f"gradcam report: {output_dir.resolve().name}",
        generated=datetime.now().astimezone().isoformat(timespec="seconds"),
        counts={"images": len(images), "explained": explained, "results": len(rows) - len(failed),
                "failed": len(failed)},
        runs=[{"name": m.name, "rows": _run_rows(m.run)} for m in found if m.run],
        manifests=[m.name for m in found],
        evaluation=evaluation(output_dir),
        failed=failed[:FAILED_LISTED], failed_more=max(0, len(failed) - FAILED_LISTED),
        data_src=f"{ASSETS}/data.js", css=assets["report.css"], script=assets["report.js"],
    )

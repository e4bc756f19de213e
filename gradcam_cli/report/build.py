"""The HTML report of an output folder: ``index.html`` from its manifests, opened from ``file://``.

What it writes, all inside the output folder (nothing it shows lives outside it, so the
page makes no request that leaves the folder):

- ``index.html``: the page (Jinja2 template, its CSS and script inline): the run's options and
  versions, the evaluation's metrics and plots when ``gradcam evaluate`` left them there, the
  failed images with their errors, and a table of every result, sortable and filterable,
  with a detail view per image (all its outputs and sheets).
- ``report/data-<hash>.js``: the table's rows, loaded by a script tag (``file://`` pages may not
  fetch JSON), named by a hash of its content so that ``index.html`` and its rows are replaced
  together (see `_write_together`). The page renders rows in pages of a few hundred, so
  10,000 results open as fast as 500.
- ``report/thumbs/``: one small JPEG per result, made once: a thumbnail newer than its
  picture is kept. A picture already as small as a thumbnail is used as it is.

The evaluation shown is what ``gradcam evaluate -o DIR`` wrote, with DIR the output folder
itself or its ``evaluation/`` folder: ``evaluation.jsonl`` as a table, and its plots. Likewise the
comparison is what ``gradcam compare -o DIR`` wrote there or in ``compare/`` (`.compare`): the
verdict and the worst pairs side by side; a folder with a comparison and no results is a report too.

File names are data, never markup or URL syntax: text goes into the page through Jinja's
autoescape and ``textContent``, every link and picture is a relative URL made here
(`.links.relative_url`), only the folder's own files are shown or linked
(`.links.FolderFiles`: a symbolic link to a file elsewhere is not), a manifest that is a
symbolic link is refused, and a Content-Security-Policy lets the page load nothing but its own
inline style and script, its data script and its pictures. ``docs/report-security.md`` says more.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import UsageError
from ..output.files import EVALUATION_PLOTS, EVALUATION_SUMMARY, write_bytes_atomic
from ..output.runinfo import read_run_info
from .compare import comparison
from .links import FolderFiles, relative_url

INDEX = "index.html"
ASSETS = "report"  # the data script and thumbs/ live here
DATA_FILE = re.compile(r"data(-[0-9a-f]{16})?\.js")  # this report's data scripts (data.js: before they were hashed)
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
    """``results.jsonl`` and the shards' ``results.I-of-N.jsonl``, with their ``run.json``; the records a killed
    run left in a manifest's journal are folded in (``io.manifest``).

    A manifest is read only when it is a regular file of the folder: a symbolic link could name any file
    (another folder's results, a device, a pipe that never ends), so one is refused, naming it.
    """
    from ..io.manifest import journal_path, read_records

    names = {p.name for p in output_dir.glob("results*.jsonl")}
    names |= {p.name[1 : -len(".journal")] for p in output_dir.glob(".results*.jsonl.journal")}
    found = []
    for name in sorted(names):
        path = output_dir / name
        try:
            for checked in (path, journal_path(path)):
                if os.path.lexists(checked):
                    _refuse_special(checked)
            records = [r for r in read_records(path) if isinstance(r.get("input"), str)]
        except OSError as err:
            raise UsageError(f"{path}: cannot read ({err.strerror or err})") from None
        run = read_run_info(output_dir, name)
        found.append(_Manifest(name, records, run, run.get("output_dir") if run else None))
    return found


def _refuse_special(path: Path) -> None:
    mode = os.lstat(path).st_mode
    if stat.S_ISLNK(mode):
        raise UsageError(
            f"{path}: a symbolic link; the report reads only manifests that are files of the folder itself"
        )
    if not stat.S_ISREG(mode):
        raise UsageError(f"{path}: not a regular file")


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
            if parent.parts[: len(prefix)] == prefix and ".." not in parent.parts[len(prefix) :]:
                return PurePosixPath(*parent.parts[len(prefix) :])
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
    own = FolderFiles(output_dir)
    compared = comparison(output_dir, own)
    if not found and compared is None:
        raise UsageError(f"{output_dir}: no results.jsonl here; run `gradcam explain ... -o {output_dir}` first")
    images, rows, thumbs = _rows(found, _Locator(output_dir), own)
    ready, made = make_thumbnails(output_dir, thumbs, workers)
    _link_thumbnails(rows, thumbs, ready, own)
    data = _as_script({"images": images, "rows": rows})
    data_rel = f"{ASSETS}/data-{hashlib.sha256(data).hexdigest()[:16]}.js"
    page = render_page(output_dir, found, images, rows, data_src=relative_url(data_rel), own=own, compared=compared)
    _write_together(output_dir, data_rel, data, page.encode("utf-8"))
    failed = sum(1 for r in rows if r.get("err"))
    return ReportSummary(output_dir / INDEX, len(rows) - failed, len(images), failed, made, time.perf_counter() - start)


def _write_together(output_dir: Path, data_rel: str, data: bytes, page: bytes) -> None:
    """The data script, then ``index.html`` naming it: both, or neither.

    Each file is written atomically, and the data file's name is its content's hash, so writing it
    changes nothing an existing page uses; the rename of ``index.html`` is the one step that makes
    the new report the folder's. When that write fails (a full disk), the new data file is removed
    again and the folder keeps the report it had, or none. Once ``index.html`` is in place, the data
    files it no longer names are removed.
    """
    data_path = output_dir / data_rel
    existed = data_path.is_file()  # the rows of the report already here: that page uses this very file
    if not existed:
        write_bytes_atomic(data_path, data)
    try:
        write_bytes_atomic(output_dir / INDEX, page)
    except BaseException:
        if not existed:
            data_path.unlink(missing_ok=True)
        raise
    for old in data_path.parent.iterdir():
        if old != data_path and DATA_FILE.fullmatch(old.name):
            try:
                old.unlink()
            except OSError:
                pass  # an old data file left behind is unused: the page names only its own


def _link_thumbnails(rows: list[dict], thumbs: dict[str, str], ready: set[str], own: FolderFiles) -> None:
    """Each row's thumbnail (a path until now) as a URL: a thumbnail that exists now, or the picture itself
    where that is thumbnail-sized; None where there is neither."""
    for row in rows:
        rel = row.get("t")
        if rel is not None:
            row["t"] = relative_url(rel) if (rel not in thumbs or rel in ready) and own.owns(rel) else None


def _as_script(data: dict) -> bytes:
    """The rows as a script that sets ``window.GRADCAM_REPORT`` (``</`` escaped, so no string can end a tag;
    U+2028 and U+2029 escaped, which JavaScript before ES2019 did not allow in a string)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    text = text.replace("</", "<\\/").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return ("window.GRADCAM_REPORT=" + text + ";\n").encode("utf-8")


def _rows(found: list[_Manifest], locator: _Locator, own: FolderFiles) -> tuple[list[dict], list[dict], dict]:
    """The images (inputs), one row per record, and the thumbnails to make (thumbnail -> picture).

    A row keeps only the files that are the folder's own (a path that leads out of it, or a symbolic link
    to a file elsewhere, is dropped; the row's text stays), each as a relative URL (``f``); its thumbnail
    (``t``) is still a path, made a URL by `_link_thumbnails` once the thumbnails exist."""
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
            files = {
                kind: rel
                for kind, path in (rec.get("files") or {}).items()
                if isinstance(path, str)
                and (rel := locator.relative(path, manifest.run_dir)) is not None
                and own.owns(rel)
            }
            rows.append(
                _row(rec, i, {kind: relative_url(rel) for kind, rel in files.items()}, _thumbnail(files, rec, thumbs))
            )
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
    """The record's thumbnail (planned in ``thumbs``): of its first picture in `THUMB_SOURCES` order."""
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
    row = {
        "i": i,
        "k": rec.get("class_index"),
        "c": rec.get("class_name"),
        "r": rec.get("rank"),
        "p": rec.get("probability"),
        "m": rec.get("method"),
        "l": rec.get("layer"),
        "g": rec.get("grid"),
        "e": bool(rec.get("map_empty")),
        "s": boxes[0].get("share") if boxes else None,
        "a": None if area is None else round(area, 4),
        "n": len(boxes),
        "b": bbox,
        "f": files,
        "t": thumb,
    }
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
_EVALUATION_COLUMNS = (
    ("images", "images"),
    ("samples", "samples"),
    ("view", "view"),
    ("top1_loc", "top-1 loc"),
    ("gt_known_loc", "GT-known loc"),
    ("mean_iou", "mIoU"),
    ("maxboxacc", "MaxBoxAcc"),
    ("maxboxacc_v2", "MaxBoxAccV2"),
    ("best_threshold", "best threshold"),
    ("pointing_game", "pointing game"),
    ("deletion_auc", "deletion AUC"),
    ("insertion_auc", "insertion AUC"),
    ("road", "ROAD"),
    ("average_drop", "average drop"),
    ("increase_in_confidence", "increase in confidence"),
    ("sanity_last", "sanity ρ (all randomised)"),
)


def evaluation(output_dir: Path, own: FolderFiles | None = None) -> dict | None:
    """What ``gradcam evaluate`` left in the folder or in its ``evaluation/`` folder: one row per method and
    layer from ``evaluation.jsonl``, and its plots; None when there is neither. Only the folder's own files
    count (``own``): a symbolic link to a file elsewhere is not read or shown."""
    own = own or FolderFiles(output_dir)
    for folder in ("", "evaluation"):
        summary = PurePosixPath(folder, EVALUATION_SUMMARY)
        plots = [PurePosixPath(folder, name) for name in EVALUATION_PLOTS if own.owns(PurePosixPath(folder, name))]
        if own.owns(summary) or plots:
            break
    else:
        return None
    tables = []
    if own.owns(summary):
        try:  # lines end at \n only, as in the manifests
            text = (output_dir / summary).read_bytes().decode("utf-8")
            rows = [json.loads(line) for line in text.split("\n") if line.strip()]
            tables.append(_evaluation_table(rows))
        except (OSError, ValueError, AttributeError, TypeError) as err:
            tables.append(
                {
                    "title": "metrics",
                    "columns": ["value"],
                    "rows": [["error", f"cannot read {EVALUATION_SUMMARY}: {err}"]],
                }
            )
    source = summary if own.owns(summary) else PurePosixPath(folder or ".")
    return {"source": str(source), "tables": tables, "plots": [{"src": relative_url(p), "name": p.stem} for p in plots]}


def _evaluation_table(rows: list[dict]) -> dict:
    """One row per method and layer; columns no row has a value for are left out."""

    def value(row: dict, key: str):
        if key == "sanity_last":
            return (row.get("sanity") or [{}])[-1].get("spearman")
        found = row.get(key)
        return found.get("0.5") if isinstance(found, dict) else found

    columns = [(k, h) for k, h in _EVALUATION_COLUMNS if any(value(r, k) is not None for r in rows)]
    return {
        "title": "per method and layer (localisation at IoU 0.5)",
        "columns": [h for _, h in columns],
        "rows": [[f"{r.get('method')} · {r.get('layer')}", *(_shown(value(r, k)) for k, _ in columns)] for r in rows],
    }


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
    rows = [
        (label, run[key])
        for key, label in (("started", "started"), ("model", "model"), ("weights", "weights"), ("device", "device"))
        if run.get(key)
    ]
    if run.get("command"):
        import shlex

        rows.insert(0, ("command", shlex.join(run["command"])))
    if run.get("layers"):
        rows.append(("layers", ", ".join(run["layers"])))
    for group, values in (run.get("options") or {}).items():
        if isinstance(values, dict):
            shown = [
                f"{k}={_shown(v) if _scalar(v) or isinstance(v, list) else json.dumps(v)}"
                for k, v in values.items()
                if v not in (None, (), [], "")
            ]
            rows.append((f"{group} options", " · ".join(shown)))
    versions = run.get("versions") or {}
    if versions:
        rows.append(("versions", " · ".join(f"{k} {v}" for k, v in versions.items())))
    return [(label, str(value)) for label, value in rows]


def content_security_policy(script: str, css: str) -> str:
    """What the page may load: its inline script and style, each allowed by its SHA-256 (so no other inline
    script, event handler or javascript: URL runs), and scripts and pictures from file: URLs (the data
    script and the folder's pictures); nothing else, so no request reaches a network. 'self' covers the
    files where the page is served over HTTP and, in Chromium, on file://; file: covers browsers whose
    'self' does not match file: URLs (a file:// page's origin is opaque)."""

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii") + "'"

    return (
        f"default-src 'none'; script-src 'self' file: {digest(script)}; style-src {digest(css)}; "
        "img-src 'self' file:; base-uri 'none'; form-action 'none'"
    )


def render_page(
    output_dir: Path,
    found: list[_Manifest],
    images: list[dict],
    rows: list[dict],
    *,
    data_src: str,
    own: FolderFiles | None = None,
    compared: dict | None = None,
) -> str:
    """``index.html`` from the Jinja2 templates (autoescaped: every name from the records is text, never markup),
    loading its rows from ``data_src`` (a URL relative to the page)."""
    from datetime import datetime

    import jinja2
    from markupsafe import Markup

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    failed = [(images[r["i"]]["in"], r["err"]) for r in rows if r.get("err")]
    explained = len({r["i"] for r in rows if not r.get("err")})
    # The inline style and script go in as they are, between their tags: the policy allows them by their hash.
    assets = {name: Markup((TEMPLATES / name).read_text(encoding="utf-8")) for name in ("report.css", "report.js")}
    return env.get_template("index.html.j2").render(
        title=f"gradcam report: {output_dir.resolve().name}",
        generated=datetime.now().astimezone().isoformat(timespec="seconds"),
        counts={
            "images": len(images),
            "explained": explained,
            "results": len(rows) - len(failed),
            "failed": len(failed),
        },
        runs=[{"name": m.name, "rows": _run_rows(m.run)} for m in found if m.run],
        manifests=[m.name for m in found],
        evaluation=evaluation(output_dir, own),
        comparison=compared,
        failed=failed[:FAILED_LISTED],
        failed_more=max(0, len(failed) - FAILED_LISTED),
        data_src=data_src,
        css=assets["report.css"],
        script=assets["report.js"],
        csp=content_security_policy(str(assets["report.js"]), str(assets["report.css"])),
    )

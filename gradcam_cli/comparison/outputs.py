"""What ``gradcam compare`` writes into its output folder: ``pairs.csv`` (every pair), ``compare.json`` (the
summary, and the pairs that have pictures, worst first) and ``pictures/``: for each of the worst pairs the
baseline's map, the candidate's and their absolute difference, which the HTML report shows side by side."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

from ..errors import UsageError
from ..output.files import write_all_atomic
from .metrics import METRICS
from .pairs import Pair, Thumbs
from .result import CompareResult

CSV_FILE, SUMMARY_FILE, PICTURES = "pairs.csv", "compare.json", "pictures"
PICTURE_KINDS = ("baseline", "candidate", "difference")
MAP_COLORMAP, DIFFERENCE_COLORMAP = "jet", "inferno"  # the difference: black where the maps agree
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_OURS = re.compile(r"\d{4}_.+_(baseline|candidate|difference)\.png")  # pictures this module writes


def check_output_folder(output_dir: Path, *sides: str) -> None:
    """The output folder must be neither compared folder (its pictures would mix with the run's)."""
    resolved = output_dir.resolve()
    for side in sides:
        if Path(side).resolve() == resolved:
            raise UsageError(f"--output-dir {output_dir}: is a compared folder; give another (e.g. {side}/compare)")


def pairs_csv(result: CompareResult) -> bytes:
    """Every pair (worst first), then each explanation only one run has."""
    buf = io.StringIO()
    rows = [p.row() for p in result.pairs]
    header = list(rows[0]) if rows else _header()
    writer = csv.DictWriter(buf, fieldnames=[*header, "unpaired"], lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "unpaired": ""})
    for item in result.unpaired:
        reason = f"only in the {item.role}: {item.reason}"
        writer.writerow({k: v for k, v in item.row().items() if k in header} | {"unpaired": reason})
    return buf.getvalue().encode("utf-8")


def _header() -> list[str]:
    base = ["input", "method", "layer", "candidate_layer", "slot", "baseline_class", "baseline_class_name"]
    return [*base, "candidate_class", "candidate_class_name", *METRICS, "failed", "failures", "note"]


def picture_name(rank: int, pair: Pair, kind: str) -> str:
    stem = Path(pair.input).stem
    parts = [f"{rank:04d}", stem, pair.method, pair.layer, pair.slot, kind]
    return "_".join(_UNSAFE.sub("-", p) for p in parts) + ".png"


def render_pictures(worst: list[tuple[Pair, Thumbs]]) -> tuple[dict[str, bytes], list[dict]]:
    """The worst pairs' pictures (name -> PNG bytes), and each pair's row with its pictures' paths."""
    import cv2

    from ..output.encode import encode_png

    pictures, shown = {}, []
    for rank, (pair, thumbs) in enumerate(worst, 1):
        files = {}
        for kind in PICTURE_KINDS:
            colormap = DIFFERENCE_COLORMAP if kind == "difference" else MAP_COLORMAP
            # The levels are uint8 already: OpenCV's table, as the heatmaps use it (output.render loads torch).
            bgr = cv2.applyColorMap(getattr(thumbs, kind), getattr(cv2, f"COLORMAP_{colormap.upper()}"))
            name = picture_name(rank, pair, kind)
            pictures[name] = encode_png(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            files[kind] = f"{PICTURES}/{name}"
        shown.append({**pair.row(), "files": files})
    return pictures, shown


def write_outputs(output_dir: Path, result: CompareResult, worst: list[tuple[Pair, Thumbs]]) -> None:
    """The CSV, the pictures and ``compare.json`` (each file atomic; pictures of an earlier comparison that this
    one does not show are removed)."""
    pictures, shown = render_pictures(worst)
    folder = output_dir / PICTURES
    result.outputs.update({"csv": str(output_dir / CSV_FILE), "summary": str(output_dir / SUMMARY_FILE)})
    if pictures:
        result.outputs["pictures"] = str(folder)
    summary = {**result.summary(), "pictures": shown}
    try:
        write_all_atomic({folder / name: data for name, data in pictures.items()})
        write_all_atomic(
            {
                output_dir / CSV_FILE: pairs_csv(result),
                output_dir / SUMMARY_FILE: json.dumps(summary, indent=1, ensure_ascii=False).encode("utf-8"),
            }
        )
    except OSError as err:
        raise UsageError(f"--output-dir {output_dir}: cannot write ({err.strerror or err})") from None
    if folder.is_dir():
        for old in folder.iterdir():
            if old.name not in pictures and _OURS.fullmatch(old.name) and old.is_file():
                old.unlink(missing_ok=True)

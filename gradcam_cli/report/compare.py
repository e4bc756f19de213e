"""The report's comparison section: what ``gradcam compare -o DIR`` left in the folder (or in its ``compare/``
folder): the verdict, the means, the warnings, and the worst pairs side by side (baseline | candidate |
absolute difference of the maps), worst first.

As everywhere in the report, every picture is the folder's own file (`.links.FolderFiles`), linked by a relative
URL (`.links.relative_url`), and every text goes into the page through the template's autoescape.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath

from .links import FolderFiles, relative_url

SUMMARY = "compare.json"  # gradcam_cli.comparison.outputs.SUMMARY_FILE (the report does not import the comparison)
FOLDERS = ("", "compare")
KINDS = ("baseline", "candidate", "difference")
METRICS = ("spearman", "ssim", "top10_iou", "top25_iou", "box_iou", "same_class", "probability_change")


def comparison(output_dir: Path, own: FolderFiles | None = None) -> dict | None:
    """The comparison found in the folder or its ``compare/`` folder (None when there is none); a summary that
    cannot be read is shown as an error."""
    own = own or FolderFiles(output_dir)
    folder = next((f for f in FOLDERS if own.owns(PurePosixPath(f, SUMMARY))), None)
    if folder is None:
        return None
    source = PurePosixPath(folder, SUMMARY)
    try:  # JSON as the comparison wrote it; anything else is shown as an error, never as markup
        data = json.loads((output_dir / source).read_bytes().decode("utf-8"))
        return _section(data, folder, own) | {"source": str(source)}
    except (OSError, ValueError, AttributeError, TypeError, KeyError) as err:
        return {"source": str(source), "error": f"cannot read {SUMMARY}: {err}"}


def _side(value) -> str:
    if not isinstance(value, dict):
        return str(value)
    return " · ".join(str(value[k]) for k in ("run", "model", "weights") if value.get(k))


def _number(value) -> str:
    return "" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _section(data: dict, folder: str, own: FolderFiles) -> dict:
    means = data.get("means") or {}
    return {
        "error": None,
        "verdict": "passed" if data["passed"] else "FAILED",
        "passed": bool(data["passed"]),
        "judged": bool(data.get("bounds") or data.get("mean_bounds")),
        "sides": [("baseline", _side(data.get("baseline"))), ("candidate", _side(data.get("candidate")))],
        "counts": f"{data.get('pairs', 0)} pairs, {data.get('failed_pairs', 0)} below the bounds, "
        f"{sum(1 for u in data.get('unpaired') or [] if u.get('role') == 'baseline')} missing in the candidate",
        "bounds": ", ".join(
            map(str, [*(data.get("bounds") or []), *(f"mean {b}" for b in data.get("mean_bounds") or [])])
        ),
        "means": [(m, _number(means.get(m))) for m in METRICS if m in means],
        "warnings": [str(w) for w in data.get("warnings") or []],
        "metrics": list(METRICS),
        "pairs": [_pair(row, folder, own) for row in data.get("pictures") or []],
    }


def _pair(row: dict, folder: str, own: FolderFiles) -> dict:
    """One pair's row: its name, its metrics, and its three pictures (those that are the folder's own files)."""
    pictures = []
    for kind in KINDS:
        rel = PurePosixPath(folder, str((row.get("files") or {}).get(kind, "")))
        pictures.append({"kind": kind, "src": relative_url(rel) if own.owns(rel) else None})
    classes = f"{row.get('baseline_class_name') or row.get('baseline_class')}"
    if row.get("candidate_class") != row.get("baseline_class"):
        classes += f" → {row.get('candidate_class_name') or row.get('candidate_class')}"
    return {
        "name": f"{row.get('input')} · {row.get('method')} · {row.get('layer')} · {row.get('slot')}",
        "classes": classes,
        "failed": bool(row.get("failed")),
        "failures": str(row.get("failures") or ""),
        "numbers": [_number(row.get(m)) for m in METRICS],
        "pictures": pictures,
    }

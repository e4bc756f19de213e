"""The measurements summarised: one object per (method, layer), the per-image rows, the sweep table.

Accuracies are fractions in [0, 1]; a metric that was not measured is ``None``.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..output import files
from .localisation import IOU_THRESHOLDS, SWEEP, box_accuracy, max_box_acc, max_box_acc_v2
from .measurements import Key, Measurements

# The file names live with the other output names (the HTML report reads these files back).
SUMMARY_FILE, PER_IMAGE_FILE, SWEEP_FILE = files.EVALUATION_SUMMARY, files.EVALUATION_PER_IMAGE, files.EVALUATION_SWEEP
PLOT_FILES = files.EVALUATION_PLOTS


def _mean(values: Sequence[float]) -> float | None:
    return _num(float(np.mean(values))) if len(values) else None


def _num(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), 6)


def _by_delta(values: dict[float, float | None]) -> dict[str, float | None]:
    return {f"{d:.1f}": _num(v) if v is not None else None for d, v in values.items()}


def top1(m: Measurements, key: Key) -> tuple[float | None, dict[float, float | None]]:
    """(top-1 classification accuracy, top-1 loc per δ) over images: the top-1 class must be annotated
    and the box of its map must reach IoU δ with one of its boxes."""
    images = m.images()
    if not images:
        return None, {d: None for d in IOU_THRESHOLDS}
    loc = m.localisation[key]
    right, located = 0, {d: 0 for d in IOU_THRESHOLDS}
    for indices in images.values():
        match = next((i for i in indices if m.samples[i].class_index == m.samples[i].predicted), None)
        if match is None:
            continue
        right += 1
        for d in IOU_THRESHOLDS:
            located[d] += loc[match].iou >= d
    return right / len(images), {d: located[d] / len(images) for d in IOU_THRESHOLDS}


def summarise(m: Measurements, key: Key) -> dict:
    """The object ``--json`` prints for one (method, layer)."""
    loc = m.localisation[key]
    largest = np.stack([s.iou_largest for s in loc]) if loc else np.zeros((0, len(SWEEP)))
    any_box = np.stack([s.iou_any for s in loc]) if loc else np.zeros((0, len(SWEEP)))
    ious = np.array([s.iou for s in loc])
    classification, top1_loc = top1(m, key)
    maxboxacc, best = max_box_acc(largest) if loc else (None, None)
    out = {
        "method": key[0],
        "layer": key[1],
        "view": m.view,
        "images": len(m.images()),
        "samples": len(loc),
        "bbox_threshold": m.threshold,
        "top1_cls": _num(classification),
        "top1_loc": _by_delta(top1_loc),
        "gt_known_loc": _by_delta({d: float(np.mean(ious >= d)) if loc else None for d in IOU_THRESHOLDS}),
        "mean_iou": _mean(ious),
        "maxboxacc": _num(maxboxacc),
        "maxboxacc_v2": _num(max_box_acc_v2(any_box)) if loc else None,
        "best_threshold": best,
        "pointing_game": _mean([s.hit for s in loc]),
        "pointing_game_baseline": _mean([s.baseline for s in loc]),
        "boxes": m.boxes,
        "boxes_outside": m.boxes_outside,
        "boxes_clipped": m.boxes_clipped,
        "whole_photo_boxes": _mean([s.whole_photo for s in loc]),
    }
    curves = m.faithfulness.get(key) or []
    out.update(
        {
            "deletion_auc": _mean([c.deletion_auc for c in curves]),
            "insertion_auc": _mean([c.insertion_auc for c in curves]),
            "road": _mean([c.road for c in curves]),
            "road_morf": _mean([float(np.mean(c.road_morf)) for c in curves]),
            "road_lerf": _mean([float(np.mean(c.road_lerf)) for c in curves]),
            "average_drop": _mean([c.drop for c in curves]),
            "increase_in_confidence": _mean([float(c.increase) for c in curves]),
        }
    )
    if m.sanity:
        curve = m.sanity[key]
        out["sanity"] = [
            {"randomised": step, "spearman": _num(r), "ssim": _num(s)}
            for step, r, s in zip(curve.steps, curve.mean("spearman"), curve.mean("ssim"))
        ]
        out["sanity_flagged"] = curve.flagged
    out["sweep"] = {
        "threshold": list(SWEEP),
        **{f"boxacc_{d:.1f}": [_num(v) for v in box_accuracy(largest, d)] for d in IOU_THRESHOLDS},
        "mean_iou": [_num(v) for v in (largest.mean(axis=0) if loc else np.zeros(len(SWEEP)))],
    }
    return out


def per_image_csv(m: Measurements, labels: Sequence[str] | None) -> bytes:
    """One row per (image, annotated class, method, layer)."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    faith = bool(any(m.faithfulness.values()))
    writer.writerow(
        [
            "file",
            "class_index",
            "class_name",
            "predicted",
            "method",
            "layer",
            "iou",
            "best_iou",
            "pointing_hit",
            "pointing_baseline",
        ]
        + (["deletion_auc", "insertion_auc", "road", "average_drop", "increase_in_confidence"] if faith else [])
    )
    for key in m.keys:
        for i, (sample, loc) in enumerate(zip(m.samples, m.localisation[key])):
            name = labels[sample.class_index] if labels and sample.class_index < len(labels) else ""
            row = [
                sample.image,
                sample.class_index,
                name,
                sample.predicted,
                key[0],
                key[1],
                _num(loc.iou),
                _num(float(loc.iou_largest.max())),
                int(loc.hit),
                _num(loc.baseline),
            ]
            if faith:
                c = m.faithfulness[key][i]
                row += [_num(c.deletion_auc), _num(c.insertion_auc), _num(c.road), _num(c.drop), int(c.increase)]
            writer.writerow(row)
    return buf.getvalue().encode()


def sweep_csv(summaries: Sequence[dict]) -> bytes:
    """The threshold sweep: BoxAcc at each δ and the mean IoU of the largest box, per threshold."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    columns = [f"boxacc_{d:.1f}" for d in IOU_THRESHOLDS] + ["mean_iou"]
    writer.writerow(["method", "layer", "threshold", *columns])
    for s in summaries:
        for i, tau in enumerate(s["sweep"]["threshold"]):
            writer.writerow([s["method"], s["layer"], f"{tau:.2f}", *(s["sweep"][c][i] for c in columns)])
    return buf.getvalue().encode()


def refuse_existing(output_dir: Path, overwrite: bool) -> None:
    """An earlier evaluation's files are replaced only with ``--overwrite``."""
    names = [SUMMARY_FILE, PER_IMAGE_FILE, SWEEP_FILE, *PLOT_FILES]
    existing = [output_dir / n for n in names if (output_dir / n).exists()]
    if existing and not overwrite:
        raise UsageError(
            f"--output-dir {output_dir}: {existing[0].name} exists from an earlier evaluation; "
            "pass --overwrite or another --output-dir"
        )


def write_evaluation(explainer, measured: Measurements, output_dir: Path, summary) -> list[dict]:
    """The summaries; the JSON lines, CSVs and plots written into ``output_dir`` together, atomically (a
    failure is noted in ``summary.manifest_error``)."""
    from . import plots

    summaries = [summarise(measured, key) for key in measured.keys]
    written = {
        output_dir / SUMMARY_FILE: "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in summaries).encode(),
        output_dir / PER_IMAGE_FILE: per_image_csv(measured, explainer.loaded.labels),
        output_dir / SWEEP_FILE: sweep_csv(summaries),
    }
    if measured.samples:
        written[output_dir / "sweep.png"] = plots.sweep_plot(summaries)
        if any(measured.faithfulness.values()):
            written[output_dir / "curves.png"] = plots.curves_plot(measured, summaries)
        if measured.sanity:
            written[output_dir / "sanity.png"] = plots.sanity_plot(summaries)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        files.write_all_atomic(written)
    except OSError as err:
        summary.manifest_error = f"{output_dir}: cannot write the evaluation ({err.strerror or err})"
    return summaries

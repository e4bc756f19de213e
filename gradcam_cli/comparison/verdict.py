"""Verdicts: ``--fail-under METRIC=VALUE`` bounds, parsed and judged.

``gradcam compare`` judges each pair of explanations (and, with ``--fail-under-mean``, the mean over the pairs);
``gradcam evaluate`` judges each (method, layer) row of ``evaluation.jsonl``. A judged value below its bound
fails; the exit code is then 1. A bound that cannot be read, or names an unknown metric, is a usage error (2).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..suggest import close_names, did_you_mean

# The dataset-level metrics of evaluation.jsonl that higher values make better; dict-valued ones are read at an
# IoU (0.5 unless ``METRIC@IOU`` names another).
EVALUATION_METRICS = (
    "top1_cls",
    "top1_loc",
    "gt_known_loc",
    "mean_iou",
    "maxboxacc",
    "maxboxacc_v2",
    "pointing_game",
    "insertion_auc",
    "road",
    "increase_in_confidence",
)
EVALUATION_AT_IOU = ("top1_loc", "gt_known_loc")
EVALUATION_LOWER_IS_BETTER = ("deletion_auc", "average_drop", "whole_photo_boxes")
FAITHFULNESS_METRICS = ("insertion_auc", "road", "increase_in_confidence")
DEFAULT_IOU = "0.5"


@dataclass(frozen=True)
class Bound:
    """``metric >= value`` is required; ``at``: the IoU a dict-valued evaluation metric is read at."""

    metric: str
    value: float
    at: str | None = None

    @property
    def name(self) -> str:
        return self.metric if self.at is None else f"{self.metric}@{self.at}"

    def __str__(self) -> str:
        return f"{self.name}={self.value:g}"


@dataclass(frozen=True)
class Failure:
    """One judged value below its bound."""

    bound: Bound
    value: float | None  # None: the metric could not be measured (it fails: nothing shows it is good)

    @property
    def margin(self) -> float:
        return -math.inf if self.value is None else self.value - self.bound.value

    def __str__(self) -> str:
        shown = "not measured" if self.value is None else f"{self.value:.4g}"
        return f"{self.bound.name} {shown} < {self.bound.value:g}"


def parse_bounds(
    values: Sequence[str], known: Collection[str], flag: str = "--fail-under", at_iou: Collection[str] = ()
) -> tuple[Bound, ...]:
    """``("spearman=0.9", "box_iou=0.5,ssim=0.8")`` -> bounds; each value may be a comma-separated list.
    ``at_iou``: metrics that take ``METRIC@IOU=VALUE`` (read at that IoU)."""
    from ..options import split_list

    bounds = []
    for text in split_list(values):
        name, sep, number = text.partition("=")
        name = name.strip()
        metric, _, at = name.partition("@")
        if not sep or not metric:
            raise UsageError(f"{flag} {text}: expected METRIC=VALUE, e.g. {next(iter(known))}=0.9")
        if metric not in known:
            hint = did_you_mean(close_names(metric, known))
            raise UsageError(f"{flag} {text}: unknown metric {metric!r}{hint or '; choose from ' + ', '.join(known)}")
        bounds.append(Bound(metric, _number(flag, text, number), _iou(flag, text, metric, at, at_iou)))
    return tuple(bounds)


def _number(flag: str, text: str, number: str) -> float:
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UsageError(f"{flag} {text}: the bound {number.strip()!r} is not a finite number")
    return value


def _iou(flag: str, text: str, metric: str, at: str, at_iou: Collection[str]) -> str | None:
    from ..metrics.localisation import IOU_THRESHOLDS

    if metric not in at_iou:
        if at:
            raise UsageError(f"{flag} {text}: {metric} is one number; only {', '.join(at_iou) or 'none'} take @IOU")
        return None
    measured = [f"{d:.1f}" for d in IOU_THRESHOLDS]
    if not at:
        return DEFAULT_IOU
    try:
        shown = f"{float(at):.1f}"
    except ValueError:
        shown = ""
    if shown not in measured or abs(float(at) - float(shown)) > 1e-9:
        raise UsageError(f"{flag} {text}: {metric} is measured at IoU {', '.join(measured)}, not at {at}")
    return shown


def evaluation_bounds(values: Sequence[str], faithfulness: bool) -> tuple[Bound, ...]:
    """``gradcam evaluate --fail-under``: bounds on evaluation.jsonl's metrics (checked before the model loads)."""
    for text in values:
        for part in str(text).split(","):
            metric = part.partition("=")[0].partition("@")[0].strip()
            if metric in EVALUATION_LOWER_IS_BETTER:
                raise UsageError(
                    f"--fail-under {part.strip()}: lower {metric} is better, and --fail-under fails values below a "
                    f"bound; judge {', '.join(EVALUATION_METRICS)}"
                )
    bounds = parse_bounds(values, EVALUATION_METRICS, at_iou=EVALUATION_AT_IOU)
    unmeasured = [b.name for b in bounds if b.metric in FAITHFULNESS_METRICS and not faithfulness]
    if unmeasured:
        raise UsageError(f"--fail-under {unmeasured[0]}: measured only with --faithfulness; add it")
    return bounds


def judge(values: dict, bounds: Sequence[Bound]) -> list[Failure]:
    """The bounds ``values`` (metric -> number, or for dict metrics IoU -> number) fall below. A missing value
    (None) fails only where ``values`` has the metric: a pair's metric that does not apply (no SSIM for a map
    under 7 pixels, no box in either map) is left unjudged by `judge_pair`."""
    failures = []
    for bound in bounds:
        value = values.get(bound.metric)
        if isinstance(value, dict):
            value = value.get(bound.at)
        if value is None or value < bound.value:
            failures.append(Failure(bound, None if value is None else float(value)))
    return failures


def judge_pair(metrics: dict, bounds: Sequence[Bound]) -> list[Failure]:
    """A pair's failures: the metrics it has a value for that fall below their bounds, worst first."""
    judged = [b for b in bounds if metrics.get(b.metric) is not None]
    return sorted(judge(metrics, judged), key=lambda f: f.margin)


def evaluation_failures(summaries: Sequence[dict], bounds: Sequence[Bound]) -> list[tuple[dict, list[Failure]]]:
    """``gradcam evaluate``: each (method, layer) summary with the bounds it falls below (only those that do)."""
    found = [(s, judge(s, bounds)) for s in summaries]
    return sorted([(s, f) for s, f in found if f], key=lambda pair: min(x.margin for x in pair[1]))

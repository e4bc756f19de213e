"""Pairing two runs' explanations and measuring each pair; the worst pairs' small maps kept for the pictures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from .metrics import METRICS, map_metrics, record_metrics, same_size
from .runs import Entry, Key, Side
from .verdict import Bound, Failure, judge_pair

THUMB_PX = 256  # longer side of the maps kept for the difference pictures


@dataclass
class Pair:
    """One explanation in both runs, and how alike the two are."""

    input: str
    method: str
    layer: str  # the baseline's
    slot: str  # "top-1", or "class N"
    candidate_layer: str
    baseline_class: tuple[int | None, str | None]  # (index, name)
    candidate_class: tuple[int | None, str | None]
    metrics: dict[str, float | None]
    failures: list[Failure] = field(default_factory=list)
    note: str | None = None  # what was done to make the maps comparable (resampled), or why a map is missing

    @property
    def name(self) -> str:
        layer = self.layer if self.candidate_layer == self.layer else f"{self.layer}~{self.candidate_layer}"
        return f"{self.input} {self.method} {layer} {self.slot}"

    def sort_key(self) -> tuple:
        """Worst first: failing pairs by their worst margin, then the others by Spearman, then SSIM."""
        spearman, ssim = self.metrics.get("spearman"), self.metrics.get("ssim")
        return (
            0 if self.failures else 1,
            self.failures[0].margin if self.failures else 0.0,
            2.0 if spearman is None else spearman,
            2.0 if ssim is None else ssim,
            self.input,
            self.method,
            self.layer,
            self.slot,
        )

    def row(self) -> dict:
        """The pair as one flat JSON object (and CSV row)."""
        return {
            "input": self.input,
            "method": self.method,
            "layer": self.layer,
            "candidate_layer": self.candidate_layer,
            "slot": self.slot,
            "baseline_class": self.baseline_class[0],
            "baseline_class_name": self.baseline_class[1],
            "candidate_class": self.candidate_class[0],
            "candidate_class_name": self.candidate_class[1],
            **{m: _rounded(self.metrics.get(m)) for m in METRICS},
            "failed": bool(self.failures),
            "failures": "; ".join(map(str, self.failures)),
            "note": self.note or "",
        }


@dataclass
class Unpaired:
    """An explanation only one run has, and why (the other run has no such explanation, or failed on its input)."""

    input: str
    method: str
    layer: str
    slot: str
    role: str  # the run that has it
    reason: str

    def row(self) -> dict:
        return {k: getattr(self, k) for k in ("input", "method", "layer", "slot", "role", "reason")}


@dataclass
class Thumbs:
    """Small copies of a pair's maps and of their absolute difference, uint8, for its pictures."""

    baseline: np.ndarray
    candidate: np.ndarray
    difference: np.ndarray


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(float(value), 6)


def _small(values: np.ndarray) -> np.ndarray:
    """A map as uint8 levels, its longer side at most `THUMB_PX` (area averaging)."""
    import cv2

    height, width = values.shape
    scale = THUMB_PX / max(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        values = cv2.resize(values.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(np.nan_to_num(values) * 255.0), 0, 255).astype(np.uint8)


def _class(record: dict) -> tuple[int | None, str | None]:
    return record.get("class_index"), record.get("class_name")


def _scaled_box(box, shape, to_shape):
    """A box in the pixels of a map of ``shape`` in those of a map of ``to_shape`` (every pixel it touches)."""
    if box is None:
        return None
    from .runs import crop_in_map

    sy, sx = to_shape[0] / shape[0], to_shape[1] / shape[1]
    return crop_in_map((box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy), to_shape[1], to_shape[0])


def _seen_by_either(first, second, shape) -> tuple[int, int, int, int]:
    """The rectangle around what either model saw of the photo (its crop); all of it where one saw it all. Outside
    the crops both maps are zero by construction: those pixels would count as agreement they do not show."""
    height, width = shape
    if first is None or second is None:
        return 0, 0, width, height
    box = (min(first[0], second[0]), min(first[1], second[1]), max(first[2], second[2]), max(first[3], second[3]))
    return box if box[2] > box[0] and box[3] > box[1] else (0, 0, width, height)


def measure_pair(
    key: Key, baseline: Entry, candidate: Entry, candidate_layer: str, wanted: Callable[[Pair], bool] | None = None
) -> tuple[Pair, Thumbs | None]:
    """One pair's metrics, measured on the part of the photo either model saw (the candidate's map resampled to
    the baseline's size where they differ), and its small maps (only where ``wanted(pair)``, when given)."""
    first, second = baseline.load_map(), candidate.load_map()
    note, maps = None, None
    metrics: dict[str, float | None] = {m: None for m in METRICS}
    if first is None or second is None:
        note = f"no map in the {'baseline' if first is None else 'candidate'} (made without --save-raw?)"
    else:
        first = np.asarray(first, np.float32)
        seen = candidate.seen
        if second.shape != first.shape:
            note = f"candidate map {second.shape[1]}x{second.shape[0]} resampled to {first.shape[1]}x{first.shape[0]}"
            seen = _scaled_box(seen, second.shape, first.shape)
            second = same_size(second, first.shape)
        second = np.asarray(second, np.float32)
        x0, y0, x1, y1 = _seen_by_either(baseline.seen, seen, first.shape)
        metrics.update(map_metrics(first[y0:y1, x0:x1], second[y0:y1, x0:x1]))
        maps = first, second
    metrics.update(record_metrics(baseline.record, candidate.record))
    input_key, method, layer, slot = key
    pair = Pair(
        input_key, method, layer, slot, candidate_layer, _class(baseline.record), _class(candidate.record), metrics
    )
    pair.note = note
    if maps is None or (wanted is not None and not wanted(pair)):
        return pair, None
    return pair, Thumbs(_small(maps[0]), _small(maps[1]), _small(np.abs(maps[0] - maps[1])))


def pair_sides(
    baseline: Side, candidate: Side, layer_map: dict[str, str]
) -> tuple[list[tuple[Key, Entry, Entry, str]], list[Unpaired]]:
    """The explanations both runs have (key, baseline's, candidate's, the candidate's layer name), and those
    only one has, with the reason."""
    renamed = {(k[0], k[1], layer_map.get(k[2], k[2]), k[3]): (k[2], e) for k, e in candidate.entries.items()}
    paired = []
    for key, entry in baseline.entries.items():
        if key in renamed:
            layer, other = renamed[key]
            paired.append((key, entry, other, layer))
    unpaired = [
        Unpaired(*key, "baseline", _why_missing(key[0], candidate)) for key in baseline.entries if key not in renamed
    ]
    unpaired += [
        Unpaired(*key[:2], layer, key[3], "candidate", _why_missing(key[0], baseline))
        for key, (layer, _) in renamed.items()
        if key not in baseline.entries
    ]
    return paired, unpaired


def _why_missing(input_key: str, other: Side) -> str:
    if input_key in other.failed:
        return f"failed in the {other.role}: {other.failed[input_key]}"
    return f"not in the {other.role}"


class Collector:
    """Every pair's metrics and verdict, and the small maps of the ``keep`` worst pairs (bounded memory)."""

    def __init__(self, bounds: Sequence[Bound], keep: int) -> None:
        self.bounds, self.keep = tuple(bounds), keep
        self.pairs: list[Pair] = []
        self.unpaired: list[Unpaired] = []
        self.worst: list[tuple[Pair, Thumbs]] = []
        self.cutoff: tuple | None = None  # the sort key of the best pair kept, once `keep` are kept

    def wants_thumbs(self, pair: Pair) -> bool:
        """Whether ``pair`` would be kept among the worst: only their small maps are made. Safe to ask from the
        threads that measure: the cutoff only ever moves to worse pairs, so a pair refused stays refused."""
        if self.keep <= 0:
            return False
        cutoff = self.cutoff
        return cutoff is None or Pair.sort_key(replace(pair, failures=judge_pair(pair.metrics, self.bounds))) < cutoff

    def add(self, pair: Pair, thumbs: Thumbs | None) -> None:
        pair.failures = judge_pair(pair.metrics, self.bounds)
        self.pairs.append(pair)
        if thumbs is not None and self.keep > 0:
            self.worst.append((pair, thumbs))
            if len(self.worst) >= 2 * self.keep:
                self._trim()

    def _trim(self) -> None:
        self.worst.sort(key=lambda item: item[0].sort_key())
        del self.worst[self.keep :]
        if self.keep > 0 and len(self.worst) == self.keep:
            self.cutoff = self.worst[-1][0].sort_key()

    def finished(self) -> tuple[list[Pair], list[tuple[Pair, Thumbs]]]:
        """The pairs worst first, and the kept worst pairs with their small maps."""
        self._trim()
        return sorted(self.pairs, key=Pair.sort_key), self.worst

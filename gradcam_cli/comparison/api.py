"""``compare(baseline, candidate, fail_under=...)``: two runs' explanations paired, measured and judged."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .checks import check_sides, layer_pairing
from .metrics import METRICS
from .options import DEFAULT_PICTURES, bound_texts
from .pairs import Collector, Unpaired, measure_pair, pair_sides
from .result import CompareResult
from .runs import Side, read_side
from .verdict import Bound, parse_bounds

Bounds = Mapping[str, float] | Sequence[str] | str | None
MEASURE_THREADS = 8  # pairs measured at once (at most one per core)


def parse_compare_bounds(fail_under: Bounds, fail_under_mean: Bounds) -> tuple[tuple[Bound, ...], tuple[Bound, ...]]:
    """The per-pair and the mean bounds (usage errors name the flag)."""
    return (
        parse_bounds(bound_texts(fail_under), METRICS, "--fail-under"),
        parse_bounds(bound_texts(fail_under_mean), METRICS, "--fail-under-mean"),
    )


def describe(side: Side) -> dict:
    """What the result says a side is: its folder (or models), model and weights."""
    info = side.info or {}
    return {"run": side.label, "model": info.get("model"), "weights": info.get("weights")}


def compare(
    baseline: str | os.PathLike,
    candidate: str | os.PathLike,
    *,
    fail_under: Bounds = None,
    fail_under_mean: Bounds = None,
    output_dir: str | os.PathLike | None = None,
    junit: str | os.PathLike | None = None,
    pictures: int = DEFAULT_PICTURES,
    allow_mismatch: bool = False,
    on_message: Callable[[str], None] | None = None,
) -> CompareResult:
    """Compare two runs of ``gradcam explain --save-raw`` (the folders ``baseline`` and ``candidate``): every
    explanation both have is paired by (input, method, layer, class slot) and measured; those only one has
    are listed. ``fail_under`` (``{"spearman": 0.9}``, or ``"spearman=0.9"`` strings) is judged per pair and
    ``fail_under_mean`` on the means: ``result.passed`` and ``result.exit_code`` give the verdict.
    With ``output_dir``, ``pairs.csv``, ``compare.json`` and the ``pictures`` worst pairs' pictures are written
    there; with ``junit``, the verdict as JUnit XML. Runs that cannot be compared raise `UsageError`.
    """
    start = time.perf_counter()
    bounds, mean_bounds = parse_compare_bounds(fail_under, fail_under_mean)
    if output_dir is not None:
        from .outputs import check_output_folder

        check_output_folder(Path(output_dir), str(baseline), str(candidate))
    first, second = read_side(baseline, "baseline"), read_side(candidate, "candidate")
    warnings = check_sides(first, second).enforce(allow_mismatch)
    layer_map, layer_notes = layer_pairing(first, second)
    paired, unpaired = pair_sides(first, second, layer_map)
    _refuse_nothing_in_common(paired, first, second)
    collector = Collector(bounds, pictures if output_dir is not None else 0)
    for measured in _measured(paired, collector.wants_thumbs):
        collector.add(*measured)
    collector.unpaired = unpaired
    failed = {side.role: dict(side.failed) for side in (first, second) if side.failed}
    return finish(
        collector,
        (describe(first), describe(second)),
        warnings + layer_notes,
        (bounds, mean_bounds),
        failed,
        output_dir=output_dir,
        junit=junit,
        seconds_since=start,
        on_message=on_message,
    )


def _measured(paired: list, wanted: Callable):
    """Each pair measured, in order, on every core: the rank sorts, SSIM's filters and the file reads release
    the GIL. A bounded window of pairs is in flight, so memory stays flat however many pairs there are. Small
    maps are made only for the pairs ``wanted`` (those that may be among the worst shown)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = min(MEASURE_THREADS, os.cpu_count() or 1)
    if workers < 2 or len(paired) < 2:
        yield from (measure_pair(key, b, c, layer, wanted) for key, b, c, layer in paired)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="gradcam-compare") as pool:
        window = 4 * workers
        for start in range(0, len(paired), window):
            chunk = paired[start : start + window]
            yield from pool.map(lambda item: measure_pair(*item, wanted), chunk)


def _refuse_nothing_in_common(paired: list, first: Side, second: Side) -> None:
    from ..errors import UsageError

    if paired:
        return

    def shown(side: Side) -> str:
        methods = sorted({k[1] for k in side.entries})
        slots = sorted({k[3] for k in side.entries})
        return f"{', '.join(methods) or 'nothing'} at {', '.join(side.layers) or '-'} ({', '.join(slots[:3])})"

    raise UsageError(
        f"no explanation in common: the baseline has {shown(first)}, the candidate {shown(second)}; "
        "make both runs on the same photos with the same --method, --layer and --class/--top-k"
    )


def finish(
    collector: Collector,
    sides: tuple[dict, dict],
    warnings: list[str],
    bounds: tuple[tuple[Bound, ...], tuple[Bound, ...]],
    failed_inputs: dict,
    *,
    output_dir=None,
    junit=None,
    seconds_since: float,
    on_message: Callable[[str], None] | None = None,
) -> CompareResult:
    """The result from the measured pairs; the outputs and the JUnit file written; the warnings said."""
    pairs, worst = collector.finished()
    notes = list(warnings) + _unpaired_notes(collector.unpaired)
    resampled = sum(1 for p in pairs if p.note and "resampled" in p.note)
    if resampled:
        notes.append(f"{resampled} candidate maps had another size and were resampled to the baseline's")
    result = CompareResult(sides[0], sides[1], pairs, collector.unpaired, failed_inputs, notes, bounds[0], bounds[1])
    if junit is not None:
        from .junit import compare_junit, write_junit

        write_junit(junit, compare_junit(result, time.perf_counter() - seconds_since))
        result.outputs["junit"] = str(junit)
    if output_dir is not None:
        from .outputs import write_outputs

        write_outputs(Path(output_dir), result, worst)
    for note in notes:
        (on_message or (lambda m: None))(f"warning: {note}")
    return result


def _unpaired_notes(unpaired: list[Unpaired]) -> list[str]:
    notes = []
    for role in ("baseline", "candidate"):
        only = [u for u in unpaired if u.role == role]
        if only:
            first = only[0]
            notes.append(
                f"{len(only)} explanation{'s' if len(only) != 1 else ''} only in the {role}, e.g. {first.input} "
                f"{first.method} {first.layer} {first.slot} ({first.reason})"
            )
    return notes

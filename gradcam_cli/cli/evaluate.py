"""``gradcam evaluate``: how good the maps are, against ground-truth boxes and the model itself."""

from __future__ import annotations

import json

import click

from ..comparison.options import VerdictOptions
from ..options import EngineOptions, EvaluateOptions, ExplainOptions, JobOptions, ModelOptions
from .app import app, fail, inputs_argument, json_option, quiet_option
from .console import EXIT_INTERRUPTED, Console, print_rows
from .params import built, declared

# The explanation options that shape what is measured (pictures are not drawn).
EXPLAIN_FIELDS = (
    "layers",
    "methods",
    "smooth",
    "occlusion_window",
    "occlusion_stride",
    "ig_steps",
    "ig_baseline",
    "noise_samples",
    "noise_level",
    "rollout_fusion",
    "rollout_discard",
    "bbox_threshold",
    "view",
    "batch_size",
    "perturbation_batch_size",
    "precision",
    "max_output_pixels",
    "noise_std",
    "iscam_steps",
    "kpca_kernel",
    "finer_similar",
    "score_threshold",
)
JOB_FIELDS = ("workers", "threads", "fail_fast", "recursive", "null_separated")
VERDICT_HELPS = {
    "fail_under": "Fail (exit 1) when a method and layer's METRIC is below VALUE: pointing_game, top1_loc, "
    "gt_known_loc (at IoU 0.5; top1_loc@0.7=... for another), mean_iou, maxboxacc, ...; repeatable or comma-separated.",
    "junit": "Also write the verdict as JUnit XML (one test case per method, layer and judged metric).",
}
# Table columns: (summary key, heading, higher is better).
LOCALISATION = [
    ("top1_loc", "top-1 loc", True),
    ("gt_known_loc", "GT-known loc", True),
    ("mean_iou", "mIoU", True),
    ("maxboxacc", "MaxBoxAcc", True),
    ("maxboxacc_v2", "MaxBoxAccV2", True),
    ("best_threshold", "best τ", None),
    ("pointing_game", "pointing", True),
    ("whole_photo_boxes", "whole-photo boxes", False),
]
FAITHFULNESS = [
    ("deletion_auc", "deletion ↓", False),
    ("insertion_auc", "insertion ↑", True),
    ("road", "ROAD ↑", True),
    ("average_drop", "avg drop ↓", False),
    ("increase_in_confidence", "increase ↑", True),
]


@app.command()
@inputs_argument
@declared(EvaluateOptions)
@declared(ModelOptions, EngineOptions)
@declared(
    ExplainOptions,
    only=EXPLAIN_FIELDS,
    helps={
        "bbox_threshold": "The box threshold judged by top-1/GT-known loc and mIoU (the sweep tries 0.00..0.99).",
        "score_threshold": "Detectors: match each annotated object among the detections of its class scoring >= S.",
    },
)
@declared(JobOptions, only=JOB_FIELDS)
@declared(VerdictOptions, only=("fail_under", "junit"), helps=VERDICT_HELPS)
@click.option(
    "--output-dir",
    "-o",
    default="gradcam_eval",
    show_default=True,
    metavar="DIR",
    help="Where evaluation.jsonl, per_image.csv, sweep.csv and the plots go.",
)
@json_option
@quiet_option
def evaluate(inputs: tuple[str, ...], output_dir: str, as_json: bool, quiet: bool, **values) -> None:
    """Measure how good the maps are: boxes against ground truth, faithfulness, sanity; one row per method and
    layer.

    INPUTS are image files, folders, glob patterns, or - to read paths from stdin.

    Exit codes: 0 all done, 1 some image failed or a metric below its --fail-under bound, 2 bad request,
    130 interrupted.
    """
    from ..comparison.verdict import evaluation_bounds
    from ..errors import UsageError
    from ..job.evaluate import evaluate_folder
    from ..job.explain import Callbacks
    from ..threads import apply_threads

    console = Console("evaluating", 0, quiet=quiet)
    try:
        model, options = built(ModelOptions, values), built(ExplainOptions, values)
        measure, job = built(EvaluateOptions, values), built(JobOptions, values)
        engine = built(EngineOptions, values)
        job.validate()
        verdict = built(VerdictOptions, values)
        bounds = evaluation_bounds(verdict.fail_under, measure.faithfulness)
    except UsageError as err:
        raise fail(str(err)) from None

    def run(console: Console):
        calls = Callbacks(None, console.on_progress, console.message, console.stop, lambda: apply_threads(job.threads))
        return evaluate_folder(list(inputs), output_dir, model, options, measure, job, engine, calls)

    result = console.run(run)
    if isinstance(result, int):
        raise click.exceptions.Exit(result)
    measured, summary, summaries = result
    if as_json:
        for s in summaries:
            console.out.write_line(json.dumps(s, ensure_ascii=False, allow_nan=False))
    elif summaries and measured.samples:
        _print_table(summaries, measure, output_dir, console)
    code = console.finish(summary)
    if (bounds or verdict.junit) and code != EXIT_INTERRUPTED:
        code = max(code, _judge(summaries, bounds, verdict.junit, summary.seconds))
    raise click.exceptions.Exit(code)


def _judge(summaries: list[dict], bounds, junit, seconds: float) -> int:
    """The (method, layer) rows below a bound on stderr, worst first; the JUnit file; 1 when a row fails."""
    from ..comparison.junit import evaluate_junit, write_junit
    from ..comparison.verdict import evaluation_failures
    from ..errors import UsageError

    failing = evaluation_failures(summaries, bounds)
    for row, failures in failing:
        click.echo(f"gradcam: FAIL {row['method']} {row['layer']}: {'; '.join(map(str, failures))}", err=True)
    if junit:
        try:
            write_junit(junit, evaluate_junit(summaries, bounds, seconds))
        except UsageError as err:
            click.echo(f"gradcam: error: {err}", err=True)
            return 2
    return 1 if failing else 0


def _cell(value) -> str:
    if isinstance(value, dict):
        value = value.get("0.5")
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def _print_table(summaries: list[dict], measure: EvaluateOptions, output_dir: str, console: Console) -> None:
    """One row per method and layer; on a terminal the best value of each column in bold green."""
    from rich.text import Text

    columns = LOCALISATION + (FAITHFULNESS if measure.faithfulness else [])
    columns += [("sanity_last", "sanity ρ ↓", False)] if measure.sanity else []
    rows = [{**s, "sanity_last": (s["sanity"][-1]["spearman"] if s.get("sanity") else None)} for s in summaries]
    best = {}
    for key, _, higher in columns:
        numbers = [float(_cell(r[key])) for r in rows if _cell(r[key]) != "-"]
        if higher is not None and len(set(numbers)) > 1:
            best[key] = f"{(max if higher else min)(numbers):.3f}"

    def render(key):
        return lambda r: Text(_cell(r[key]), style="bold green") if best.get(key) == _cell(r[key]) else _cell(r[key])

    def layer(r):
        return r["layer"] + (" (maps do not change)" if r.get("sanity_flagged") else "")

    first = summaries[0]
    title = (
        f"{first['images']} images, {first['samples']} annotated classes, view {first['view']}, "
        f"τ = {first['bbox_threshold']}, IoU ≥ 0.5; pointing-game chance {_cell(first['pointing_game_baseline'])}"
    )
    print_rows(
        rows,
        console.out,
        [("method", lambda r: r["method"]), ("layer", layer)] + [(heading, render(key)) for key, heading, _ in columns],
        title=title,
        footer=f"details in {output_dir}",
    )

"""``gradcam compare``: two runs' explanations paired and measured, and the verdict as an exit code."""

from __future__ import annotations

import json

import click

from ..comparison.options import CompareOptions, VerdictOptions
from ..options import EngineOptions, ExplainOptions, JobOptions, ModelOptions
from .app import app, fail, quiet_option
from .console import EXIT_INTERRUPTED, EXIT_USAGE, Console, print_rows
from .params import built, declared

# The explanation options of the one-process form (pictures are not drawn: only the maps are compared).
EXPLAIN_FIELDS = (
    "layers",
    "classes",
    "top_k",
    "methods",
    "smooth",
    "occlusion_window",
    "occlusion_stride",
    "bbox_threshold",
    "bbox_mode",
    "view",
    "batch_size",
    "perturbation_batch_size",
    "precision",
    "max_output_pixels",
)
JOB_FIELDS = ("workers", "threads", "fail_fast", "recursive", "null_separated")
ONE_PROCESS_PREFIXES = ("ModelOptions__", "ExplainOptions__", "JobOptions__", "EngineOptions__")
TABLE = [
    ("method", lambda r: r["method"]),
    ("layer", lambda r: r["layer"]),
    ("pairs", lambda r: str(r["pairs"])),
    ("failed", lambda r: str(r["failed"])),
    ("spearman", lambda r: _cell(r["spearman"])),
    ("ssim", lambda r: _cell(r["ssim"])),
    ("top10 IoU", lambda r: _cell(r["top10_iou"])),
    ("top25 IoU", lambda r: _cell(r["top25_iou"])),
    ("box IoU", lambda r: _cell(r["box_iou"])),
    ("same class", lambda r: _cell(r["same_class"])),
    ("Δ prob", lambda r: _cell(r["probability_change"], signed=True)),
]


def _cell(value, signed: bool = False) -> str:
    return "-" if value is None else f"{value:+.3f}" if signed else f"{value:.3f}"


@app.command()
@click.argument("inputs", nargs=-1, required=True, metavar="BASELINE CANDIDATE | INPUTS...")
@declared(VerdictOptions)
@declared(CompareOptions)
@declared(ModelOptions, EngineOptions)
@declared(ExplainOptions, only=EXPLAIN_FIELDS)
@declared(JobOptions, only=JOB_FIELDS)
@click.option(
    "--output-dir",
    "-o",
    default="gradcam_compare",
    show_default=True,
    metavar="DIR",
    help="Where pairs.csv, compare.json and the worst pairs' pictures go.",
)
@click.option("--report", is_flag=True, help="Also write index.html in the output dir: the worst pairs side by side.")
@click.option("--json", "as_json", is_flag=True, help="The summary as one JSON object on stdout.")
@quiet_option
def compare(inputs: tuple[str, ...], output_dir: str, report: bool, as_json: bool, quiet: bool, **values) -> None:
    """Compare two runs' explanations and judge them: did the change move what the model looks at?

    BASELINE and CANDIDATE are output folders of `gradcam explain ... --save-raw`. With --against-weights or
    --against-model, INPUTS are photos (files, folders, globs, -) explained by both models in this process.

    Each pair (input, method, layer, class) gets Spearman's rank correlation and SSIM of the maps, the IoU of
    their top 10% and 25% regions and of their boxes, whether the class is the same and the probability's change.

    Exit codes: 0 passed (or nothing judged), 1 a value below a --fail-under bound (or an image failed),
    2 bad request (unknown metric, malformed bound, missing folder, runs that cannot be compared), 130 interrupted.
    """
    from ..errors import UsageError

    console = Console("comparing", 0, quiet=quiet)
    try:
        verdict, settings = built(VerdictOptions, values), built(CompareOptions, values)
        settings.validate()
        from ..comparison.api import parse_compare_bounds

        bounds = parse_compare_bounds(verdict.fail_under, verdict.fail_under_mean)
        if not settings.one_process:
            _refuse_one_process_options(inputs)
    except UsageError as err:
        raise fail(str(err)) from None

    def run(console: Console):
        if settings.one_process:
            return _compare_models(inputs, output_dir, values, settings, verdict, bounds, console)
        from ..comparison.api import compare as compare_folders

        return compare_folders(
            *inputs,
            fail_under=verdict.fail_under,
            fail_under_mean=verdict.fail_under_mean,
            output_dir=output_dir,
            junit=verdict.junit,
            pictures=settings.pictures,
            allow_mismatch=settings.allow_mismatch,
            on_message=console.message,
        ), None

    outcome = console.run(run)
    if isinstance(outcome, int):
        raise click.exceptions.Exit(outcome)
    result, job_summary = outcome
    raise click.exceptions.Exit(_finish(result, job_summary, console, output_dir, report, as_json, quiet))


def _refuse_one_process_options(inputs: tuple[str, ...]) -> None:
    """The folder form takes two folders and none of the one-process form's options."""
    from click.core import ParameterSource

    from ..errors import UsageError

    context = click.get_current_context()
    given = [
        p.opts[0]
        for p in context.command.params
        if p.name.startswith(ONE_PROCESS_PREFIXES)
        and context.get_parameter_source(p.name) == ParameterSource.COMMANDLINE
    ]
    if given:
        raise UsageError(
            f"{given[0]}: applies to the one-process form only (photos and two models); add --against-weights or "
            "--against-model, or compare two output folders without it"
        )
    if len(inputs) != 2:
        raise UsageError(
            f"expected two output folders (BASELINE CANDIDATE), got {len(inputs)} argument"
            f"{'s' if len(inputs) != 1 else ''}; for photos and two models add --against-weights or --against-model"
        )


def _compare_models(inputs, output_dir, values, settings, verdict, bounds, console):
    """The one-process form: both models over the photos, then the result written as the folder form's."""
    import time
    from pathlib import Path

    from ..comparison.api import finish
    from ..comparison.outputs import check_output_folder
    from ..job.compare import candidate_options, compare_models
    from ..job.explain import Callbacks
    from ..job.output_folder import check_output_dir
    from ..threads import apply_threads

    start = time.perf_counter()
    model, options = built(ModelOptions, values), built(ExplainOptions, values)
    job, engine = built(JobOptions, values), built(EngineOptions, values)
    candidate = candidate_options(model, settings.against_model, settings.against_weights)
    check_output_dir(output_dir)
    check_output_folder(Path(output_dir))
    calls = Callbacks(None, console.on_progress, console.message, console.stop, lambda: apply_threads(job.threads))
    compared = compare_models(
        list(inputs),
        model,
        candidate,
        options,
        bounds=bounds[0],
        pictures=settings.pictures,
        allow_mismatch=settings.allow_mismatch,
        job=job,
        engine=engine,
        callbacks=calls,
        output_dir=output_dir,
    )
    if compared.summary.interrupted:
        return None, compared.summary
    result = finish(
        compared.collector,
        compared.sides,
        compared.warnings,
        bounds,
        compared.failed_inputs,
        output_dir=output_dir,
        junit=verdict.junit,
        seconds_since=start,
        on_message=console.message,
    )
    return result, compared.summary


def _finish(result, job_summary, console: Console, output_dir: str, report: bool, as_json: bool, quiet: bool) -> int:
    """The failing pairs on stderr (worst first), the table or the JSON summary on stdout; the exit code."""
    import sys

    code = 0
    if job_summary is not None:
        code = console.finish(job_summary)
        if result is None:
            return code
    for line in result.failure_lines():
        print(f"gradcam: FAIL {line}", file=sys.stderr, flush=True)
    if as_json:
        console.out.write_line(json.dumps(result.summary(), ensure_ascii=False, allow_nan=False))
    else:
        print_rows(result.by_method_layer(), console.out, TABLE, footer=f"every pair in {output_dir}/pairs.csv")
    if not quiet:
        print(f"gradcam: {_verdict_line(result)}", file=sys.stderr, flush=True)
    code = max(code, result.exit_code) if code != EXIT_INTERRUPTED else code
    if report and code != EXIT_INTERRUPTED:
        from .report import write_report

        built_code = write_report(output_dir, quiet)
        code = EXIT_USAGE if built_code == EXIT_USAGE and code == 0 else code
    return code


def _verdict_line(result) -> str:
    means = result.means()
    shown = ", ".join(f"{m} {means[m]:.3f}" for m in ("spearman", "ssim", "box_iou") if means.get(m) is not None)
    missing = len(result.missing)
    counts = f"{len(result.pairs)} pairs, {len(result.failed_pairs)} below the bounds, {missing} missing"
    if not result.judged:
        return f"compared {counts}; mean {shown or '-'}; nothing judged (no --fail-under)"
    return f"compared {counts}; mean {shown or '-'}; {'passed' if result.passed else 'FAILED'}"

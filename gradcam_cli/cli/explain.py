"""``gradcam explain``: arguments in, options built, the job run with the console, results printed."""

from __future__ import annotations

import click

from ..options import EngineOptions, ExplainOptions, JobOptions, ModelOptions
from .app import app, fail, inputs_argument, json_option, quiet_option
from .console import EXIT_INTERRUPTED, Console, print_rows
from .params import built, declared

# The table (on a terminal) and the tab-separated lines (off one): input, method, layer, class, probability, box.
COLUMNS = [
    ("input", lambda d: d["input"]),
    ("method", lambda d: d["method"]),
    ("layer", lambda d: d["layer"]),
    ("class", lambda d: explained(d)),
    ("prob", lambda d: "-" if d["probability"] is None else f"{d['probability']:.3f}"),
    ("bbox x0,y0,x1,y1", lambda d: ",".join(map(str, d["bbox"])) if d["bbox"] else "-"),
]


def explained(d: dict) -> str:
    """The table's class column: the class (and the class it is set against), or what else the target explains."""
    if d.get("class_index") is None:
        return d.get("target") or "-"
    text = f"{d['class_index']} {d['class_name'] or ''}".strip()
    if d.get("versus_index") is not None:
        text += f" vs {d['versus_index']} {d.get('versus_name') or ''}".rstrip()
    return text


@app.command()
@inputs_argument
@declared(ModelOptions, ExplainOptions, JobOptions, EngineOptions)
@click.option(
    "--output-dir",
    "-o",
    default="gradcam_out",
    show_default=True,
    metavar="DIR",
    help="Where pictures, results.jsonl and run.json go (with --engine ray also a URI: s3://bucket/out).",
)
@click.option("--report", is_flag=True, help="Also write index.html in the output dir: a browsable report.")
@json_option
@quiet_option
def explain(inputs: tuple[str, ...], output_dir: str, report: bool, as_json: bool, quiet: bool, **values) -> None:
    """Explain why the model classified each image as it did: pictures, records, a summary.

    INPUTS are image files, folders, glob patterns, or - to read paths from stdin.

    Exit codes: 0 all done, 1 some image failed, 2 bad request, 130 interrupted.
    """
    from ..errors import UsageError
    from ..job.explain import Callbacks, explain_folder
    from ..threads import apply_threads

    console = Console("explaining", 0, as_json=as_json, quiet=quiet)
    try:
        model, options = built(ModelOptions, values), built(ExplainOptions, values)
        job, engine = built(JobOptions, values), built(EngineOptions, values)
        job.validate(overwrite=options.overwrite)
    except UsageError as err:
        raise fail(str(err)) from None

    def run(console: Console):
        calls = Callbacks(
            console.record, console.on_progress, console.message, console.stop, lambda: apply_threads(job.threads)
        )
        return explain_folder(list(inputs), output_dir, model, options, job, engine, calls)

    summary = console.run(run)
    if isinstance(summary, int):
        raise click.exceptions.Exit(summary)
    print_rows(console.rows, console.out, COLUMNS, footer=f"outputs in {output_dir}")
    code = console.finish(summary)
    if report and code != EXIT_INTERRUPTED and "://" not in output_dir:
        from .report import write_report

        code = max(code, write_report(output_dir, quiet))
    raise click.exceptions.Exit(code)

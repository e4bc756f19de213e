"""``gradcam report OUTDIR``: a browsable ``index.html`` of the results in an output folder."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .app import app


@app.command()
@click.argument("output_dir", metavar="OUTDIR", type=click.Path(path_type=Path))
@click.option("--quiet", "-q", is_flag=True, help="Print only the report's path.")
def report(output_dir: Path, quiet: bool) -> None:
    """Write OUTDIR/index.html: sortable, filterable results with thumbnails, a page per image, failed images,
    the run's options and versions, and evaluation metrics when present. Opens offline, from file://.

    OUTDIR is an output folder of `gradcam explain` (it holds results.jsonl).

    Exit codes: 0 written, 2 no results in OUTDIR (or it cannot be written).
    """
    code = write_report(output_dir, quiet)
    if code == 0:
        print(output_dir / "index.html")
    raise click.exceptions.Exit(code)


def write_report(output_dir: str | Path, quiet: bool) -> int:
    """Build the report; a one-line error and exit code 2 if it cannot be."""
    from ..errors import UsageError
    from ..report import build_report

    output_dir = Path(output_dir)
    try:
        summary = build_report(output_dir)
    except UsageError as err:
        print(f"gradcam: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"gradcam: error: {output_dir}: cannot write the report ({err.strerror or err})", file=sys.stderr)
        return 2
    if not quiet:
        print(
            f"gradcam: report {summary.path}: {summary.images} images, {summary.records} results, "
            f"{summary.failed} failed; {summary.thumbs_made} thumbnails made in {summary.seconds:.1f}s",
            file=sys.stderr,
            flush=True,
        )
    return 0

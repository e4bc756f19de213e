"""The ``gradcam`` command group, and the pieces its commands share."""

from __future__ import annotations

import click

from ..version import __version__

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT, no_args_is_help=True)
@click.version_option(__version__, "--version", prog_name="gradcam")
def app() -> None:
    """Show why an image model decided what it decided: Grad-CAM and its family, heatmaps, overlays, guided
    images and boxes, their quality against ground truth, and reports."""


def fail(message: str, code: int = 2) -> click.exceptions.Exit:
    """Print ``gradcam: error: message`` on stderr; the caller raises the returned exit."""
    click.echo(f"gradcam: error: {message}", err=True)
    return click.exceptions.Exit(code)


inputs_argument = click.argument("inputs", nargs=-1, required=True, metavar="INPUTS...")
json_option = click.option(
    "--json", "--jsonl", "as_json", is_flag=True, help="One JSON object per result on stdout, as each is made."
)
quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="Nothing on stderr but errors (no progress, warnings or summary)."
)

"""``gradcam concepts``: Deep Feature Factorization of a layer over a set of photos."""

from __future__ import annotations

import json

import click

from ..options import ModelOptions
from .app import app, fail, inputs_argument, json_option
from .params import built, declared

CONVENTIONS = ("pytorch-grad-cam", "paper")  # as gradcam_cli.concepts.CONVENTIONS, without importing torch


@app.command()
@inputs_argument
@declared(ModelOptions)
@click.option("--layer", "-l", default=None, metavar="PATH", help="The layer to factorise. Default: the model's.")
@click.option("--concepts", "-k", default=5, show_default=True, metavar="K", help="How many concepts to find.")
@click.option("--top", default=2, show_default=True, metavar="N", help="Classes shown per concept.")
@click.option(
    "--convention",
    type=click.Choice(CONVENTIONS),
    default="pytorch-grad-cam",
    show_default=True,
    help="Negative activations: shift each channel by its minimum (pytorch-grad-cam) or clip them at 0 (paper).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the factorisation's random start.")
@click.option("--output-dir", "-o", default="concepts_out", show_default=True, metavar="DIR")
@json_option
def concepts(inputs: tuple[str, ...], layer, concepts: int, top: int, convention, seed, output_dir, as_json, **values):
    """Find K concepts that a layer sees across the photos (Deep Feature Factorization: non-negative matrix
    factorisation of its activations), each concept's map on every photo and the classes each concept votes
    for; a sheet per photo with the concepts coloured, and concepts.json.

    INPUTS are image files, folders or glob patterns; all the photos share the concepts."""
    from ..errors import UsageError
    from ..job.concepts import ConceptRequest, run_concepts

    try:
        request = ConceptRequest(concepts=concepts, top=top, layer=layer, convention=convention, seed=seed)
        run = run_concepts(list(inputs), output_dir, built(ModelOptions, values), request)
    except UsageError as err:
        raise fail(str(err)) from None
    for message in run.failed:
        click.echo(f"gradcam: {message}", err=True)
    if as_json:
        for record in run.records:
            click.echo(json.dumps(record))
    else:
        for c in run.concepts:
            names = ", ".join(f"{v['class_name']} ({v['probability']:.2f})" for v in c["votes"])
            click.echo(f"concept {c['concept']} {c['colour']}: {names}")
    if run.failed:
        raise click.exceptions.Exit(1)

"""``gradcam layers``: the hookable blocks of a model, their output shapes, and the default."""

from __future__ import annotations

import json

import click

from ..options import ModelOptions
from .app import app, fail
from .params import declared


@app.command()
@declared(ModelOptions, only=("name", "num_classes"))
@click.option("--all", "show_all", is_flag=True, help="Every module with a spatial output, not only blocks.")
@click.option("--json", "as_json", is_flag=True, help="A JSON list instead of a table.")
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Reuse the table from the last listing of this model (same library versions).",
)
def layers(show_all: bool, as_json: bool, cache: bool, **values) -> None:
    """List the layers the methods can hook (spatial outputs: conv maps, channels-last grids, token grids),
    their shapes and grids, and the default. No download."""
    from ..model.listing import listed_paths

    model, num_classes = values["ModelOptions__name"], values["ModelOptions__num_classes"]
    table = layer_table(model, num_classes, cache)
    default = table["default"]
    shown = set(listed_paths([(r["path"], r["type"]) for r in table["layers"]], default, show_all))
    rows = [r for r in table["layers"] if r["path"] in shown]
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "path": r["path"],
                        "type": r["type"],
                        "shape": r["shape"],
                        "layout": r["layout"],
                        "grid": r["grid"],
                        "prefix_tokens": r["prefix_tokens"],
                        "default": r["path"] == default,
                    }
                    for r in rows
                ]
            )
        )
        return
    _print_layers(table, rows, default)


def _print_layers(table: dict, rows: list[dict], default: str) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    h, w = table["input_size"]
    out = Table(title=escape(f"{table['name']} at {h}x{w}: hookable layers"), box=None, pad_edge=False)
    for col in ("layer", "type", "output", "grid", ""):
        out.add_column(col)
    cells = [(r["path"], r["type"], "x".join(map(str, r["shape"])), r["grid_text"]) for r in rows]
    for r, row in zip(rows, cells):
        out.add_row(*map(escape, row), "default" if r["path"] == default else "")
    width = sum(max([len(c[i]) for c in cells] + [6]) for i in range(4)) + 7 + 5 * 2  # never cut a path
    Console(soft_wrap=True, width=max(width, len(out.title) + 2)).print(out)


def layer_table(model: str | None, num_classes: int | None, cache: bool = True) -> dict:
    """The model's layer table, from the on-disk cache when it is there (no torch needed then)."""
    from ..errors import UsageError
    from ..model.layer_cache import read_table, table_key, write_table

    key = table_key(model, num_classes)
    table = read_table(key) if cache else None
    if table is None:
        try:
            table = _trace_table(model, num_classes)
        except UsageError as err:
            raise fail(str(err)) from None
        if cache:
            write_table(key, table)
    return table


def _trace_table(model: str | None, num_classes: int | None) -> dict:
    """The model's spatial layers in the order they finish with their grids, and its default layer (needs torch)."""
    from ..model.detectors import task_default_layer
    from ..model.layers import default_layer, trace_layers
    from ..model.loading import load_architecture
    from ..model.tasks import DETECTOR, SEGMENTER

    loaded = load_architecture(model, num_classes=num_classes)
    infos = trace_layers(loaded.model, loaded.preprocess.input_size)
    rows = sorted((layer for layer in infos if layer.spatial), key=lambda layer: layer.finish_order)
    dense = loaded.kind in (DETECTOR, SEGMENTER)  # the explainer's default for them: a backbone block
    return {
        "name": loaded.name,
        "input_size": list(loaded.preprocess.input_size),
        "default": task_default_layer(loaded.model, infos, loaded.kind)
        if dense
        else default_layer(loaded.model, infos),
        "layers": [
            {
                "path": layer.path,
                "type": layer.type,
                "shape": list(layer.shape),
                "layout": layer.layout.name,
                "grid": list(layer.layout.grid),
                "prefix_tokens": layer.layout.prefix,
                "grid_text": layer.layout.describe(),
                "channels": layer.shape[0] if layer.layout.name in ("channels_first", "levels") else layer.shape[-1],
            }
            for layer in rows
        ],
    }

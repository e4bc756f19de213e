"""``gradcam methods``: every method, what it needs, whether it is class-specific, its cost, the models it applies
to, its paper."""

from __future__ import annotations

import json

import click

from ..options import ExplainOptions, ModelOptions, default_of
from .app import app
from .params import declared


@app.command()
@declared(ModelOptions, only=("name",))
@click.option(
    "--layer", "-l", metavar="PATH", help="With --model: costs for this layer (default: the model's default layer)."
)
@click.option("--json", "as_json", is_flag=True, help="A JSON list instead of a table.")
def methods(layer: str | None, as_json: bool, **values) -> None:
    """List the explanation methods. With --model, the costs are counted for its layer (from the layer table)."""
    from ..methods import METHODS
    from ..methods.occlusion import window_count

    model = values["ModelOptions__name"]
    channels = windows = None
    where = ""
    if model is not None or layer is not None:
        from .layers import layer_table

        table = layer_table(model, None)
        path = layer or table["default"]
        row = next((r for r in table["layers"] if r["path"] == path), None)
        channels = row["channels"] if row else None
        window, stride = default_of(ExplainOptions, "occlusion_window"), default_of(ExplainOptions, "occlusion_stride")
        windows = window_count(tuple(table["input_size"]), window, stride)
        where = f" for {table['name']}, layer {path} ({channels} channels), occlusion {window}/{stride}"
    rows = [
        {
            "method": m.name,
            "name": m.title,
            "needs": m.needs,
            "class_specific": m.class_specific,
            "uses_layer": m.uses_layer,
            "applies_to": m.applies_to,
            "cost": m.cost(channels, windows),
            "paper": m.paper,
        }
        for m in METHODS.values()
    ]
    if as_json:
        print(json.dumps(rows))
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    out = Table(title=escape(f"explanation methods{where}"), box=None, pad_edge=False)
    for col in ("--method", "needs", "class", "passes per batch", "applies to", "paper"):
        out.add_column(col, overflow="fold")
    for r in rows:
        kind = "specific" if r["class_specific"] else "agnostic"
        out.add_row(r["method"], r["needs"], kind, r["cost"], escape(r["applies_to"]), escape(r["paper"]))
    Console(soft_wrap=True).print(out)

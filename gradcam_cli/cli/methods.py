"""``gradcam methods``: every method, what it needs, whether it is class-specific, its cost, its paper."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ..options import ExplainOptions, default_of
from .app import ModelOpt, app


@app.command()
def methods(
    model: ModelOpt = None,
    layer: Annotated[Optional[str], typer.Option(
        "--layer", "-l", help="With --model: costs for this layer (default: the model's default layer).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list instead of a table.")] = False,
) -> None:
    """List the explanation methods. With --model, the costs are counted for its layer (from the layer table)."""
    from ..methods import METHODS
    from ..methods.occlusion import window_count

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
    rows = [{"method": m.name, "name": m.title, "needs": m.needs, "class_specific": m.class_specific,
             "uses_layer": m.uses_layer, "cost": m.cost(channels, windows), "paper": m.paper}
            for m in METHODS.values()]
    if as_json:
        print(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    out = Table(title=f"explanation methods{where}", box=None, pad_edge=False)
    for col in ("--method", "needs", "class", "passes per batch", "paper"):
        out.add_column(col, overflow="fold")
    for r in rows:
        out.add_row(r["method"], r["needs"], "specific" if r["class_specific"] else "agnostic", r["cost"], r["paper"])
    Console(soft_wrap=True).print(out)

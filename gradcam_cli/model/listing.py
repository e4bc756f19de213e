"""Which layers ``gradcam layers`` lists: a rule on names and types only, so a cached listing needs no torch."""

from __future__ import annotations

from collections.abc import Sequence


def listed_paths(rows: Sequence[tuple[str, str]], default: str, show_all: bool = False) -> list[str]:
    """The layer paths ``gradcam layers`` shows, from ``(path, type)`` rows of hookable layers.

    Blocks down to two levels, never a pass-through ``Identity``; when the default
    lies deeper (a transformer's ``blocks.11.norm1`` or ``encoder.layers.encoder_layer_11.ln_1``),
    also its siblings and the blocks beside its own; everything with ``show_all``.
    Suggestions for a mistyped ``--layer`` come from this same list.
    """
    parent = default.rpartition(".")[0]
    near = {parent, parent.rpartition(".")[0]} if default.count(".") >= 2 else set()
    return [
        path
        for path, kind in rows
        if kind != "Identity"
        and (show_all or path.count(".") < 2 or path == default or path.rpartition(".")[0] in near)
    ]

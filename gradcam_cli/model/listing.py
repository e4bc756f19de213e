"""Which layers ``gradcam layers`` lists: a rule on names and types only, so a cached listing needs no torch."""

from __future__ import annotations

from collections.abc import Sequence


def listed_paths(rows: Sequence[tuple[str, str]], default: str, show_all: bool = False) -> list[str]:
    """The layer paths ``gradcam layers`` shows, from ``(path, type)`` rows of hookable layers.

    Blocks down to the default layer's depth (at least two levels), never a
    pass-through ``Identity``; everything with ``show_all``. Suggestions for a
    mistyped ``--layer`` come from this same list.
    """
    depth = max(2, default.count(".") + 1)
    return [path for path, kind in rows if kind != "Identity"
            and (show_all or path.count(".") + 1 <= depth or path == default)]

"""A method on the model's input (occlusion) has no column of its own on a sheet: its map sits in its row's
first cell, beside the layers' maps of the other methods."""

from __future__ import annotations

from types import SimpleNamespace

from gradcam_cli.output.sheet import sheet_columns, sheet_layout


def _e(method: str, layer: str, layout: str = "channels_first"):
    return SimpleNamespace(method=method, layer=layer, layout=layout, empty=False, guided=None, class_index=0)


def test_occlusion_sits_in_the_first_cell_of_its_row() -> None:
    exps = [_e("gradcam", "blocks.5"), _e("gradcam", "bn2"), _e("occlusion", "input", "input")]
    order = ["input", "blocks.5", "bn2"]
    assert sheet_columns(exps, order) == ["blocks.5", "bn2"]
    layout = sheet_layout((320, 240), exps, order, caption=False, colorbar=False)
    kinds = {(c.row, c.col): (c.kind, c.title) for c in layout.cells}
    assert kinds[(0, 0)] == ("photo", "photo")
    assert kinds[(1, 1)] == ("overlay", "input · occlusion") and kinds[(1, 2)][0] == "blank"
    assert max(c for _, c in kinds) == 2  # photo + two layer columns: no column for "input"


def test_occlusion_alone_keeps_its_input_column() -> None:
    exps = [_e("occlusion", "input", "input")]
    assert sheet_columns(exps, ["input"]) == ["input"]

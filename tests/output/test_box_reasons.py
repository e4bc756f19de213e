"""A map without a box says why."""

from __future__ import annotations

from PIL import Image

from gradcam_cli.options import ExplainOptions, default_of

from helpers import records, run


def test_a_map_without_a_box_says_why(tmp_path):
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "one.png")
    result = run("explain", tmp_path / "one.png", "-o", tmp_path / "out", "--json", "--outputs", "heatmap")
    assert result.exit_code == 0, result.output
    [record] = records(result)
    assert record["bbox"] is None and record["map_empty"] is False
    [why] = record["warnings"]
    threshold = default_of(ExplainOptions, "bbox_threshold")
    assert why.startswith(f"no box: no pixel of the photo reaches --bbox-threshold {threshold} (the highest is ")
    height, width = record["grid"]
    assert f"the 1x1 photo has fewer pixels than the map's {height}x{width} cells" in why

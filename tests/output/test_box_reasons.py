"""A map without a box says why."""

from __future__ import annotations

import json

from PIL import Image

from gradcam_cli.cli import app
from gradcam_cli.options import ExplainOptions, default_of

from helpers import runner


def invoke(*args, **kw):
    return runner.invoke(app, [str(a) for a in args], **kw)


def stdout_records(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_a_map_without_a_box_says_why(tmp_path):
    Image.new("RGB", (1, 1), (200, 10, 10)).save(tmp_path / "one.png")
    result = invoke("explain", tmp_path / "one.png", "-o", tmp_path / "out", "--json", "--outputs", "heatmap")
    assert result.exit_code == 0, result.output
    [record] = stdout_records(result)
    assert record["bbox"] is None and record["map_empty"] is False
    [why] = record["warnings"]
    threshold = default_of(ExplainOptions, "bbox_threshold")
    assert why.startswith(f"no box: no pixel of the photo reaches --bbox-threshold {threshold} (the highest is ")
    height, width = record["grid"]
    assert f"the 1x1 photo has fewer pixels than the map's {height}x{width} cells" in why

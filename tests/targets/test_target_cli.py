"""The targets on the command line: requests that cannot work are refused in one line before anything heavy
loads; a detector and a segmenter by name run end to end, every output written and every record valid."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import pytest

from helpers import SAMPLES, SCHEMA, gradcam, jsonl

PROBE = """
import json, runpy, sys
sys.argv = ["gradcam"] + json.loads(sys.argv[1])
try:
    runpy.run_module("gradcam_cli", run_name="__main__")
except SystemExit as exit:
    print("EXIT=%s" % exit.code)
print("IMPORTED=" + json.dumps(sorted(m for m in ("torch", "timm", "torchvision") if m in sys.modules)))
"""
BOXES = Path(__file__).resolve().parents[1] / "data" / "sample_boxes.csv"
DETECTOR = "fasterrcnn_mobilenet_v3_large_fpn"
SEGMENTER = "deeplabv3_mobilenet_v3_large"


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--model", DETECTOR, "--versus", "auto"], "--versus: does not apply to a detector"),
        (["--model", DETECTOR, "--similar-to", "REF"], "--similar-to: does not apply to a detector"),
        (["--model", SEGMENTER, "--box", "1,2,30,40"], "--box: does not apply to a segmenter"),
        (["--model", SEGMENTER, "--head", "sigmoid"], "--head sigmoid: does not apply to a segmenter"),
        (["--box", "1,2,30,40"], "--box: applies to detectors only"),
        (["--model", DETECTOR, "--box", "1,2,3"], "--box 1,2,3: expected x0,y0,x1,y1"),
        (["--model", DETECTOR, "--box", "30,2,1,40"], "--box 30,2,1,40: needs x0 < x1 and y0 < y1"),
        (["--similar-to", ""], "--similar-to: give the reference photo's file"),
        (["--similar-to", "missing.png"], "--similar-to missing.png: no such file"),
        (["--similar-to", "REF", "--versus", "auto"], "--similar-to and --versus conflict"),
        (["--similar-to", "REF", "--class", "tabby"], "--similar-to and --class conflict"),
        (["--versus", "auto", "--target", "probability"], "--versus and --target probability conflict"),
        (["--target", "odds"], "--target odds: unknown; choose from class, probability"),
        (["--head", "tanh"], "--head tanh: unknown"),
        (["--label-threshold", "1.5"], "--label-threshold 1.5: must be between 0 and 1"),
        (["--model", DETECTOR, "--score-threshold", "2"], "--score-threshold 2.0: must be between 0 and 1"),
        (["--model", DETECTOR, "--max-detections", "0"], "--max-detections 0: must be at least 1"),
        (["--method", "cam", "--versus", "auto"], "--method cam: its classifier weights explain the class logit"),
        (["--num-classes", "0"], "--num-classes 0: the model returns embeddings, not class scores"),
    ],
)
def test_bad_target_requests_are_one_line_exit_2_before_anything_loads(tmp_path, flags, needle) -> None:
    import subprocess

    flags = [str(SAMPLES / "dogs.png") if f == "REF" else f for f in flags]
    args = ["explain", str(SAMPLES / "cat.png"), "-o", str(tmp_path / "out"), *flags]
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True)
    assert "EXIT=2" in done.stdout, done.stdout + done.stderr
    assert done.stderr.startswith("gradcam: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert needle in done.stderr, done.stderr
    assert done.stdout.rpartition("IMPORTED=")[2].strip() == "[]"  # nothing heavy: the model was never built
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("model", [SEGMENTER])  # detectors: test_detector_evaluation.py
def test_evaluate_refuses_segmenters_before_the_model_loads(tmp_path, model) -> None:
    """``gradcam evaluate`` imports torch as it starts; neither torchvision nor timm: no model was built."""
    import subprocess

    args = ["evaluate", str(SAMPLES / "horses.jpg"), "-a", str(BOXES), "--model", model, "-o", str(tmp_path / "out")]
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(args)], capture_output=True, text=True)
    assert "EXIT=2" in done.stdout, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "gradcam evaluate: measures the maps of classifiers" in done.stderr
    imported = json.loads(done.stdout.rpartition("IMPORTED=")[2])
    assert "torchvision" not in imported and "timm" not in imported


@pytest.mark.parametrize(("model", "default"), [(DETECTOR, "backbone.body.16"), (SEGMENTER, "backbone.16")])
def test_layers_lists_a_detector_and_segmenter_with_the_default_that_explain_uses(model, default) -> None:
    """The default is the backbone's last block (the one ``explain`` hooks), not a head that runs once per level."""
    from gradcam_cli.model.detectors import build, task_default_layer
    from gradcam_cli.model.layers import trace_layers

    done = gradcam("layers", "--model", model, "--json", "--no-cache")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["path"] for r in rows if r["default"]] == [default]
    built, _, _, _ = build(model, False, None)
    kind = "detector" if model == DETECTOR else "segmenter"
    assert task_default_layer(built.eval(), trace_layers(built.eval(), (320, 320)), kind) == default


def explained(tmp_path: Path, *flags: str) -> tuple[list[dict], Path]:
    out = tmp_path / "out"
    done = gradcam("explain", SAMPLES / "horses.jpg", "-o", out, "--json", *flags, timeout=900)
    assert done.returncode == 0, done.stderr
    found = jsonl(done.stdout)
    assert found
    for record in found:
        jsonschema.validate(record, SCHEMA)
    return found, out


def assert_outputs_written(found: list[dict], out: Path) -> None:
    for record in found:
        assert {"heatmap", "overlay"} <= set(record["files"]), record["files"]
        for path in record["files"].values():
            assert Path(path).is_file() and Path(path).parent == out, path


def test_a_detector_by_name_end_to_end(tmp_path) -> None:
    """Random weights score every class about 1/91: with --score-threshold 0 they detect (here the two most
    confident detections; the command as a user types it, with twenty, runs the same path twenty times)."""
    found, out = explained(
        tmp_path, "--model", DETECTOR, "--no-pretrained", "--score-threshold", "0", "--max-detections", "2"
    )
    assert len(found) == 2
    for record in found:
        assert record["target"] == "detection"
        detection = record["detection"]
        x0, y0, x1, y1 = detection["box"]
        width, height = record["image_size"]
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height and 0 <= detection["score"] <= 1
        assert record["target_value"] == pytest.approx(1 + detection["score"], abs=2e-6)  # it matches itself
        assert record["class_index"] == detection["label"]
    assert found[0]["detection"]["score"] >= found[1]["detection"]["score"]
    assert_outputs_written(found, out)
    assert (out / "results.jsonl").is_file()


def test_a_segmenter_by_name_end_to_end(tmp_path) -> None:
    found, out = explained(tmp_path, "--model", SEGMENTER, "--no-pretrained", "--save-raw")
    assert found
    areas = [record["mask_area"] for record in found]
    assert all(0 < a <= 1 for a in areas) and sum(areas) <= 1 + 1e-9
    assert areas == sorted(areas, reverse=True)
    for record in found:
        assert record["target"] == "segmentation"
        assert {"raw", "mask"} <= set(record["files"])
    assert_outputs_written(found, out)

"""The method family from the command line: every method writes its files, `gradcam methods`, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from gradcam_cli.methods import METHODS

from helpers import SCHEMA, probe, records, run


def test_every_method_in_one_run_writes_its_files_and_records(tmp_path, samples) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("cat.png", "dogs.png"):
        (photos / name).write_bytes((samples / name).read_bytes())
    # The attention methods need a transformer: tests/cli/test_attention_cli.py runs them.
    cnn_methods = [m for m in METHODS if METHODS[m].map_layer != "attention"]
    layered = [m for m in cnn_methods if m != "cam"]  # CAM needs the layer before global pooling: its own run below
    flags = [x for m in layered for x in ("--method", m)]
    # blocks.2 has 40 channels, so Score-CAM and Ablation-CAM stay cheap; occlusion works on the input.
    # The crop view: every photo a 224 x 224 input, so every grid known here.
    result = run(
        "explain",
        photos,
        "-o",
        tmp_path / "out",
        "--json",
        "--layer",
        "blocks.2",
        *flags,
        "--occlusion-window",
        "56",
        "--occlusion-stride",
        "56",
        "--ig-steps",
        "2",
        "--noise-samples",
        "2",
        "--iscam-steps",
        "2",
        "--outputs",
        "heatmap,bbox",
        "--view",
        "crop",
    )
    assert result.exit_code == 0, result.output
    cam = run(
        "explain",
        photos,
        "-o",
        tmp_path / "out",
        "--json",
        "--method",
        "cam",
        "--outputs",
        "heatmap,bbox",
        "--view",
        "crop",
    )
    assert cam.exit_code == 0, cam.output
    recs = records(result) + records(cam)
    assert len(recs) == 2 * len(cnn_methods)
    for rec in recs:
        jsonschema.validate(rec, SCHEMA)
        on_input = METHODS[rec["method"]].map_layer == "input"
        layered_at = {"cam": ("bn2", [7, 7])}.get(rec["method"], ("blocks.2", [28, 28]))
        layer, grid = ("input", [224, 224]) if on_input else layered_at
        assert rec["layer"] == layer and rec["grid"] == grid
        assert rec["class_specific"] is METHODS[rec["method"]].class_specific
        for path in rec["files"].values():
            assert Path(path).exists() and f"_{rec['method']}_{rec['layer']}_c" in Path(path).name, path
    assert {r["method"] for r in recs} == set(cnn_methods)
    # The same class for every method of an image: one forward pass decided it.
    for photo in ("cat.png", "dogs.png"):
        assert len({r["class_index"] for r in recs if r["input"].endswith(photo)}) == 1


def test_two_methods_on_the_sample_folder(tmp_path, samples) -> None:
    # The crop view: every photo a 224 x 224 input, not its full view (up to 1.8x the pixels for Score-CAM's passes).
    result = run(
        "explain",
        samples,
        "-o",
        tmp_path,
        "--json",
        "--method",
        "gradcam",
        "--method",
        "scorecam",
        "--layer",
        "blocks.1",
        "--outputs",
        "heatmap",
        "--batch-size",
        "4",
        "--view",
        "crop",
    )
    assert result.exit_code == 0, result.output
    recs = records(result)
    images = len([p for p in samples.iterdir() if p.suffix in (".png", ".jpg")])
    assert sorted(r["method"] for r in recs) == ["gradcam"] * images + ["scorecam"] * images
    assert len({r["files"]["heatmap"] for r in recs}) == 2 * images


def test_methods_command_lists_needs_class_cost_and_paper() -> None:
    result = run("methods", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(METHODS)
    assert rows["eigencam"]["class_specific"] is False and rows["eigencam"]["needs"] == "activations only"
    assert rows["scorecam"]["needs"] == "extra forward passes" and "C forwards" in rows["scorecam"]["cost"]
    assert all(r["paper"] for r in rows.values())
    table = run("methods")
    assert table.exit_code == 0 and "ablationcam" in table.stdout


def test_methods_command_counts_passes_for_a_model_layer() -> None:
    result = run("methods", "--model", "resnet18", "--layer", "layer4", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    assert "512 forwards" in rows["scorecam"]["cost"]
    assert "512 runs of the network after the layer" in rows["ablationcam"]["cost"]
    assert "169 forwards" in rows["occlusion"]["cost"]  # 13 x 13 windows of 32 px, stride 16, on 224 px


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--method", "eigne"], "--method eigne: unknown; did you mean: eigencam"),
        (["--method", "occlusion", "--layer", "bn2"], "occlusion works on the model's input and takes no layer"),
        (["--method", "eigencam", "--smooth", "eigen"], "--smooth eigen: applies to channel-weighted methods"),
        (["--smooth", "blur"], "--smooth blur: unknown"),
        (["--occlusion-window", "8", "--occlusion-stride", "16", "--method", "occlusion"], "larger than the window"),
        (["--perturbation-batch-size", "0"], "--perturbation-batch-size 0: must be at least 1"),
    ],
)
def test_bad_method_requests_are_refused_before_the_model_loads(tmp_path, samples, flags, needle) -> None:
    args = ["explain", str(samples / "cat.png"), "-o", str(tmp_path / "out"), *flags]
    out = probe(args)
    assert out.exit_code == 2, out.stdout + out.stderr
    assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "torch" not in out.imported and "timm" not in out.imported
    assert not (tmp_path / "out").exists()

"""The `gradcam` command as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import SCHEMA, records, run


@pytest.fixture(scope="module")
def photo_640x480(tmp_path_factory, samples):
    path = tmp_path_factory.mktemp("photos") / "dogs_640x480.jpg"
    Image.open(samples / "dogs.png").convert("RGB").resize((640, 480)).save(path, quality=92)
    return path


def test_explain_writes_four_aligned_pngs_and_valid_json(tmp_path, photo_640x480):
    result = run("explain", photo_640x480, "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    [rec] = records(result)
    jsonschema.validate(rec, SCHEMA)
    assert set(rec["files"]) == {"heatmap", "overlay", "guided", "bbox"}
    for kind, path in rec["files"].items():
        with Image.open(path) as img:
            assert img.size == (640, 480), kind
    assert rec["image_size"] == [640, 480]
    x0, y0, x1, y1 = rec["bbox"]
    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
    assert rec["model"] == "timm/tf_efficientnet_lite0" and rec["layer"] == "bn2"


def test_class_top_k_layers_and_raw(tmp_path, samples):
    result = run(
        "explain",
        samples / "cat_and_dog.png",
        "-o",
        tmp_path,
        "--json",
        "--class",
        "243",
        "--class",
        "tabby",
        "--layer",
        "bn2",
        "--layer",
        "blocks.5",
        "--save-raw",
    )
    assert result.exit_code == 0, result.output
    recs = records(result)
    assert sorted((r["class_index"], r["layer"]) for r in recs) == [
        (243, "blocks.5"),
        (243, "bn2"),
        (281, "blocks.5"),
        (281, "bn2"),
    ]
    for r in recs:
        jsonschema.validate(r, SCHEMA)
        raw = np.load(r["files"]["raw"])
        assert raw.shape == (224, 224) and raw.dtype == np.float32 and 0 <= raw.min() and raw.max() <= 1
    result = run("explain", samples / "cat.png", "-o", tmp_path / "k", "--json", "--top-k", "3", "--outputs", "heatmap")
    recs = records(result)
    assert [r["rank"] for r in recs] == [1, 2, 3]
    assert recs[0]["probability"] >= recs[1]["probability"] >= recs[2]["probability"]
    assert all(set(r["files"]) == {"heatmap"} for r in recs)


def test_output_names_are_deterministic_and_not_overwritten(tmp_path, samples):
    args = ("explain", samples / "samoyed.png", "-o", tmp_path, "--json", "--outputs", "heatmap,bbox")
    first = run(*args)
    assert first.exit_code == 0
    [rec] = records(first)
    assert Path(rec["files"]["heatmap"]).name == f"samoyed_gradcam_bn2_c{rec['class_index']}_heatmap.png"
    before = Path(rec["files"]["heatmap"]).stat().st_mtime_ns
    second = run(*args)
    assert second.exit_code == 1
    assert "--overwrite" in second.stderr
    assert Path(rec["files"]["heatmap"]).stat().st_mtime_ns == before
    assert run(*args, "--overwrite").exit_code == 0


def test_layers_table_and_json():
    result = run("layers", "--model", "resnet50", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    default = [r for r in rows if r["default"]]
    assert [r["path"] for r in default] == ["layer4"]
    assert default[0]["shape"] == [2048, 7, 7]
    assert "layer3" in {r["path"] for r in rows}
    table = run("layers", "--model", "torchvision/resnet50")
    assert table.exit_code == 0
    assert "layer4" in table.stdout and "default" in table.stdout and "2048x7x7" in table.stdout


@pytest.mark.parametrize(
    "name,expected",
    [
        ("resnet50", "layer4"),
        ("tf_efficientnet_lite0", "bn2"),
        ("efficientnet_b0", "bn2"),
        ("convnext_tiny", "stages.3"),
        ("vgg16", "features"),
        ("densenet121", "features"),
        ("mobilenetv3_large_100", "blocks.6"),
        ("torchvision/resnet50", "layer4"),
    ],
)
def test_default_layer(name, expected):
    result = run("layers", "--model", name, "--json")
    assert result.exit_code == 0, result.output
    assert [r["path"] for r in json.loads(result.stdout) if r["default"]] == [expected]


def test_bad_requests_exit_2_with_one_line(tmp_path, samples):
    cat = samples / "cat.png"
    cases = {
        ("--layer", "layer5"): "no such module",
        ("--layer", "classifier"): "not (C, H, W)",
        ("--layer", "global_pool"): "not (C, H, W)",
        ("--class", "1000"): "out of range",
        ("--class", "tabby catt"): "did you mean",
        ("--method", "eigen"): "unknown",
        ("--outputs", "heatmap,movie"): "unknown",
        ("--top-k", "2", "--class", "3"): "conflict",
        ("--model", "resnet5O"): "did you mean",
    }
    for flags, needle in cases.items():
        result = run("explain", cat, "-o", tmp_path, *flags)
        assert result.exit_code == 2, (flags, result.output)
        assert needle in result.stderr, (flags, result.stderr)
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not any(tmp_path.iterdir())


def test_unknown_layer_suggests_close_names(tmp_path, samples):
    result = run("explain", samples / "cat.png", "-o", tmp_path, "--layer", "bn3")
    assert result.exit_code == 2
    assert "bn2" in result.stderr


def test_cam_method_and_refusal(tmp_path, samples):
    ok = run("explain", samples / "cat.png", "-o", tmp_path, "--json", "--method", "cam", "--outputs", "heatmap")
    assert ok.exit_code == 0, ok.output
    assert records(ok)[0]["method"] == "cam"
    refused = run(
        "explain",
        samples / "cat.png",
        "-o",
        tmp_path,
        "--method",
        "cam",
        "--model",
        "convnext_tiny",
        "--no-pretrained",
        "--outputs",
        "heatmap",
    )
    assert refused.exit_code == 2
    assert "not global-average-pooling -> linear" in refused.stderr


def test_hub_failure_names_weights_and_cache(tmp_path, samples, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for model in ("resnet18", "torchvision/resnet18"):
        result = run("explain", samples / "cat.png", "-o", tmp_path, "--model", model)
        assert result.exit_code == 2, result.output
        assert "--weights" in result.stderr and "cache" in result.stderr
        assert "Traceback" not in result.output


def test_weights_file_num_classes_and_labels(tmp_path, samples):
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=3)
    nested = tmp_path / "finetuned.pth"
    torch.save({"state_dict": model.state_dict(), "epoch": 7}, nested)
    flat = tmp_path / "finetuned.safetensors"
    save_file(model.state_dict(), flat)
    labels = tmp_path / "labels.txt"
    labels.write_text("beagle\npug\ncorgi\n")
    outs = []
    for weights in (nested, flat):
        result = run(
            "explain",
            samples / "samoyed.png",
            "-o",
            tmp_path / weights.suffix,
            "--model",
            "resnet18",
            "--weights",
            weights,
            "--num-classes",
            "3",
            "--labels",
            labels,
            "--json",
            "--top-k",
            "3",
        )
        assert result.exit_code == 0, result.output
        recs = records(result)
        assert {r["class_name"] for r in recs} == {"beagle", "pug", "corgi"}
        outs.append([(r["class_index"], r["probability"]) for r in recs])
    assert outs[0] == outs[1]
    # The same weights give the same probabilities as the model in memory.
    from gradcam_cli import load_model

    # (Unfolded: the file's tensors themselves; folding is tested in test_fusion.py.)
    loaded = load_model("resnet18", weights=flat, num_classes=3, fold_bn=False)
    assert list(loaded.model.state_dict()) == list(model.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(loaded.model.state_dict().values(), model.state_dict().values()))
    wrong = run("explain", samples / "samoyed.png", "-o", tmp_path / "w", "--model", "resnet18", "--weights", flat)
    assert wrong.exit_code == 2
    assert "mis-shaped keys" in wrong.stderr and "fc.weight" in wrong.stderr
    bad_labels = tmp_path / "two.txt"
    bad_labels.write_text("a\nb\n")
    wrong = run(
        "explain",
        samples / "samoyed.png",
        "-o",
        tmp_path / "w",
        "--model",
        "resnet18",
        "--weights",
        flat,
        "--num-classes",
        "3",
        "--labels",
        bad_labels,
    )
    assert wrong.exit_code == 2 and "has 2 names but the model has 3 classes" in wrong.stderr


def test_folder_input_and_human_table(tmp_path, samples):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("cat.png", "samoyed.png"):
        (folder / name).write_bytes((samples / name).read_bytes())
    result = run("explain", folder, "-o", tmp_path / "out", "--outputs", "overlay")
    assert result.exit_code == 0, result.output
    assert "cat.png" in result.stdout and "samoyed.png" in result.stdout
    assert len(list((tmp_path / "out").glob("*_overlay.png"))) == 2


def test_bad_image_reported_and_batch_goes_on(tmp_path, samples):
    broken = tmp_path / "broken.jpg"
    broken.write_text("not a jpeg")
    result = run("explain", broken, samples / "cat.png", "-o", tmp_path / "out", "--json", "--outputs", "heatmap")
    assert result.exit_code == 1
    recs = records(result)
    errors = [r for r in recs if "error" in r]
    assert len(errors) == 1 and "broken.jpg" in errors[0]["error"]
    jsonschema.validate(errors[0], SCHEMA)
    assert any(r.get("class_index") is not None for r in recs)


def test_console_script_and_module_entry_points(tmp_path, samples):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    exe = Path(sys.executable).with_name("gradcam")
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "explain" in out.stdout and "layers" in out.stdout
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcam_cli",
            "explain",
            str(samples / "cat.png"),
            "-o",
            str(tmp_path),
            "--json",
            "--outputs",
            "heatmap",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    rec = json.loads(out.stdout.splitlines()[0])
    assert 281 <= rec["class_index"] <= 285


def test_cuda_request_without_gpu_is_a_usage_error(tmp_path, samples):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = run("explain", samples / "cat.png", "-o", tmp_path, "--device", "cuda")
    assert result.exit_code == 2 and "no CUDA GPU" in result.stderr

"""Bad requests: one line, exit 2, and no output folder made."""

import os

import pytest
import torch

from helpers import SAMPLES, assert_usage_error, deny_reading, records, refuse_access, run, samoyed_photo


def test_leading_dash_name_after_double_dash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    samoyed_photo().save(tmp_path / "-x.jpg")
    samoyed_photo().save(tmp_path / "a b ü.jpg")
    result = run(
        "explain", "-o", "out", "--json", "--outputs", "heatmap", "--device", "cpu", "--", "-x.jpg", "a b ü.jpg"
    )
    assert result.exit_code == 0, result.output
    assert sorted(r["input"] for r in records(result)) == ["-x.jpg", "a b ü.jpg"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == sorted(
        f"{stem}_gradcam_bn2_c{r['class_index']}_heatmap.png"
        for stem, r in zip(("-x", "a b ü"), sorted(records(result), key=lambda r: r["input"]))
    )
    without = run("explain", "-o", "out", "-x.jpg")  # without "--" it is an (unknown) option: a usage error
    assert without.exit_code == 2


@pytest.mark.parametrize(
    "flags,needle",
    [
        pytest.param(("--model", "resnet5O"), "resnet50", id="unknown-model"),  # the right name among the closest
        pytest.param(("--model", "torchvision/resnet5"), "torchvision/resnet50", id="unknown-torchvision-model"),
        pytest.param(("--layer", "blocks.9"), "blocks.6", id="unknown-layer"),
        pytest.param(("--layer", "classifier"), "no spatial map", id="non-spatial-layer"),  # and says why
        pytest.param(("--class", "-1"), "out of range", id="negative-class"),
        pytest.param(("--device", "tpu"), "not a device", id="bad-device"),
        pytest.param(("-", "-"), "only once", id="stdin-twice"),
        pytest.param(("--workers", "-1"), "--workers", id="negative-workers"),
        pytest.param(("--alpha", "2"), "--alpha", id="alpha-out-of-range"),
        pytest.param(("--bbox-threshold", "0"), "--bbox-threshold", id="bbox-threshold-out-of-range"),
        pytest.param(("--batch-size", "0"), "--batch-size", id="zero-batch"),
        pytest.param(("--top-k", "0"), "--top-k", id="zero-top-k"),
        pytest.param(("--shard", "2"), "I/N", id="bad-shard"),
        pytest.param(
            ("--model", "torchvision/resnet18", "--num-classes", "3"), "--num-classes", id="num-classes-vs-pretrained"
        ),
        pytest.param(("--labels", "/nonexistent/labels.txt"), "--labels", id="missing-labels-file"),
    ],
)
def test_more_bad_requests_exit_2_with_one_line(tmp_path, cat, flags, needle):
    out = tmp_path / "out"
    assert_usage_error(run("explain", cat, "-o", out, *flags, input=""), needle, out)


def test_bad_request_creates_no_output_dir(tmp_path, cat):
    out = tmp_path / "never"
    result = run("explain", cat, "-o", out, "--model", "resnet5O")
    assert result.exit_code == 2
    assert not out.exists()


@pytest.mark.parametrize("option", ["--weights", "--labels", "--output-dir"])
def test_unreadable_path_options_give_one_line(tmp_path, resnet18_state, monkeypatch, option):
    path = tmp_path / ("locked.pt" if option == "--weights" else "labels.txt" if option == "--labels" else "outdir")
    if option == "--weights":
        torch.save(resnet18_state, path)
    elif option == "--labels":
        path.write_text("a\nb\nc\n")
    else:
        path.mkdir()
    refuse_access(monkeypatch, path, os.R_OK | os.W_OK | os.X_OK)  # what chmod 000 means for a non-root user
    if option != "--output-dir":
        deny_reading(monkeypatch, path)
    args = [
        "explain",
        SAMPLES / "cat.png",
        "--model",
        "resnet18",
        "--no-pretrained",
        "--num-classes",
        "3",
        "--outputs",
        "heatmap",
    ]
    if option != "--output-dir":
        args += ["-o", tmp_path / "out", option, path]
    else:
        args += ["-o", path]
    result = run(*args)
    assert_usage_error(result, f"{option} {path}: ")
    assert "permission denied" in result.stderr.lower() or "not a writable directory" in result.stderr

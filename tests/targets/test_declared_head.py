"""A ``--labels`` file may say how the model was trained: a sigmoid (multi-label) head is then assumed without
``--head sigmoid``, the record says so, ``--head`` given on the command line wins, and a request that a sigmoid
head cannot take is refused before the model loads, naming the file."""

from __future__ import annotations

import json

import pytest
import torch

from gradcam_cli.errors import UsageError
from gradcam_cli.model.labels import read_label_file

from helpers import SAMPLES, records, run

NAMES = ["cat", "dog", "car", "tree"]
BY_INDEX = {str(i): n for i, n in enumerate(NAMES)}
ON = [0, 2]  # the labels the seeded model gives a high sigmoid


@pytest.mark.parametrize(
    ("content", "head"),
    [
        ({"labels": NAMES, "head": "sigmoid"}, "sigmoid"),
        ({"labels": NAMES, "head": "Softmax"}, "softmax"),
        ({"labels": BY_INDEX, "multi_label": True}, "sigmoid"),
        ({"labels": NAMES, "multi_label": False}, "softmax"),
        ({"id2label": BY_INDEX, "problem_type": "multi_label_classification"}, "sigmoid"),
        ({"id2label": BY_INDEX, "problem_type": "single_label_classification"}, "softmax"),
        ({"id2label": BY_INDEX, "problem_type": None}, None),
        ({"labels": NAMES}, None),
        (NAMES, None),
        (BY_INDEX, None),
    ],
)
def test_the_forms_a_labels_file_takes(tmp_path, content, head) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(content))
    declared = read_label_file(path)
    assert declared.names == NAMES and declared.head == head


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ({"labels": NAMES, "head": "tanh"}, "head 'tanh': expected sigmoid or softmax"),
        ({"labels": NAMES, "multi_label": "yes"}, "multi_label must be true or false"),
        ({"id2label": {"0": "a"}, "problem_type": "regression"}, "problem_type 'regression'"),
        ({"labels": {"0": "a", "2": "b"}}, "keys must be 0..N-1"),
        ({"labels": 3}, "JSON must be a list of names"),
    ],
)
def test_a_head_the_file_cannot_mean_is_refused_naming_it(tmp_path, content, needle) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(content))
    with pytest.raises(UsageError, match="--labels .*labels.json: ") as caught:
        read_label_file(path)
    assert needle in str(caught.value)


@pytest.fixture(scope="module")
def multilabel_weights(tmp_path_factory):
    """A seeded 4-label resnet18 whose head gives labels 0 and 2 a sigmoid above 0.99 and the others below 0.01
    on any photo (its biases outweigh the random weights' logits, which stay within a few units)."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=4)
    with torch.no_grad():
        model.fc.weight.mul_(0.1)
        model.fc.bias.copy_(torch.tensor([8.0, -8.0, 8.0, -8.0]))
    path = tmp_path_factory.mktemp("multilabel") / "multilabel.safetensors"
    save_file(model.state_dict(), path)
    return path


def explain_with(tmp_path, weights, labels, *flags):
    return run(
        "explain", SAMPLES / "cat.png", "-o", tmp_path / "out", "--model", "resnet18", "--weights", weights,
        "--num-classes", "4", "--labels", labels, "--json", *flags,
    )  # fmt: skip


@pytest.mark.parametrize("form", ["head", "hugging-face-config"])
def test_a_declared_sigmoid_head_explains_every_label_above_the_threshold(tmp_path, multilabel_weights, form) -> None:
    content = (
        {"labels": NAMES, "head": "sigmoid"}
        if form == "head"
        else {"id2label": BY_INDEX, "problem_type": "multi_label_classification"}
    )
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps(content))
    result = explain_with(tmp_path, multilabel_weights, labels)
    assert result.exit_code == 0, result.output
    recs = records(result)
    assert [r["class_name"] for r in recs] == [NAMES[i] for i in ON]
    assert {r["head"] for r in recs} == {"sigmoid"}
    assert all(r["probability"] > 0.99 for r in recs)  # the sigmoid's, not a softmax shared between the two


def test_the_command_line_head_wins_over_the_file(tmp_path, multilabel_weights) -> None:
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"labels": NAMES, "head": "sigmoid"}))
    result = explain_with(tmp_path, multilabel_weights, labels, "--head", "softmax")
    assert result.exit_code == 0, result.output
    (only,) = records(result)
    assert only["head"] == "softmax" and only["class_name"] in ("cat", "car") and only["probability"] < 0.6


def test_a_plain_list_keeps_the_softmax_head(tmp_path, multilabel_weights) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(NAMES) + "\n")
    result = explain_with(tmp_path, multilabel_weights, labels)
    assert result.exit_code == 0, result.output
    assert [r["head"] for r in records(result)] == ["softmax"]


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--versus", "dog"], "which --versus cannot take"),
        (["--method", "cam"], "which --method cam cannot take"),
    ],
)
def test_requests_a_declared_sigmoid_head_cannot_take_are_refused_before_loading(
    tmp_path, monkeypatch, multilabel_weights, flags, needle
) -> None:
    import gradcam_cli.model.loading

    from helpers import assert_usage_error

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the request was refused")

    monkeypatch.setattr(gradcam_cli.model.loading, "load_model", no_load)
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"labels": NAMES, "multi_label": True}))
    result = explain_with(tmp_path, multilabel_weights, labels, *flags)
    assert_usage_error(result, needle, tmp_path / "out")
    assert f"--labels {labels}: declares a sigmoid (multi-label) head" in result.stderr
    assert "--head softmax" in result.stderr

"""The transformer-native methods and the input attributions from the command line: they run without ``--layer``,
their records say what they read (every attention block's tokens, or the model's input), a ``--layer`` given to
them alone is refused, a model without attention is refused, and ``gradcam methods`` lists their costs and the
models they apply to."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from helpers import SAMPLES, SCHEMA, records, run

ATTENTION_METHODS = ("rollout", "chefer", "legrad")
INPUT_METHODS = ("inputxgradient", "integratedgradients", "smoothgrad", "vargrad")
VIT = ("--model", "timm/vit_tiny_patch16_224", "--no-pretrained")
CHEAP = ("--ig-steps", "2", "--noise-samples", "2")  # the passes are counted, not the maps judged, here


def test_methods_without_a_layer_run_on_a_vit_and_the_record_says_what_they_read(tmp_path) -> None:
    flags = [x for m in ATTENTION_METHODS + INPUT_METHODS for x in ("--method", m)]
    result = run("explain", SAMPLES / "cat.png", "-o", tmp_path, "--json", *VIT, *flags, *CHEAP, "--outputs", "heatmap")
    assert result.exit_code == 0, result.output
    recs = {r["method"]: r for r in records(result)}
    assert set(recs) == set(ATTENTION_METHODS + INPUT_METHODS)
    for method, rec in recs.items():
        jsonschema.validate(rec, SCHEMA)
        if method in ATTENTION_METHODS:  # 224 / 16 = 14 patches a side, after the class token
            assert (rec["layer"], rec["layout"], rec["grid"], rec["prefix_tokens"]) == (
                "attention",
                "tokens",
                [14, 14],
                1,
            )
        else:
            assert (rec["layer"], rec["layout"], rec["grid"], rec["prefix_tokens"]) == ("input", "input", [224, 224], 0)
        assert rec["class_specific"] is (method != "rollout")  # rollout does not depend on the class
        assert rec["output_size"] == rec["image_size"] and not rec["map_empty"]
        heatmap = Path(rec["files"]["heatmap"])
        assert heatmap.exists() and f"_{method}_{rec['layer']}_c" in heatmap.name


@pytest.mark.parametrize("method,where", [("rollout", "attention"), ("integratedgradients", "input")])
def test_a_layer_for_methods_that_take_none_is_refused(tmp_path, method, where) -> None:
    result = run("explain", SAMPLES / "cat.png", "-o", tmp_path, *VIT, "--method", method, "--layer", "blocks.0")
    assert result.exit_code == 2
    assert f"{method} works on the model's {where} and takes no layer" in result.output


def test_attention_methods_on_a_model_without_attention_are_refused(tmp_path) -> None:
    result = run("explain", SAMPLES / "cat.png", "-o", tmp_path, "--method", "chefer")
    assert result.exit_code != 0
    assert "--method chefer: the model has no attention module" in result.output
    assert not list(tmp_path.glob("*.png"))


@pytest.mark.parametrize(
    "flags,needle",
    [
        (["--ig-baseline", "white"], "--ig-baseline white"),
        (["--ig-steps", "0"], "--ig-steps 0: must be at least 1"),
        (["--noise-level", "0"], "--noise-level 0.0: must be in (0, 1]"),
        (["--noise-samples", "0"], "--noise-samples 0: must be at least 1"),
        (["--rollout-fusion", "median"], "--rollout-fusion median"),
        (["--rollout-discard", "1"], "--rollout-discard 1.0: must be in [0, 1)"),
    ],
)
def test_bad_attribution_settings_are_refused(tmp_path, flags, needle) -> None:
    result = run("explain", SAMPLES / "cat.png", "-o", tmp_path, "--method", "smoothgrad", *flags)
    assert result.exit_code == 2 and needle in result.output, result.output


def test_methods_lists_the_new_methods_costs_and_the_models_they_apply_to() -> None:
    result = run("methods", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["method"]: r for r in json.loads(result.stdout)}
    for method in ATTENTION_METHODS:
        assert "transformers" in rows[method]["applies_to"] and rows[method]["uses_layer"] is False
    for method in INPUT_METHODS:
        assert rows[method]["applies_to"] == "any classifier" and rows[method]["uses_layer"] is False
    assert rows["rollout"]["cost"].startswith("1 forward (shared)")
    assert "backward" in rows["chefer"]["cost"] and "per block" in rows["legrad"]["cost"]
    assert "--ig-steps" in rows["integratedgradients"]["cost"]
    assert all("--noise-samples" in rows[m]["cost"] for m in ("smoothgrad", "vargrad"))
    table = run("methods", env={"COLUMNS": "300"})  # a wide terminal: no name folded over two lines
    assert table.exit_code == 0 and "integratedgradients" in table.stdout and "transformers" in table.stdout


def test_evaluate_ranks_the_input_attributions_with_their_settings(tmp_path) -> None:
    annotations = Path(__file__).resolve().parents[1] / "data" / "sample_boxes.csv"
    flags = ("--method", "gradcam,inputxgradient,integratedgradients", "--ig-steps", "2", "--ig-baseline", "mean")
    result = run("evaluate", SAMPLES, "-a", annotations, "-o", tmp_path, *flags)
    assert result.exit_code == 0, result.output
    rows = {line.split("\t")[0]: line.split("\t")[1] for line in result.stdout.splitlines() if "\t" in line}
    assert rows == {"gradcam": "bn2", "inputxgradient": "input", "integratedgradients": "input"}

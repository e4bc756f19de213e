"""``gradcam compare BASELINE CANDIDATE`` on runs of constructed checkpoints: EfficientNet-Lite0's bundled ImageNet
weights saved with safetensors, and the same weights with the last stage re-initialised.

(A seeded random timm model is no good here: its maps come from the photo's structure far more than from its
weights, so re-initialising its last stage leaves them alike: test_resnet keeps a Spearman of about 0.87.)
"""

import copy
import json
import shutil

import pytest
import torch
import xmlschema
from safetensors.torch import save_file

from helpers import ROOT, SAMPLES, run

SCHEMA = xmlschema.XMLSchema(ROOT / "tests" / "data" / "junit.xsd")
MODEL = ["--model", "tf_efficientnet_lite0", "--no-pretrained"]
LAST_STAGE = ("blocks.6", "conv_head", "bn2")


def _save(model: torch.nn.Module, path):
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """golden/ and same/ (the bundled weights, two runs), changed/ (the last stage re-initialised)."""
    from gradcam_cli import load_model

    root = tmp_path_factory.mktemp("compare")
    photos = root / "photos"
    shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.md"))
    trained = load_model(fold_bn=False, memory_format="contiguous").model
    changed = copy.deepcopy(trained)
    torch.manual_seed(0)
    for name in LAST_STAGE:
        for module in changed.get_submodule(name).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    weights = {"golden": _save(trained, root / "a.safetensors"), "changed": _save(changed, root / "b.safetensors")}
    weights["same"] = weights["golden"]
    for name, path in weights.items():
        done = run(
            "explain", photos, *MODEL, "--weights", path, "--save-raw", "--outputs", "heatmap", "-o", root / name
        )
        assert done.exit_code == 0, done.output
    return root


def _csv(folder) -> list[dict]:
    import csv

    with open(folder / "pairs.csv", newline="", encoding="utf-8") as fh:
        return [row for row in csv.DictReader(fh) if not row["unpaired"]]


def test_the_same_weights_give_one_and_pass(runs):
    out = runs / "out-same"
    done = run("compare", runs / "golden", runs / "same", "--fail-under", "spearman=1,ssim=1", "-o", out, "--json")
    assert done.exit_code == 0, done.output
    summary = json.loads(done.stdout)
    assert summary["passed"] and summary["pairs"] == 8 and not summary["unpaired"]
    assert all(summary["means"][m] == 1.0 for m in ("spearman", "ssim", "top10_iou", "top25_iou", "box_iou"))
    assert summary["means"]["same_class"] == 1.0 and summary["means"]["probability_change"] == 0.0


def test_a_run_compared_with_itself_moved_elsewhere_gives_one(runs, tmp_path):
    """A golden folder restored from a CI cache at another path still finds its maps."""
    moved = tmp_path / "cache" / "golden"
    shutil.copytree(runs / "golden", moved)
    done = run("compare", runs / "golden", moved, "--fail-under-mean", "spearman=1", "-o", tmp_path / "out")
    assert done.exit_code == 0, done.output
    assert {float(r["spearman"]) for r in _csv(tmp_path / "out")} == {1.0}


def test_a_reinitialised_last_stage_fails_naming_the_images(runs):
    out, junit = runs / "out-changed", runs / "changed.xml"
    done = run(
        "compare", runs / "golden", runs / "changed", "--fail-under", "spearman=0.9", "--junit", junit, "-o", out
    )
    assert done.exit_code == 1, done.output
    rows = _csv(out)
    spearman = [float(r["spearman"]) for r in rows]
    assert sum(spearman) / len(spearman) < 0.5
    failing = [r for r in rows if float(r["spearman"]) < 0.9]
    lines = [line for line in done.stderr.splitlines() if line.startswith("gradcam: FAIL ")]
    assert len(lines) == len(failing) >= 6
    assert [line.split()[2] for line in lines] == [r["input"] for r in failing]  # worst first, as the CSV
    shown = [float(line.split("spearman ")[1].split()[0]) for line in lines]
    assert shown == sorted(shown)  # worst first: spearman is the only bound, so the lowest first
    assert sorted(shown) == pytest.approx(sorted(float(r["spearman"]) for r in failing), abs=1e-4)
    SCHEMA.validate(str(junit))
    tree = SCHEMA.to_dict(str(junit))
    suite = tree["testsuite"][0]
    assert (suite["@tests"], suite["@failures"]) == (8, len(failing))
    messages = [c["failure"]["@message"] for c in suite["testcase"] if "failure" in c]
    assert len(messages) == len(failing) and all(" < 0.9" in m for m in messages)
    assert len(list((out / "pictures").glob("*_difference.png"))) == 8


def _copy_run(runs, tmp_path, name="edited"):
    copied = tmp_path / name
    shutil.copytree(runs / "same", copied)
    return copied


def _edit_run_info(folder, change):
    info = json.loads((folder / "run.json").read_text())
    change(info)
    (folder / "run.json").write_text(json.dumps(info))


def test_another_view_is_refused_with_the_reason(runs, tmp_path):
    other = _copy_run(runs, tmp_path)
    _edit_run_info(other, lambda info: info.update(view="full"))
    done = run("compare", runs / "golden", other, "-o", tmp_path / "out")
    assert done.exit_code == 2 and "the views differ (baseline crop, candidate full)" in done.stderr
    allowed = run("compare", runs / "golden", other, "-o", tmp_path / "out", "--allow-mismatch")
    assert allowed.exit_code == 0 and "compared anyway" in allowed.stderr


def test_another_class_set_is_refused_with_the_reason(runs, tmp_path):
    other = _copy_run(runs, tmp_path)
    lines = (other / "results.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["class_name"] = "not " + str(first["class_name"])
    (other / "results.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    done = run("compare", runs / "golden", other, "-o", tmp_path / "out")
    assert done.exit_code == 2 and f"the class sets differ: class {first['class_index']} is" in done.stderr


def test_another_preprocessing_is_compared_with_a_warning(runs, tmp_path):
    other = _copy_run(runs, tmp_path)
    _edit_run_info(other, lambda info: info["preprocess"].update(interpolation="bilinear", mean=[0.4, 0.5, 0.6]))
    done = run("compare", runs / "golden", other, "-o", tmp_path / "out")
    assert done.exit_code == 0, done.output
    assert (
        "the preprocessing differs (interpolation bicubic -> bilinear; mean 0.5,0.5,0.5 -> 0.4,0.5,0.6)" in done.stderr
    )


def test_explanations_only_one_run_has_are_reported_and_fail_a_verdict(runs, tmp_path):
    other = _copy_run(runs, tmp_path)
    lines = (other / "results.jsonl").read_text().splitlines()
    (other / "results.jsonl").write_text("\n".join(lines[1:]) + "\n")
    dropped = json.loads(lines[0])["input"].rsplit("/", 1)[-1]
    plain = run("compare", runs / "golden", other, "-o", tmp_path / "out")
    assert plain.exit_code == 0 and "1 explanation only in the baseline, e.g. " + dropped in plain.stderr
    judged = run("compare", runs / "golden", other, "-o", tmp_path / "out", "--fail-under", "spearman=0.5", "--json")
    assert judged.exit_code == 1
    assert f"FAIL {dropped} gradcam bn2 top-1: missing (not in the candidate)" in judged.stderr
    assert json.loads(judged.stdout)["unpaired"][0]["input"] == dropped


def test_maps_of_another_size_are_resampled_with_a_warning(runs, tmp_path):
    smaller = tmp_path / "smaller"
    photos = [p for p in sorted(SAMPLES.iterdir()) if p.suffix in (".png", ".jpg")]
    done = run(
        "explain",
        *photos,
        *MODEL,
        "--weights",
        runs / "a.safetensors",
        "--save-raw",
        "--outputs",
        "heatmap",
        "--max-output-pixels",
        "40000",
        "-o",
        smaller,
    )
    assert done.exit_code == 0, done.output
    compared = run("compare", runs / "golden", smaller, "-o", tmp_path / "out", "--fail-under-mean", "spearman=0.95")
    assert compared.exit_code == 0, compared.output
    assert "max_output_pixels 16000000 -> 40000" in compared.stderr and "were resampled" in compared.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fail-under", "spearmann=0.9"], "unknown metric 'spearmann'; did you mean: spearman?"),
        (["--fail-under", "spearman>0.9"], "expected METRIC=VALUE"),
        (["--fail-under", "spearman=high"], "is not a finite number"),
        (["--fail-under-mean", "ssim=nan"], "is not a finite number"),
        (["--method", "layercam"], "applies to the one-process form only"),
    ],
)
def test_bad_requests_exit_2(runs, args, message):
    done = run("compare", runs / "golden", runs / "same", *args)
    assert done.exit_code == 2 and message in done.stderr


def test_missing_folders_exit_2(runs, tmp_path):
    assert "no such folder" in run("compare", runs / "golden", tmp_path / "nowhere").stderr
    done = run("compare", runs / "golden", tmp_path)
    assert done.exit_code == 2 and "no results.jsonl here" in done.stderr
    assert run("compare", runs / "golden", runs / "same", "-o", runs / "same").exit_code == 2  # not into a run

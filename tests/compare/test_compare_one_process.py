"""The one-process form, ``gradcam compare PHOTOS --model M --weights A --against-weights B``: the same pairs and
numbers as comparing two explain runs' folders, other architectures paired by layer position with the reasons
said, and the same results on Ray's actors."""

import csv
import shutil

import pytest
import torch
from safetensors.torch import save_file

from helpers import SAMPLES, run

MODEL = ["--model", "test_resnet", "--no-pretrained"]


def _rows(folder) -> dict[tuple, dict]:
    with open(folder / "pairs.csv", newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if not r["unpaired"]]
    return {(r["input"].rsplit("/", 1)[-1], r["method"], r["layer"], r["slot"]): r for r in rows}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Seeded random test_resnet weights (a), and the same with layer4 re-initialised (b); the photos."""
    import timm

    root = tmp_path_factory.mktemp("one-process")
    photos = root / "photos"
    shutil.copytree(SAMPLES, photos, ignore=shutil.ignore_patterns("*.md"))
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "a.safetensors"))
    torch.manual_seed(1)
    for module in model.layer4.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(root / "b.safetensors"))
    return root, photos


def test_one_process_gives_the_numbers_of_two_explain_runs(setup):
    root, photos = setup
    methods = ["--method", "gradcam,layercam", "--top-k", "2"]
    for name in ("a", "b"):
        done = run(
            "explain",
            photos,
            *MODEL,
            *methods,
            "--weights",
            root / f"{name}.safetensors",
            "--save-raw",
            "--outputs",
            "heatmap",
            "-o",
            root / f"run-{name}",
        )
        assert done.exit_code == 0, done.output
    folders = run("compare", root / "run-a", root / "run-b", "-o", root / "by-folders")
    one = run(
        "compare",
        photos,
        *MODEL,
        *methods,
        "--weights",
        root / "a.safetensors",
        "--against-weights",
        root / "b.safetensors",
        "-o",
        root / "one-process",
        "--workers",
        "2",
        "--batch-size",
        "3",
    )
    assert folders.exit_code == 0 and one.exit_code == 0, one.output
    expected, found = _rows(root / "by-folders"), _rows(root / "one-process")
    assert set(found) == set(expected) and len(found) == 8 * 2 * 2
    for key, row in expected.items():
        for metric in ("spearman", "ssim", "top10_iou", "top25_iou", "box_iou", "same_class", "probability_change"):
            # The CSV rounds to 6 decimals (each value within 5e-7); batches of 3 against 1 change only float32
            # summation order, which must not move a metric by more than a few units of that rounding.
            assert float(found[key][metric]) == pytest.approx(float(row[metric]), abs=1e-5), (key, metric)
    assert "8 done, 0 skipped, 0 failed of 8" in one.stderr


def test_another_architecture_is_paired_by_layer_position_with_the_reasons(setup):
    root, photos = setup
    done = run(
        "compare",
        photos,
        *MODEL,
        "--weights",
        root / "a.safetensors",
        "--against-model",
        "test_efficientnet",
        "-o",
        root / "architectures",
        "--json",
    )
    assert done.exit_code == 0, done.output
    assert "the runs explained other layers: paired in order (" in done.stderr
    assert "the preprocessing differs (interpolation bilinear -> bicubic; mean 0.5,0.5,0.5 -> 0.485" in done.stderr
    assert '"pairs": 8' in done.stdout


def test_one_process_refuses_bad_requests_before_loading(setup, tmp_path):
    root, photos = setup
    assert run("compare", photos, *MODEL, "--against-weights", tmp_path / "none.pt").exit_code == 2
    done = run("compare", photos, *MODEL, "--against-weights", root / "b.safetensors", "--fail-under", "x=1")
    assert done.exit_code == 2 and "unknown metric 'x'" in done.stderr


@pytest.mark.slow
def test_one_process_on_ray_gives_the_local_numbers(setup):
    pytest.importorskip("ray")
    root, photos = setup
    args = ["compare", photos, *MODEL, "--weights", root / "a.safetensors", "--against-weights", root / "b.safetensors"]
    local = run(*args, "-o", root / "local")
    on_ray = run(*args, "-o", root / "ray", "--engine", "ray", "--actors", "1")
    assert local.exit_code == 0 and on_ray.exit_code == 0, on_ray.output
    expected, found = _rows(root / "local"), _rows(root / "ray")
    assert set(found) == set(expected) and len(found) == 8
    for key, row in expected.items():
        assert float(found[key]["spearman"]) == pytest.approx(float(row["spearman"]), abs=1e-5)

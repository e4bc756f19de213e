"""``gradcam evaluate`` as a user runs it, on the hand-labelled sample photos and on a constructed
model whose right answer is known; and ``--view full``."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import ROOT, run

BOXES = ROOT / "tests" / "data" / "sample_boxes.csv"
KEYS = {
    "method",
    "layer",
    "images",
    "top1_loc",
    "gt_known_loc",
    "mean_iou",
    "maxboxacc",
    "pointing_game",
    "deletion_auc",
    "insertion_auc",
    "road",
    "average_drop",
    "increase_in_confidence",
}


def objects(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


# ---------------------------------------------------------------- annotations


def _voc(folder: Path, name: str, objects_: list[tuple[str, tuple[int, int, int, int]]]) -> None:
    parts = "".join(
        f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
        f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
        for label, (x0, y0, x1, y1) in objects_
    )
    (folder / f"{Path(name).stem}.xml").write_text(
        f"<annotation><folder>x</folder><filename>{name}</filename>{parts}</annotation>"
    )


def test_csv_voc_and_coco_give_the_same_boxes(tmp_path) -> None:
    from gradcam_cli.metrics.annotations import read_annotations
    from gradcam_cli.model.labels import imagenet_labels

    csv_path = tmp_path / "boxes.csv"
    csv_path.write_text(
        "file,class,x0,y0,x1,y1\ncat_and_dog.png,243,77,14,165,143\n"
        "cat_and_dog.png,tabby,42,118,200,218\nsub/cat.png,Egyptian cat,48,35,365,341\n"
    )
    voc = tmp_path / "voc"
    voc.mkdir()
    # VOC corners are 1-based and inclusive: pixels 78..165 are x0 = 77, x1 = 165 here.
    _voc(voc, "cat_and_dog.png", [("bull mastiff", (78, 15, 165, 143)), ("281", (43, 119, 200, 218))])
    _voc(voc, "cat.png", [("Egyptian cat", (49, 36, 365, 341))])
    coco = tmp_path / "coco.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "cat_and_dog.png"}, {"id": 7, "file_name": "cat.png"}],
                "categories": [{"id": 3, "name": "bull mastiff"}, {"id": 4, "name": "tabby"}, {"id": 5, "name": "285"}],
                "annotations": [
                    {"image_id": 1, "category_id": 3, "bbox": [77, 14, 88, 129]},
                    {"image_id": 1, "category_id": 4, "bbox": [42, 118, 158, 100]},
                    {"image_id": 7, "category_id": 5, "bbox": [48, 35, 317, 306]},
                ],
            }
        )
    )
    found = []
    for source in (csv_path, voc, coco):
        ann = read_annotations(source)
        ann.resolve(imagenet_labels(), 1000)
        both = ann.for_image(str(ROOT / "sample_images" / "cat_and_dog.png"))  # matched by file name
        cat = ann.for_image("elsewhere/cat.png")
        found.append(
            ({c: both.boxes_of(c) for c in both.class_indices()}, {c: cat.boxes_of(c) for c in cat.class_indices()})
        )
        assert ann.for_image("bird.png") is None
    expected = (
        {243: [(77.0, 14.0, 165.0, 143.0)], 281: [(42.0, 118.0, 200.0, 218.0)]},
        {285: [(48.0, 35.0, 365.0, 341.0)]},
    )
    assert found == [expected] * 3


def test_a_path_wins_over_a_file_name_and_two_files_of_one_name_need_paths(tmp_path) -> None:
    from gradcam_cli.metrics.annotations import read_annotations

    (tmp_path / "a").mkdir()
    path = tmp_path / "boxes.csv"
    path.write_text("file,class,x0,y0,x1,y1\na/x.png,1,0,0,5,5\nb/x.png,2,0,0,5,5\ny.png,3,0,0,5,5\n")
    ann = read_annotations(path)
    assert ann.for_image(str(tmp_path / "a" / "x.png")).objects[0].label == "1"  # relative to the CSV's folder
    assert ann.for_image("other/x.png") is None  # two annotated files are called x.png: no guessing
    assert ann.for_image("other/y.png").objects[0].label == "3"


@pytest.mark.parametrize(
    "content,expected",
    [
        ("file,class,x0,y0\ncat.png,1,0,0\n", "needs the columns file,class,x0,y0,x1,y1 (missing x1,y1)"),
        ("file,class,x0,y0,x1,y1\ncat.png,1,10,0,5,5\n", "boxes.csv:2: box 10,0,5,5 is empty or not finite"),
        ("file,class,x0,y0,x1,y1\ncat.png,1,a,0,5,5\n", "boxes.csv:2: box ['a', '0', '5', '5'] is not four numbers"),
        ("file,class,x0,y0,x1,y1\ncat.png,,0,0,5,5\n", "boxes.csv:2: no class given"),
        ("file,class,x0,y0,x1,y1\n", "no boxes found"),
        (
            "file,class,x0,y0,x1,y1\ncat.png,tabbby,0,0,5,5\n",
            "boxes.csv:2: 'tabbby': no class of that name; did you mean: 'tabby'",
        ),
        ("file,class,x0,y0,x1,y1\ncat.png,1000,0,0,5,5\n", "boxes.csv:2: 1000: out of range"),
    ],
)
def test_bad_annotations_are_one_line_usage_errors(tmp_path, samples, content, expected) -> None:
    path = tmp_path / "boxes.csv"
    path.write_text(content)
    result = run("evaluate", samples / "cat.png", "-a", path, "-o", tmp_path / "out")
    assert result.exit_code == 2, result.output
    assert expected in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out").exists()


def test_inputs_none_of_which_is_annotated_are_a_usage_error(tmp_path, samples) -> None:
    result = run("evaluate", samples / "bird.png", "-a", BOXES, "-o", tmp_path / "out")
    assert result.exit_code == 2 and "none of the 1 input images is annotated there" in result.output
    assert not (tmp_path / "out").exists()


def test_missing_or_malformed_annotation_files(tmp_path, samples) -> None:
    assert "no such file or folder" in run("evaluate", samples / "cat.png", "-a", tmp_path / "nope.csv").output
    (tmp_path / "bad.json").write_text('{"images": []}')
    assert "not a COCO instances file" in run("evaluate", samples / "cat.png", "-a", tmp_path / "bad.json").output
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "a.xml").write_text("<annotation><filename>cat.png</filename><object><name>x")
    result = run("evaluate", samples / "cat.png", "-a", tmp_path / "voc")
    assert result.exit_code == 2 and "a.xml: not valid XML" in result.output


# ---------------------------------------------------------------- the labelled photos, the real model


def test_labelled_fixture_boxes_lie_inside_their_photos(samples) -> None:
    rows = list(csv.DictReader(BOXES.open()))
    assert {r["file"] for r in rows} == {p.name for p in samples.iterdir() if p.suffix in (".png", ".jpg")} - {
        "bird.png"
    }
    for r in rows:
        with Image.open(samples / r["file"]) as img:
            width, height = img.size
        x0, y0, x1, y1 = (float(r[k]) for k in ("x0", "y0", "x1", "y1"))
        assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height, r


@pytest.fixture(scope="module")
def fixture_run(tmp_path_factory, samples):
    out = tmp_path_factory.mktemp("evaluation")
    result = run(
        "evaluate", samples, "-a", BOXES, "--method", "gradcam", "--method", "layercam", "-o", out, "--json", "-b", "4"
    )
    return result, out


def test_evaluate_on_the_labelled_photos(fixture_run) -> None:
    result, out = fixture_run
    assert result.exit_code == 0, result.output
    assert "sample_images/bird.png: no annotations; skipped" in result.output  # reported, not fatal
    found = objects(result)
    assert [(o["method"], o["layer"]) for o in found] == [("gradcam", "bn2"), ("layercam", "bn2")]
    for o in found:
        assert KEYS <= set(o)
        assert o["images"] == 7 and o["samples"] == 8  # cat_and_dog.png has two classes
        assert set(o["gt_known_loc"]) == {"0.3", "0.5", "0.7"} == set(o["top1_loc"])
        assert o["deletion_auc"] is None  # faithfulness not asked for
        assert o["top1_cls"] == pytest.approx(
            5 / 7
        )  # the model's top-1 for dogs.png and grace_hopper.png is another class
        # The real model's maps find the labelled objects far better than chance.
        assert o["pointing_game"] >= 0.75 > o["pointing_game_baseline"]
        assert o["maxboxacc"] >= 0.5
    with open(out / "per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 16 and {r["file"].rsplit("/", 1)[-1] for r in rows} == {
        "cat.png",
        "cat_and_dog.png",
        "dogs.png",
        "grace_hopper.png",
        "horses.jpg",
        "hot_dog.jpg",
        "samoyed.png",
    }
    assert [json.loads(line) for line in (out / "evaluation.jsonl").read_text().splitlines()] == found
    with open(out / "sweep.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 2 * 100
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (out / "curves.png").exists() and not (out / "sanity.png").exists()


def test_top1_and_gt_known_loc_follow_the_per_image_rows(fixture_run) -> None:
    result, out = fixture_run
    with open(out / "per_image.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["method"] == "gradcam"]
    [o] = [o for o in objects(result) if o["method"] == "gradcam"]
    ious = [float(r["iou"]) for r in rows]
    # The summary and the rows hold values rounded to 6 decimals: a row's IoU is off by 5e-7 at most, so is
    # their mean, and the summary's mean by 5e-7 more (float64 adds ~1e-16).
    rounding = 0.5e-6
    assert o["gt_known_loc"]["0.5"] == pytest.approx(np.mean([v >= 0.5 for v in ious]), abs=rounding + 1e-12)
    assert o["mean_iou"] == pytest.approx(np.mean(ious), abs=2 * rounding + 1e-12)
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["file"], []).append(r)
    right = [any(r["class_index"] == r["predicted"] for r in rs) for rs in by_image.values()]
    located = [
        any(r["class_index"] == r["predicted"] and float(r["iou"]) >= 0.5 for r in rs) for rs in by_image.values()
    ]
    assert o["top1_cls"] == pytest.approx(np.mean(right)) and o["top1_loc"]["0.5"] == pytest.approx(np.mean(located))


def test_an_earlier_evaluation_is_not_replaced_without_overwrite(fixture_run, samples) -> None:
    _, out = fixture_run
    result = run("evaluate", samples / "cat.png", "-a", BOXES, "-o", out)
    assert result.exit_code == 2 and "evaluation.jsonl exists from an earlier evaluation" in result.output


def test_a_corrupt_image_fails_alone_and_the_results_are_printed(tmp_path, samples) -> None:
    bad = tmp_path / "cat.png"  # annotated by name in the fixture
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = run("evaluate", bad, samples / "samoyed.png", "-a", BOXES, "-o", tmp_path / "out")
    assert result.exit_code == 1
    assert "cat.png: corrupt PNG file" in result.stderr or "cat.png: cannot decode" in result.stderr
    assert "1 done, 0 skipped, 1 failed of 2" in result.stderr
    # Off a terminal (as here), one tab-separated line per method and layer, as explain prints its records.
    [line] = result.stdout.splitlines()
    cells = line.split("\t")
    assert cells[:2] == ["gradcam", "bn2"] and len(cells) == 10 and all(c == "-" or float(c) >= 0 for c in cells[2:])


# ---------------------------------------------------------------- a model whose right answer is known


class RegionNet(nn.Module):
    """Looks only at one region of the input: the logits are a linear function of the mean
    (positive) feature inside rows 8..24, columns 20..44 of a 48x64 input."""

    REGION = (20, 8, 44, 24)  # x0, y0, x1, y1

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 1), nn.Softplus())
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.features[0].weight.fill_(0.5)
            self.features[0].bias.zero_()
            self.fc.weight.copy_(torch.tensor([[1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, -1.0, -1.0]]))
            self.fc.bias.copy_(torch.tensor([-3.0, 3.0]))

    def forward(self, x):
        x0, y0, x1, y1 = self.REGION
        return self.fc(self.features(x)[:, :, y0:y1, x0:x1].mean(dim=(2, 3)))


def _synthetic_job(tmp_path, count=6):
    """Noise photos with a bright patch in the region and a brighter one outside it (which the model
    never sees), their boxes, and the model as gradcam loads one."""
    from gradcam_cli.io.inputs import collect_inputs
    from gradcam_cli.maps.preprocess import PreprocessConfig
    from gradcam_cli.metrics.annotations import read_annotations
    from gradcam_cli.model.loading import LoadedModel

    rng = np.random.default_rng(0)
    x0, y0, x1, y1 = RegionNet.REGION
    lines = ["file,class,x0,y0,x1,y1"]
    for i in range(count):
        photo = rng.integers(0, 120, (48, 64, 3), dtype=np.uint8)
        photo[y0:y1, x0:x1] = rng.integers(150, 230, (y1 - y0, x1 - x0, 3))
        photo[28:46, 46:62] = rng.integers(220, 256, (18, 16, 3))
        Image.fromarray(photo).save(tmp_path / f"p{i}.png")
        lines.append(f"p{i}.png,0,{x0},{y0},{x1},{y1}")
    (tmp_path / "boxes.csv").write_text("\n".join(lines) + "\n")
    config = PreprocessConfig((48, 64), (48, 64), "bilinear", (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    loaded = LoadedModel(RegionNet().eval(), "test/RegionNet", config, 2, ["region", "other"], "test")
    annotations = read_annotations(tmp_path / "boxes.csv")
    annotations.resolve(loaded.labels, 2)
    return loaded, collect_inputs([str(tmp_path)]), annotations


def test_a_model_that_looks_at_one_region(tmp_path) -> None:
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.job.evaluate import evaluate_job
    from gradcam_cli.metrics.report import summarise
    from gradcam_cli.options import EvaluateOptions, ExplainOptions, JobOptions

    loaded, items, annotations = _synthetic_job(tmp_path)
    explainer = Explainer(
        loaded,
        ExplainOptions(
            methods=("hirescam", "layercam", "eigencam"),
            layers=("features",),
            outputs=(),
            batch_size=4,
            bbox_threshold=0.5,
        ),
    )
    measured, summary = evaluate_job(
        explainer,
        items,
        annotations,
        EvaluateOptions(annotations="x", faithfulness=True, faithfulness_steps=8),
        JobOptions(workers=0),
    )
    assert summary.done == 6 and summary.failed == 0
    found = {key[0]: summarise(measured, key) for key in measured.keys}
    for name in ("hirescam", "layercam"):  # element-wise gradients: zero outside the region
        s = found[name]
        assert s["maxboxacc"] == 1.0 and s["maxboxacc_v2"] == 1.0 and s["pointing_game"] == 1.0, s
        assert s["top1_cls"] == 1.0 and s["top1_loc"]["0.3"] == 1.0
        assert max(v for v in s["sweep"]["mean_iou"]) == 1.0  # at a low threshold the box is the region exactly
        # Deleting the region first destroys the evidence fastest; Eigen-CAM ranks the other patch first.
        wrong = found["eigencam"]
        assert s["deletion_auc"] < wrong["deletion_auc"] and s["insertion_auc"] > wrong["insertion_auc"]
        assert s["road"] > wrong["road"] and s["road_morf"] < wrong["road_morf"]
    # Eigen-CAM is drawn to the brighter patch the model never looks at: at threshold 0.5 its box is always
    # there, and its maximum mostly; only a sweep that goes low enough finds the region too.
    assert found["eigencam"]["gt_known_loc"]["0.3"] == 0.0 and found["eigencam"]["pointing_game"] < 0.5


def test_methods_and_layers_share_one_forward_pass_per_batch(tmp_path) -> None:
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.job.evaluate import evaluate_job
    from gradcam_cli.options import EvaluateOptions, ExplainOptions, JobOptions

    loaded, items, annotations = _synthetic_job(tmp_path)
    calls = []
    loaded.model.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    explainer = Explainer(
        loaded,
        ExplainOptions(
            methods=("gradcam", "hirescam", "layercam"), layers=("features", "features.0"), outputs=(), batch_size=4
        ),
    )
    calls.clear()
    measured, _ = evaluate_job(explainer, items, annotations, EvaluateOptions(annotations="x"), JobOptions(workers=0))
    assert calls == [4, 2] and len(measured.keys) == 6  # 6 images in batches of 4: one forward pass each
    calls.clear()
    evaluate_job(
        explainer,
        items,
        annotations,
        EvaluateOptions(annotations="x", faithfulness=True, faithfulness_steps=5),
        JobOptions(workers=0),
    )
    # Each batch: its forward pass, then the curves' shared end points (everything deleted once, each image
    # blurred once), then every map's own perturbed inputs in forward chunks (6 maps an image: 3 methods x 2
    # layers). The maps of a batch share the chunks: no forward pass per map or per method.
    from gradcam_cli.metrics.faithfulness import forward_batch_size, inputs_per_map

    per_map, chunk = inputs_per_map(5, 48 * 64), forward_batch_size(torch.device("cpu"), 48, 64)
    first, second = 4 * 6 * per_map, 2 * 6 * per_map
    expected = [4, 4 + 1, *_chunks(first, chunk), 2, 2 + 1, *_chunks(second, chunk)]
    assert calls == expected


def _chunks(total: int, size: int) -> list[int]:
    return [size] * (total // size) + ([total % size] if total % size else [])


def test_a_stop_request_ends_after_the_batch_in_flight(tmp_path) -> None:
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.job.evaluate import evaluate_job
    from gradcam_cli.options import EvaluateOptions, ExplainOptions, JobOptions

    loaded, items, annotations = _synthetic_job(tmp_path)
    stop = threading.Event()
    explainer = Explainer(loaded, ExplainOptions(methods=("gradcam",), outputs=(), batch_size=2))
    measured, summary = evaluate_job(
        explainer,
        items,
        annotations,
        EvaluateOptions(annotations="x", sanity=True),
        JobOptions(workers=0),
        stop=stop,
        on_progress=lambda s: s.done and stop.set(),
    )
    assert summary.interrupted and summary.done == 2 and len(measured.samples) == 2
    assert measured.sanity == {}  # no sanity check on an interrupted run


# ---------------------------------------------------------------- sanity check


class InputLookingNet(nn.Module):
    """A parameter-free first layer (what Eigen-CAM sees there is the photo itself), then convolutions."""

    def __init__(self) -> None:
        super().__init__()
        self.pre = nn.AvgPool2d(1)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 2)

    def forward(self, x):
        return self.fc(self.body(self.pre(x)).mean(dim=(2, 3)))


def test_sanity_flags_maps_that_do_not_change_and_leaves_the_model_alone(tmp_path) -> None:
    from gradcam_cli.explainer import Explainer
    from gradcam_cli.job.evaluate import evaluate_job
    from gradcam_cli.metrics.report import summarise
    from gradcam_cli.options import EvaluateOptions, ExplainOptions, JobOptions

    loaded, items, annotations = _synthetic_job(tmp_path)
    torch.manual_seed(0)
    loaded.model = InputLookingNet().eval()
    model = loaded.model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng_before = torch.get_rng_state()
    explainer = Explainer(
        loaded, ExplainOptions(methods=("eigencam", "gradcam"), layers=("pre", "body.2"), outputs=(), batch_size=3)
    )
    measured, _ = evaluate_job(
        explainer,
        items,
        annotations,
        EvaluateOptions(annotations="x", sanity=True, sanity_images=4),
        JobOptions(workers=0),
    )
    found = {key: summarise(measured, key) for key in measured.keys}
    steps = [s["randomised"] for s in found["eigencam", "pre"]["sanity"]]
    assert steps == ["fc", "body.2", "body.0"]  # output first; "pre" has no parameters
    assert [s["spearman"] for s in found["eigencam", "pre"]["sanity"]] == [1.0, 1.0, 1.0]
    assert found["eigencam", "pre"]["sanity_flagged"] is True
    # Grad-CAM at the last convolution changes as soon as the classifier is random, and stays changed.
    gradcam = found["gradcam", "body.2"]
    assert gradcam["sanity_flagged"] is False and gradcam["sanity"][-1]["spearman"] < 0.5
    # Eigen-CAM at the last convolution ignores the classifier (it uses no gradient), then follows the body.
    eigen = [s["spearman"] for s in found["eigencam", "body.2"]["sanity"]]
    assert eigen[0] == 1.0 and eigen[-1] < 1.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(rng_before, torch.get_rng_state())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_sanity_through_the_cli_writes_its_plot(tmp_path, samples) -> None:
    result = run(
        "evaluate",
        samples / "samoyed.png",
        "-a",
        BOXES,
        "-o",
        tmp_path,
        "--json",
        "--sanity",
        "--sanity-images",
        "1",
        "--faithfulness",
        "--faithfulness-steps",
        "3",
        "--layer",
        "blocks.6",
    )
    assert result.exit_code == 0, result.output
    [o] = objects(result)
    assert [s["randomised"] for s in o["sanity"]][:3] == ["classifier", "conv_head", "blocks.6.0"]
    assert o["sanity_flagged"] is (o["sanity"][-1]["spearman"] >= 0.5)
    assert all(-1 <= s["spearman"] <= 1 and -1 <= s["ssim"] <= 1 for s in o["sanity"])
    for name in ("sanity.png", "curves.png", "sweep.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert o["deletion_auc"] is not None and 0 <= o["average_drop"] <= 1


# ---------------------------------------------------------------- --view full


def test_full_view_geometry_keeps_the_scale_and_crops_nothing() -> None:
    from gradcam_cli.maps.preprocess import PreprocessConfig, full_geometry, geometry_for

    config = PreprocessConfig((224, 224), 256)
    crop, full = geometry_for(640, 480, config), geometry_for(640, 480, config, "full")
    assert crop.resized_size == full.resized_size == (341, 256)
    assert crop.crop_box == (58, 16, 224, 224) and full.crop_box == (0, 0, 341, 256)
    strip = full_geometry(50_000, 10, config)  # a panorama is seen smaller rather than as a gigantic input
    assert strip.resized_size == (896, 1) and strip.crop_box == (0, 0, 896, 1)


def test_full_view_maps_cover_the_whole_photo(default_loaded, samples) -> None:
    from gradcam_cli import Explainer, ExplainOptions, load_rgb

    photo = load_rgb(samples / "cat.png")  # 512x341: the crop view cuts 85 columns off each side
    [[crop]] = Explainer(default_loaded, ExplainOptions(outputs=(), view="crop")).explain_arrays([photo])
    full_explainer = Explainer(default_loaded, ExplainOptions(outputs=(), view="full"))
    assert full_explainer.view == "full"
    [[full]] = full_explainer.explain_arrays([photo])
    assert crop.map[:, :80].max() == 0 and crop.map[:, -80:].max() == 0
    assert full.map[:, :80].max() > 0 and full.map[:, -80:].max() > 0 and full.map.shape == photo.shape[:2]
    # Photos of different sizes in one batch: one forward pass per size, the same maps as one by one.
    other = load_rgb(samples / "samoyed.png")
    together = full_explainer.explain_arrays([photo, other])
    alone = full_explainer.explain_arrays([other])
    # float32: one forward pass per size, so each photo's map comes from the same operations on the same values
    # and shapes as on its own: the same bits.
    assert np.array_equal(together[0][0].map, full.map) and np.array_equal(together[1][0].map, alone[0][0].map)


class FixedSizeNet(nn.Module):
    """Flattens its feature grid into a linear layer: it takes one input size only, as a ViT does."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 3, stride=4, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))


def test_full_view_is_refused_in_one_line_where_the_model_cannot_take_it() -> None:
    from gradcam_cli import Explainer, ExplainOptions, UsageError
    from gradcam_cli.maps.preprocess import PreprocessConfig
    from gradcam_cli.model.loading import LoadedModel

    loaded = LoadedModel(FixedSizeNet().eval(), "test/FixedSizeNet", PreprocessConfig((32, 32), 36), 5, None, "test")
    with pytest.raises(UsageError) as err:
        Explainer(loaded, ExplainOptions(outputs=(), view="full"))
    message = str(err.value)
    assert message.startswith("--view full: test/FixedSizeNet takes only its 32x32 input (a 36x48 probe failed")
    assert message.endswith("; use --view crop") and "\n" not in message
    assert Explainer(loaded, ExplainOptions(outputs=(), view="auto")).view == "crop"


def test_view_full_through_the_cli(tmp_path, samples) -> None:
    result = run("explain", samples / "cat.png", "--view", "full", "-o", tmp_path, "--json", "--outputs", "heatmap")
    assert result.exit_code == 0, result.output
    assert run("explain", samples / "cat.png", "--view", "wide", "-o", tmp_path).exit_code == 2
    result = run("evaluate", samples / "cat.png", "-a", BOXES, "--view", "full", "-o", tmp_path / "e", "--json")
    [o] = objects(result)
    assert o["view"] == "full" and o["images"] == 1

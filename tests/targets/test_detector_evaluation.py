"""``gradcam evaluate`` on a detector: one sample per annotated object, matched to a detection of its class.

A constructed detector (two fixed detections, each scored by the brightness of its own region, as in
``test_known_answer_targets.py``) says what every sample must come to: an object its detection matches is
explained by that detection's region alone, so Layer-CAM's maximum lies in it (a hit) and its box is the region;
an object of a class no detection overlaps gets an empty map (a miss). Then the command end to end on a seeded
random torchvision detector.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from test_known_answer_targets import REGION_A, REGION_B, SIZE, TwoBoxDetector, box_of, photos

from gradcam_cli.job.task import Decoded
from gradcam_cli.maps.preprocess import CropGeometry
from gradcam_cli.metrics.annotations import GroundTruth, ImageTruth
from gradcam_cli.metrics.measure import measure_batch
from gradcam_cli.model.tasks import DETECTOR
from gradcam_cli.options import EvaluateOptions
from gradcam_cli.passes import explain_batch
from gradcam_cli.targets.detection import DetectionScore

from helpers import SAMPLES

SCALE = 2  # the annotations are in the pixels of a photo twice the input's size


class StubExplainer:
    """What the measurement reads of an explainer, around `explain_batch` on the constructed detector."""

    def __init__(self) -> None:
        self.model = TwoBoxDetector().eval()
        self.target = DetectionScore(0.0, 0.5, 20)
        self.options = SimpleNamespace(bbox_threshold=0.5)
        self.device = torch.device("cpu")
        self.loaded = SimpleNamespace(kind=DETECTOR)

    def run_passes(self, inputs, classes=None, boxes=None, target=None):
        layers = {"features": self.model.features}
        return explain_batch(
            self.model, inputs, layers, methods=["layercam"], classes=classes, target=target, boxes=boxes
        )


def annotated(box: list[float], label: int) -> GroundTruth:
    return GroundTruth(str(label), tuple(v * SCALE for v in box), "test")


def shifted(box: list[float], dx: float) -> list[float]:
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


def test_each_object_is_explained_by_the_detection_of_its_class() -> None:
    objects = [
        annotated(box_of(REGION_A), 1),  # detection 1 exactly
        annotated(shifted(box_of(REGION_B), 3), 2),  # detection 2, overlapping partly
        annotated(box_of(REGION_B), 1),  # label 1 where only detection 2 lies: no match
    ]
    truth = ImageTruth(objects, [1, 2, 1])
    geometry = CropGeometry((SIZE * SCALE, SIZE * SCALE), (SIZE, SIZE), (0, 0, SIZE, SIZE))
    decoded = Decoded(SimpleNamespace(path="a.png"), tensor=photos(1)[0], geometry=geometry)
    options = EvaluateOptions(annotations="boxes.csv", pointing_tolerance=0)
    measured = measure_batch(StubExplainer(), [decoded], [truth], options)

    assert [s.class_index for s in measured.samples] == [1, 2, 1]
    assert [s.predicted for s in measured.samples] == [1, 2, -1]
    assert measured.samples[2].probability == 0.0 and 0 < measured.samples[0].probability < 1
    [located] = measured.localisation.values()
    assert [s.hit for s in located] == [True, True, False]
    # The map is the detection's region alone: its box at any threshold is the region (in the photo's pixels).
    assert located[0].iou == pytest.approx(1.0)
    overlap = (REGION_B[1].stop - REGION_B[1].start - 3) / (REGION_B[1].stop - REGION_B[1].start + 3)
    assert located[1].iou == pytest.approx(overlap)  # the detection's box against the shifted annotation
    assert located[2].iou == 0 and located[2].iou_largest.max() == 0  # an empty map finds no box
    assert located[0].baseline == pytest.approx(64 / (SIZE * SIZE), rel=0.01)  # the object's share of the photo
    assert measured.box_checks and not measured.box_checks[0].note()


def test_an_object_is_matched_among_the_detections_of_its_class_only() -> None:
    """An annotation of class 2 at region A overlaps detection 1 exactly, but only detection 2 is of its class."""
    truth = ImageTruth([annotated(box_of(REGION_A), 2)], [2])
    geometry = CropGeometry((SIZE * SCALE, SIZE * SCALE), (SIZE, SIZE), (0, 0, SIZE, SIZE))
    decoded = Decoded(SimpleNamespace(path="a.png"), tensor=photos(1)[0], geometry=geometry)
    options = EvaluateOptions(annotations="boxes.csv", pointing_tolerance=0)
    measured = measure_batch(StubExplainer(), [decoded], [truth], options)
    [located] = measured.localisation.values()
    assert measured.samples[0].predicted == -1 and not located[0].hit  # A and B do not overlap


DETECTOR_NAME = "fasterrcnn_mobilenet_v3_large_fpn"
WHOLE_PHOTO = [0, 0, 425, 280]  # horses.jpg


def boxes_file(tmp_path, objects=((19, WHOLE_PHOTO),)) -> str:
    path = tmp_path / "boxes.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class", "x0", "y0", "x1", "y1"])
        writer.writerows(["horses.jpg", label, *box] for label, box in objects)
    return str(path)


def seeded_detector(tmp_path) -> tuple[str, list[int]]:
    """A random detector's weights (seed 0) in a file, and the labels it gives horses.jpg (every detection kept)."""
    import numpy as np
    from PIL import Image

    from gradcam_cli.model.detectors import build, lower_score_threshold

    torch.manual_seed(0)
    model, _, _, _ = build(DETECTOR_NAME, False, None)
    path = tmp_path / "seeded.pt"
    torch.save(model.state_dict(), path)
    lower_score_threshold(model.eval(), 0.0)
    photo = np.array(Image.open(SAMPLES / "horses.jpg").convert("RGB"))
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():  # about the size the detector's own resize gives the photo (shorter side 800)
        labels = model(torch.nn.functional.interpolate(x, (800, 1216), mode="bilinear"))[0]["labels"]
    counts = torch.bincount(labels)
    return str(path), [int(label) for label in counts.argsort(descending=True) if counts[label] > 0]


def test_evaluate_a_detector_end_to_end(tmp_path) -> None:
    """A seeded random detector with every detection kept: an object of the label it detects is matched (over the
    whole photo its map's maximum is inside; a smaller box is matched too), one of a label it never gives is not
    (an empty map: a miss, no box)."""
    from helpers import gradcam

    weights, detected = seeded_detector(tmp_path)
    never = next(label for label in range(1, 91) if label not in detected)
    objects = [(detected[0], WHOLE_PHOTO), (detected[0], [150, 100, 300, 200]), (never, WHOLE_PHOTO)]
    out = tmp_path / "out"
    args = ["evaluate", SAMPLES / "horses.jpg", "-a", boxes_file(tmp_path, objects), "--model", DETECTOR_NAME]
    done = gradcam(*args, "--weights", weights, "--score-threshold", "0", "-o", out, "--json", timeout=900)
    assert done.returncode == 0, done.stderr
    with (out / "per_image.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["class_index"]) for r in rows] == [label for label, _ in objects]  # one sample per object
    assert [int(r["predicted"]) for r in rows] == [detected[0], detected[0], -1]
    assert rows[0]["pointing_hit"] == "1" and float(rows[0]["best_iou"]) > 0
    assert rows[2]["pointing_hit"] == "0" and float(rows[2]["best_iou"]) == 0 == float(rows[2]["iou"])
    assert float(rows[1]["pointing_baseline"]) < float(rows[0]["pointing_baseline"]) == 1.0  # each its own box
    summary = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert summary, done.stdout


@pytest.mark.parametrize("flag", ["--faithfulness", "--sanity"])
def test_evaluate_refuses_what_a_detector_has_no_form_of(tmp_path, flag) -> None:
    from helpers import gradcam

    args = ["evaluate", SAMPLES / "horses.jpg", "-a", boxes_file(tmp_path), "--model", DETECTOR_NAME, flag]
    done = gradcam(*args, "--no-pretrained", "-o", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert f"gradcam evaluate {flag}: does not apply to a detector" in done.stderr
    assert not (tmp_path / "out").exists()


def test_a_segmenter_is_still_refused(tmp_path) -> None:
    args = ["evaluate", str(SAMPLES / "horses.jpg"), "-a", boxes_file(tmp_path), "--model", "lraspp_mobilenet_v3_large"]
    done = subprocess.run([sys.executable, "-m", "gradcam_cli", *args, "-o", str(tmp_path / "o")], capture_output=True)
    assert done.returncode == 2 and b"a segmenter's are not yet" in done.stderr

"""Detection and segmentation targets against pytorch-grad-cam's own targets (oracles).

``FasterRCNNBoxScoreTarget`` (one detection: its box and label) and ``SemanticSegmentationTarget`` (one class
and its predicted mask), on torchvision's detector and segmenter at random init (seed 0), built as
``--model NAME --no-pretrained`` builds them, in float64 at small inputs. Both sides compute in float64:
pytorch-grad-cam's own min-max divides by ``1e-7 + max`` and casts to float32, and the raw maps of these random
detectors are tiny (their max about 2e-6 as it computes them), so its guard alone would shrink them by several
percent; the oracle is its raw map instead (its activations, gradients and channel weights: ``get_cam_image``),
ReLU'd and min-max scaled in float64 as ours are.

The layer is the one these models' maps default to (``task_default_layer``), a tensor. pytorch-grad-cam's
``fasterrcnn_reshape_transform`` is for hooking the whole FPN, whose output is a dict of levels: that oracle is in
``test_fpn_levels.py``.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from helpers import max_diff, scaled

pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("torchvision")

from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import (  # noqa: E402
    FasterRCNNBoxScoreTarget,
    SemanticSegmentationTarget,
)

from gradcam_cli.model.detectors import build, lower_score_threshold, task_default_layer  # noqa: E402
from gradcam_cli.model.layers import trace_layers  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402
from gradcam_cli.targets.detection import DetectionScore  # noqa: E402
from gradcam_cli.targets.segmentation import SegmentClass  # noqa: E402

TOL = 1e-5


def seeded(arch: str, size: tuple[int, int]) -> tuple[nn.Module, str]:
    """torchvision's ``arch`` at random init in float64, and the layer its maps default to."""
    torch.manual_seed(0)
    model, _, _, _ = build(arch, False, None)
    model.eval().double()
    kind = "detector" if hasattr(model, "roi_heads") or hasattr(model, "head") else "segmenter"
    return model, task_default_layer(model, trace_layers(model, size), kind)


def photos(n: int, size: tuple[int, int]) -> torch.Tensor:
    return torch.rand(n, 3, *size, generator=torch.Generator().manual_seed(1)).double()


def theirs(model: nn.Module, layer: str, x: torch.Tensor, targets: list) -> torch.Tensor:
    """pytorch-grad-cam's maps at the layer's own grid (its activations, gradients and weights), ReLU'd and
    min-max scaled in float64, on a copy of the model."""
    twin = copy.deepcopy(model)
    module = dict(twin.named_modules())[layer]
    with GradCAM(model=twin, target_layers=[module]) as cam:
        cam(input_tensor=x.clone(), targets=targets)
        captured = cam.activations_and_grads
        activations, gradients = (t[0].cpu().numpy() for t in (captured.activations, captured.gradients))
        raw = cam.get_cam_image(x, module, targets, activations, gradients, False)
    return scaled_float64(torch.from_numpy(np.maximum(np.asarray(raw, dtype=np.float64), 0)))


def scaled_float64(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scaled ``(..., h, w)`` maps in float64; an empty map would make a comparison vacuous."""
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    assert (span > 0).all(), "an empty map would make the comparison vacuous"
    return (maps - low) / span


class PixelLogits(nn.Module):
    """A segmenter's ``out``: pytorch-grad-cam's targets read one tensor per image (its tutorial's wrapper)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]


@pytest.fixture(scope="module")
def detector():
    size = (160, 192)
    model, layer = seeded("fasterrcnn_mobilenet_v3_large_fpn", size)
    lower_score_threshold(model, 0.0)  # random weights score about 1/91 per class, below its own 0.05
    return model, layer, photos(2, size)


def test_detection_target_matches_faster_rcnn_box_score_target(detector) -> None:
    model, layer, x = detector
    result = explain_batch(model, x, {layer: dict(model.named_modules())[layer]}, target=DetectionScore(0.0, 0.5, 3))
    maps = result.maps["gradcam", layer]
    assert result.slots.counts == [3, 3] and result.target == "detection"
    compared = 0
    for b in range(x.shape[0]):
        for k in range(3):
            box = result.slots.data["boxes"][b, k]
            label = int(result.classes[b, k])
            detail = result.slots.detail(b, k)["detection"]
            assert detail["label"] == label and detail["box"] == box.tolist()
            target = FasterRCNNBoxScoreTarget([label], [box.numpy()], iou_threshold=0.5)
            oracle = theirs(model, layer, x[b : b + 1], [target])[0]
            assert max_diff(scaled_float64(maps[b, k]), oracle) <= TOL
            compared += 1
    assert compared == 6
    # On the photo itself each detection matches itself: IoU 1 plus its confidence.
    expected = torch.tensor([[1 + d["detection"]["score"] for d in row] for row in result.slots.details])
    assert torch.allclose(result.values, expected.double(), atol=1e-12)


def test_detection_maps_differ_between_detections(detector) -> None:
    """Each detection is explained by its own score: the maps are not one map repeated."""
    model, layer, x = detector
    result = explain_batch(model, x, {layer: dict(model.named_modules())[layer]}, target=DetectionScore(0.0, 0.5, 3))
    maps = scaled(result.maps["gradcam", layer][0])
    assert max(max_diff(maps[0], maps[k]) for k in (1, 2)) > 1e-3


def test_given_box_is_explained_as_the_detection_it_overlaps(detector) -> None:
    """``--box``: a box explains the detection overlapping it most, with that detection's label."""
    model, layer, x = detector
    modules = {layer: dict(model.named_modules())[layer]}
    found = explain_batch(model, x, modules, target=DetectionScore(0.0, 0.5, 1))
    box = found.slots.data["boxes"][:, :1]  # (B, 1, 4): each image's most confident detection
    given = explain_batch(model, x, modules, target=DetectionScore(0.0, 0.5, 1), boxes=box)
    assert torch.equal(given.classes, found.classes)
    assert torch.equal(given.maps["gradcam", layer], found.maps["gradcam", layer])
    assert given.slots.detail(0, 0)["detection"]["given"] is True


@pytest.fixture(scope="module")
def segmenter():
    size = (64, 64)
    model, layer = seeded("deeplabv3_mobilenet_v3_large", size)
    # At random init every pixel takes one class (the final bias decides); larger final weights and no bias let
    # several classes share the photo, so that masks are partial and differ between classes.
    with torch.no_grad():
        model.classifier[-1].weight.normal_(0, 1, generator=torch.Generator().manual_seed(2))
        model.classifier[-1].bias.zero_()
    return model, layer, photos(2, size)


def test_segmentation_target_matches_semantic_segmentation_target(segmenter) -> None:
    model, layer, x = segmenter
    result = explain_batch(model, x, {layer: dict(model.named_modules())[layer]}, target=SegmentClass(0))
    maps = result.maps["gradcam", layer]
    predicted = model(x)["out"].argmax(1)
    compared = 0
    for b in range(x.shape[0]):
        areas = []
        for k in range(result.slots.counts[b]):
            c = int(result.classes[b, k])
            mask = (predicted[b] == c).double()
            assert torch.equal(result.slots.data["masks"][b, k], mask)
            areas.append(float(mask.mean()))
            assert result.slots.detail(b, k)["mask_area"] == pytest.approx(areas[-1])
            if maps[b, k].max() <= 0:
                continue  # an empty ReLU'd map: nothing to compare after min-max
            target = SemanticSegmentationTarget(c, mask.numpy())
            oracle = theirs(PixelLogits(model), "model." + layer, x[b : b + 1], [target])[0]
            assert max_diff(scaled_float64(maps[b, k]), oracle) <= TOL
            compared += 1
        assert 0 not in result.classes[b, : result.slots.counts[b]].tolist() or result.slots.counts[b] == 1
        assert areas == sorted(areas, reverse=True), "the largest segment first"
        assert 0 < sum(areas) <= 1
    assert compared >= 6, "too few non-empty maps for the comparison to mean anything"
    values = [
        (model(x)["out"][b, int(result.classes[b, k])] * result.slots.data["masks"][b, k]).sum()
        for b in range(2)
        for k in range(result.slots.counts[b])
    ]
    real = torch.cat([result.values[b, : result.slots.counts[b]] for b in range(2)])
    assert torch.allclose(real, torch.stack(values).detach())


def test_a_requested_segment_class(segmenter) -> None:
    model, layer, x = segmenter
    predicted = model(x)["out"].argmax(1)
    c = int(predicted[0].flatten().mode().values)
    result = explain_batch(model, x, {layer: dict(model.named_modules())[layer]}, target=SegmentClass(0), classes=[c])
    assert result.classes[:, 0].tolist() == [c, c]
    assert torch.equal(result.slots.data["masks"][0, 0], (predicted[0] == c).double())


def test_score_cam_reads_the_segmentation_target_on_its_masked_copies(segmenter) -> None:
    """Score-CAM with pytorch-grad-cam's convention (the raw score) against its ``ScoreCAM`` with
    ``SemanticSegmentationTarget``: the mask stays the photo's, the logits are the masked copy's. At
    ``backbone.13`` (160 channels: 160 masked copies per map). Here the oracle is pytorch-grad-cam's scaled map,
    scaled again in float64: Score-CAM's raw maps are of order 1 (softmax weights times activations), so its
    1e-7 guard and its float32 cast move them by about 1e-7, far below 1e-5."""
    from pytorch_grad_cam import ScoreCAM

    model, _, x = segmenter
    layer = "backbone.13"
    settings = {"scorecam_convention": "pytorch-grad-cam"}
    modules = {layer: dict(model.named_modules())[layer]}
    result = explain_batch(model, x[:1], modules, target=SegmentClass(0), methods=["scorecam"], settings=settings)
    maps = result.maps["scorecam", layer][0]
    predicted = model(x[:1])["out"].argmax(1)[0]
    compared = 0
    for k in range(min(2, result.slots.counts[0])):
        c = int(result.classes[0, k])
        target = SemanticSegmentationTarget(c, (predicted == c).double().numpy())
        twin = PixelLogits(copy.deepcopy(model))
        with ScoreCAM(model=twin, target_layers=[dict(twin.named_modules())["model." + layer]]) as cam:
            cam.get_target_width_height = lambda _t, grid=maps.shape[-2:]: (grid[1], grid[0])
            cam.batch_size = 32
            oracle = torch.from_numpy(np.asarray(cam(input_tensor=x[:1].clone(), targets=[target]), dtype=np.float64))
        if maps[k].max() <= 0:
            continue
        assert max_diff(scaled_float64(maps[k]), scaled_float64(oracle[0])) <= TOL
        compared += 1
    assert compared == 2

"""Targets on models built so that the right answer is known: a detector, a segmenter and an embedding model
whose explained score depends on one region of the input only.

Each model's hooked layer is a 1x1 convolution with positive weights (its output at a pixel is that pixel's
brightness, mixed), and the score reads that layer in one region. So the gradient is zero outside the region:
Layer-CAM and HiResCAM (element-wise gradient x activation) must be exactly zero there and non-zero inside, and
occlusion (the target read on occluded copies) must see no change from a window that misses the region.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gradcam_cli.passes import explain_batch
from gradcam_cli.targets.detection import DetectionScore
from gradcam_cli.targets.segmentation import SegmentClass
from gradcam_cli.targets.similarity import Similarity

SIZE = 32
REGION_A = (slice(2, 10), slice(4, 12))  # rows, columns
REGION_B = (slice(20, 30), slice(18, 28))
OCCLUSION = {"occlusion_window": 4, "occlusion_stride": 4}


class Bright(nn.Module):
    """The hooked layer: per-pixel positive mixes of the colours (so every activation of a bright photo is > 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 1, bias=False)
        with torch.no_grad():
            self.features.weight.uniform_(0.2, 1.0, generator=torch.Generator().manual_seed(0))


def region_mean(a: torch.Tensor, region) -> torch.Tensor:
    """``(n,)`` mean of ``(n, C, H, W)`` over one region, all channels."""
    return a[:, :, region[0], region[1]].mean(dim=(1, 2, 3))


def box_of(region) -> list[float]:
    return [region[1].start, region[0].start, region[1].stop, region[0].stop]


class TwoBoxDetector(Bright):
    """Two detections at fixed boxes: label 1 at region A, scored by A's brightness; label 2 at B, by B's."""

    def forward(self, x):
        a = self.features(x)
        scores = torch.stack([torch.sigmoid(region_mean(a, REGION_A)), torch.sigmoid(region_mean(a, REGION_B))], 1)
        boxes = torch.tensor([box_of(REGION_A), box_of(REGION_B)], dtype=x.dtype)
        return [{"boxes": boxes, "labels": torch.tensor([1, 2]), "scores": s} for s in scores]


class LeftHalfSegmenter(Bright):
    """Per-pixel logits: class 1 on the left half, its logit there the brightness of region B (on the right);
    class 0 (background) a constant 0.1 everywhere; class 2 never."""

    def forward(self, x):
        a = self.features(x)
        n, _, h, w = a.shape
        left = torch.zeros(h, w, dtype=a.dtype)
        left[:, : w // 2] = 1
        logits = torch.stack(
            [
                torch.full((n, h, w), 0.1, dtype=a.dtype),
                region_mean(a, REGION_B)[:, None, None] * left,
                torch.full((n, h, w), -1.0, dtype=a.dtype),
            ],
            1,
        )
        return {"out": logits}


class PatchEmbedder(Bright):
    """One vector per image: the hooked layer's channels averaged over region A only."""

    def forward(self, x):
        a = self.features(x)
        return a[:, :, REGION_A[0], REGION_A[1]].mean(dim=(2, 3))


def photos(n: int = 2, seed: int = 1) -> torch.Tensor:
    return 0.2 + torch.rand(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def outside(region) -> torch.Tensor:
    mask = torch.ones(SIZE, SIZE, dtype=torch.bool)
    mask[region] = False
    return mask


def windows_missing(region, window: int = 4) -> torch.Tensor:
    """Pixels whose every occlusion window (4 x 4 on a 4-pixel grid) misses the region."""
    mask = torch.ones(SIZE, SIZE, dtype=torch.bool)
    rows = slice(region[0].start // window * window, -(-region[0].stop // window) * window)
    cols = slice(region[1].start // window * window, -(-region[1].stop // window) * window)
    mask[rows, cols] = False
    return mask


def explain(model, target, x=None, **kw):
    x = photos() if x is None else x
    layers = {"features": model.features}
    return explain_batch(
        model, x, layers, target=target, methods=["layercam", "hirescam", "occlusion"], settings=OCCLUSION, **kw
    )


def assert_only_in(result, image: int, slot: int, region, monotone: bool = True) -> None:
    """Zero outside the region and non-zero inside; where the score rises with every activation in the region
    (``monotone``), the gradient maps are positive at every pixel of it."""
    for method in ("layercam", "hirescam"):
        m = result.maps[method, "features"][image, slot]
        assert m[outside(region)].abs().max() == 0, method
        assert (m[region].min() if monotone else m[region].max()) > 0, method
    occlusion = result.maps["occlusion", "input"][image, slot]  # a window's mean colour may darken or brighten
    assert occlusion[windows_missing(region)].abs().max() < 1e-6
    assert occlusion[region].abs().max() > 0


def test_each_detection_is_explained_by_its_own_region() -> None:
    model = TwoBoxDetector().eval()
    result = explain(model, DetectionScore(0.0, 0.5, 5))
    assert result.slots.counts == [2, 2]
    for b in range(2):
        for k in range(2):
            detection = result.slots.detail(b, k)
            label = detection["detection"]["label"]
            assert_only_in(result, b, k, REGION_A if label == 1 else REGION_B)
            assert result.values[b, k] == pytest.approx(1 + detection["detection"]["score"])


def test_a_given_box_is_explained_by_the_region_of_the_detection_it_overlaps() -> None:
    model = TwoBoxDetector().eval()
    near_b = torch.tensor(
        box_of(REGION_B),
    ) + torch.tensor([1.0, 0.0, 1.0, 0.0])
    result = explain(model, DetectionScore(0.0, 0.5, 5), boxes=near_b.expand(2, 1, 4))
    assert result.classes.tolist() == [[2], [2]]
    assert_only_in(result, 0, 0, REGION_B)
    iou = (9 * 10) / (11 * 10)  # the shifted box against B's: 9 of 11 columns shared, all 10 rows
    assert result.values[0, 0] == pytest.approx(iou + result.slots.detail(0, 0)["detection"]["score"])


def test_a_box_overlapping_no_detection_gives_an_empty_map_and_says_so() -> None:
    model = TwoBoxDetector().eval()
    result = explain(model, DetectionScore(0.0, 0.5, 5), boxes=torch.tensor([[[0.0, 20.0, 6.0, 30.0]]] * 2))
    assert result.values[0, 0] == 0
    assert result.maps["layercam", "features"][0, 0].abs().max() == 0
    assert "warning" in result.slots.detail(0, 0)


def test_a_segment_is_explained_by_what_its_logits_read_not_where_it_lies() -> None:
    """Class 1 covers the left half, but its logits read region B on the right: the maps are at B."""
    model = LeftHalfSegmenter().eval()
    result = explain(model, SegmentClass(background=0))
    assert result.classes.tolist() == [[1], [1]]
    assert result.slots.detail(0, 0)["mask_area"] == 0.5
    for b in range(2):
        assert_only_in(result, b, 0, REGION_B)
    a = model.features(photos())
    assert torch.allclose(result.values[:, 0], region_mean(a, REGION_B).detach() * SIZE * SIZE / 2)


def test_similarity_is_explained_by_the_patch_the_embedding_reads() -> None:
    model = PatchEmbedder().eval()
    reference = photos(1, seed=7)[0]
    reference[0, REGION_A[0], REGION_A[1]] += 2.0  # a reddish patch, so that the similarity is not 1
    target = Similarity.of_input(model, reference)
    x = photos()
    result = explain(model, target, x)
    for b in range(2):
        assert_only_in(result, b, 0, REGION_A, monotone=False)
    expected = torch.cosine_similarity(model(x), model(reference[None]), dim=1)
    assert torch.allclose(result.values[:, 0], expected.detach())
    assert (result.values < 1 - 1e-3).all()

"""A detector's whole feature pyramid (``backbone``, ``backbone.fpn``: a dict of levels) as the hooked layer.

The oracle is pytorch-grad-cam's: ``FasterRCNNBoxScoreTarget`` scores the detection, ``fasterrcnn_reshape_transform``
makes one grid of the levels, ``GradCAM.get_cam_image`` weighs it. Its own ``GradCAM`` cannot run here: its
gradient hook needs a tensor and the pyramid returns a dict, so it finds no gradients (its tutorial uses
EigenCAM there). The gradients are therefore taken by a plain autograd pass on a copy of the model, with
respect to each level. The transform takes each level's absolute value (for EigenCAM's display); Grad-CAM needs
the sign, so the oracle applies pytorch-grad-cam's transform to the positive and negative parts and subtracts
(the resize is linear and ``abs`` is the identity on each part: exactly the transform with the sign kept). Both
sides compute in float64 and are ReLU'd and min-max scaled in float64 (as in ``test_dense_target_oracles.py``).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from helpers import max_diff

pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("torchvision")

from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import FasterRCNNBoxScoreTarget  # noqa: E402
from pytorch_grad_cam.utils.reshape_transforms import fasterrcnn_reshape_transform  # noqa: E402

from gradcam_cli.errors import MethodError  # noqa: E402
from gradcam_cli.model.detectors import build, lower_score_threshold  # noqa: E402
from gradcam_cli.model.layers import layer_layouts, trace_layers  # noqa: E402
from gradcam_cli.model.layout import Levels  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402
from gradcam_cli.targets.detection import DetectionScore  # noqa: E402

TOL = 1e-5
SIZE = (160, 192)
ARCH = "fasterrcnn_mobilenet_v3_large_fpn"


@pytest.fixture(scope="module")
def detector() -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model, _, _, _ = build(ARCH, False, None)
    model.eval().double()
    lower_score_threshold(model, 0.0)  # random weights score about 1/91 per class, below its own 0.05
    x = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(1)).double()
    return model, x


def signed_transform(levels: dict) -> torch.Tensor:
    """pytorch-grad-cam's ``fasterrcnn_reshape_transform`` with each level's sign kept."""
    positive = fasterrcnn_reshape_transform({k: v.clamp(min=0) for k, v in levels.items()})
    negative = fasterrcnn_reshape_transform({k: (-v).clamp(min=0) for k, v in levels.items()})
    return positive - negative


def scaled_float64(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(-2, -1), keepdim=True)
    span = maps.amax(dim=(-2, -1), keepdim=True) - low
    assert (span > 0).all(), "an empty map would make the comparison vacuous"
    return (maps - low) / span


def theirs(model: nn.Module, layer: str, x: torch.Tensor, label: int, box: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's Grad-CAM of one detection at the pyramid, on a copy of the model."""
    twin = copy.deepcopy(model)
    module = dict(twin.named_modules())[layer]
    seen = {}
    handle = module.register_forward_hook(lambda _m, _i, out: seen.update(levels=out))
    try:
        output = twin(x.clone())
    finally:
        handle.remove()
    target = FasterRCNNBoxScoreTarget([label], [box.numpy()], iou_threshold=0.5)
    levels = seen["levels"]
    # Faster R-CNN's box head reads levels 0 and 1 only (the RPN's proposals are detached): "pool" gets zeros.
    found = torch.autograd.grad(target(output[0]), list(levels.values()), allow_unused=True)
    grads = [torch.zeros_like(v) if g is None else g for v, g in zip(levels.values(), found)]
    activations = signed_transform({k: v.detach() for k, v in levels.items()})
    gradients = signed_transform(dict(zip(levels, grads)))
    with GradCAM(model=twin, target_layers=[module]) as cam:
        raw = cam.get_cam_image(x, module, [target], activations.numpy(), gradients.numpy(), False)
    return scaled_float64(torch.from_numpy(np.maximum(np.asarray(raw, dtype=np.float64), 0)))[0]


def test_levels_grid_is_pytorch_grad_cams_transform(detector) -> None:
    """On non-negative levels (where its ``abs`` changes nothing) the grid is exactly its transform."""
    model, x = detector
    with torch.no_grad():
        levels = model.backbone(x)
    positive = {k: v.abs() for k, v in levels.items()}
    layout = Levels.of(positive)
    assert layout.names == ("0", "1", "pool") and layout.grid == tuple(levels["pool"].shape[-2:])
    flat = layout.flatten(positive)
    assert max_diff(layout.to_grid(flat), fasterrcnn_reshape_transform(positive)) == 0
    assert all(torch.equal(a, b) for a, b in zip(layout.unflatten(flat, positive).values(), positive.values()))


def test_pyramid_is_listed_with_its_levels(detector) -> None:
    model, _ = detector
    infos = {info.path: info for info in trace_layers(model, SIZE)}
    for path in ("backbone", "backbone.fpn"):
        assert isinstance(infos[path].layout, Levels) and infos[path].spatial
        assert infos[path].shape == (infos[path].layout.channels, *infos[path].layout.grid)


@pytest.mark.parametrize("layer", ["backbone", "backbone.fpn"])
def test_gradcam_on_the_pyramid_matches_pytorch_grad_cam(detector, layer) -> None:
    model, x = detector
    hooks_before = sum(len(m._forward_hooks) for m in model.modules())
    modules = {layer: dict(model.named_modules())[layer]}
    layouts = layer_layouts(model, modules, SIZE)
    result = explain_batch(model, x, modules, target=DetectionScore(0.0, 0.5, 3), layouts=layouts)
    maps = result.maps["gradcam", layer]
    assert result.slots.counts == [3, 3]
    for b in range(x.shape[0]):
        for k in range(3):
            box, label = result.slots.data["boxes"][b, k], int(result.classes[b, k])
            oracle = theirs(model, layer, x[b : b + 1], label, box)
            assert max_diff(scaled_float64(maps[b, k]), oracle) <= TOL
    # The model's output went through the captured views unchanged: each detection matches itself.
    expected = torch.tensor([[1 + d["detection"]["score"] for d in row] for row in result.slots.details])
    assert torch.allclose(result.values, expected.double(), atol=1e-12)
    assert sum(len(m._forward_hooks) for m in model.modules()) == hooks_before, "a hook was left on the model"
    assert all(p.requires_grad for p in model.parameters())


def test_methods_that_replace_the_output_refuse_the_pyramid(detector) -> None:
    model, x = detector
    modules = {"backbone": model.backbone}
    layouts = layer_layouts(model, modules, SIZE)
    with pytest.raises(MethodError, match="cannot be undone"):
        explain_batch(
            model, x[:1], modules, methods=("ablationcam",), target=DetectionScore(0.0, 0.5, 1), layouts=layouts
        )


def test_the_pyramid_from_the_command_line(tmp_path) -> None:
    """``gradcam layers`` lists the pyramid; ``gradcam explain --layer backbone`` writes valid records."""
    import json

    import jsonschema

    from helpers import SAMPLES, SCHEMA, gradcam, jsonl

    done = gradcam("layers", "--model", ARCH, "--json", "--no-cache")
    assert done.returncode == 0, done.stderr
    rows = {r["path"]: r for r in json.loads(done.stdout)}
    for path in ("backbone", "backbone.fpn"):
        assert rows[path]["layout"] == "levels", rows[path]
        assert rows[path]["shape"] == [768, *rows[path]["grid"]]  # 3 levels of 256 channels on the coarsest grid
    shown = gradcam("layers", "--model", ARCH, "--no-cache")
    assert "from 3 levels (0, 1, pool)" in shown.stdout
    out = tmp_path / "out"
    flags = ("--no-pretrained", "--score-threshold", "0", "--max-detections", "2", "--layer", "backbone")
    done = gradcam("explain", SAMPLES / "horses.jpg", "--model", ARCH, "-o", out, "--json", *flags, timeout=900)
    assert done.returncode == 0, done.stderr
    found = jsonl(done.stdout)
    assert len(found) == 2
    for record in found:
        jsonschema.validate(record, SCHEMA)
        assert record["layer"] == "backbone" and record["layout"] == "levels"
        assert record["target_value"] == pytest.approx(1 + record["detection"]["score"], abs=2e-6)
        assert all(Path(p).is_file() for p in record["files"].values())

"""Targets of classifiers against pytorch-grad-cam's own targets (oracles), and the Python API's targets.

Oracles: ``ClassifierOutputSoftmaxTarget`` (our ``probability``), ``BinaryClassifierOutputTarget`` (a one-output
head), ``FinerWeightedTarget`` with one comparison class and weight 1 (our ``contrastive``). Models are seeded
timm models at random init in float64, so both sides compute in float64; pytorch-grad-cam casts its min-max
scaled map to float32 at the end (``scale_cam_image``), which moves a value in [0, 1] by at most 2^-24 and its
1e-7 guard by 1e-7: 1e-5 is far above both. FinerWeightedTarget weighs the difference by p_B / (p_B + 1e-9),
whose derivative adds a term 1e-9 |y_A - y_B| / p_B times smaller than the difference's own gradient (p_B is
about 0.1 for these 10-class models): far below 1e-5 too.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from helpers import max_diff, scaled

pytest.importorskip("pytorch_grad_cam")
timm = pytest.importorskip("timm")

from pytorch_grad_cam import GradCAM, ScoreCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import (  # noqa: E402
    BinaryClassifierOutputTarget,
    ClassifierOutputSoftmaxTarget,
    FinerWeightedTarget,
)

from gradcam_cli.passes import explain_batch  # noqa: E402
from gradcam_cli.targets.contrastive import Contrastive  # noqa: E402
from gradcam_cli.targets.multilabel import SigmoidLabels  # noqa: E402
from gradcam_cli.targets.probability import SoftmaxProbability  # noqa: E402

TOL = 1e-5


def seeded(num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=num_classes).eval().double()


def inputs(n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(1)).double()


def theirs(model: nn.Module, layer: str, x: torch.Tensor, targets, grid, method=GradCAM) -> torch.Tensor:
    """pytorch-grad-cam's maps at the layer's own grid, on a copy of the model (it swaps nothing here, but hooks)."""
    twin = copy.deepcopy(model)
    with method(model=twin, target_layers=[dict(twin.named_modules())[layer]]) as cam:
        cam.get_target_width_height = lambda _t: (grid[1], grid[0])
        out = cam(input_tensor=x.clone(), targets=targets)
    return torch.from_numpy(np.asarray(out, dtype=np.float64))


def ours(model: nn.Module, layer: str, x: torch.Tensor, target, method="gradcam", **kw):
    result = explain_batch(model, x, {layer: dict(model.named_modules())[layer]}, target=target, methods=[method], **kw)
    return result, result.maps[method, layer][:, 0]


def test_probability_target_matches_classifier_output_softmax_target() -> None:
    model, x = seeded(10), inputs()
    result, maps = ours(model, "layer3", x, SoftmaxProbability())
    mine = scaled(maps).double()
    oracle = theirs(
        model, "layer3", x, [ClassifierOutputSoftmaxTarget(int(c)) for c in result.classes[:, 0]], mine.shape[-2:]
    )
    assert max_diff(mine, oracle) <= TOL
    assert result.target == "probability"
    assert torch.allclose(result.values[:, 0], torch.softmax(model(x), 1).gather(1, result.classes)[:, 0])


def test_probability_and_logit_targets_give_different_maps() -> None:
    """The softmax's gradient also pushes the other classes down: not the logit's map rescaled."""
    model, x = seeded(10), inputs()
    _, probability = ours(model, "layer3", x, SoftmaxProbability())
    _, logit = ours(model, "layer3", x, None)
    assert max_diff(scaled(probability), scaled(logit)) > 1e-3


@pytest.mark.parametrize("side", [0, 1])
def test_binary_head_matches_binary_classifier_output_target(side: int) -> None:
    """A one-output head: class 1 is explained by +y, class 0 by -y (compared where our map is not empty)."""
    model, x = seeded(1), inputs(4)
    result, maps = ours(model, "layer2", x, SigmoidLabels(0.5), classes=[side])
    alive = [b for b in range(x.shape[0]) if maps[b].max() > 0]
    assert alive, "every map is empty: the comparison would be vacuous"
    oracle = theirs(model, "layer2", x[alive], [BinaryClassifierOutputTarget(side)] * len(alive), maps.shape[-2:])
    assert max_diff(scaled(maps[alive]).double(), oracle) <= TOL
    sign = 1 if side == 1 else -1
    assert torch.allclose(result.values[:, 0], sign * model(x)[:, 0])
    assert result.slots.details[0][0]["head"] == "binary"


def test_binary_head_explains_the_predicted_side() -> None:
    model, x = seeded(1), inputs(4)
    result, _ = ours(model, "layer2", x, SigmoidLabels(0.5))
    expected = (torch.sigmoid(model(x))[:, 0] >= 0.5).long()
    assert torch.equal(result.classes[:, 0], expected)


def test_contrastive_target_matches_finer_weighted_target_with_one_class() -> None:
    model, x = seeded(10), inputs()
    result, maps = ours(model, "layer3", x, Contrastive("auto"))
    versus = result.slots.data["versus"][:, 0]
    logits = model(x)
    assert torch.equal(versus, logits.topk(2, dim=1).indices[:, 1])  # auto: the next most likely class
    targets = [FinerWeightedTarget(int(c), [int(v)], 1.0) for c, v in zip(result.classes[:, 0], versus)]
    assert max_diff(scaled(maps).double(), theirs(model, "layer3", x, targets, maps.shape[-2:])) <= TOL
    difference = logits.gather(1, result.classes) - logits.gather(1, versus[:, None])
    assert torch.allclose(result.values, difference)


def test_contrastive_target_against_a_given_class() -> None:
    model, x = seeded(10), inputs()
    result, maps = ours(model, "layer3", x, Contrastive(4), classes=[7])
    targets = [FinerWeightedTarget(7, [4], 1.0)] * 2
    assert max_diff(scaled(maps).double(), theirs(model, "layer3", x, targets, maps.shape[-2:])) <= TOL
    assert result.slots.details[0][0] == {"head": "softmax", "versus_index": 4}


class TinyNet(nn.Module):
    """Eight channels: Score-CAM's oracle runs one forward pass per channel."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def test_score_cam_reads_the_target_on_its_extra_passes() -> None:
    """Score-CAM with pytorch-grad-cam's convention weighs channels by the target's value on the masked copies."""
    model, x = TinyNet().eval().double(), inputs()
    settings = {"scorecam_convention": "pytorch-grad-cam"}
    result, maps = ours(model, "features", x, SoftmaxProbability(), method="scorecam", settings=settings)
    targets = [ClassifierOutputSoftmaxTarget(int(c)) for c in result.classes[:, 0]]
    oracle = theirs(model, "features", x, targets, maps.shape[-2:], method=ScoreCAM)
    assert max_diff(scaled(maps).double(), oracle) <= TOL


@pytest.mark.parametrize("method", ["gradcam", "gradcampp", "scorecam", "ablationcam", "occlusion", "eigengradcam"])
def test_a_function_of_the_output_is_a_target(method: str) -> None:
    """``target=lambda output: output[:, 3]`` gives exactly the maps of class 3's logit, whatever the method.

    Score-CAM as pytorch-grad-cam runs it, on the raw score: its paper's convention weighs by the class
    probability, which a function of the output does not have (it then weighs by the function's value)."""
    model, x = TinyNet().eval(), inputs().float()
    layer, settings = {"features": model.features}, {"scorecam_convention": "pytorch-grad-cam"}
    function = explain_batch(model, x, layer, methods=[method], target=lambda output: output[:, 3], settings=settings)
    logit = explain_batch(model, x, layer, methods=[method], classes=[3], settings=settings)
    key = next(iter(logit.maps))
    assert torch.equal(function.maps[key], logit.maps[key])
    assert function.classes.tolist() == [[-1], [-1]] and function.target == "custom"
    assert torch.equal(function.values, logit.values)


def test_explain_batch_keeps_its_classes_and_top_k() -> None:
    """The public signature as before: the class logit of the top-k classes, or of the given classes."""
    model, x = TinyNet().eval(), inputs().float()
    top = explain_batch(model, x, {"features": model.features}, top_k=2)
    logits = model(x)
    assert torch.equal(top.classes, logits.topk(2, dim=1).indices)
    assert torch.equal(top.logits, logits.detach()) and top.target == "class"
    given = explain_batch(model, x, {"features": model.features}, classes=[1, 4])
    assert given.classes.tolist() == [[1, 4], [1, 4]]
    assert torch.equal(given.values, logits.detach()[:, [1, 4]])


def test_cam_is_refused_for_a_target_other_than_the_class_logit() -> None:
    from gradcam_cli.errors import MethodError

    model, x = TinyNet().eval(), inputs().float()
    with pytest.raises(MethodError, match="--method cam: its classifier weights explain a class logit"):
        explain_batch(model, x, {"features": model.features}, methods=["cam"], target=SoftmaxProbability())


def test_the_python_api_takes_a_target_function(samples) -> None:
    from gradcam_cli import explain

    model = TinyNet().eval()
    [by_function] = explain(model, samples / "cat.png", target=lambda output: output[:, 2] - output[:, 0])
    [e] = by_function.explanations
    assert e.target == "custom" and e.class_index is None and e.probability is None
    [by_class] = explain(model, samples / "cat.png", classes=[2])
    assert by_function.records[0]["target"] == "custom" and by_class.records[0]["target"] == "class"
    assert by_function.records[0]["class_index"] is None

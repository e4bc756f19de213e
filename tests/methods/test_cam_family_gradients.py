"""The gradient members of the CAM family against pytorch-grad-cam 1.5.7 and torchcam 0.5: Shapley-CAM,
Finer-CAM, RefineCAM and Smooth Grad-CAM++ (FullGrad has its own file).

Both sides run the same model in float64 (``model.double()``), so maps are compared after min-max scaling
at the layer's grid within TOL: each peer rounds its scaled maps to float32 at most a few times (2**-24 of
values in [0, 1]); a convention switched off moves a map by far more (each test shows its switch matters).
Models: seeded random timm ResNet-18/50 at 64-96 px, the bundled Lite0 with its real weights, and, where a
second derivative must not vanish, a ResNet-18 with SiLU activations (ReLU networks are piecewise linear:
their Hessian is zero almost everywhere and Shapley-CAM is Grad-CAM there).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")
torchcam_methods = pytest.importorskip("torchcam.methods")

from pytorch_grad_cam import FinerCAM, RefineCAM, ShapleyCAM  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from gradcam_cli.capture import ActivationCapture  # noqa: E402
from gradcam_cli.methods.base import gaussian_noise  # noqa: E402
from gradcam_cli.methods.finercam import comparison_classes  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402

from helpers import SAMPLES, max_diff, oracle_model, scaled  # noqa: E402

TOL = 1e-5


@functools.cache
def model64(name: str) -> torch.nn.Module:
    if name == "resnet18-silu":
        torch.manual_seed(0)
        return timm.create_model("resnet18", pretrained=False, act_layer="silu").eval().double()
    return copy.deepcopy(oracle_model(name)).double()


@functools.cache
def noise(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(11)).double()


@functools.cache
def photos(size: int) -> torch.Tensor:
    """Two sample photos squashed to ``size`` and scaled as Lite0 expects: its real weights see noise as no
    object at all, and a product of maps (RefineCAM) or a noisy average can then be all zero."""
    from PIL import Image

    arrays = [np.asarray(Image.open(SAMPLES / n).convert("RGB").resize((size, size))) for n in ("cat.png", "dogs.png")]
    return ((torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() / 255.0) - 0.5) / 0.5


def inputs(size: int, name: str = "") -> torch.Tensor:
    """Real photos for the Lite0 with real weights, seeded noise for the random-init models."""
    return photos(size) if name == "lite0" else noise(size)


def ours(name: str, layers, size: int, method: str, settings=None, top_k: int = 1):
    m = model64(name)
    return explain_batch(
        m, inputs(size, name), {p: m.get_submodule(p) for p in layers}, methods=[method], settings=settings, top_k=top_k
    )


def pgc(cam, x: torch.Tensor, classes, hw) -> torch.Tensor:
    """A pytorch-grad-cam object's scaled map at ``hw`` for ``classes`` (None: its own targets)."""
    for base in getattr(cam, "base_cam_per_layer", None) or [getattr(cam, "base_cam", cam)]:
        base.get_target_width_height = lambda _t: (hw[1], hw[0])
    targets = None if classes is None else [ClassifierOutputTarget(int(c)) for c in classes]
    out = cam(input_tensor=x.clone().requires_grad_(True), targets=targets)
    return scaled(torch.from_numpy(np.asarray(out, dtype=np.float64)))


# --------------------------------------------------------------------------- Shapley-CAM

SHAPLEY_CASES = [
    ("resnet18", "layer3", 64),
    ("resnet50", "layer4", 64),
    ("lite0", "blocks.5", 96),
    ("resnet18-silu", "layer3", 64),
    ("resnet18-silu", "layer2", 64),
]


@pytest.mark.parametrize("name,path,size", SHAPLEY_CASES)
def test_shapleycam_matches_pytorch_grad_cam(name: str, path: str, size: int) -> None:
    res = ours(name, [path], size, "shapleycam")
    mine = scaled(res.maps["shapleycam", path][:, 0])
    m = copy.deepcopy(model64(name))
    with ShapleyCAM(model=m, target_layers=[m.get_submodule(path)]) as cam:
        theirs = pgc(cam, inputs(size, name), res.classes[:, 0], mine.shape[-2:])
    assert max_diff(mine, theirs) <= TOL


def test_shapleycam_second_order_term_counts_where_the_network_is_smooth() -> None:
    """With SiLU the Hessian-vector term moves the map from Grad-CAM's (by 5e-3 here, 500 times TOL, so the
    oracle comparison above checks it); with ReLU it vanishes and the maps are equal."""
    smooth = ours("resnet18-silu", ["layer3"], 64, "shapleycam").maps["shapleycam", "layer3"]
    grad = ours("resnet18-silu", ["layer3"], 64, "gradcam").maps["gradcam", "layer3"]
    assert max_diff(scaled(smooth[:, 0]), scaled(grad[:, 0])) > 100 * TOL
    relu = ours("resnet18", ["layer3"], 64, "shapleycam").maps["shapleycam", "layer3"]
    assert torch.equal(relu, ours("resnet18", ["layer3"], 64, "gradcam").maps["gradcam", "layer3"])


# --------------------------------------------------------------------------- Finer-CAM

FINER_CASES = [("resnet18", "layer4", 96), ("resnet50", "layer3", 64), ("lite0", "bn2", 96)]


@pytest.mark.parametrize("name,path,size", FINER_CASES)
def test_finercam_matches_pytorch_grad_cam(name: str, path: str, size: int) -> None:
    """pytorch-grad-cam picks the top class and its three closest classes itself (``targets=None``)."""
    res = ours(name, [path], size, "finercam", {"finer_weights": "pytorch-grad-cam"})
    assert torch.equal(res.classes[:, 0], res.logits.argmax(1))
    mine = scaled(res.maps["finercam", path][:, 0])
    m = copy.deepcopy(model64(name))
    with FinerCAM(model=m, target_layers=[m.get_submodule(path)]) as cam:
        theirs = pgc(cam, inputs(size, name), None, mine.shape[-2:])
    assert max_diff(mine, theirs) <= TOL


def layer_gradients(name: str, path: str, size: int, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's activations and, per (image, class column), the gradient of that class's logit."""
    m = model64(name)
    capture = ActivationCapture({path: m.get_submodule(path)}, make_leaf=True)
    with capture.installed():
        logits = m(inputs(size, name))
        acts = capture.outputs[path]
        grads = [
            torch.autograd.grad(logits.gather(1, classes[:, j : j + 1]).sum(), acts, retain_graph=True)[0]
            for j in range(classes.shape[1])
        ]
    return acts.detach(), torch.stack(grads, 1), logits.detach()


def test_finercam_paper_weights_are_the_weighted_single_class_differences() -> None:
    """By default the comparison classes' weights are constants: the map is Grad-CAM of
    ``g_c - sum_j p_j g_j / sum_j p_j`` (linearity), built here from the plain per-class gradients."""
    name, path, size = "resnet18", "layer4", 96
    res = ours(name, [path], size, "finercam")
    compared = comparison_classes(res.logits, res.classes, 3)[:, 0]  # (B, 3)
    acts, grads, logits = layer_gradients(name, path, size, torch.cat([res.classes[:, :1], compared], 1))
    p = torch.softmax(logits, 1).gather(1, compared)
    w = p / p.sum(1, keepdim=True)
    g = grads[:, 0] - (w[:, :, None, None, None] * grads[:, 1:]).sum(1)
    reference = torch.relu((g.mean((2, 3))[:, :, None, None] * acts).sum(1))
    assert max_diff(scaled(res.maps["finercam", path][:, 0]), scaled(reference)) <= TOL
    pgc_convention = ours(name, [path], size, "finercam", {"finer_weights": "pytorch-grad-cam"})
    assert max_diff(scaled(pgc_convention.maps["finercam", path][:, 0]), scaled(reference)) > 100 * TOL


def test_finercam_compares_with_the_closest_logits() -> None:
    logits = torch.tensor([[5.0, 4.9, 1.0, 4.0, -2.0, 4.95]])
    assert sorted(comparison_classes(logits, torch.tensor([[0]]), 2)[0, 0].tolist()) == [1, 5]
    assert sorted(comparison_classes(logits, torch.tensor([[2]]), 1)[0, 0].tolist()) == [4]
    assert comparison_classes(logits, torch.tensor([[0]]), 10).shape[-1] == 5  # never more than the others


# --------------------------------------------------------------------------- RefineCAM

REFINE_CASES = [
    ("resnet18", ("layer2", "layer3", "layer4"), 96),
    ("resnet50", ("layer3", "layer4"), 64),
    ("lite0", ("blocks.2", "blocks.4", "bn2"), 96),
]


@pytest.mark.parametrize("name,paths,size", REFINE_CASES)
def test_refinecam_matches_pytorch_grad_cam(name: str, paths: tuple, size: int) -> None:
    """One map for the layers, named by them all; pytorch-grad-cam's Grad-CAM++ epsilon switched on."""
    res = ours(name, paths, size, "refinecam", {"gradcampp_eps": 1e-6}, top_k=2)
    fused = "+".join(paths)
    assert [k for k in res.maps] == [("refinecam", fused)]
    for rank in range(2):
        mine = scaled(res.maps["refinecam", fused][:, rank])
        m = copy.deepcopy(model64(name))
        cam = RefineCAM(model=m, target_layers=[m.get_submodule(p) for p in paths])
        try:
            theirs = pgc(cam, inputs(size, name), res.classes[:, rank], mine.shape[-2:])
        finally:
            for base in cam.base_cam_per_layer:
                base.activations_and_grads.release()
        assert max_diff(mine, theirs) <= TOL


def test_refinecam_is_finer_than_its_deepest_layer() -> None:
    """The fused map is on the finest layer's grid, and differs from each layer's own Grad-CAM++ map there."""
    res = ours("resnet18", ("layer3", "layer4"), 96, "refinecam")
    fused = res.maps["refinecam", "layer3+layer4"]
    alone = ours("resnet18", ("layer3",), 96, "gradcampp").maps["gradcampp", "layer3"]
    assert fused.shape == alone.shape
    assert max_diff(scaled(fused[:, 0]), scaled(alone[:, 0])) > 1e-2


# --------------------------------------------------------------------------- Smooth Grad-CAM++


class SameDraws:
    """Stands in for torchcam's noise distribution: the draws our passes make, in the order torchcam asks."""

    def __init__(self, std: float, seed: int = 0) -> None:
        self.std, self.seed, self.calls = std, seed, 0

    def sample(self, size) -> torch.Tensor:
        noise = gaussian_noise(self.seed, (self.calls,), tuple(size[1:])) * self.std
        self.calls += 1
        return noise.expand(size)


SMOOTH_CASES = [("resnet18", "layer4", 64), ("resnet50", "layer3", 64), ("lite0", "blocks.4", 96)]


@pytest.mark.parametrize("name,path,size", SMOOTH_CASES)
def test_smoothgradcampp_matches_torchcam_with_the_same_draws(name: str, path: str, size: int) -> None:
    samples, std = 3, 0.3
    settings = {
        "smoothgradcampp_convention": "torchcam",
        "smoothgradcampp_samples": samples,
        "smoothgradcampp_std": std,
    }
    res = ours(name, [path], size, "smoothgradcampp", settings)
    m = copy.deepcopy(model64(name))
    with torchcam_methods.SmoothGradCAMpp(
        m, target_layer=path, num_samples=samples, std=std, input_shape=(3, size, size)
    ) as cam:
        cam._distrib = SameDraws(std)  # the one thing replaced: where its noise comes from
        cam.model(inputs(size, name))
        theirs = cam(class_idx=res.classes[:, 0].tolist(), normalized=False)[0].detach()
        assert cam._distrib.calls == samples
    assert max_diff(scaled(res.maps["smoothgradcampp", path][:, 0]), scaled(theirs)) <= TOL
    paper = ours(name, [path], size, "smoothgradcampp", {**settings, "smoothgradcampp_convention": "paper"})
    assert max_diff(scaled(paper.maps["smoothgradcampp", path][:, 0]), scaled(theirs)) > 100 * TOL


def test_smoothgradcampp_without_noise_is_gradcampp() -> None:
    settings = {"smoothgradcampp_samples": 2, "smoothgradcampp_std": 0.0}
    smooth = ours("resnet18", ["layer3"], 64, "smoothgradcampp", settings).maps["smoothgradcampp", "layer3"]
    plain = ours("resnet18", ["layer3"], 64, "gradcampp").maps["gradcampp", "layer3"]
    assert max_diff(scaled(smooth[:, 0]), scaled(plain[:, 0])) <= TOL


def test_smoothgradcampp_noise_is_the_same_whatever_the_batch() -> None:
    """An image's map does not depend on the images beside it: the noise is keyed by the copy alone."""
    m, x = model64("resnet18"), inputs(64)
    both = explain_batch(m, x, {"layer3": m.layer3}, methods=["smoothgradcampp"])
    alone = explain_batch(m, x[1:], {"layer3": m.layer3}, methods=["smoothgradcampp"], classes=both.classes[1:])
    assert max_diff(both.maps["smoothgradcampp", "layer3"][1:], alone.maps["smoothgradcampp", "layer3"]) <= 1e-12


def test_smoothgradcampp_noise_moves_inner_layers_only() -> None:
    """Inside the network the gradient depends on the input, so the noise moves the map; at the layer before
    global pooling and the linear head it does not (the gradient is the head's weight row divided by h*w,
    whatever the input), so Smooth Grad-CAM++ is Grad-CAM++ there."""
    settings = {"smoothgradcampp_samples": 2, "smoothgradcampp_std": 0.3}
    for path, moved in (("layer3", True), ("layer4", False)):
        smooth = ours("resnet18", [path], 64, "smoothgradcampp", settings).maps["smoothgradcampp", path]
        plain = ours("resnet18", [path], 64, "gradcampp").maps["gradcampp", path]
        assert (max_diff(scaled(smooth[:, 0]), scaled(plain[:, 0])) > 100 * TOL) is moved, path

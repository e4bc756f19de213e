"""The method family against independent implementations, and what the methods promise about passes.

Oracles: pytorch-grad-cam (every method it has), torchcam (LayerCAM, XGrad-CAM, Grad-CAM++,
Score-CAM), captum (``Occlusion``) and slow reference loops written here. Where a peer's
definition differs from the paper our default follows the paper; the comparison then
switches on the peer's convention (``settings``), and the difference is stated in the
method's docstring. Every model is random-init (fixed seed) except the bundled
EfficientNet-Lite0 with its real weights; every oracle runs on a deep copy.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")
pgc = pytest.importorskip("pytorch_grad_cam")
torchcam_methods = pytest.importorskip("torchcam.methods")
captum_attr = pytest.importorskip("captum.attr")

from pytorch_grad_cam import (EigenCAM, GradCAM, GradCAMPlusPlus,  # noqa: E402
                              HiResCAM, LayerCAM, XGradCAM)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

from gradcam_cli.capture import ActivationCapture  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402
from gradcam_cli.methods.base import first_component  # noqa: E402
from helpers import max_diff, oracle_model as model, scaled  # noqa: E402

TOL = 1e-5  # max abs difference between min-max scaled maps

# name -> (default layer, intermediate layer)
LAYERS = {
    "resnet50": ("layer4", "layer3"),
    "vgg16": ("features.29", "features.23"),  # the last conv block's ReLU, and a MaxPool after conv4_3's ReLU
    "convnext_tiny": ("stages.3", "stages.2"),
    "lite0": ("bn2", "blocks.5"),  # the bundled model with its real ImageNet weights
}
GRADIENT_ORACLES = {  # our method -> (pytorch-grad-cam class, settings for the same convention)
    "gradcam": (GradCAM, {}),
    "gradcampp": (GradCAMPlusPlus, {"gradcampp_eps": 1e-6}),
    "xgradcam": (XGradCAM, {"xgradcam_eps": 1e-7}),
    "hirescam": (HiResCAM, {}),
    "layercam": (LayerCAM, {}),
}
PGC_SETTINGS = {k: v for _, (_, s) in GRADIENT_ORACLES.items() for k, v in s.items()}


@functools.lru_cache(maxsize=None)
def inputs(size: int = 224, n: int = 2) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1234))


def module(m: nn.Module, path: str) -> nn.Module:
    return m.get_submodule(path)


def pgc_map(cam_class, name: str, path: str, x: torch.Tensor, classes, hw, source=None, **kw) -> torch.Tensor:
    """pytorch-grad-cam's map at the layer's own resolution, min-max scaled, on a copy of the model."""
    m = copy.deepcopy((source or model)(name))
    with cam_class(model=m, target_layers=[module(m, path)], **kw) as cam:
        cam.get_target_width_height = lambda _t: (hw[1], hw[0])  # keep the layer's resolution
        theirs = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return scaled(torch.from_numpy(np.asarray(theirs, dtype=np.float32)))


SIZE = 128  # the family's oracle tests run at 128 px (layer4 grids of 4x4): the definitions, not the scale


@functools.lru_cache(maxsize=None)
def model_float64(name: str) -> nn.Module:
    return copy.deepcopy(model(name)).double()


@functools.lru_cache(maxsize=None)
def ours_gradient_family(name: str, float64: bool = False):
    """One call: every gradient method and Eigen-CAM at both layers, from one forward pass."""
    m = model_float64(name) if float64 else model(name)
    x = inputs(SIZE).double() if float64 else inputs(SIZE)
    methods = [*GRADIENT_ORACLES, "eigencam", "eigengradcam"]
    return explain_batch(m, x, {p: module(m, p) for p in LAYERS[name]}, methods=methods, settings=PGC_SETTINGS)


# --------------------------------------------------------------------------- gradient methods


def _compare_with_pytorch_grad_cam(method: str, name: str, which: int, float64: bool) -> None:
    path = LAYERS[name][which]
    res = ours_gradient_family(name, float64)
    ours = scaled(res.maps[method, path][:, 0])
    x = inputs(SIZE).double() if float64 else inputs(SIZE)
    theirs = pgc_map(GRADIENT_ORACLES[method][0], name, path, x, res.classes[:, 0], ours.shape[-2:],
                     source=model_float64 if float64 else model)
    assert max_diff(ours, theirs) <= TOL


@pytest.mark.parametrize("which", [0, 1], ids=["default", "intermediate"])
@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("method", list(GRADIENT_ORACLES))
def test_gradient_methods_match_pytorch_grad_cam(method: str, name: str, which: int) -> None:
    """The definitions, compared with both sides in float64 (the models run in float64 too)."""
    _compare_with_pytorch_grad_cam(method, name, which, float64=True)


@pytest.mark.parametrize("which", [0, 1], ids=["default", "intermediate"])
@pytest.mark.parametrize("name", ["resnet50", "vgg16", "lite0"])
@pytest.mark.parametrize("method", list(GRADIENT_ORACLES))
def test_gradient_methods_match_pytorch_grad_cam_in_float32(method: str, name: str, which: int) -> None:
    """What users run, in float32. Not on random-init ConvNeXt: the signed activations of its layers
    make HiResCAM's channel sum and XGrad-CAM's spatial sums nearly cancel, and float32 alone then moves
    either implementation by 1e-4 to 4% of the map away from a float64 evaluation."""
    _compare_with_pytorch_grad_cam(method, name, which, float64=False)


def test_paper_gradcampp_differs_from_pytorch_grad_cams_epsilon() -> None:
    """Our default has no epsilon; with small gradients pytorch-grad-cam's 1e-6 shifts the map (documented)."""
    m = model("resnet50")
    res = explain_batch(m, inputs(SIZE), {"layer4": m.layer4}, methods=["gradcampp"])
    theirs = pgc_map(GradCAMPlusPlus, "resnet50", "layer4", inputs(SIZE), res.classes[:, 0],
                     res.maps["gradcampp", "layer4"].shape[-2:])
    ours = scaled(res.maps["gradcampp", "layer4"][:, 0])
    assert max_diff(ours, theirs) > TOL  # the convention switch in the oracle test is doing real work


def activations_and_gradients(name: str, path: str, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's activations and the gradient of each image's class score, computed plainly here."""
    m = model(name)
    capture = ActivationCapture({path: module(m, path)}, make_leaf=True)
    with capture.installed():
        logits = m(inputs(SIZE))
        acts = capture.outputs[path]
        (grads,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), acts)
    return acts.detach(), grads


def _eigen_reference(values: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(get_2d_projection(values.numpy()))


@pytest.mark.parametrize("which", [0, 1], ids=["default", "intermediate"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_eigen_methods_match_pytorch_grad_cam_up_to_the_svd_sign(name: str, which: int) -> None:
    """pytorch-grad-cam keeps whatever sign its SVD returns; ours points the component where the layer is active.

    Our projection equals theirs times +1 or -1, and our map is theirs for that sign.
    """
    path = LAYERS[name][which]
    res = ours_gradient_family(name)
    acts, grads = activations_and_gradients(name, path, res.classes[:, 0])
    for method, values in (("eigencam", acts), ("eigengradcam", grads * acts)):
        reference = _eigen_reference(values)
        ours = first_component(values)
        sign = torch.sign((ours * reference).flatten(1).sum(1))[:, None, None]
        assert max_diff(ours / ours.flatten(1).abs().amax(1)[:, None, None],
                        sign * reference / reference.flatten(1).abs().amax(1)[:, None, None]) <= TOL
        ours_map = scaled(res.maps[method, path][:, 0])
        assert max_diff(ours_map, scaled(torch.relu(sign * reference))) <= TOL
    # pytorch-grad-cam's EigenCAM is exactly that reference projection, with the sign its SVD returned.
    theirs = pgc_map(EigenCAM, name, path, inputs(SIZE), res.classes[:, 0], acts.shape[-2:])
    assert max_diff(theirs, scaled(torch.relu(_eigen_reference(acts)))) <= TOL


def test_eigen_sign_points_where_the_layer_is_active() -> None:
    acts = torch.zeros(1, 4, 5, 5)
    acts[0, :, 1:3, 1:3] = torch.tensor([3.0, 2.0, 1.0, 4.0])[:, None, None]
    projection = first_component(acts)[0]
    assert projection[1:3, 1:3].min() > projection.max() * 0.99 > 0


def test_eigen_gradcam_is_class_specific_and_eigencam_is_not() -> None:
    m = model("resnet50")
    res = explain_batch(m, inputs(SIZE), {"layer4": m.layer4}, methods=["eigencam", "eigengradcam"], top_k=2)
    eig, eg = res.maps["eigencam", "layer4"], res.maps["eigengradcam", "layer4"]
    assert torch.equal(eig[:, 0], eig[:, 1])
    assert not torch.allclose(eg[:, 0], eg[:, 1])


@pytest.mark.parametrize("method,theirs_class", [("layercam", "LayerCAM"), ("xgradcam", "XGradCAM")])
def test_torchcam_agrees_on_layercam_and_xgradcam(method: str, theirs_class: str) -> None:
    m = model("resnet50")
    res = ours_gradient_family("resnet50")
    extractor = getattr(torchcam_methods, theirs_class)
    with extractor(copy.deepcopy(m), target_layer="layer3") as cam:
        scores = cam.model(inputs(SIZE))
        theirs = cam(class_idx=res.classes[:, 0].tolist(), scores=scores, normalized=False)[0].detach()
    assert max_diff(scaled(res.maps[method, "layer3"][:, 0]), scaled(theirs)) <= TOL


def test_torchcam_gradcampp_with_its_convention() -> None:
    m = model("resnet50")
    res = explain_batch(m, inputs(SIZE), {"layer4": m.layer4}, methods=["gradcampp"],
                        settings={"gradcampp_alpha": "torchcam"})
    with torchcam_methods.GradCAMpp(copy.deepcopy(m), target_layer="layer4") as cam:
        scores = cam.model(inputs(SIZE))
        theirs = cam(class_idx=res.classes[:, 0].tolist(), scores=scores, normalized=False)[0].detach()
    assert max_diff(scaled(res.maps["gradcampp", "layer4"][:, 0]), scaled(theirs)) <= TOL


# --------------------------------------------------------------------------- smoothing


def test_eigen_smoothing_matches_pytorch_grad_cam_up_to_the_svd_sign() -> None:
    """``--smooth eigen``: the first component of the Grad-CAM-weighted activations instead of their sum."""
    m, x, path = model("resnet50"), inputs(SIZE), "layer3"
    res = explain_batch(m, x, {path: m.layer3}, methods=["gradcam"], smooth="eigen")
    acts, grads = activations_and_gradients("resnet50", path, res.classes[:, 0])
    weighted = grads.mean(dim=(2, 3))[:, :, None, None] * acts
    reference = _eigen_reference(weighted)
    sign = torch.sign((first_component(weighted) * reference).flatten(1).sum(1))[:, None, None]
    ours = scaled(res.maps["gradcam", path][:, 0])
    assert max_diff(ours, scaled(torch.relu(sign * reference))) <= TOL
    mm = copy.deepcopy(m)
    with GradCAM(model=mm, target_layers=[mm.layer3]) as cam:
        cam.get_target_width_height = lambda _t: (ours.shape[-1], ours.shape[-2])
        smooth = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in res.classes[:, 0]],
                     eigen_smooth=True)
    # pytorch-grad-cam's eigen_smooth is that same projection with the sign its SVD returned.
    assert max_diff(scaled(torch.from_numpy(np.asarray(smooth, dtype=np.float32))),
                    scaled(torch.relu(reference))) <= TOL
    assert max_diff(ours, scaled(explain_batch(m, x, {path: m.layer3}).maps["gradcam", path][:, 0])) > 0.05


def test_augmentation_smoothing_matches_pytorch_grad_cam() -> None:
    m = model("resnet50")
    x = inputs(SIZE)
    res = explain_batch(m, x, {"layer4": m.layer4}, methods=["gradcam"], smooth="aug")
    ours = scaled(res.maps["gradcam", "layer4"][:, 0])
    mm = copy.deepcopy(m)
    with GradCAM(model=mm, target_layers=[mm.layer4]) as cam:
        cam.get_target_width_height = lambda _t: (ours.shape[-1], ours.shape[-2])
        theirs = cam(input_tensor=x.clone(), targets=[ClassifierOutputTarget(int(c)) for c in res.classes[:, 0]],
                     aug_smooth=True)
    assert max_diff(ours, scaled(torch.from_numpy(np.asarray(theirs, dtype=np.float32)))) <= TOL

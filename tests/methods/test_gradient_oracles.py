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

from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM  # noqa: E402
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

from gradcam_cli.capture import ActivationCapture  # noqa: E402
from gradcam_cli.methods.base import first_component  # noqa: E402
from gradcam_cli.passes import AUGMENTATIONS, explain_batch  # noqa: E402

from helpers import U32, gamma32, max_diff, minmax_bound, scaled  # noqa: E402
from helpers import oracle_model as model  # noqa: E402

# Max abs difference between min-max scaled maps, for comparisons computed in float64 on both sides: float64
# rounding is ~1e-16 per operation, and the one float32 rounding pytorch-grad-cam gives its scaled maps is
# 2**-24 of values in [0, 1]. A wrong weighting moves a map by 1e-1 (see the float32 test).
TOL = 1e-5

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


@functools.cache
def inputs(size: int = 224, n: int = 2, float64: bool = False) -> torch.Tensor:
    x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(1234))
    return x.double() if float64 else x


def module(m: nn.Module, path: str) -> nn.Module:
    return m.get_submodule(path)


@functools.cache
def oracle_copy(name: str, float64: bool) -> nn.Module:
    """The model pytorch-grad-cam hooks: a copy of ours, once per model and dtype. Its weights need no
    gradient (the graph runs from the input, see ``pgc_map``): a backward pass then skips VGG-16's 120M
    weight gradients, which cost more than the rest of the pass and change none of the layer's gradients."""
    m = copy.deepcopy(model(name)).requires_grad_(False)
    return m.double() if float64 else m


def pgc_map(cam_class, name: str, path: str, x: torch.Tensor, classes, hw, float64: bool = False, **kw) -> torch.Tensor:
    """pytorch-grad-cam's map at the layer's own resolution, min-max scaled (in float64), on its copy of the
    model. Its own scaling ends in float32; for a float64 model that is the one float32 rounding it adds."""
    m = oracle_copy(name, float64)
    with cam_class(model=m, target_layers=[module(m, path)], **kw) as cam:
        cam.get_target_width_height = lambda _t: (hw[1], hw[0])  # keep the layer's resolution
        theirs = cam(
            input_tensor=x.clone().requires_grad_(True), targets=[ClassifierOutputTarget(int(c)) for c in classes]
        )
    return scaled(torch.from_numpy(np.asarray(theirs, dtype=np.float64)))


SIZE = 128  # the family's oracle tests run at 128 px (layer4 grids of 4x4): the definitions, not the scale
# VGG-16 runs its widest convolutions at full resolution: at 64 px its two layers are 4x4 grids, as ResNet-50's
# layer4 is at 128 px, and the oracle costs a quarter.
SIZES = {"vgg16": 64}


def size_of(name: str) -> int:
    return SIZES.get(name, SIZE)


@functools.cache
def model_float64(name: str) -> nn.Module:
    return copy.deepcopy(model(name)).double()


@functools.cache
def ours_gradient_family(name: str, float64: bool = False):
    """One call: every gradient method and Eigen-CAM at both layers, from one forward pass."""
    m = model_float64(name) if float64 else model(name)
    methods = [*GRADIENT_ORACLES, "eigencam", "eigengradcam"]
    return explain_batch(
        m,
        inputs(size_of(name), float64=float64),
        {p: module(m, p) for p in LAYERS[name]},
        methods=methods,
        settings=PGC_SETTINGS,
    )


@functools.cache
def pgc_family(name: str, path: str, float64: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """pytorch-grad-cam's scaled map for every gradient method and Eigen-CAM, and its activations and gradients.

    Its methods differ only in how ``get_cam_image`` reads the activations and gradients of one forward and
    backward pass: one pass of its own (its ``GradCAM``, for ``ours_gradient_family``'s classes) serves them
    all, and each map then takes its own last steps (``compute_cam_per_layer``: ReLU, ``scale_cam_image``).
    """
    m, x = oracle_copy(name, float64), inputs(size_of(name), float64=float64).clone().requires_grad_(True)
    layer = module(m, path)
    targets = [ClassifierOutputTarget(int(c)) for c in ours_gradient_family(name, float64).classes[:, 0]]
    with GradCAM(model=m, target_layers=[layer]) as cam:
        cam(input_tensor=x, targets=targets)
        acts, grads = cam.activations_and_grads.activations[0], cam.activations_and_grads.gradients[0]
    maps = {}
    for method, cam_class in {**{k: c for k, (c, _) in GRADIENT_ORACLES.items()}, "eigencam": EigenCAM}.items():
        with cam_class(model=m, target_layers=[layer]) as cam:
            raw = cam.get_cam_image(x, layer, targets, acts.numpy(), grads.numpy(), False)
        maps[method] = scaled(torch.from_numpy(scale_cam_image(np.maximum(raw, 0)).astype(np.float64)))
    return maps, acts, grads


# --------------------------------------------------------------------------- gradient methods


@pytest.mark.parametrize("which", [0, 1], ids=["default", "intermediate"])
@pytest.mark.parametrize("name", list(LAYERS))
@pytest.mark.parametrize("method", list(GRADIENT_ORACLES))
def test_gradient_methods_match_pytorch_grad_cam(method: str, name: str, which: int) -> None:
    """The definitions, compared with both sides in float64 (the models run in float64 too): TOL."""
    path = LAYERS[name][which]
    ours = scaled(ours_gradient_family(name, True).maps[method, path][:, 0])
    assert max_diff(ours, pgc_family(name, path, True)[0][method]) <= TOL


@pytest.mark.parametrize("which", [0, 1], ids=["default", "intermediate"])
@pytest.mark.parametrize("name", ["resnet50", "vgg16", "lite0"])
@pytest.mark.parametrize("method", list(GRADIENT_ORACLES))
def test_gradient_methods_match_pytorch_grad_cam_in_float32(method: str, name: str, which: int) -> None:
    """What users run, in float32, within what float32 can promise for these maps (``float32_bound``).

    Both sides read the same float32 activations and gradients (the same model, input and operations; checked
    against ActivationCapture, the engine's own hook), so they differ only by the rounding of the method's own
    arithmetic. Not on random-init ConvNeXt: the signed activations of its layers make HiResCAM's channel sum
    and XGrad-CAM's spatial sums nearly cancel, and the bound then says nothing.
    """
    path = LAYERS[name][which]
    res = ours_gradient_family(name)
    theirs, acts, grads = pgc_family(name, path, False)
    mine_acts, mine_grads = family_activations_and_gradients(name, path)
    assert torch.equal(acts, mine_acts) and torch.equal(grads, mine_grads)
    bound = float32_bound(method, acts, grads, PGC_SETTINGS.get(f"{method}_eps", 0.0))
    assert max_diff(scaled(res.maps[method, path][:, 0]), theirs[method]) <= bound


def float32_bound(method: str, acts: torch.Tensor, grads: torch.Tensor, eps: float) -> float:
    """The most float32 rounding can move a min-max scaled map of ``method``, on either side, to first order.

    The map is relu(sum_k w_k A_k) over C channels: each side rounds the channel sum (C products, summed:
    gamma_{C+1} of sum_k |w_k A_k|) and its weights w_k (``_weight_error``). Min-max scaling turns that into
    ``minmax_bound`` per side, and the final scalings round values in [0, 1] a few times (8 U32 per side).
    Magnitudes are taken in float64 from the float32 activations and gradients both sides read.
    """
    a, g = acts.double(), grads.double()
    weights, weight_error = _weights_and_error(method, a, g, eps)
    terms = weights * a  # (B, C, h, w)
    error = (weight_error * a.abs()).sum(1) + gamma32(a.shape[1] + 1) * terms.abs().sum(1)
    cam = torch.relu(terms.sum(1)).flatten(1)
    return (
        max(2 * minmax_bound(e.max().item(), (c.max() - c.min()).item()) for e, c in zip(error.flatten(1), cam))
        + 16 * U32
    )


def _weights_and_error(method: str, a: torch.Tensor, g: torch.Tensor, eps: float):
    """Each side's weights (per channel, or per position for HiResCAM and LayerCAM) and a bound on their
    float32 rounding error, for pytorch-grad-cam's formulas (ours are the same, some sums in float64)."""
    n, spatial = a.shape[-1] * a.shape[-2], (2, 3)  # positions in a spatial sum
    if method in ("hirescam", "layercam"):  # g A or relu(g) A: the product's rounding is in gamma_{C+1}
        return (g if method == "hirescam" else torch.relu(g)), torch.zeros_like(g)
    if method == "gradcam":  # a mean of n gradients
        return g.mean(spatial, keepdim=True), gamma32(n) * g.abs().mean(spatial, keepdim=True)
    total = a.sum(spatial, keepdim=True)  # sum_ab A_ab, off by gamma_n sum_ab |A_ab|
    total_error = gamma32(n) * a.abs().sum(spatial, keepdim=True)
    if method == "xgradcam":  # sum_ij g A / (total + eps): per term a product and a division, then n terms
        relative = (total_error + U32 * (total + eps).abs()) / (total + eps).abs()
        terms = g * a / (total + eps)
        return terms.sum(spatial, keepdim=True), (gamma32(n) + 2 * U32 + relative) * terms.abs().sum(spatial, True)
    # Grad-CAM++: alpha = g^2 / d, d = 2 g^2 + total g^3 + eps, w = sum_ij alpha relu(g). g^2 and g^3 are off by
    # 1 and 2 roundings, the product total g^3 by total's error and 3 roundings, the two additions by 2 more.
    g2, g3 = g.square(), g.pow(3)
    d = 2 * g2 + total * g3 + eps
    d_error = total_error * g3.abs() + U32 * (6 * g2 + 5 * (total * g3).abs() + 2 * eps)
    relative = torch.where(g != 0, 3 * U32 + d_error / d.abs(), 0.0)  # alpha's: g^2, the division, relu(g) x
    terms = torch.where(g != 0, g2 / d, 0.0) * torch.relu(g)
    error = gamma32(n) * terms.abs().sum(spatial, keepdim=True) + (terms.abs() * relative).sum(spatial, keepdim=True)
    return terms.sum(spatial, keepdim=True), error


def test_paper_gradcampp_differs_from_pytorch_grad_cams_epsilon() -> None:
    """Our default has no epsilon; with small gradients pytorch-grad-cam's 1e-6 shifts the map (documented).
    In float64 on both sides, so the difference is the epsilon's, not rounding."""
    m, x = model_float64("resnet50"), inputs(SIZE, float64=True)
    res = explain_batch(m, x, {"layer4": m.layer4}, methods=["gradcampp"])
    theirs = pgc_map(
        GradCAMPlusPlus,
        "resnet50",
        "layer4",
        x,
        res.classes[:, 0],
        res.maps["gradcampp", "layer4"].shape[-2:],
        float64=True,
    )
    ours = scaled(res.maps["gradcampp", "layer4"][:, 0])
    assert max_diff(ours, theirs) > TOL  # the convention switch in the oracle test is doing real work


@functools.cache
def family_activations_and_gradients(name: str, path: str, float64: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``activations_and_gradients`` for the classes of ``ours_gradient_family``, once per model, layer and dtype."""
    return activations_and_gradients(name, path, ours_gradient_family(name, float64).classes[:, 0], float64)


def activations_and_gradients(
    name: str, path: str, classes: torch.Tensor, float64: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's activations and the gradient of each image's class score, computed plainly here."""
    m = model_float64(name) if float64 else model(name)
    capture = ActivationCapture({path: module(m, path)}, make_leaf=True)
    with capture.installed():
        logits = m(inputs(size_of(name), float64=float64))
        acts = capture.outputs[path]
        (grads,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), acts)
    return acts.detach(), grads


def _eigen_reference(values: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(get_2d_projection(values.numpy()))


@pytest.mark.parametrize("which", [0, 1], ids=["default", "intermediate"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_eigen_methods_match_pytorch_grad_cam_up_to_the_svd_sign(name: str, which: int) -> None:
    """pytorch-grad-cam keeps whatever sign its SVD returns; ours points the component where the layer is active.

    Our projection equals theirs times +1 or -1, and our map is theirs for that sign. In float64 throughout
    (the SVD too): TOL.
    """
    path = LAYERS[name][which]
    res = ours_gradient_family(name, True)
    acts, grads = family_activations_and_gradients(name, path, float64=True)
    for method, values in (("eigencam", acts), ("eigengradcam", grads * acts)):
        reference = _eigen_reference(values)
        ours = first_component(values)
        sign = torch.sign((ours * reference).flatten(1).sum(1))[:, None, None]
        assert (
            max_diff(
                ours / ours.flatten(1).abs().amax(1)[:, None, None],
                sign * reference / reference.flatten(1).abs().amax(1)[:, None, None],
            )
            <= TOL
        )
        ours_map = scaled(res.maps[method, path][:, 0])
        assert max_diff(ours_map, scaled(torch.relu(sign * reference))) <= TOL
    # pytorch-grad-cam's EigenCAM is exactly that reference projection, with the sign its SVD returned.
    assert max_diff(pgc_family(name, path, True)[0]["eigencam"], scaled(torch.relu(_eigen_reference(acts)))) <= TOL


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
    """In float64 on both sides (torchcam computes in the model's dtype): TOL."""
    m = model_float64("resnet50")
    res = ours_gradient_family("resnet50", True)
    extractor = getattr(torchcam_methods, theirs_class)
    with extractor(copy.deepcopy(m), target_layer="layer3") as cam:
        scores = cam.model(inputs(SIZE, float64=True))
        theirs = cam(class_idx=res.classes[:, 0].tolist(), scores=scores, normalized=False)[0].detach()
    assert max_diff(scaled(res.maps[method, "layer3"][:, 0]), scaled(theirs)) <= TOL


def test_torchcam_gradcampp_with_its_convention() -> None:
    """In float64 on both sides: TOL."""
    m = model_float64("resnet50")
    res = explain_batch(
        m,
        inputs(SIZE, float64=True),
        {"layer4": m.layer4},
        methods=["gradcampp"],
        settings={"gradcampp_alpha": "torchcam"},
    )
    with torchcam_methods.GradCAMpp(copy.deepcopy(m), target_layer="layer4") as cam:
        scores = cam.model(inputs(SIZE, float64=True))
        theirs = cam(class_idx=res.classes[:, 0].tolist(), scores=scores, normalized=False)[0].detach()
    assert max_diff(scaled(res.maps["gradcampp", "layer4"][:, 0]), scaled(theirs)) <= TOL


# --------------------------------------------------------------------------- smoothing


def test_eigen_smoothing_matches_pytorch_grad_cam_up_to_the_svd_sign() -> None:
    """``--smooth eigen``: the first component of the Grad-CAM-weighted activations instead of their sum.
    In float64 throughout (the SVDs too): TOL."""
    m, x, path = model_float64("resnet50"), inputs(SIZE, float64=True), "layer3"
    res = explain_batch(m, x, {path: m.layer3}, methods=["gradcam"], smooth="eigen")
    acts, grads = activations_and_gradients("resnet50", path, res.classes[:, 0], float64=True)
    weighted = grads.mean(dim=(2, 3))[:, :, None, None] * acts
    reference = _eigen_reference(weighted)
    sign = torch.sign((first_component(weighted) * reference).flatten(1).sum(1))[:, None, None]
    ours = scaled(res.maps["gradcam", path][:, 0])
    assert max_diff(ours, scaled(torch.relu(sign * reference))) <= TOL
    mm = oracle_copy("resnet50", True)
    with GradCAM(model=mm, target_layers=[mm.layer3]) as cam:
        cam.get_target_width_height = lambda _t: (ours.shape[-1], ours.shape[-2])
        smooth = cam(
            input_tensor=x.clone().requires_grad_(True),
            targets=[ClassifierOutputTarget(int(c)) for c in res.classes[:, 0]],
            eigen_smooth=True,
        )
    # pytorch-grad-cam's eigen_smooth is that same projection with the sign its SVD returned.
    assert (
        max_diff(scaled(torch.from_numpy(np.asarray(smooth, dtype=np.float64))), scaled(torch.relu(reference))) <= TOL
    )
    assert max_diff(ours, scaled(explain_batch(m, x, {path: m.layer3}).maps["gradcam", path][:, 0])) > 0.05


def test_augmentation_smoothing_matches_pytorch_grad_cam() -> None:
    """In float64, but for two things pytorch-grad-cam does to its 6 augmented maps. It divides each by its
    range + 1e-7 (twice: per layer, then the layers' mean), so map i is scaled by 1 - e_i, with
    e_i <= 1e-7 / range_i + 1e-7 (``_augmented_ranges``): a common factor scales the mean, which our min-max
    scaling removes, and the rest moves it by at most max_i e_i - min_i e_i. And it takes their mean in float32:
    each map's values in [0, 1] rounded once, summed and divided (gamma_6), the mean scaled again and rounded
    (3 more): 12 U32. ``minmax_bound`` turns the sum into a bound on the mean's scaled values."""
    m, x = model_float64("resnet50"), inputs(SIZE, float64=True)
    res = explain_batch(m, x, {"layer4": m.layer4}, methods=["gradcam"], smooth="aug")
    ours = scaled(res.maps["gradcam", "layer4"][:, 0])
    mm = oracle_copy("resnet50", True)
    with GradCAM(model=mm, target_layers=[mm.layer4]) as cam:
        cam.get_target_width_height = lambda _t: (ours.shape[-1], ours.shape[-2])
        theirs = cam(
            input_tensor=x.clone().requires_grad_(True),
            targets=[ClassifierOutputTarget(int(c)) for c in res.classes[:, 0]],
            aug_smooth=True,
        )
    theirs = torch.from_numpy(np.asarray(theirs, dtype=np.float64))
    spans = theirs.flatten(1).amax(1) - theirs.flatten(1).amin(1)
    factors = 1e-7 / _augmented_ranges(x, res.classes[:, 0])  # (B, 6): e_i, less the common 1e-7
    spreads = factors.amax(1) - factors.amin(1)
    bound = max(minmax_bound(spread.item() + 12 * U32, span.item()) for spread, span in zip(spreads, spans))
    assert max_diff(ours, scaled(theirs)) <= bound


def _augmented_ranges(x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``(B, 6)``: the range of each image's raw Grad-CAM map (ReLU'd) under each of the 6 augmentations (in
    float32: only their size matters)."""
    m = model("resnet50")
    ranges = []
    for image, cls in zip(x.float(), classes.tolist()):
        augmented = torch.stack([(image * f).flip(-1) if flip else image * f for flip, f in AUGMENTATIONS])
        maps = explain_batch(m, augmented, {"layer4": m.layer4}, classes=[cls]).maps["gradcam", "layer4"][:, 0]
        ranges.append(maps.flatten(1).amax(1) - maps.flatten(1).amin(1))
    return torch.stack(ranges)

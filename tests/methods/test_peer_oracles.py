"""Oracle tests: our Grad-CAM / CAM / Guided Backprop against independent implementations.

Oracles: pytorch-grad-cam (``GradCAM``, ``GuidedBackpropReLUModel``), captum
(``LayerGradCam``, ``GuidedBackprop``) and a hand-written guided-SiLU reference.
Every model is built once (random init, fixed seed, never pretrained) and every
oracle runs on a deep copy, since pytorch-grad-cam swaps modules in place. Every
comparison runs its models and inputs in float64, ours and the oracle's: float64 rounding
(~1e-16 per operation) is far below the bounds, so they hold on any CPU, and a wrong rule
(a gate, a layer, a class) moves maps by 1e-2 to 1.
"""

from __future__ import annotations

import collections
import copy
import functools
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")
pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("captum")

from captum.attr import GuidedBackprop, LayerGradCam  # noqa: E402
from pytorch_grad_cam import GradCAM  # noqa: E402
from pytorch_grad_cam.guided_backprop import GuidedBackpropReLUModel  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from gradcam_cli.errors import MethodError  # noqa: E402
from gradcam_cli.maps.scale import normalize_minmax  # noqa: E402
from gradcam_cli.model.layers import default_layer, trace_layers  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402

from helpers import max_diff  # noqa: E402

# The definitions, not the scale: at 96 px the default layers are 3x3 grids and the intermediate ones 6x6. VGG-16
# runs its widest convolutions at full resolution: at 64 px its layers are 4x4 grids.
SIZE = (96, 96)
SIZES = {"vgg16": (64, 64)}
CAM_TOL = 1e-5  # max abs difference between min-max normalised maps (float64: see above)
GUIDED_REL_TOL = 1e-4  # max abs difference relative to the oracle's max abs value (float64: see above)

# model name -> an intermediate block with a spatial output whose tensor is not
# modified in place afterwards (a block output, a maxpool, a dense block).
INTERMEDIATE = {
    "resnet50": "layer3",
    "vgg16": "features.23",  # MaxPool2d after conv4_3's ReLU, 14x14
    "densenet121": "features.denseblock3",
    "efficientnet_b0": "blocks.4",
    "convnext_tiny": "stages.2",
    "mobilenetv3_large_100": "blocks.4",
    "tv_resnet50": "layer3",
}
CAM_MODELS = list(INTERMEDIATE)
# Grad-CAM against pytorch-grad-cam on ResNet-50, VGG-16 and ConvNeXt-T at these very layers is
# test_methods.py::test_gradient_methods_match_pytorch_grad_cam (float64 too); captum checks them here.
PGC_CAM_MODELS = [m for m in CAM_MODELS if m not in ("resnet50", "vgg16", "convnext_tiny")]
RELU_MODELS = ["resnet50", "vgg16", "densenet121", "tv_resnet50"]


# --------------------------------------------------------------------------- fixtures


@functools.cache
def get_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "tv_resnet50":
        model = torchvision.models.resnet50(weights=None)
    else:
        model = timm.create_model(name, pretrained=False)
    return model.eval()


@functools.cache
def get_model64(name: str) -> nn.Module:
    return copy.deepcopy(get_model(name)).double()


@functools.cache
def oracle_model(name: str) -> nn.Module:
    """A float64 copy for the hook-based oracles (Grad-CAM's, captum's guided backprop), made once. Its weights
    need no gradients (the input carries the graph): their backward passes then skip the weight gradients."""
    return copy.deepcopy(get_model64(name)).requires_grad_(False)


def size_of(name: str) -> tuple[int, int]:
    return SIZES.get(name, SIZE)


@functools.cache
def get_inputs(size: tuple[int, int] = SIZE, float64: bool = True) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(2, 3, *size, generator=gen)
    return x.double() if float64 else x


def inputs_of(name: str) -> torch.Tensor:
    """The model's float64 inputs, as a fresh leaf that requires a gradient (the oracles' graph starts there)."""
    return get_inputs(size_of(name)).clone().requires_grad_(True)


@functools.cache
def get_default_path(name: str) -> str:
    model = get_model(name)
    return default_layer(model, trace_layers(model, size_of(name)))


def layer_path(name: str, which: str) -> str:
    return get_default_path(name) if which == "default" else INTERMEDIATE[name]


@functools.cache
def our_gradcam(name: str):
    """One explain_batch for both layers of a model (top-1 class per image)."""
    model = get_model64(name)
    modules = dict(model.named_modules())
    paths = [get_default_path(name), INTERMEDIATE[name]]
    return explain_batch(model, get_inputs(size_of(name)), {p: modules[p] for p in paths})


@functools.cache
def our_guided(name: str):
    model = get_model64(name)
    path = get_default_path(name)
    return explain_batch(model, get_inputs(size_of(name)), {path: dict(model.named_modules())[path]}, guided=True)


def norm(maps: torch.Tensor) -> torch.Tensor:
    return normalize_minmax(maps)[0]


def module_at(model: nn.Module, path: str) -> nn.Module:
    return dict(model.named_modules())[path]


# --------------------------------------------------------------------------- 1. Grad-CAM oracles


def _ours_normalised(name: str, which: str) -> tuple[torch.Tensor, torch.Tensor]:
    res = our_gradcam(name)
    path = layer_path(name, which)
    raw = res.maps["gradcam", path][:, 0]  # (B, h, w)
    scaled, empty = normalize_minmax(raw)
    # A degenerate (all-zero) map would make the comparison vacuous.
    assert not empty.any(), f"{name}:{path} produced an empty map; the oracle check would be vacuous"
    assert torch.equal(res.classes[:, 0], res.logits.argmax(dim=1))
    return scaled, res.classes[:, 0]


@pytest.mark.parametrize("which", ["default", "intermediate"])
@pytest.mark.parametrize("name", PGC_CAM_MODELS)
def test_gradcam_matches_pytorch_grad_cam(name: str, which: str) -> None:
    ours, classes = _ours_normalised(name, which)
    h, w = ours.shape[-2:]
    model = oracle_model(name)
    layer = module_at(model, layer_path(name, which))
    with GradCAM(model=model, target_layers=[layer]) as cam:
        cam.get_target_width_height = lambda _t: (w, h)  # keep the layer's own resolution
        theirs = cam(input_tensor=inputs_of(name), targets=[ClassifierOutputTarget(int(c)) for c in classes])
    theirs = torch.from_numpy(np.asarray(theirs, dtype=np.float64))  # its scaling ends in one float32 rounding
    assert theirs.shape == ours.shape
    assert max_diff(ours, norm(theirs)) <= CAM_TOL


@pytest.mark.parametrize("which", ["default", "intermediate"])
@pytest.mark.parametrize("name", CAM_MODELS)
def test_gradcam_matches_captum(name: str, which: str) -> None:
    ours, classes = _ours_normalised(name, which)
    model = oracle_model(name)
    layer = module_at(model, layer_path(name, which))
    theirs = LayerGradCam(model, layer).attribute(inputs_of(name), target=classes.clone(), relu_attributions=True)
    assert theirs.shape == (ours.shape[0], 1, *ours.shape[-2:])
    assert max_diff(ours, norm(theirs[:, 0].detach())) <= CAM_TOL


def test_gradcam_layers_are_independent() -> None:
    """Hooking two layers in one call gives each the same map as hooking it alone."""
    name = "resnet50"
    both = our_gradcam(name)
    model = get_model64(name)
    for path in (get_default_path(name), INTERMEDIATE[name]):
        alone = explain_batch(model, get_inputs(size_of(name)), {path: module_at(model, path)})
        assert torch.equal(alone.classes, both.classes)
        reference = both.maps["gradcam", path]  # float64 on both sides: 1e-6 of the map is far above its rounding
        assert max_diff(alone.maps["gradcam", path], reference) <= 1e-6 * reference.abs().max().item()


# --------------------------------------------------------------------------- 2. Guided backprop oracles


def _assert_close_rel(ours: torch.Tensor, ref: torch.Tensor, tol: float = GUIDED_REL_TOL) -> None:
    scale = ref.abs().max().item()
    assert scale > 0, "reference gradient is all zero; the check would be vacuous"
    diff = max_diff(ours, ref)
    assert diff <= tol * scale, f"max abs diff {diff:.3g} > {tol} * {scale:.3g}"


@pytest.mark.parametrize("image", [0, 1])
@pytest.mark.parametrize("name", RELU_MODELS)
def test_guided_matches_pytorch_grad_cam(name: str, image: int) -> None:
    res = our_guided(name)
    assert res.guided is not None and res.guided.shape == (2, 1, 3, *size_of(name))
    cls = int(res.classes[image, 0])
    oracle = GuidedBackpropReLUModel(copy.deepcopy(oracle_model(name)), device="cpu")  # it swaps the ReLUs
    theirs = oracle(inputs_of(name)[image : image + 1].detach().clone(), target_category=cls)  # (H, W, 3)
    theirs = torch.from_numpy(np.ascontiguousarray(theirs)).permute(2, 0, 1)
    _assert_close_rel(res.guided[image, 0], theirs)


@pytest.mark.parametrize("name", RELU_MODELS)
def test_guided_matches_captum(name: str) -> None:
    res = our_guided(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = GuidedBackprop(oracle_model(name)).attribute(inputs_of(name), target=res.classes[:, 0].clone())
    for image in range(2):
        _assert_close_rel(res.guided[image, 0], theirs[image].detach())


def test_guided_is_not_plain_gradient_on_relu_model() -> None:
    res = our_guided("resnet50")
    plain = _plain_input_gradient(get_model64("resnet50"), res.classes[:, 0])
    scale = plain.abs().max().item()
    assert max_diff(res.guided[:, 0], plain) > 1e-2 * scale


def test_guided_does_not_change_gradcam_maps() -> None:
    name = "resnet50"
    path = get_default_path(name)
    assert torch.equal(our_guided(name).classes, our_gradcam(name).classes)
    ref = our_gradcam(name).maps["gradcam", path]
    assert max_diff(our_guided(name).maps["gradcam", path], ref) <= 1e-6 * ref.abs().max().item()


# --------------------------------------------------------------------------- 3. guided leaves the model untouched


def _plain_input_gradient(model: nn.Module, classes: torch.Tensor) -> torch.Tensor:
    float64 = next(model.parameters()).dtype == torch.float64
    x = get_inputs(float64=float64).clone().requires_grad_(True)
    logits = model(x)
    (g,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), x)
    return g


def _hook_dicts(m: nn.Module) -> dict[str, int]:
    names = [
        "_forward_hooks",
        "_backward_hooks",
        "_forward_pre_hooks",
        "_backward_pre_hooks",
        "_forward_hooks_with_kwargs",
        "_forward_pre_hooks_with_kwargs",
        "_state_dict_hooks",
    ]
    return {n: len(getattr(m, n)) for n in names if hasattr(m, n)}


@pytest.mark.parametrize("flags", ["all_true", "mixed"])
def test_guided_leaves_model_untouched(flags: str) -> None:
    model = copy.deepcopy(get_model("resnet50"))
    params = list(model.parameters())
    if flags == "mixed":
        for i, p in enumerate(params):
            p.requires_grad_(i % 3 != 0)
    before_flags = [p.requires_grad for p in params]
    assert (flags == "all_true") == all(before_flags)
    before_ids = [(path, id(m)) for path, m in model.named_modules()]
    before_inplace = {path: m.inplace for path, m in model.named_modules() if hasattr(m, "inplace")}
    assert before_inplace and any(before_inplace.values())  # timm ReLUs are in place
    before_hooks = {path: _hook_dicts(m) for path, m in model.named_modules()}
    assert all(v == 0 for d in before_hooks.values() for v in d.values())
    x = get_inputs(float64=False)
    with torch.no_grad():
        logits_before = model(x)
    classes = logits_before.argmax(dim=1)
    plain_before = _plain_input_gradient(model, classes)

    res = explain_batch(model, x, {"layer4": model.layer4}, guided=True)
    assert res.guided is not None

    assert [(path, id(m)) for path, m in model.named_modules()] == before_ids
    assert {path: m.inplace for path, m in model.named_modules() if hasattr(m, "inplace")} == before_inplace
    assert {path: _hook_dicts(m) for path, m in model.named_modules()} == before_hooks
    assert all(p.grad is None for p in params)
    assert [p.requires_grad for p in params] == before_flags
    assert not model.training
    # Behaviour is back to normal: same logits, plain (ungated) gradients.
    with torch.no_grad():
        assert torch.equal(model(x), logits_before)
    plain_after = _plain_input_gradient(model, classes)
    assert torch.equal(plain_after, plain_before)
    assert all(p.grad is None for p in params)  # autograd.grad does not accumulate


# --------------------------------------------------------------------------- 4. smooth activations (SiLU)


class _GuidedSiLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return F.silu(x)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        dsilu = s * (1 + x * (1 - s))
        # The documented rule: max(grad, 0) * [y > 0], then the activation's own derivative;
        # sign(silu(x)) == sign(x).
        return dsilu * (x > 0).to(grad_out.dtype) * grad_out.clamp(min=0)


class _GuidedSiLU(nn.Module):
    def forward(self, x):
        return _GuidedSiLUFn.apply(x)


def _replace_modules(model: nn.Module, cls: type, factory) -> int:
    targets = [(path, m) for path, m in model.named_modules() if type(m) is cls]
    for path, _ in targets:
        parent_path, _, attr = path.rpartition(".")
        parent = model.get_submodule(parent_path) if parent_path else model
        setattr(parent, attr, factory())
    return len(targets)


def test_guided_silu_rule_efficientnet() -> None:
    name = "efficientnet_b0"
    model = get_model64(name)
    kinds = collections.Counter(type(m).__name__ for m in model.modules())
    # The only activations are SiLU (gated) and the SE Sigmoid gates (not gated by design).
    activations = {
        k
        for k in kinds
        if k
        in {
            "ReLU",
            "ReLU6",
            "SiLU",
            "Swish",
            "GELU",
            "Hardswish",
            "Mish",
            "Sigmoid",
            "Hardsigmoid",
            "Tanh",
            "ELU",
            "LeakyReLU",
        }
    }
    assert activations == {"SiLU", "Sigmoid"}, kinds
    res = our_guided(name)
    classes = res.classes[:, 0]
    ours = res.guided[:, 0]

    plain = _plain_input_gradient(model, classes)
    assert max_diff(ours, plain) > 1e-2 * plain.abs().max().item(), "guided gradient equals the plain gradient"

    ref_model = copy.deepcopy(model)
    replaced = _replace_modules(ref_model, nn.SiLU, _GuidedSiLU)
    assert replaced == kinds["SiLU"]
    assert not any(isinstance(m, nn.SiLU) for m in ref_model.modules())
    x = get_inputs().clone().requires_grad_(True)
    logits = ref_model(x)
    assert torch.allclose(logits, res.logits, atol=1e-4)  # float64: the same forward pass, to ~1e-15
    (ref,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), x)
    _assert_close_rel(ours, ref)


# --------------------------------------------------------------------------- 5. CAM == Grad-CAM on GAP->FC heads


@pytest.mark.parametrize("name", ["resnet50", "efficientnet_b0", "tv_resnet50"])
def test_cam_equals_gradcam(name: str) -> None:
    model = get_model64(name)
    path = get_default_path(name)
    layers = {path: module_at(model, path)}
    grad = our_gradcam(name)
    cam = explain_batch(model, get_inputs(), layers, methods=["cam"])
    assert torch.equal(cam.classes, grad.classes)
    a, empty = normalize_minmax(cam.maps["cam", path])
    assert not empty.any()
    assert max_diff(a, norm(grad.maps["gradcam", path])) <= CAM_TOL


@pytest.mark.parametrize("name", ["convnext_tiny", "vgg16"])
def test_cam_refused_without_gap_fc_head(name: str) -> None:
    model = get_model(name)
    path = get_default_path(name)
    with pytest.raises(MethodError):
        explain_batch(model, get_inputs(float64=False), {path: module_at(model, path)}, methods=["cam"])


# --------------------------------------------------------------------------- 6. one forward pass per call


@pytest.mark.parametrize("top_k,guided", [(1, False), (1, True), (3, False), (3, True)])
def test_single_forward_pass(top_k: int, guided: bool) -> None:
    model = get_model64("resnet50")  # float64: each top-k map equals the single-class one to ~1e-15
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        res = explain_batch(model, get_inputs(), {"layer4": model.layer4}, top_k=top_k, guided=guided)
    finally:
        handle.remove()
    assert len(calls) == 1
    assert res.classes.shape == (2, top_k)
    assert torch.equal(res.classes, res.logits.topk(top_k, dim=1).indices)
    maps = res.maps["gradcam", "layer4"]
    assert maps.shape == (2, top_k, 3, 3)
    if guided:
        assert res.guided.shape == (2, top_k, 3, *SIZE)
    else:
        assert res.guided is None
    for b in range(2):
        assert len(set(res.classes[b].tolist())) == top_k
        for i in range(top_k):
            for j in range(i + 1, top_k):
                assert not torch.allclose(maps[b, i], maps[b, j]), f"image {b}: maps {i} and {j} coincide"
                if guided:
                    assert not torch.allclose(res.guided[b, i], res.guided[b, j])
    if top_k == 3 and not guided:
        # Each of the k maps equals the top-1 map computed for that class alone.
        for k in range(top_k):
            for b in range(2):
                single = explain_batch(
                    model, get_inputs()[b : b + 1], {"layer4": model.layer4}, classes=[int(res.classes[b, k])]
                )
                ref = single.maps["gradcam", "layer4"][0, 0]
                assert max_diff(maps[b, k], ref) <= 1e-5 * ref.abs().max().item() + 1e-12


class _GuidedReLU6Fn(torch.autograd.Function):
    """Reference guided ReLU6: the gradient passes where 0 < x < 6 and only where it is positive."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(0, 6)

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        return ((x > 0) & (x < 6)).to(grad_out.dtype) * grad_out.clamp(min=0)


class _GuidedReLU6(nn.Module):
    def forward(self, x):
        return _GuidedReLU6Fn.apply(x)


def test_guided_relu6_rule_on_the_default_model() -> None:
    """The bundled EfficientNet-Lite0 uses ReLU6, which pytorch-grad-cam and captum leave ungated."""
    from gradcam_cli import load_model

    # Folded as the CLI loads it, in float64; contiguous, as channels_last gains nothing there.
    model = load_model().model.double().to(memory_format=torch.contiguous_format)
    kinds = collections.Counter(type(m).__name__ for m in model.modules())
    assert kinds["ReLU6"] > 0 and kinds["ReLU"] == 0, kinds
    x = get_inputs()
    mods = dict(model.named_modules())
    res = explain_batch(model, x, {"bn2": mods["bn2"]}, guided=True)
    classes = res.classes[:, 0]
    ours = res.guided[:, 0]
    plain = _plain_input_gradient(model, classes)
    assert max_diff(ours, plain) > 1e-2 * plain.abs().max().item(), "guided gradient equals the plain gradient"
    ref_model = copy.deepcopy(model)
    assert _replace_modules(ref_model, nn.ReLU6, _GuidedReLU6) == kinds["ReLU6"]
    xr = x.clone().requires_grad_(True)
    logits = ref_model(xr)
    (ref,) = torch.autograd.grad(logits.gather(1, classes[:, None]).sum(), xr)
    _assert_close_rel(ours, ref)

"""BatchNorm folding: a faster model that computes the same maps, and that knows when not to fold."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from torch import nn

from gradcam_cli import Explainer, ExplainOptions, load_model
from gradcam_cli.maps.scale import normalize_minmax
from gradcam_cli.model.fusion import FoldedNormAct, find_conv_bn_pairs, fold_batchnorm, unfold_conv
from gradcam_cli.model.layers import default_layer, trace_layers
from gradcam_cli.passes import explain_batch

from helpers import default_dtype

# Folding (and the channels_last layout that load_model also picks) changes the arithmetic, not the function:
# the comparisons load and fold the models in float64 (load_model under a float64 default dtype: the same code,
# its fold's probe included), where rounding is ~1e-16 per operation, so these bounds hold with a wide margin
# on any CPU. In float32 the same folds move random-init DenseNet's maps by 1e-4 and its guided image by 1e-3,
# float32's own error on such models; a wrong fold moves them by 1e-1 and more.
CAM_TOL = 1e-5  # max abs difference between min-max scaled maps
GUIDED_REL_TOL = 1e-5  # max abs difference between guided images, relative to the reference's max
SIZE = (96, 96)  # the definitions, not the scale: default layers of 3x3

# name -> (pretrained, an intermediate layer)
MODELS = {
    "resnet50": (False, "layer3"),
    "tf_efficientnet_lite0": (True, "blocks.4"),
    "densenet121": (False, "features.denseblock3"),
    "mobilenetv3_large_100": (False, "blocks.4"),
    "torchvision/resnet50": (False, "layer3"),
}


@functools.cache
def pair_of_models(name: str):
    """The folded model and the plain one, in float64 (see above)."""
    pretrained = MODELS[name][0]
    with default_dtype(torch.float64):
        torch.manual_seed(0)
        folded = load_model(name, pretrained=pretrained)
        torch.manual_seed(0)
        plain = load_model(name, pretrained=pretrained, fold_bn=False)
    return folded, plain


def batch(size) -> torch.Tensor:
    return torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(7), dtype=torch.float64)


def scaled(maps: torch.Tensor) -> torch.Tensor:
    out, empty = normalize_minmax(maps)
    assert not empty.any(), "an empty map would make the comparison vacuous"
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_folded_model_gives_the_same_maps_and_guided_images(name: str) -> None:
    folded, plain = pair_of_models(name)
    assert folded.folded, "nothing was folded: the test would compare a model with itself"
    assert not plain.folded
    assert {p for p, _ in folded.model.named_modules()} == {p for p, _ in plain.model.named_modules()}
    size = SIZE
    default = default_layer(plain.model, trace_layers(plain.model, size))
    assert default_layer(folded.model, trace_layers(folded.model, size)) == default
    paths = [default, MODELS[name][1]]
    x = batch(size)
    results = []
    for loaded in (folded, plain):
        modules = dict(loaded.model.named_modules())
        results.append(explain_batch(loaded.model, x, {p: modules[p] for p in paths}, guided=True))
    fast, ref = results
    assert torch.equal(fast.classes, ref.classes)
    for p in paths:
        assert (scaled(fast.maps["gradcam", p]) - scaled(ref.maps["gradcam", p])).abs().max() < CAM_TOL, p
    rel = (fast.guided - ref.guided).abs().max() / ref.guided.abs().max()
    assert rel < GUIDED_REL_TOL


def test_cli_model_matches_pytorch_grad_cam_on_real_photos(samples, default_loaded) -> None:
    """What `gradcam explain` runs (folded, channels_last) against the oracle on timm's own model."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    from gradcam_cli import load_rgb
    from gradcam_cli.maps.preprocess import to_model_input

    assert default_loaded.folded and default_loaded.memory_format == "channels_last"
    with default_dtype(torch.float64):  # the same loading in float64, fold included: CAM_TOL holds on any CPU
        loaded = load_model()
        plain = load_model(fold_bn=False, memory_format="contiguous")
    assert loaded.folded and loaded.memory_format == "channels_last"
    x = torch.stack(
        [to_model_input(load_rgb(samples / n), plain.preprocess)[0] for n in ("cat.png", "dogs.png", "cat_and_dog.png")]
    ).double()
    ours = explain_batch(loaded.model, x, {"bn2": loaded.model.bn2})
    h, w = ours.maps["gradcam", "bn2"].shape[-2:]
    with GradCAM(plain.model, [plain.model.bn2]) as cam:
        cam.get_target_width_height = lambda _t: (w, h)  # compare at the layer's own resolution
        oracle = cam(x, targets=[ClassifierOutputTarget(int(c)) for c in ours.classes[:, 0]])
    theirs = normalize_minmax(torch.from_numpy(np.asarray(oracle, dtype=np.float64)))[0]
    assert (scaled(ours.maps["gradcam", "bn2"][:, 0]) - theirs).abs().max() < CAM_TOL


def test_folding_replaces_batchnorms_but_keeps_paths_and_activations() -> None:
    folded, plain = pair_of_models("tf_efficientnet_lite0")
    f_mods, p_mods = dict(folded.model.named_modules()), dict(plain.model.named_modules())
    assert type(p_mods["bn2"]).__name__ == "BatchNormAct2d"
    assert isinstance(f_mods["bn2"], FoldedNormAct)
    assert type(f_mods["bn2.act"]) is type(p_mods["bn2.act"])  # guided gates still find every activation
    r_folded, _ = pair_of_models("resnet50")
    assert isinstance(dict(r_folded.model.named_modules())["layer1.0.bn1"], nn.Identity)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in r_folded.model.modules())


class ConvBN(nn.Module):
    """A conv -> BN pair with a twist that must stop folding (or none, as the control)."""

    def __init__(self, twist: str) -> None:
        super().__init__()
        self.twist = twist
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.other = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-1, 1)
            self.bn.running_var.uniform_(0.5, 2)
            self.bn.weight.uniform_(0.5, 2)
            self.bn.bias.uniform_(-1, 1)

    def forward(self, x):
        a = self.conv(x)
        if self.twist == "skip":  # the conv output is read twice
            y = self.bn(a) + a
        elif self.twist == "inplace":  # changed in place before the BN sees it
            y = self.bn(torch.relu_(a))
        elif self.twist == "shared":  # the BN runs twice
            y = self.bn(a) + self.bn(self.other(x))
        elif self.twist == "not_conv":
            y = self.bn(a * 2)
        else:
            y = self.bn(a)
        return self.fc(y.mean(dim=(2, 3)))


@pytest.mark.parametrize("twist", ["skip", "inplace", "shared", "not_conv", "train"])
def test_unsafe_pairs_are_not_folded(twist: str) -> None:
    model = ConvBN(twist).eval()
    if twist == "train":
        model.bn.train()
    assert find_conv_bn_pairs(model, (8, 8)) == []
    control = ConvBN("none").eval()
    assert find_conv_bn_pairs(control, (8, 8)) == [("conv", "bn")]


def test_fold_is_exact_to_float_rounding_on_a_small_model() -> None:
    with default_dtype(torch.float64):  # the model, its input and the fold's probe: the bound is float64's, widely
        torch.manual_seed(0)
        model = ConvBN("none").eval()
        x = torch.randn(3, 3, 8, 8)
        with torch.no_grad():
            before = model(x)
        pairs = fold_batchnorm(model, (8, 8))
        assert [(p.conv_path, p.bn_path) for p in pairs] == [("conv", "bn")]
        assert isinstance(model.bn, nn.Identity)
        with torch.no_grad():
            after = model(x)
        assert torch.allclose(before, after, atol=1e-6, rtol=1e-5)


def test_hooking_a_folded_convolution_unfolds_it() -> None:
    # torchvision's ResNet-50: its random init does not zero the last BatchNorm of each
    # block, so gradients reach the convolutions inside the blocks.
    conv, bn = "layer4.2.conv2", "layer4.2.bn2"
    with default_dtype(torch.float64):  # float64 throughout: CAM_TOL holds on any CPU
        torch.manual_seed(0)
        folded = load_model("torchvision/resnet50", pretrained=False)
        torch.manual_seed(0)
        plain = load_model("torchvision/resnet50", pretrained=False, fold_bn=False)
        count = len(folded.folded)
        assert any(p.conv_path == conv for p in folded.folded)
        explainer = Explainer(folded, ExplainOptions(layers=[conv], outputs=()))
    assert not any(p.conv_path == conv for p in folded.folded)
    assert len(folded.folded) == count - 1  # the other pairs stay folded
    assert isinstance(dict(folded.model.named_modules())[bn], nn.BatchNorm2d)
    x = batch(SIZE)
    ours = explain_batch(folded.model, x, explainer.layers)
    ref = explain_batch(plain.model, x, {conv: dict(plain.model.named_modules())[conv]})
    assert torch.equal(ours.classes, ref.classes)
    assert (scaled(ours.maps["gradcam", conv]) - scaled(ref.maps["gradcam", conv])).abs().max() < CAM_TOL


@pytest.mark.parametrize("dead_channel", [False, True])
def test_unfold_restores_the_convolution(dead_channel: bool) -> None:
    # A BatchNorm with a zero scale cannot be divided out: the original weights are kept for it.
    with default_dtype(torch.float64):  # fold and unfold in float64: the bounds below are float64's, widely
        torch.manual_seed(0)
        model = ConvBN("none").eval()
        if dead_channel:
            with torch.no_grad():
                model.bn.weight[1] = 0.0
        weight, bias = model.conv.weight.detach().clone(), model.conv.bias.detach().clone()
        (pair,) = fold_batchnorm(model, (8, 8))
    assert (pair.conv_weight is not None) == dead_channel
    unfold_conv(model, pair)
    assert isinstance(model.bn, nn.BatchNorm2d)
    assert torch.allclose(model.conv.weight, weight, rtol=1e-5, atol=1e-7)
    assert torch.allclose(model.conv.bias, bias, rtol=1e-5, atol=1e-6)


class Conv2d(nn.Conv2d):
    """Named like a plain convolution, but standardises its weight in forward (as StdConv2d does)."""

    def forward(self, x):
        w = self.weight
        w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
        return self._conv_forward(x, w, self.bias)


def test_a_fold_that_changes_the_outputs_is_undone() -> None:
    with default_dtype(torch.float64):  # in float64: the restored model's outputs match to ~1e-16
        torch.manual_seed(0)
        model = ConvBN("none").eval()
        model.conv = Conv2d(3, 4, 3, padding=1).eval()
        assert find_conv_bn_pairs(model, (8, 8)) == [("conv", "bn")]  # the name fools the structural check
        x = torch.randn(2, 3, 8, 8)
        with torch.no_grad():
            before = model(x)
        assert fold_batchnorm(model, (8, 8)) == []  # ... but not the numerical one
    assert isinstance(model.bn, nn.BatchNorm2d)
    with torch.no_grad():
        assert torch.allclose(model(x), before, atol=1e-6, rtol=1e-5)


def test_weight_standardised_convolutions_are_not_folded() -> None:
    from timm.layers import StdConv2d

    model = ConvBN("none").eval()
    model.conv = StdConv2d(3, 4, 3, padding=1).eval()
    assert find_conv_bn_pairs(model, (8, 8)) == []

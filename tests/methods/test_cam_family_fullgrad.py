"""FullGrad against pytorch-grad-cam 1.5.7 (``FullGrad``), and its own convention against a loop written from
the paper.

Both sides run the same model in float64 (``model.double()``). pytorch-grad-cam rounds every scaled channel to
float32 when it resizes it (``cv2.resize`` on ``np.float32``) and sums a few thousand of them; each is in
[0, 1], so the sum's error is at most (channels) * 2**-24 of a sum whose maximum is of the order of the
channel count, and the scaled maps agree within TOL = 1e-5 (a convention switched off moves them by far more).
Models: seeded random timm ResNet-18/50 (plain ``nn.BatchNorm2d``), a small network with biased convolutions,
and the bundled Lite0 with real weights, whose BatchNorms carry their activation (``BatchNormAct2d``).
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("timm")
pytest.importorskip("pytorch_grad_cam")

from pytorch_grad_cam import FullGrad  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

from gradcam_cli.capture import bias_sites, effective_bias  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402

from helpers import max_diff, oracle_model, scaled  # noqa: E402

TOL = 1e-5


def biased_convnet() -> nn.Module:
    """Convolutions with biases, BatchNorm and in-place ReLUs, a global pool and a linear head."""
    torch.manual_seed(3)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU(inplace=True),
        nn.Conv2d(16, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    bn = net[3]
    bn.running_mean.uniform_(-0.5, 0.5)
    bn.running_var.uniform_(0.5, 2.0)
    nn.init.uniform_(bn.bias, -0.3, 0.3)
    return net.eval()


@functools.cache
def model64(name: str) -> nn.Module:
    model = biased_convnet() if name == "convnet" else oracle_model(name)
    return copy.deepcopy(model).double()


@functools.cache
def inputs(size: int) -> torch.Tensor:
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(21)).double()


def ours(name: str, size: int, settings=None, top_k: int = 1):
    return explain_batch(model64(name), inputs(size), {}, methods=["fullgrad"], settings=settings, top_k=top_k)


def theirs(name: str, size: int, classes: torch.Tensor) -> torch.Tensor:
    m = copy.deepcopy(model64(name))
    with FullGrad(model=m, target_layers=[]) as cam:
        out = cam(input_tensor=inputs(size).clone(), targets=[ClassifierOutputTarget(int(c)) for c in classes])
    return scaled(torch.from_numpy(np.asarray(out, dtype=np.float64)))


CASES = [("resnet18", 64), ("resnet50", 64), ("convnet", 32), ("lite0", 64)]


@pytest.mark.parametrize("name,size", CASES)
def test_fullgrad_matches_pytorch_grad_cam_with_its_convention(name: str, size: int) -> None:
    res = ours(name, size, {"fullgrad_convention": "pytorch-grad-cam"}, top_k=2)
    assert list(res.maps) == [("fullgrad", "input")]
    for rank in range(2):
        mine = scaled(res.maps["fullgrad", "input"][:, rank])
        assert max_diff(mine, theirs(name, size, res.classes[:, rank])) <= TOL


def test_fullgrad_reads_batchnorms_with_their_activation_inside() -> None:
    """Lite0's BatchNorms are ``BatchNormAct2d``: the paper's convention takes their biases, pytorch-grad-cam's
    leaves them out (only the input-gradient term is left there), and the maps differ."""
    m = model64("lite0")
    assert len(bias_sites(m, exact_types=True)) == 0
    sites = bias_sites(m)
    assert len(sites) > 40 and all(s.before_activation for s in sites)
    paper = scaled(ours("lite0", 64).maps["fullgrad", "input"][:, 0])
    pgc = scaled(ours("lite0", 64, {"fullgrad_convention": "pytorch-grad-cam"}).maps["fullgrad", "input"][:, 0])
    assert max_diff(paper, pgc) > 100 * TOL


def channel_scaled(values: torch.Tensor) -> torch.Tensor:
    low = values.amin(dim=(-2, -1), keepdim=True)
    span = values.amax(dim=(-2, -1), keepdim=True) - low
    return torch.where(span > 0, (values - low) / span.clamp_min(1e-300), 0.0)


def test_fullgrad_paper_convention_by_a_reference_loop() -> None:
    """The paper's sum, written out on the biased network: input-gradient times input, and for every biased
    layer the bias times the gradient at its output, each channel's absolute value scaled to [0, 1],
    upsampled bilinearly to the input and summed."""
    m, x = model64("convnet"), inputs(32)
    res = ours("convnet", 32)
    c = res.classes[:, 0].clone()  # an inference tensor: gather must save a normal one
    outputs, biased = {}, [(i, layer) for i, layer in enumerate(m) if effective_bias(layer) is not None]
    assert [i for i, _ in biased] == [0, 3, 5]
    h = x.clone().requires_grad_(True)
    out = h
    for i, layer in enumerate(m):
        out = layer(out.clone() if isinstance(layer, nn.ReLU) else out)  # keep each biased output intact
        outputs[i] = out
    grads = torch.autograd.grad(out.gather(1, c[:, None]).sum(), [h, *(outputs[i] for i, _ in biased)])
    total = channel_scaled((grads[0] * x).abs()).sum(1)
    for (_, layer), g in zip(biased, grads[1:]):
        term = channel_scaled((g * effective_bias(layer)[None, :, None, None]).abs())
        up = nn.functional.interpolate(term, size=(32, 32), mode="bilinear", align_corners=False)
        total = total + up.sum(1)
    assert max_diff(scaled(res.maps["fullgrad", "input"][:, 0]), scaled(total)) <= TOL


def test_fullgrad_leaves_the_model_as_it_was() -> None:
    m = model64("resnet18")
    before = {k: v.clone() for k, v in m.state_dict().items()}
    flags = [p.requires_grad for p in m.parameters()]
    ours("resnet18", 64)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert [p.requires_grad for p in m.parameters()] == flags and all(p.grad is None for p in m.parameters())
    assert not any(mod._forward_hooks or mod._forward_pre_hooks for mod in m.modules())


def test_fullgrad_is_the_same_on_the_shared_pass_and_on_its_own() -> None:
    """Alone (or with activation methods) FullGrad back-propagates through the shared forward pass; with a gradient
    method, which makes the layer the graph's leaf, it runs a pass of its own: the same maps either way."""
    m = model64("resnet18")
    alone = explain_batch(m, inputs(64), {"layer4": m.layer4}, methods=["fullgrad", "fem"], top_k=2)
    shared = explain_batch(m, inputs(64), {"layer4": m.layer4}, methods=["fullgrad", "gradcam"], top_k=2)
    assert torch.equal(alone.classes, shared.classes)
    assert max_diff(alone.maps["fullgrad", "input"], shared.maps["fullgrad", "input"]) <= 1e-12

"""Input attributions against captum, the baselines against scipy, and the map's aggregation on a model whose
gradient is known in closed form.

Oracles, in float64 on both sides, on a small random convolutional net (BatchNorm, ReLU, SiLU, pooling; float64
convolutions are slow on the CPU, so no full-size model) at real photos scaled to 32x32: captum's
``IntegratedGradients`` (the same baseline tensor, steps and Gauss-Legendre rule),
``NoiseTunnel(Saliency(abs=False))`` for SmoothGrad and VarGrad fed our noise draws (``torch.normal`` answers
captum's one call with them) and ``InputXGradient``. The map of each is the sum over colour channels of the
absolute values, written out here as ``attr.abs().sum(1)``; maps are compared after min-max scaling within 1e-5
(float64 rounding is ~1e-16 per operation).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from gradcam_cli import explain
from gradcam_cli.maps.preprocess import PreprocessConfig
from gradcam_cli.maps.scale import normalize_minmax
from gradcam_cli.methods.integratedgradients import BLUR_SIGMA_SHARE, baseline
from gradcam_cli.methods.smoothgrad import noise_draws, noise_scale
from gradcam_cli.options import ExplainOptions
from gradcam_cli.passes import explain_batch

from helpers import SAMPLES

captum_attr = pytest.importorskip("captum.attr")

TOL = 1e-5
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NORMALISATION = {"input_mean": MEAN, "input_std": STD}


def small_net() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.SiLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    with torch.no_grad():  # running statistics that are not the identity
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model.eval().double()


def photos(*names: str, size: int = 32) -> torch.Tensor:
    """Sample photos, scaled to size x size and normalised as the model expects, float64."""
    out = []
    for name in names:
        rgb = np.asarray(Image.open(SAMPLES / name).convert("RGB").resize((size, size)), dtype=np.float64) / 255
        out.append(
            (torch.from_numpy(rgb).permute(2, 0, 1) - torch.tensor(MEAN)[:, None, None])
            / torch.tensor(STD)[:, None, None]
        )
    return torch.stack(out).double()


def scaled(maps: torch.Tensor, what: str) -> torch.Tensor:
    out, empty = normalize_minmax(maps)
    assert not empty.any(), f"{what}: an empty map would make the comparison vacuous"
    return out


def assert_close(ours: torch.Tensor, theirs: torch.Tensor, what: str) -> None:
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    assert (scaled(ours, what) - scaled(theirs, what)).abs().max().item() <= TOL, what


@pytest.mark.parametrize("kind", ["black", "blur", "mean"])
def test_integrated_gradients_matches_captum(kind: str) -> None:
    model, x = small_net(), photos("cat.png", "dogs.png")
    settings = {"ig_steps": 8, "ig_baseline": kind, **NORMALISATION}
    result = explain_batch(model, x, {}, methods=["integratedgradients"], top_k=2, settings=settings, batch_size=6)
    start = baseline(x, kind, MEAN, STD)
    ig = captum_attr.IntegratedGradients(model)
    for k in range(2):
        theirs = ig.attribute(x, baselines=start, target=result.classes[:, k], n_steps=8, method="gausslegendre")
        assert_close(result.maps["integratedgradients", "input"][:, k], theirs.abs().sum(dim=1), f"IG {kind} {k}")


@pytest.mark.parametrize("method", ["smoothgrad", "vargrad"])
def test_smoothgrad_and_vargrad_match_captums_noise_tunnel_with_the_same_draws(method: str, monkeypatch) -> None:
    model, x = small_net(), photos("samoyed.png")
    samples, level = 5, 0.2
    result = explain_batch(
        model, x, {}, methods=[method], settings={"noise_samples": samples, "noise_level": level}, top_k=2
    )
    sigma = float(noise_scale(x, level)[0])
    draws = noise_draws(samples, tuple(x.shape[1:]))
    calls = []

    def same_draws(mean, std):  # captum draws all its noise in one torch.normal(0, stdev_expanded) call
        calls.append(std.shape)
        return mean + std * draws

    tunnel = captum_attr.NoiseTunnel(captum_attr.Saliency(model))
    for k in range(2):
        with monkeypatch.context() as patch:
            patch.setattr(torch, "normal", same_draws)
            theirs = tunnel.attribute(
                x,
                nt_type=method,
                nt_samples=samples,
                nt_samples_batch_size=samples,
                stdevs=sigma,
                target=int(result.classes[0, k]),
                abs=False,
            )
        assert_close(result.maps[method, "input"][:, k], theirs.abs().sum(dim=1), f"{method} {k}")
    assert calls == [(samples, 3, 32, 32)] * 2


def test_input_x_gradient_matches_captum() -> None:
    model, x = small_net(), photos("cat.png", "hot_dog.jpg")
    result = explain_batch(model, x, {}, methods=["inputxgradient"], top_k=2)
    for k in range(2):
        theirs = captum_attr.InputXGradient(model).attribute(x, target=result.classes[:, k])
        assert_close(result.maps["inputxgradient", "input"][:, k], theirs.abs().sum(dim=1), f"input x gradient {k}")


def test_the_input_gradient_is_shared_with_the_layer_gradients_pass() -> None:
    """Input x Gradient next to Grad-CAM and a guided image (the input a leaf already) gives the map it gives
    alone."""
    model, x = small_net(), photos("cat.png")
    alone = explain_batch(model, x, {}, methods=["inputxgradient"]).maps["inputxgradient", "input"]
    layers = {"3": model[3]}
    shared = explain_batch(model, x, layers, methods=["gradcam", "inputxgradient"], guided=True)
    assert (shared.maps["inputxgradient", "input"] - alone).abs().max().item() <= 1e-12


# --------------------------------------------------------------------------- baselines


def test_the_blur_baseline_is_scipys_gaussian_filter_with_mirrored_edges() -> None:
    from scipy.ndimage import gaussian_filter

    x = photos("horses.jpg", size=48)
    sigma = BLUR_SIGMA_SHARE * 48
    radius = math.ceil(3 * sigma)
    expected = gaussian_filter(x.numpy(), sigma=(0, 0, sigma, sigma), mode="mirror", truncate=radius / sigma)
    assert np.abs(baseline(x, "blur").numpy() - expected).max() <= 1e-12


def test_the_black_and_mean_baselines() -> None:
    x = photos("cat.png", size=16)
    black = baseline(x, "black", MEAN, STD)
    photo_pixels = (
        black * torch.tensor(STD, dtype=x.dtype)[:, None, None] + torch.tensor(MEAN, dtype=x.dtype)[:, None, None]
    )
    assert photo_pixels.abs().max().item() <= 1e-15  # the model input of a black photo
    assert torch.equal(baseline(x, "mean"), x.mean(dim=(2, 3), keepdim=True).expand_as(x))


# --------------------------------------------------------------------------- a closed form, at the photo's size


class LinearScore(nn.Module):
    """Logits linear in the input: every class's input gradient is its weight row, whatever the input."""

    def __init__(self, size=(16, 24), classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(3 * size[0] * size[1], classes).double()

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_maps_are_the_sum_of_absolute_values_over_the_colour_channels() -> None:
    """Closed forms: Input x Gradient ``sum_c |x_c w_c|``, Integrated Gradients ``sum_c |(x - x')_c w_c|`` at any
    number of steps, SmoothGrad ``sum_c |w_c|``; VarGrad is zero, an empty map. The colour channels of ``x w``
    differ in sign, so summing before the absolute value (or a ReLU) would give another map."""
    model = LinearScore()
    x = torch.randn(2, 3, 16, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    settings = {"ig_steps": 3, "ig_baseline": "mean", "noise_samples": 4}
    methods = ["inputxgradient", "integratedgradients", "smoothgrad", "vargrad"]
    result = explain_batch(model, x, {}, methods=methods, classes=[2], settings=settings)
    w = model.fc.weight[2].detach().view(3, 16, 24)
    signs = torch.sign(x * w)
    assert ((signs != signs[:, :1]).any(dim=1)).float().mean() > 0.5  # channels disagree at most pixels
    expected = {
        "inputxgradient": (x * w).abs().sum(dim=1),
        "integratedgradients": ((x - x.mean(dim=(2, 3), keepdim=True)) * w).abs().sum(dim=1),
        "smoothgrad": w.abs().sum(dim=0).expand(2, -1, -1),
    }
    for method, want in expected.items():
        assert (result.maps[method, "input"][:, 0] - want).abs().max().item() <= 1e-12, method
    assert result.maps["vargrad", "input"].abs().max().item() <= 1e-20


def test_input_attributions_are_written_at_the_photos_resolution() -> None:
    """Through the Python API with a module of the caller's: a 32x48 photo scaled to the model's 16x24 input; each
    map comes back at 32x48 in [0, 1], with layer and layout ``input``; VarGrad's zero map is reported empty."""
    model = LinearScore().float()
    photo = np.random.default_rng(3).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    options = ExplainOptions(
        methods=("inputxgradient", "integratedgradients", "smoothgrad", "vargrad"),
        ig_steps=4,
        noise_samples=3,
        outputs=(),
    )
    (result,) = explain(model, [photo], options=options, preprocess=PreprocessConfig((16, 24), resize=(16, 24)))
    by_method = {e.method: e for e in result.explanations}
    assert set(by_method) == set(options.methods)
    for method, e in by_method.items():
        assert e.map.shape == (32, 48) and e.layer == "input" and e.layout == "input", method
        assert 0.0 <= e.map.min() and e.map.max() <= 1.0
        assert e.empty == (method == "vargrad"), method


def test_noise_is_seeded_and_the_same_whatever_the_batch() -> None:
    model, x = small_net(), photos("cat.png", "dogs.png")
    settings = {"noise_samples": 3}
    pair = explain_batch(model, x, {}, methods=["smoothgrad"], settings=settings, classes=[4])
    again = explain_batch(model, x, {}, methods=["smoothgrad"], settings=settings, classes=[4])
    alone = explain_batch(model, x[1:], {}, methods=["smoothgrad"], settings=settings, classes=[4])
    assert torch.equal(pair.maps["smoothgrad", "input"], again.maps["smoothgrad", "input"])
    assert (pair.maps["smoothgrad", "input"][1:] - alone.maps["smoothgrad", "input"]).abs().max().item() <= 1e-12


@pytest.mark.parametrize("method", ["integratedgradients", "smoothgrad", "vargrad"])
def test_one_images_copies_at_a_time_so_memory_does_not_grow_with_the_batch(method: str) -> None:
    """The forward passes the model sees: the shared one of the batch, then each image's copies on their own (cut
    at the perturbation batch size), never the copies of several images at once."""
    model, x = small_net(), photos("cat.png", "dogs.png", "cat.png")
    sizes: list[int] = []
    handle = model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    try:
        explain_batch(model, x, {}, methods=[method], settings={"ig_steps": 5, "noise_samples": 5}, batch_size=4)
    finally:
        handle.remove()
    assert sizes == [3] + [4, 1] * 3

"""SS-CAM and IS-CAM, Score-CAM's noisy and integrated variants, against torchcam 0.5 (``SSCAM``, ``ISCAM``).

Both sides run the same model in float64 (``model.double()``) and torchcam gets our noise draws (its noise
distribution replaced, nothing else), so the maps are compared after min-max scaling at the layer's grid
within TOL = 1e-5: the only float32 step is the noise itself, drawn in float32 on both sides. Layers with
few channels keep the (channels x samples) forward passes cheap. The paper conventions (masks scaled at the
input, constant masks skipped, the class probability) are checked by their limits: no noise, one step.
"""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch

pytest.importorskip("timm")
torchcam_methods = pytest.importorskip("torchcam.methods")

from gradcam_cli.methods.base import gaussian_noise  # noqa: E402
from gradcam_cli.methods.iscam import coefficients  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402

from helpers import SAMPLES, max_diff, oracle_model, scaled  # noqa: E402

TOL = 1e-5
CASES = [("resnet18", "layer2", 32), ("lite0", "blocks.2", 64)]


@functools.cache
def model64(name: str) -> torch.nn.Module:
    return copy.deepcopy(oracle_model(name)).double()


@functools.cache
def inputs(name: str, size: int) -> torch.Tensor:
    """Two sample photos for Lite0 with its real weights, seeded noise for the random-init ResNet."""
    if name != "lite0":
        return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(31)).double()
    from PIL import Image

    arrays = [np.asarray(Image.open(SAMPLES / n).convert("RGB").resize((size, size))) for n in ("cat.png", "dogs.png")]
    return ((torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).double() / 255.0) - 0.5) / 0.5


def ours(name: str, path: str, size: int, method: str, settings=None, classes=None) -> tuple[torch.Tensor, list]:
    m = model64(name)
    res = explain_batch(
        m, inputs(name, size), {path: m.get_submodule(path)}, methods=[method], settings=settings, classes=classes
    )
    return res.maps[method, path][:, 0], res.classes[:, 0].tolist()


class MaskDraws:
    """Stands in for torchcam's noise distribution: per sample, the noise our SS-CAM adds to each channel's
    mask (`gaussian_noise` keyed by sample and channel, the same for every image)."""

    def __init__(self, std: float, seed: int = 0) -> None:
        self.std, self.seed, self.calls = std, seed, 0

    def sample(self, size) -> torch.Tensor:
        b, c, h, w = size
        noise = torch.stack([gaussian_noise(self.seed, (self.calls, k), (h, w)) for k in range(c)]) * self.std
        self.calls += 1
        return noise[None].expand(b, -1, -1, -1)


def torchcam_map(cam_class, name: str, path: str, size: int, classes: list, **kw) -> torch.Tensor:
    m = copy.deepcopy(model64(name))
    with cam_class(m, target_layer=path, batch_size=256, input_shape=(3, size, size), **kw) as cam:
        if cam_class is torchcam_methods.SSCAM:
            cam._distrib = MaskDraws(kw["std"])
        scores = cam.model(inputs(name, size))
        out = cam(class_idx=classes, scores=scores, normalized=False)[0].detach()
        if cam_class is torchcam_methods.SSCAM:
            assert cam._distrib.calls == kw["num_samples"]
    return out


@pytest.mark.parametrize("name,path,size", CASES)
def test_sscam_matches_torchcam_with_its_convention(name: str, path: str, size: int) -> None:
    settings = {"scorecam_convention": "torchcam", "sscam_samples": 2, "sscam_std": 0.5}
    mine, classes = ours(name, path, size, "sscam", settings)
    theirs = torchcam_map(torchcam_methods.SSCAM, name, path, size, classes, num_samples=2, std=0.5)
    assert max_diff(scaled(mine), scaled(theirs)) <= TOL
    other_noise = ours(name, path, size, "sscam", {**settings, "noise_seed": 1})[0]
    assert max_diff(scaled(other_noise), scaled(theirs)) > 100 * TOL  # the draws matter, so they were the same


@pytest.mark.parametrize("name,path,size", CASES)
def test_iscam_matches_torchcam_with_its_convention(name: str, path: str, size: int) -> None:
    mine, classes = ours(name, path, size, "iscam", {"scorecam_convention": "torchcam", "iscam_steps": 3})
    theirs = torchcam_map(torchcam_methods.ISCAM, name, path, size, classes, num_samples=3)
    assert max_diff(scaled(mine), scaled(theirs)) <= TOL
    paper = ours(name, path, size, "iscam", {"iscam_steps": 3})[0]
    # The paper's convention moves the map by 4e-4 on the random-init ResNet, by far more on Lite0.
    assert max_diff(scaled(paper), scaled(theirs)) > 10 * TOL


def test_iscam_coefficients_accumulate_to_half_of_steps_plus_one() -> None:
    assert coefficients(4) == [0.25, 0.75, 1.5, 2.5]


@pytest.mark.parametrize(
    "method,settings", [("sscam", {"sscam_std": 0.0, "sscam_samples": 2}), ("iscam", {"iscam_steps": 1})]
)
def test_noise_free_sscam_and_one_step_iscam_are_scorecam(method: str, settings: dict) -> None:
    """SS-CAM without noise averages identical scores; IS-CAM's one step multiplies the mask by 1: both are
    Score-CAM, in the paper's convention (constant masks skipped, the class probability)."""
    name, path, size = "lite0", "blocks.2", 64
    mine, classes = ours(name, path, size, method, settings)
    plain, same = ours(name, path, size, "scorecam")
    assert classes == same and max_diff(scaled(mine), scaled(plain)) <= TOL


def test_sscam_noise_does_not_depend_on_the_batch() -> None:
    name, path, size = "resnet18", "layer2", 32
    settings = {"sscam_samples": 2, "sscam_std": 0.5}
    both, classes = ours(name, path, size, "sscam", settings)
    m = model64(name)
    alone = explain_batch(
        m,
        inputs(name, size)[1:],
        {path: m.get_submodule(path)},
        methods=["sscam"],
        settings=settings,
        classes=classes[1:],
    )
    assert max_diff(both[1:], alone.maps["sscam", path][:, 0]) <= 1e-12

"""The similarity target against a reference loop written here: Grad-CAM of the cosine similarity between a photo's
embedding and a reference photo's, one image at a time, with autograd.

Two ways to an embedding: a classifier's pooled features (the input of its final linear layer, which the target
reads through a hook while the passes run) and the output of a model without its head (timm's ``num_classes=0``).
Seeded timm models at random init, in float64 on both sides: the maps agree to 1e-10 after min-max (the two
computations differ only in the order of float64 sums, some 1e-16 relative, over a few thousand terms).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import max_diff, scaled

timm = pytest.importorskip("timm")

from gradcam_cli.passes import explain_batch  # noqa: E402
from gradcam_cli.targets.similarity import OUTPUT, POOLED, Similarity  # noqa: E402

TOL = 1e-10
LAYER = "layer3"


def seeded(num_classes: int) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("resnet18", pretrained=False, num_classes=num_classes).eval().double()


def photos(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed)).double()


def pooled(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What the classifier's final layer reads: timm's pre-logits features."""
    return model.forward_head(model.forward_features(x), pre_logits=True)


def reference_maps(model: nn.Module, x: torch.Tensor, reference: torch.Tensor, embed) -> torch.Tensor:
    """Grad-CAM of ``cos(embed(x_b), embed(reference))`` at ``LAYER``, image by image; ``(B, h, w)`` ReLU'd."""
    module = dict(model.named_modules())[LAYER]
    with torch.no_grad():
        r = embed(model, reference[None])[0]
    maps = []
    for b in range(x.shape[0]):
        captured: list[torch.Tensor] = []
        handle = module.register_forward_hook(lambda _m, _i, out, into=captured: into.append(out))
        try:
            similarity = F.cosine_similarity(embed(model, x[b : b + 1]), r[None], dim=1)[0]
        finally:
            handle.remove()
        a = captured[0]
        (g,) = torch.autograd.grad(similarity, a)
        maps.append(torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(dim=1))[0].detach())
    return torch.stack(maps)


@pytest.mark.parametrize(
    ("num_classes", "features", "embed"),
    [(10, POOLED, pooled), (0, OUTPUT, lambda model, x: model(x))],
    ids=["classifier-pooled-features", "model-without-head"],
)
def test_similarity_maps_match_a_reference_loop(num_classes, features, embed) -> None:
    model = seeded(num_classes)
    x, reference = photos(3, seed=1), photos(1, seed=2)[0]
    target = Similarity.of_input(model, reference, features, "ref.png")
    result = explain_batch(model, x, {LAYER: dict(model.named_modules())[LAYER]}, target=target)
    maps = result.maps["gradcam", LAYER][:, 0]
    assert max_diff(scaled(maps.double()), scaled(reference_maps(model, x, reference, embed))) <= TOL
    with torch.no_grad():
        expected = F.cosine_similarity(embed(model, x), embed(model, reference[None]), dim=1)
    assert torch.allclose(result.values[:, 0], expected, rtol=0, atol=1e-12)
    assert result.target == "similarity" and result.slots.detail(0, 0) == {"reference": "ref.png"}
    assert result.classes.tolist() == [[-1]] * 3


def test_the_reference_itself_is_similarity_one() -> None:
    model = seeded(10)
    reference = photos(1, seed=2)[0]
    target = Similarity.of_input(model, reference, POOLED)
    result = explain_batch(model, reference[None], {LAYER: dict(model.named_modules())[LAYER]}, target=target)
    assert result.values[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_the_classifier_returns_logits_again_after_the_passes() -> None:
    """The pooled features are read through a hook that the passes remove: the model is left as it was."""
    model = seeded(10)
    x, reference = photos(2, seed=1), photos(1, seed=2)[0]
    target = Similarity.of_input(model, reference, POOLED)
    explain_batch(model, x, {LAYER: dict(model.named_modules())[LAYER]}, target=target, methods=["gradcam", "scorecam"])
    assert model(x).shape == (2, 10)
    assert not any(m._forward_hooks for m in model.modules())


def test_score_cam_weighs_by_the_similarity_on_masked_copies() -> None:
    """Score-CAM (pytorch-grad-cam's convention: the raw score) reads the target on its extra passes: the
    channel weights are the softmax of the similarities of the masked copies, computed here by a loop (each
    channel upsampled with corners aligned, as pytorch-grad-cam does, and min-max scaled to a mask). pytorch-grad-cam
    adds 1e-8 to each mask's span, which the loop leaves out: a relative change of 1e-8 / span in each mask,
    spans being of order 1, so the maps agree to 1e-6."""
    model = seeded(0)
    x, reference = photos(1, seed=1), photos(1, seed=2)[0]
    target = Similarity.of_input(model, reference, OUTPUT)
    module = dict(model.named_modules())["layer1"]  # 64 channels: 64 masked copies
    settings = {"scorecam_convention": "pytorch-grad-cam"}
    result = explain_batch(model, x, {"layer1": module}, target=target, methods=["scorecam"], settings=settings)
    captured = {}
    handle = module.register_forward_hook(lambda _m, _i, out: captured.setdefault("a", out))
    with torch.no_grad():
        model(x)
        handle.remove()
        a = captured["a"][0]  # (C, h, w)
        upsampled = F.interpolate(a[:, None], size=x.shape[-2:], mode="bilinear", align_corners=True)[:, 0]
        low = upsampled.amin(dim=(1, 2), keepdim=True)
        span = upsampled.amax(dim=(1, 2), keepdim=True) - low
        masks = torch.where(span > 0, (upsampled - low) / span.clamp_min(1e-300), torch.zeros_like(upsampled))
        r = model(reference[None])
        similarities = torch.cat([F.cosine_similarity(model(x * m[None, None]), r, dim=1) for m in masks])
        weights = torch.softmax(similarities, dim=0)
        expected = torch.relu((weights[:, None, None] * a).sum(dim=0))
    mine = result.maps["scorecam", "layer1"][0, 0]
    assert max_diff(scaled(mine[None, None].double()), scaled(expected[None, None])) <= 1e-6

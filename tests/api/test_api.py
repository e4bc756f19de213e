"""The Python API: any image kind in, maps and record fields out, nothing written, the caller's model untouched."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

timm = pytest.importorskip("timm")

from gradcam_cli import explain  # noqa: E402
from gradcam_cli.io.images import load_rgb  # noqa: E402
from gradcam_cli.maps.preprocess import PreprocessConfig  # noqa: E402


def snapshot(model: nn.Module) -> dict:
    """Everything about a module that a careless explainer could change."""
    return {
        "modules": [(name, id(m), type(m)) for name, m in model.named_modules()],
        "training": [m.training for m in model.modules()],
        "state": {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()},
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "grads": [p.grad for p in model.parameters()],
        "layouts": [
            (p.is_contiguous(), p.is_contiguous(memory_format=torch.channels_last)) if p.dim() == 4 else None
            for p in model.parameters()
        ],
        "hooks": [
            (
                len(m._forward_hooks),
                len(m._forward_pre_hooks),
                len(m._backward_hooks),
                len(getattr(m, "_backward_pre_hooks", {})),
            )
            for m in model.modules()
        ],
        "param_hooks": [
            len(p._backward_hooks or {}) if hasattr(p, "_backward_hooks") else 0 for p in model.parameters()
        ],
    }


def assert_unchanged(before: dict, model: nn.Module) -> None:
    after = snapshot(model)
    assert after["modules"] == before["modules"], "a module was swapped"
    assert after["training"] == before["training"], "train/eval flags changed"
    assert after["requires_grad"] == before["requires_grad"]
    assert all(g is None for g in after["grads"]), ".grad left behind"
    assert after["layouts"] == before["layouts"], "a weight's memory layout changed"
    assert after["hooks"] == before["hooks"] and after["param_hooks"] == before["param_hooks"], "a hook was left"
    assert before["state"].keys() == after["state"].keys()
    for key, value in before["state"].items():
        assert torch.equal(value, after["state"][key]), f"{key} changed"


@pytest.fixture
def users_resnet():
    """A user's model as people build them: BatchNorms, mixed flags, in train mode, with a frozen stem."""
    torch.manual_seed(0)
    model = timm.create_model("resnet18", pretrained=False, num_classes=7)
    model.train()
    model.layer1.eval()  # mixed flags must come back as they were
    for p in model.conv1.parameters():
        p.requires_grad_(False)
    return model


def test_every_kind_of_image_and_the_model_is_left_bit_for_bit_unchanged(users_resnet, samples) -> None:
    before = snapshot(users_resnet)
    path = samples / "cat.png"
    photo = load_rgb(path)
    images = [str(path), Image.open(path), photo, torch.randn(3, 96, 96)]
    methods = ["gradcam", "ablationcam", "eigencam", "cam"]
    small = PreprocessConfig(input_size=(96, 96), resize=110)  # a user's model at its own input size
    results = explain(users_resnet, images, methods=methods, layers=["layer4"], top_k=2, guided=True, preprocess=small)
    assert_unchanged(before, users_resnet)
    assert len(results) == 4
    for r, shape in zip(results, [photo.shape[:2]] * 3 + [(96, 96)]):
        assert {(e.method, e.layer) for e in r.explanations} >= {(m, "layer4") for m in methods}
        for e in r.explanations:
            assert e.map.shape == shape and e.map.dtype == np.float32
            assert 0.0 <= e.map.min() and e.map.max() <= 1.0
            assert e.guided is not None and e.guided.shape == (*shape, 3)
        assert r.maps["gradcam", "layer4"].shape == (2, *shape)
        assert len(r.records) == len(r.explanations)
        assert r.records[0]["model"] == "custom/ResNet" and r.records[0]["files"] == {}
    # The same photo as a path, a PIL image and an array gives the same maps.
    for other in results[1:3]:
        assert np.array_equal(other.map("ablationcam", "layer4"), results[0].map("ablationcam", "layer4"))


def test_the_model_in_eval_mode_gives_the_same_maps_as_in_train_mode(users_resnet, samples) -> None:
    """Explanations are of the model's inference behaviour: BatchNorm in eval mode, whatever mode it was left in."""
    reference = copy.deepcopy(users_resnet).eval()
    a = explain(users_resnet, [samples / "dogs.png"])[0].map()
    b = explain(reference, [samples / "dogs.png"])[0].map()
    assert np.array_equal(a, b)
    assert users_resnet.training


def test_a_model_by_name(samples) -> None:
    [result] = explain("resnet18", samples / "cat.png", pretrained=False, methods=["gradcam", "layercam"])
    assert {e.method for e in result.explanations} == {"gradcam", "layercam"}
    assert result.records[0]["model"] == "timm/resnet18"


def test_bad_requests_are_refused_before_any_work(users_resnet) -> None:
    from gradcam_cli import UsageError

    with pytest.raises(UsageError, match="--method gradcam\\+\\+: unknown; did you mean: gradcampp,"):
        explain(users_resnet, [torch.zeros(3, 64, 64)], methods=["gradcam++"])
    with pytest.raises(ValueError, match="image 0"):
        explain(users_resnet, [np.zeros((10, 10), np.uint8)])


def test_the_callers_own_hooks_see_only_real_tensors(users_resnet, samples) -> None:
    """Ablation-CAM traces the model to run its tail; the caller's hooks must not be called with proxies."""
    seen = []
    handle = users_resnet.layer3.register_forward_hook(lambda _m, _i, out: seen.append(type(out)))
    try:
        explain(users_resnet, [samples / "cat.png"], methods=["ablationcam"], layers=["layer4"])
    finally:
        handle.remove()
    assert seen and all(t is torch.Tensor for t in seen), seen

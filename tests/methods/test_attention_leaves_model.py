"""The transformer methods leave the user's model exactly as it was: the same ``fused_attn`` flag on every
module (a mix of on and off, as a user may set them), the same hooks in every hook dict (the user's own kept),
the same parameters bit for bit, the same ``requires_grad`` flags, no ``.grad`` and the same train/eval flags;
after every method and combination, through ``explain_batch`` and the Python API, and after a failure in the
middle of the forward pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

from gradcam_cli import explain  # noqa: E402
from gradcam_cli.maps.preprocess import PreprocessConfig  # noqa: E402
from gradcam_cli.model.layers import layer_layouts  # noqa: E402
from gradcam_cli.model.layout import Tokens  # noqa: E402
from gradcam_cli.options import ExplainOptions  # noqa: E402
from gradcam_cli.passes import explain_batch  # noqa: E402

HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
)
TRANSFORMER_METHODS = (["rollout"], ["chefer"], ["legrad"], ["rollout", "chefer", "legrad", "gradcam"])


def snapshot(model: nn.Module) -> dict:
    return {
        "fused_attn": {n: m.fused_attn for n, m in model.named_modules() if hasattr(m, "fused_attn")},
        "hooks": {n: {d: dict(getattr(m, d)) for d in HOOK_DICTS} for n, m in model.named_modules()},
        "parameters": {n: p.detach().clone() for n, p in model.named_parameters()},
        "requires_grad": {n: p.requires_grad for n, p in model.named_parameters()},
        "grads": [n for n, p in model.named_parameters() if p.grad is not None],
        "training": {n: m.training for n, m in model.named_modules()},
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    assert after["fused_attn"] == before["fused_attn"]
    assert after["hooks"] == before["hooks"]
    assert after["requires_grad"] == before["requires_grad"]
    assert after["grads"] == [] == before["grads"]
    assert after["training"] == before["training"]
    for name, value in before["parameters"].items():
        assert torch.equal(after["parameters"][name], value), name


def users_vit() -> nn.Module:
    """A timm ViT as a user may hold it: some attention fused, some not, a hook of theirs, a frozen embedding."""
    torch.manual_seed(0)
    model = timm.create_model(
        "vit_tiny_patch16_224", pretrained=False, img_size=(32, 48), num_classes=5, depth=3
    ).eval()
    model.blocks[1].attn.fused_attn = False
    model.blocks[0].register_forward_hook(lambda _m, _i, _o: None)
    model.patch_embed.requires_grad_(False)
    return model


def users_tv_vit() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    ).eval()
    nn.init.normal_(model.heads.head.weight, std=0.5)
    model.encoder.layers[0].self_attention.register_forward_pre_hook(lambda _m, _a: None)
    return model


@pytest.mark.parametrize("build", [users_vit, users_tv_vit])
@pytest.mark.parametrize("methods", TRANSFORMER_METHODS)
def test_every_transformer_method_leaves_the_model_as_it_was(build, methods) -> None:
    model = build()
    x = torch.randn(2, 3, 32, 32 if build is users_tv_vit else 48)
    # The final norm: LeGrad's block scores run it again after the pass, which the layer's capture must ignore.
    path = "norm" if hasattr(model, "norm") else "encoder.ln"
    layers = {path: model.get_submodule(path)} if "gradcam" in methods else {}
    layouts = layer_layouts(model, layers, tuple(x.shape[-2:])) if layers else {}
    before = snapshot(model)
    with torch.no_grad():
        logits = model(x)
    result = explain_batch(model, x, layers, methods=methods, top_k=2, layouts=layouts)
    assert torch.allclose(result.logits, logits, atol=1e-5)  # unfused attention computes the same function
    assert_unchanged(model, before)


def test_the_python_api_leaves_a_users_transformer_as_it_was() -> None:
    model = users_vit()
    model.train()  # the API puts it in eval mode for the call and gives its flags back
    before = snapshot(model)
    photo = np.random.default_rng(0).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    options = ExplainOptions(methods=("rollout", "chefer", "legrad"), outputs=())
    (result,) = explain(model, [photo], options=options, preprocess=PreprocessConfig((32, 48), resize=(32, 48)))
    assert {(e.method, e.layer) for e in result.explanations} == {
        ("rollout", "attention"),
        ("chefer", "attention"),
        ("legrad", "attention"),
    }
    assert all(e.map.shape == (40, 60) and e.layout == "tokens" and e.prefix_tokens == 1 for e in result.explanations)
    assert_unchanged(model, before)


ALL_NEW_METHODS = ("rollout", "chefer", "legrad", "inputxgradient", "integratedgradients", "smoothgrad", "vargrad")


def test_explain_takes_every_new_method_by_name_with_a_users_module() -> None:
    """``explain(model, images, methods=[...])`` with the defaults (50 path points, 25 noisy copies): one map per
    method at the photo's size, on the layer it read, and the model left as it was."""
    model = users_vit()
    before = snapshot(model)
    photo = np.random.default_rng(1).integers(0, 256, size=(40, 60, 3), dtype=np.uint8)
    config = PreprocessConfig((32, 48), resize=(32, 48))
    (result,) = explain(model, [photo], methods=list(ALL_NEW_METHODS), top_k=2, preprocess=config)
    found = {(e.method, e.layer, e.rank) for e in result.explanations}
    assert found == {
        (m, "attention" if m in ("rollout", "chefer", "legrad") else "input", r)
        for m in ALL_NEW_METHODS
        for r in (1, 2)
    }
    assert all(e.map.shape == (40, 60) and not e.empty for e in result.explanations)
    assert_unchanged(model, before)


class Boom(RuntimeError):
    pass


@pytest.mark.parametrize("methods", TRANSFORMER_METHODS)
def test_a_failure_in_the_middle_of_the_pass_leaves_the_model_as_it_was(methods) -> None:
    """A block of the user's raises after the first attention ran unfused: the flags come back all the same."""
    model = users_vit()

    def explode(_module, _inputs, _output):
        raise Boom("the user's hook")

    model.blocks[1].register_forward_hook(explode)
    before = snapshot(model)
    layers = {"blocks.0.norm1": model.blocks[0].norm1} if "gradcam" in methods else {}
    layouts = {"blocks.0.norm1": Tokens((2, 3), 1)}
    with pytest.raises(Boom):
        explain_batch(model, torch.randn(1, 3, 32, 48), layers, methods=methods, layouts=layouts)
    assert_unchanged(model, before)


def test_a_failure_while_the_methods_run_leaves_the_model_as_it_was() -> None:
    """A model the method refuses after the forward pass (LeGrad without a head it can apply to a block's tokens)
    is left as it was too."""

    class Wrapped(nn.Module):  # hides timm's forward_head and norm: LeGrad has no block score
        def __init__(self) -> None:
            super().__init__()
            self.inner = users_vit()

        def forward(self, x):
            return self.inner(x)

    model = Wrapped().eval()
    before = snapshot(model)
    from gradcam_cli.errors import MethodError

    with pytest.raises(MethodError, match="cannot score a block's tokens"):
        explain_batch(model, torch.randn(1, 3, 32, 48), {}, methods=["legrad"])
    assert_unchanged(model, before)

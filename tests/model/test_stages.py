"""``--layer stages``: each stage's last block, in model order, explained from one forward pass."""

import pytest
import timm
import torch
import torchvision

from gradcam_cli import Explainer, ExplainOptions, load_model
from gradcam_cli.errors import UsageError
from gradcam_cli.model.layers import trace_layers
from gradcam_cli.model.stages import expand_stages, stage_layers

EXPECTED = {
    ("timm", "resnet18"): ["layer1", "layer2", "layer3", "layer4"],
    ("timm", "convnext_atto"): ["stages.0", "stages.1", "stages.2", "stages.3"],
    ("timm", "efficientnet_b0"): ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"],  # where resolution drops
    ("timm", "swin_tiny_patch4_window7_224"): ["layers.0", "layers.1", "layers.2", "layers.3"],
    # torchvision models have no feature_info: found from their structure
    ("torchvision", "resnet18"): ["layer1", "layer2", "layer3", "layer4"],
    ("torchvision", "efficientnet_b0"): ["features.1", "features.2", "features.3", "features.5", "features.8"],
    ("torchvision", "convnext_tiny"): ["features.1", "features.3", "features.5", "features.7"],
}


def _model(library: str, name: str):
    model = timm.create_model(name, pretrained=False) if library == "timm" else getattr(torchvision.models, name)()
    return model.eval()


@pytest.mark.parametrize("library,name", sorted(EXPECTED))
def test_stage_layers(library, name):
    model = _model(library, name)
    layers = trace_layers(model, (224, 224))
    assert stage_layers(model, layers) == EXPECTED[library, name]


def test_structure_rule_agrees_with_timm_feature_info():
    from gradcam_cli.model.stages import _from_structure

    for name in ("resnet18", "convnext_atto", "efficientnet_b0"):
        model = _model("timm", name)
        layers = trace_layers(model, (224, 224))
        assert _from_structure(dict(model.named_modules()), layers) == EXPECTED["timm", name], name


def test_expand_keeps_other_layers_and_drops_duplicates():
    model = _model("timm", "resnet18")
    layers = trace_layers(model, (224, 224))
    assert expand_stages(["layer4", "stages", "act1"], model, layers) == [
        "layer4",
        "layer1",
        "layer2",
        "layer3",
        "act1",
    ]
    assert expand_stages(["layer2"], model, layers) == ["layer2"]


def test_explainer_explains_every_stage_from_one_forward_pass(samples):
    loaded = load_model()  # the real EfficientNet-Lite0
    # The crop view: the model's 224 x 224 input, whose stage grids are known.
    explainer = Explainer(loaded, ExplainOptions(layers=("stages",), outputs=(), view="crop"))
    assert list(explainer.layers) == ["blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]
    assert explainer.layer_order == ["input", "blocks.0", "blocks.1", "blocks.2", "blocks.4", "blocks.6"]
    calls = []
    handle = loaded.model.register_forward_hook(lambda *_: calls.append(1))
    try:
        from gradcam_cli import load_rgb

        [exps] = explainer.explain_arrays([load_rgb(samples / "cat.png")])
    finally:
        handle.remove()
    assert len(calls) == 1
    assert [e.layer for e in exps] == list(explainer.layers)
    assert [e.grid for e in exps] == [(112, 112), (56, 56), (28, 28), (14, 14), (7, 7)]


def test_layer_order_is_model_order_not_request_order():
    loaded = load_model("resnet18", pretrained=False)
    explainer = Explainer(loaded, ExplainOptions(layers=("layer4", "layer1", "layer3"), outputs=()))
    assert list(explainer.layers) == ["layer4", "layer1", "layer3"]  # outputs keep the order asked for
    assert explainer.layer_order == ["input", "layer1", "layer3", "layer4"]  # sheets use the model's


def test_a_model_without_stages_is_a_usage_error():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    layers = trace_layers(model, (8, 8))
    with pytest.raises(UsageError, match="--layer stages: found no stages"):
        expand_stages(["stages"], model, layers)

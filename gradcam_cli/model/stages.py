"""``--layer stages``: the last block of each stage, in model order.

A stage is a run of blocks at one resolution. For timm models the model's own
``feature_info`` names them (ResNet ``layer1..4``, ConvNeXt ``stages.0..3``,
EfficientNet ``blocks.0, 1, 2, 4, 6``, Swin ``layers.0..3``); entries before the first
block container (the stem: ResNet's ``act1``, MobileNetV3's ``bn1``) are left out.
Other models (torchvision's, your own) get the same from their structure: the module
with the most children that are themselves sequences of blocks holds the stages
(ResNet's root with ``layer1..4``, ``features`` in EfficientNet, ConvNeXt and DenseNet);
of its children, the last at each output resolution ends a stage, so a stem at the
first stage's resolution is passed over. Where no module has two such children (VGG),
the module with the most spatial children is used the same way.
"""

from __future__ import annotations

from torch import nn

from ..errors import UsageError
from .layers import LayerInfo, holds_sequence

STAGES = "stages"  # the --layer shorthand


def stage_layers(model: nn.Module, layers: list[LayerInfo]) -> list[str]:
    """The module paths of each stage's last block, in model order."""
    modules = dict(model.named_modules())
    from_info = _from_feature_info(model, modules)
    if from_info:
        spatial = {layer.path for layer in layers if layer.spatial}
        from_info = [p for p in from_info if p in spatial]
    return from_info or _from_structure(modules, layers)


def _is_block_container(module: nn.Module) -> bool:
    """A sequence of blocks, or a block holding one (ConvNeXt's stage holds ``blocks``)."""
    return holds_sequence(module)


def _from_feature_info(model: nn.Module, modules: dict[str, nn.Module]) -> list[str]:
    info = getattr(model, "feature_info", None)
    try:
        paths = [entry["module"] for entry in info] if info is not None else []
    except (TypeError, KeyError):
        return []
    paths = [p.replace("_", ".") if p not in modules and p.replace("_", ".") in modules else p for p in paths]
    if not all(p in modules for p in paths):
        return []
    first = next((i for i, p in enumerate(paths) if _is_block_container(modules[p])), None)
    return paths[first:] if first is not None else paths


def _from_structure(modules: dict[str, nn.Module], layers: list[LayerInfo]) -> list[str]:
    """The last child at each resolution of the module that holds the stages (see the module's docstring)."""
    info = {layer.path: layer for layer in layers if layer.spatial and not isinstance(modules[layer.path], nn.Identity)}
    best: tuple[tuple, list[str]] | None = None
    for path, module in modules.items():
        prefix = f"{path}." if path else ""
        kids = [f"{prefix}{name}" for name, _ in module.named_children() if f"{prefix}{name}" in info]
        blocks = [k for k in kids if _is_block_container(modules[k])]
        # Block-container children at the most resolutions win (ResNet's root, EfficientNet's `features`, not
        # one stage's run of blocks); where no module has two, the spatial children (VGG's `features`); then
        # the most children, then the outermost.
        chosen = blocks if len(blocks) >= 2 else kids
        resolutions = len({tuple(info[k].shape[1:]) for k in chosen})
        score = (len(blocks) >= 2, resolutions, len(chosen), -path.count(".") - bool(path))
        if chosen and (best is None or score > best[0]):
            best = (score, chosen)
    if best is None:
        return []
    last: dict[tuple[int, ...], LayerInfo] = {}
    for kid in sorted(best[1], key=lambda k: info[k].finish_order):
        last[tuple(info[kid].shape[1:])] = info[kid]
    return [layer.path for layer in sorted(last.values(), key=lambda layer: layer.finish_order)]


def expand_stages(requested: list[str], model: nn.Module, layers: list[LayerInfo]) -> list[str]:
    """``requested`` layer paths with ``stages`` replaced by `stage_layers` (duplicates dropped).

    The shorthand wins over a module of that name (ConvNeXt's ``stages`` returns the same tensor
    as its last stage, ``stages.3``, so nothing is lost).
    """
    if STAGES not in requested:
        return requested
    found = stage_layers(model, layers)
    if not found:
        raise UsageError("--layer stages: found no stages in this model; name the layers (see `gradcam layers`)")
    out: list[str] = []
    for path in requested:
        out.extend(found if path == STAGES else [path])
    return list(dict.fromkeys(out))

"""Which modules can be hooked, what they output, and which one is the default.

One dry forward pass of two blank images at the model's input size records every
module's output shape in the order the modules finish; the batch of two tells the
batch dimension apart (sequence-first token layouts put it second). Each output's
layout (``model/layout.py``) says whether and how it maps onto a spatial grid.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from ..errors import MethodError, UsageError
from ..suggest import close_names, did_you_mean
from .device import model_device, model_dtype
from .hooks import installed
from .layout import ChannelsFirst, ChannelsLast, Layout, Levels, Tokens, detect_layout, model_hints
from .listing import listed_paths

_SEQUENCES = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
TRACE_BATCH = 2
# Modules after the last block that only normalise, reorder or pass on its grid.
_TRAILING = ("Norm", "Identity", "Permute", "Dropout", "Flatten")


@dataclass(frozen=True)
class LayerInfo:
    """One module as seen in a forward pass."""

    path: str  # as in model.named_modules(), e.g. "layer4" or "blocks.6.0"
    type: str  # class name
    shape: tuple[int, ...] | None  # output shape without the batch dimension; None if not a tensor
    finish_order: int  # when its forward returned; -1 if it never ran
    output_key: int = -1  # equal for modules that returned the very same tensor
    layout: Layout | None = None  # how the output maps onto a grid; None: it does not
    refusal: str | None = None  # why the layout cannot be told, when the shape is ambiguous

    @property
    def spatial(self) -> bool:
        """A grid with more than one position (conv map, channels-last stage, tokens): something Grad-CAM can weigh."""
        grid = getattr(self.layout, "grid", None)
        return grid is not None and grid[0] * grid[1] > 1

    @property
    def depth(self) -> int:
        return self.path.count(".") + 1


def _without_batch(shape: tuple[int, ...], layout: Layout | None) -> tuple[int, ...]:
    batch_dim = layout.batch_dim if layout is not None else 0
    return shape[:batch_dim] + shape[batch_dim + 1 :]


def trace_layers(model: nn.Module, input_size: tuple[int, int]) -> list[LayerInfo]:
    """Every named module with its output shape and layout, from one no-grad forward."""
    records: dict[str, tuple[tuple[int, ...] | None, int, object]] = {}

    levels: dict[str, Levels] = {}  # modules returning a dict of feature levels, read as one grid

    def recorder(path: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            tensor = output if isinstance(output, torch.Tensor) else None
            shape = tuple(tensor.shape) if tensor is not None else None
            found = Levels.of(output)
            if found is not None:
                tensor, levels[path] = output, found  # kept alive: its id tells modules returning it apart
                shape = (TRACE_BATCH, found.channels, *found.grid)
            records[path] = (shape, len(records), tensor)

        return hook

    modules = [(p, m) for p, m in model.named_modules() if p]
    with installed(forward=[(m, recorder(p)) for p, m in modules]), torch.no_grad():
        model(torch.zeros(TRACE_BATCH, 3, *input_size, device=model_device(model), dtype=model_dtype(model)))
    hints = model_hints(model, tuple(input_size))
    found = {
        p: levels.get(p) or detect_layout(records[p][0], TRACE_BATCH, tuple(input_size), hints, m)
        for p, m in modules
        if records.get(p, (None,))[0]
    }
    if any(isinstance(f, str) for f in found.values()):
        # A token count that fits several grids is settled by the grid the patch embedding showed.
        seen = frozenset(f.grid for f in found.values() if isinstance(f, (ChannelsFirst, ChannelsLast)))
        hints = replace(hints, seen_grids=seen)
        found.update(
            {
                p: detect_layout(records[p][0], TRACE_BATCH, tuple(input_size), hints, m)
                for p, m in modules
                if isinstance(found.get(p), str)
            }
        )
    layers = []
    for path, module in modules:
        # `records` keeps every output alive, so id() is unique among them.
        shape, order, tensor = records.get(path, (None, -1, None))
        layout, refusal = (None, found[path]) if isinstance(found.get(path), str) else (found.get(path), None)
        layers.append(
            LayerInfo(
                path,
                type(module).__name__,
                _without_batch(shape, layout) if shape else None,
                order,
                id(tensor) if tensor is not None else -1,
                layout,
                refusal,
            )
        )
    return layers


def layer_layouts(model: nn.Module, layers: dict[str, nn.Module], input_size: tuple[int, int]) -> dict[str, Layout]:
    """The layout of each hooked layer's output at ``input_size`` (for ``explain_batch(layouts=...)``)."""
    found = {}
    infos = {layer.path: layer for layer in trace_layers(model, input_size)}  # every layer: shapes settle each other
    for path in layers:
        if not infos[path].spatial:
            raise MethodError(_not_a_grid(infos[path], input_size))
        found[path] = infos[path].layout
    return found


def _not_a_grid(info: LayerInfo, input_size: tuple[int, int]) -> str:
    h, w = input_size
    if info.refusal:
        return (
            f"--layer {info.path!r}: at input {h}x{w}, {info.refusal}; not guessing: "
            "choose another module with --layer (see `gradcam layers`)"
        )
    return f"--layer {info.path!r}: at input {h}x{w} its output {info.shape} is not a spatial grid"


def default_layer(model: nn.Module, layers: list[LayerInfo]) -> str:
    """The last block with a spatial output.

    Convolutional nets: among the modules that returned the last spatial tensor of the
    forward pass, take the outermost one (``layer4`` rather than ``layer4.2``); a
    pass-through ``Identity`` never counts. When that module is a container of stages,
    each itself holding a sequence of blocks (ConvNeXt's ``stages``, MobileNet's
    ``blocks``), take its last stage instead (``stages.3``).

    Token models (when the last block's output, before any final norm, is a token
    sequence or a channels-last grid): see `_token_default`.
    """
    modules = dict(model.named_modules())
    spatial = [layer for layer in layers if layer.spatial and not isinstance(modules[layer.path], nn.Identity)]
    refused = sorted((layer for layer in layers if layer.refusal), key=lambda layer: layer.finish_order)
    if not spatial:
        why = (
            (
                f"; {refused[-1].path}: {refused[-1].refusal}; not guessing: choose another module with --layer "
                "(see `gradcam layers`)"
            )
            if refused
            else ""
        )
        raise UsageError(
            "this model has no layer with a spatial output ((C, H, W) map, channels-last grid "
            f"or token grid); Grad-CAM needs one{why}"
        )
    if refused and refused[-1].finish_order > max(layer.finish_order for layer in spatial):
        # The late grids are ambiguous: an early layer would be a silent, poor default.
        raise UsageError(
            f"no default layer: {refused[-1].path}: {refused[-1].refusal}; not guessing: "
            "choose a layer with --layer (see `gradcam layers`)"
        )
    anchor = _last_block_output(modules, spatial)
    if isinstance(anchor.layout, (Tokens, ChannelsLast)):
        return _token_default(modules, layers, spatial, anchor)
    last = max(spatial, key=lambda layer: layer.finish_order)
    same = [layer for layer in spatial if layer.output_key == last.output_key]
    best = min(same, key=lambda layer: (layer.depth, -layer.finish_order))
    module = modules[best.path]
    if isinstance(module, _SEQUENCES) and len(module) > 0:
        children = list(module.children())
        if all(holds_sequence(c) for c in children):
            last_child = f"{best.path}.{list(dict(module.named_children()))[-1]}"
            if any(layer.path == last_child for layer in same):
                return last_child
    return best.path


def _last_block_output(modules: dict[str, nn.Module], spatial: list[LayerInfo]) -> LayerInfo:
    """The module that computed the last block's output: the last spatial output returned by a
    module in a sequence of blocks and not made by a final norm, permute or pass-through.

    Modules that return the very same tensor form a group; the innermost of them is the
    one that computed it (``encoder.ln``, not ``encoder``).
    """
    groups: dict[int, list[LayerInfo]] = {}
    for info in spatial:
        groups.setdefault(info.output_key, []).append(info)
    ordered = sorted(groups.values(), key=lambda g: -max(layer.finish_order for layer in g))
    makers = [(max(g, key=lambda layer: (layer.depth, -layer.finish_order)), g) for g in ordered]
    kept = [(maker, g) for maker, g in makers if not any(t in maker.type for t in _TRAILING)]
    for maker, group in kept:
        if any(_in_sequence(modules, layer) for layer in group):
            return maker
    return (kept or makers)[0][0]


def _in_sequence(modules: dict[str, nn.Module], info: LayerInfo) -> bool:
    return isinstance(modules.get(info.path.rpartition(".")[0]), _SEQUENCES)


def _token_default(
    modules: dict[str, nn.Module], layers: list[LayerInfo], spatial: list[LayerInfo], anchor: LayerInfo
) -> str:
    """The default layer of a token model, as in the literature.

    The last block is the outermost module that returned the last block output and sits
    in a sequence of blocks (``blocks.11``, ``layers.3``, ``features.7``). Channels-last
    stages (Swin): that stage's output. Token sequences (ViT, DeiT, EVA, BEiT): the output
    of the last block's first norm (``blocks[-1].norm1``), the input to its attention. A
    class-token head reads nothing else of the last block's output, so the grid tokens
    there get no gradient; their input to the last attention still carries the evidence.
    """
    same = [layer for layer in spatial if layer.output_key == anchor.output_key]
    in_sequence = [layer for layer in same if _in_sequence(modules, layer)]
    if not in_sequence:
        return min(same, key=lambda layer: (layer.depth, -layer.finish_order)).path
    block = min(in_sequence, key=lambda layer: (layer.depth, -layer.finish_order))
    if not isinstance(block.layout, Tokens):
        return block.path
    by_path = {layer.path: layer for layer in layers}
    for name, child in modules[block.path].named_children():
        info = by_path.get(f"{block.path}.{name}")
        if "Norm" in type(child).__name__ and info is not None and isinstance(info.layout, Tokens) and info.spatial:
            return info.path
    parent_path, _, name = block.path.rpartition(".")
    names = list(dict(modules[parent_path].named_children()))
    before = by_path.get(f"{parent_path}.{names[names.index(name) - 1]}") if names.index(name) > 0 else None
    return before.path if before is not None and before.spatial else block.path


def holds_sequence(module: nn.Module) -> bool:
    return isinstance(module, _SEQUENCES) or any(isinstance(m, _SEQUENCES) for m in module.children())


def resolve_layer(model: nn.Module, path: str, layers: list[LayerInfo], default: str | None = None) -> nn.Module:
    """The module at ``path``, after checking that the methods can use its output."""
    modules = dict(model.named_modules())
    info = {layer.path: layer for layer in layers}
    listed = listed_paths(
        [(layer.path, layer.type) for layer in layers if layer.spatial], default or path
    )  # as `gradcam layers`
    if path not in modules or not path:
        close = close_names(path, listed, n=5, cutoff=0.5)
        hint = did_you_mean(close) if close else "; see `gradcam layers`"
        raise UsageError(f"--layer {path!r}: no such module{hint}")
    layer = info.get(path)
    if layer is None or layer.shape is None:
        raise UsageError(f"--layer {path!r}: does not run or does not return a tensor in a forward pass")
    if layer.refusal:
        raise UsageError(
            f"--layer {path!r}: {layer.refusal}; not guessing: choose another module with --layer "
            "(see `gradcam layers`)"
        )
    if not layer.spatial:
        near = [info[p] for p in listed if info[p].finish_order < layer.finish_order]
        hint = (
            f"; the last spatial layer before it is {max(near, key=lambda info: info.finish_order).path}"
            if near
            else ""
        )
        raise UsageError(
            f"--layer {path!r}: its output has shape {layer.shape}, not (C, H, W) with H*W > 1, "
            f"a channels-last grid or a token grid, so there is no spatial map to weigh{hint}"
        )
    return modules[path]

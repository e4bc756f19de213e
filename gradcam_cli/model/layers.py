"""Which modules can be hooked, what they output, and which one is the default.

One dry forward pass at the model's input size records every module's output
shape in the order the modules finish.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import UsageError
from ..suggest import close_names, did_you_mean
from .device import model_device
from .hooks import installed
from .listing import listed_paths

_SEQUENCES = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


@dataclass(frozen=True)
class LayerInfo:
    """One module as seen in a forward pass."""

    path: str  # as in model.named_modules(), e.g. "layer4" or "blocks.6.0"
    type: str  # class name
    shape: tuple[int, ...] | None  # output shape without the batch dimension; None if not a tensor
    finish_order: int  # when its forward returned; -1 if it never ran
    output_key: int = -1  # equal for modules that returned the very same tensor

    @property
    def spatial(self) -> bool:
        """A ``(C, H, W)`` output with more than one position: something Grad-CAM can weigh."""
        return self.shape is not None and len(self.shape) == 3 and self.shape[1] * self.shape[2] > 1

    @property
    def depth(self) -> int:
        return self.path.count(".") + 1


def trace_layers(model: nn.Module, input_size: tuple[int, int]) -> list[LayerInfo]:
    """Every named module with its output shape, from one no-grad forward on a blank image."""
    records: dict[str, tuple[tuple[int, ...] | None, int, torch.Tensor | None]] = {}

    def recorder(path: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            tensor = output if isinstance(output, torch.Tensor) else None
            shape = tuple(tensor.shape[1:]) if tensor is not None else None
            records[path] = (shape, len(records), tensor)

        return hook

    modules = [(p, m) for p, m in model.named_modules() if p]
    with installed(forward=[(m, recorder(p)) for p, m in modules]), torch.no_grad():
        model(torch.zeros(1, 3, *input_size, device=model_device(model)))
    layers = []
    for path, module in modules:
        # `records` keeps every output alive, so id() is unique among them.
        shape, order, tensor = records.get(path, (None, -1, None))
        layers.append(LayerInfo(path, type(module).__name__, shape, order, id(tensor) if tensor is not None else -1))
    return layers


def default_layer(model: nn.Module, layers: list[LayerInfo]) -> str:
    """The last block with a spatial output.

    Among the modules that returned the last spatial tensor of the forward pass, take
    the outermost one (``layer4`` rather than ``layer4.2``); a pass-through
    ``Identity`` never counts. When that module is a container of stages, each itself
    holding a sequence of blocks (ConvNeXt's ``stages``, MobileNet's ``blocks``), take
    its last stage instead (``stages.3``).
    """
    modules = dict(model.named_modules())
    spatial = [l for l in layers if l.spatial and not isinstance(modules[l.path], nn.Identity)]
    if not spatial:
        raise UsageError("this model has no layer with a spatial (C, H, W) output; Grad-CAM needs one")
    last = max(spatial, key=lambda l: l.finish_order)
    same = [l for l in spatial if l.output_key == last.output_key]
    best = min(same, key=lambda l: (l.depth, -l.finish_order))
    module = modules[best.path]
    if isinstance(module, _SEQUENCES) and len(module) > 0:
        children = list(module.children())
        if all(_holds_sequence(c) for c in children):
            last_child = f"{best.path}.{list(dict(module.named_children()))[-1]}"
            if any(l.path == last_child for l in same):
                return last_child
    return best.path


def _holds_sequence(module: nn.Module) -> bool:
    return isinstance(module, _SEQUENCES) or any(isinstance(m, _SEQUENCES) for m in module.children())


def resolve_layer(model: nn.Module, path: str, layers: list[LayerInfo], default: str) -> nn.Module:
    """The module at ``path``, after checking that the methods can use its output."""
    modules = dict(model.named_modules())
    info = {l.path: l for l in layers}
    listed = listed_paths([(l.path, l.type) for l in layers if l.spatial], default)  # what `gradcam layers` shows
    if path not in modules or not path:
        close = close_names(path, listed, n=5, cutoff=0.5)
        hint = did_you_mean(close) if close else "; see `gradcam layers`"
        raise UsageError(f"--layer {path!r}: no such module{hint}")
    layer = info.get(path)
    if layer is None or layer.shape is None:
        raise UsageError(f"--layer {path!r}: does not run or does not return a tensor in a forward pass")
    if not layer.spatial:
        near = [info[p] for p in listed if info[p].finish_order < layer.finish_order]
        hint = f"; the last spatial layer before it is {max(near, key=lambda l: l.finish_order).path}" if near else ""
        raise UsageError(
            f"--layer {path!r}: its output has shape {layer.shape}, not (C, H, W) with H*W > 1, "
            f"so there is no spatial map to weigh{hint}"
        )
    return modules[path]

"""Folding eval-mode BatchNorm into the convolution before it: the same function, fewer passes.

In eval mode ``BN(conv(x))`` is one affine map per channel after the convolution, so
it can be baked into the convolution's weight and bias (``torch.nn.utils.fusion``).
The forward pass and the backward to the input then skip every BatchNorm: ResNet-50's
forward plus input gradient took 0.88x the time on this project's 2-core CPU,
EfficientNet-Lite0's 0.70x at batch 8. Results change only by float rounding.

A pair is folded only when one probe forward shows that the BatchNorm's input *is*
the convolution's output and that nothing else reads that output (counted in the
autograd graph), and both modules run once. Module paths stay: a plain BatchNorm
becomes ``nn.Identity``, timm's ``BatchNormAct2d`` a `FoldedNormAct` that keeps
its ``drop`` and ``act`` children. A folded convolution's own output now includes the
BatchNorm, so hooking that convolution needs `unfold_conv` first (the
explainer does it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .device import model_device
from .hooks import installed
from .outputs import logits_of


class FoldedNormAct(nn.Module):
    """What is left of timm's ``BatchNormAct2d`` once its BatchNorm is folded: dropout, then activation."""

    def __init__(self, drop: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.drop = drop
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.drop(x))


@dataclass
class FoldedPair:
    """One folded (convolution, BatchNorm) pair, with what it takes to undo it."""

    conv_path: str
    bn_path: str
    bn: nn.BatchNorm2d  # the original module, detached from the model
    conv_had_bias: bool
    conv_weight: torch.Tensor | None = None  # original weight, kept only where the fold cannot be inverted
    conv_bias: torch.Tensor | None = None


def _foldable_bn(module: nn.Module) -> bool:
    kind = type(module).__name__
    if kind not in ("BatchNorm2d", "BatchNormAct2d"):
        return False
    if kind == "BatchNormAct2d" and not (hasattr(module, "drop") and hasattr(module, "act")):
        return False
    return (
        not module.training
        and module.track_running_stats
        and module.running_mean is not None
        and module.running_var is not None
    )


# Convolutions whose weight is used as stored. Weight-standardised ones (timm's StdConv2d)
# renormalise it in their forward pass, which would undo a fold: they are left alone.
_PLAIN_CONVS = ("Conv2d", "Conv2dSame")


def _foldable_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and type(module).__name__ in _PLAIN_CONVS and not module.training


def _graph_references(root: torch.Tensor) -> dict[object, int]:
    """How many graph nodes read each node's output, over the whole graph behind ``root``."""
    counts: dict[object, int] = {}
    seen = set()
    stack = [root.grad_fn] if root.grad_fn is not None else []
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        for child, _ in node.next_functions:
            if child is not None:
                counts[child] = counts.get(child, 0) + 1
                stack.append(child)
    return counts


def _probe_input(model: nn.Module, input_size: tuple[int, int]) -> torch.Tensor:
    return torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(0)).to(model_device(model))


def find_conv_bn_pairs(model: nn.Module, input_size: tuple[int, int]) -> list[tuple[str, str]]:
    """``(conv path, bn path)`` pairs that can be folded, from one probe forward on the model's device."""
    return _probe_pairs(model, _probe_input(model, input_size))[0]


def _probe_pairs(model: nn.Module, probe: torch.Tensor) -> tuple[list[tuple[str, str]], torch.Tensor]:
    """The foldable pairs and the model's logits for ``probe`` (a tensor, ``.logits``, ...: see ``logits_of``)."""
    modules = dict(model.named_modules())
    conv_out: dict[int, tuple[str, torch.Tensor, object]] = {}
    bn_in: list[tuple[str, torch.Tensor, object]] = []
    calls: dict[str, int] = {}

    def on_conv(path: str):
        def hook(_m: nn.Module, _i: object, out: object) -> None:
            calls[path] = calls.get(path, 0) + 1
            if isinstance(out, torch.Tensor):
                conv_out[id(out)] = (path, out, out.grad_fn)

        return hook

    def on_bn(path: str):
        def hook(_m: nn.Module, inputs: tuple) -> None:
            calls[path] = calls.get(path, 0) + 1
            if inputs and isinstance(inputs[0], torch.Tensor):
                bn_in.append((path, inputs[0], inputs[0].grad_fn))

        return hook

    convs = [(module, on_conv(path)) for path, module in modules.items() if _foldable_conv(module)]
    bns = [(module, on_bn(path)) for path, module in modules.items() if _foldable_bn(module)]
    # A graph is recorded (no backward runs) so that readers of each output can be counted.
    with installed(forward=convs, pre=bns), torch.enable_grad():
        out = logits_of(model(probe.detach().requires_grad_(True)))
    refs = _graph_references(out)
    pairs = []
    for bn_path, x, node in bn_in:
        hit = conv_out.get(id(x))
        if hit is None or hit[1] is not x:
            continue
        conv_path, _, conv_node = hit
        if calls.get(conv_path) != 1 or calls.get(bn_path) != 1:
            continue  # a shared module: folding would change its other uses
        if node is None or node is not conv_node:
            continue  # modified in place between the convolution and the BatchNorm
        if refs.get(conv_node, 0) != 1:
            continue  # someone besides the BatchNorm reads the convolution's output
        pairs.append((conv_path, bn_path))
    return pairs, out.detach().float()


def _set_module(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, module)


def _scale(bn: nn.BatchNorm2d) -> torch.Tensor:
    gamma = bn.weight if bn.weight is not None else torch.ones_like(bn.running_var)
    return gamma / torch.sqrt(bn.running_var + bn.eps)


def fold_batchnorm(model: nn.Module, input_size: tuple[int, int]) -> list[FoldedPair]:
    """Fold every safely foldable eval-mode BatchNorm into its convolution, in place.

    A safety net checks the result: if the folded model's outputs on a probe batch
    differ from the original's by more than float rounding, every fold is undone.
    """
    probe = _probe_input(model, input_size)
    try:
        pairs, before = _probe_pairs(model, probe)
    except Exception:  # a model the probe cannot run is simply not folded; the caller's trace reports it
        return []
    if not pairs:
        return []
    folded = _fold_pairs(model, pairs)
    with torch.no_grad():
        after = logits_of(model(probe)).float()
    scale = before.abs().max().item()
    if not (after - before).abs().max().item() <= 1e-4 * scale + 1e-5:
        for pair in reversed(folded):
            unfold_conv(model, pair)
        return []
    return folded


@torch.no_grad()
def _fold_pairs(model: nn.Module, pairs: list[tuple[str, str]]) -> list[FoldedPair]:
    modules = dict(model.named_modules())
    folded = []
    for conv_path, bn_path in pairs:
        conv, bn = modules[conv_path], modules[bn_path]
        invertible = bool((_scale(bn).abs() > 1e-12).all())
        had_bias = conv.bias is not None
        original_w = None if invertible else conv.weight.detach().clone()
        original_b = None if invertible or conv.bias is None else conv.bias.detach().clone()
        requires_grad = conv.weight.requires_grad
        weight, bias = fuse_conv_bn_weights(
            conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias
        )
        conv.weight = weight.requires_grad_(requires_grad)
        conv.bias = bias.requires_grad_(requires_grad)
        replacement = FoldedNormAct(bn.drop, bn.act) if type(bn).__name__ == "BatchNormAct2d" else nn.Identity()
        _set_module(model, bn_path, replacement)
        folded.append(FoldedPair(conv_path, bn_path, bn, had_bias, original_w, original_b))
    return folded


@torch.no_grad()
def unfold_conv(model: nn.Module, pair: FoldedPair) -> None:
    """Undo one fold, so that the convolution's output is its own again (for hooking it)."""
    conv = model.get_submodule(pair.conv_path)
    bn = pair.bn
    device = conv.weight.device
    if pair.conv_weight is not None:
        weight = pair.conv_weight
        bias = pair.conv_bias
    else:
        scale = _scale(bn).to(conv.weight.device)
        shape = (-1,) + (1,) * (conv.weight.dim() - 1)
        weight = conv.weight / scale.reshape(shape)
        beta = bn.bias.to(device) if bn.bias is not None else torch.zeros_like(scale)
        bias = (conv.bias - beta) / scale + bn.running_mean.to(device)
        bias = bias if pair.conv_had_bias else None
    requires_grad = conv.weight.requires_grad
    # empty_like keeps the current weight's device and memory layout (channels_last or not).
    conv.weight = nn.Parameter(torch.empty_like(conv.weight).copy_(weight), requires_grad=requires_grad)
    conv.bias = None if bias is None else nn.Parameter(bias.to(device), requires_grad=requires_grad)
    _set_module(model, pair.bn_path, bn.to(device))

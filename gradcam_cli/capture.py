"""What the engine records during a forward pass, as context managers that leave nothing behind.

- `ActivationCapture`: each hooked layer's output, made the leaf of the autograd
  graph when only layer gradients are needed, so nothing before it is recorded.
- `frozen_parameters`: no parameter records gradients inside the block (no ``.grad``
  is ever written); the caller's flags come back after.
- `BiasGradients`: the gradient at every bias-carrying layer's output (`bias_sites`), for FullGrad.
- `guided_gates`: Guided Backpropagation (Springenberg et al. 2015) without touching
  the user's modules. Instead of swapping activation modules, a forward hook puts a
  gradient hook on each activation's output. While the gates are open, the gradient
  flowing back into an activation is gated as ``max(grad, 0) * [y > 0]`` and then passes
  through the activation's own derivative. For ReLU this is exactly the classic rule
  ``grad * [x > 0] * [grad > 0]``. For smooth activations (SiLU, GELU, Hardswish, Mish,
  ...) the same gate is applied, so negative gradients and negative inputs are blocked
  there too; captum instead silently falls back to the plain gradient. Since
  ``sign(act(x)) == sign(x)`` for every gated activation, the output's sign stands in for
  the input's, which in-place activations overwrite. Activations called as functions
  (``F.relu`` inside a ``forward``) are not modules and are not gated; pytorch-grad-cam
  and captum share that limit.

Every hook goes through `gradcam_cli.model.hooks.installed`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from .errors import MethodError
from .model.hooks import installed

GATED_ACTIVATIONS = frozenset(
    {
        "ReLU",
        "ReLU6",
        "LeakyReLU",
        "ELU",
        "CELU",
        "SELU",
        "SiLU",
        "Swish",
        "GELU",
        "GELUTanh",
        "QuickGELU",
        "Hardswish",
        "HardSwish",
        "Mish",
        "HardMish",
        "Softplus",
    }
)
# Their derivative is already zero wherever the input is <= 0, so no mask is needed.
_SELF_MASKING = frozenset({"ReLU", "ReLU6"})


@contextmanager
def frozen_parameters(model: nn.Module) -> Iterator[None]:
    """No parameter records gradients inside the block; the caller's flags come back after."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(params, flags):
            p.requires_grad_(flag)


class ActivationCapture:
    """Forward hooks that keep each hooked layer's output (and make it a graph leaf when asked)."""

    def __init__(self, layers: dict[str, nn.Module], make_leaf: bool) -> None:
        self.layers = layers
        self.make_leaf = make_leaf
        self.outputs: dict[str, torch.Tensor] = {}

    def _hook(self, path: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> object:
            if not isinstance(output, torch.Tensor):
                raise MethodError(f"--layer {path!r}: returns {type(output).__name__}, not a tensor")
            if path in self.outputs:
                raise MethodError(
                    f"--layer {path!r}: runs more than once per forward pass; pick a block that runs once"
                )
            if self.make_leaf and not output.requires_grad:
                # Recording starts here: nothing before this layer enters the graph.
                output = output.detach().requires_grad_(True)
                self.outputs[path] = output
                return output
            self.outputs[path] = output
            return None

        return hook

    @contextmanager
    def installed(self) -> Iterator[ActivationCapture]:
        try:
            with installed(forward=[(m, self._hook(p)) for p, m in self.layers.items()]):
                yield self
        finally:
            self.outputs.clear()


class GuidedGates:
    """Gradient gates on every activation of one forward pass; closed (inert) until opened."""

    def __init__(self) -> None:
        self.open = False

    def gate_output(self, module: nn.Module, _inputs: object, output: object) -> None:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return
        mask = None if type(module).__name__ in _SELF_MASKING else output.detach() > 0

        def gate(grad: torch.Tensor) -> torch.Tensor | None:
            if not self.open:
                return None
            gated = grad.clamp(min=0)
            return gated if mask is None else gated * mask

        output.register_hook(gate)


def is_gated_activation(module: nn.Module) -> bool:
    """Whether Guided Backprop gates this module's output."""
    return type(module).__name__ in GATED_ACTIVATIONS


@contextmanager
def guided_gates(model: nn.Module) -> Iterator[GuidedGates]:
    """Install gates for the forward passes run inside the block; removes every hook on exit."""
    gates = GuidedGates()
    with installed(forward=[(m, gates.gate_output) for m in model.modules() if is_gated_activation(m)]):
        yield gates


@contextmanager
def gates_open(gates: GuidedGates) -> Iterator[None]:
    """Apply the guided rule to backward passes run inside the block."""
    gates.open = True
    try:
        yield
    finally:
        gates.open = False


# --------------------------------------------------------------------------- FullGrad's bias gradients


@dataclass(frozen=True)
class BiasSite:
    """A layer that adds a bias to what it outputs: the bias, and where the biased tensor is read."""

    name: str
    module: nn.Module  # the tensor is this module's output, or (before_activation) its input
    bias: torch.Tensor  # (C,) the bias it adds, the implicit one of a BatchNorm included
    before_activation: bool = False  # a BatchNorm with its activation inside (timm's BatchNormAct2d)


def effective_bias(module: nn.Module) -> torch.Tensor | None:
    """What a layer adds to every position of channel c. A BatchNorm in eval mode computes
    ``(x - mean) / sqrt(var + eps) * weight + bias``, whose constant part is ``bias - mean * weight / sqrt(var + eps)``;
    one that normalises by the batch's own statistics adds no constant and has none."""
    if isinstance(module, nn.BatchNorm2d):
        if module.running_mean is None or module.running_var is None:
            return None
        scale = torch.rsqrt(module.running_var + module.eps)
        if module.weight is not None:
            scale = scale * module.weight
        shift = module.bias if module.bias is not None else torch.zeros_like(scale)
        return (shift - module.running_mean * scale).detach()
    if isinstance(module, nn.Conv2d) and module.bias is not None:
        return module.bias.detach()
    return None


def bias_sites(model: nn.Module, exact_types: bool = False) -> list[BiasSite]:
    """Every 2-D convolution with a bias and every 2-D BatchNorm, in module order.

    A BatchNorm that applies its own activation (timm's ``BatchNormAct2d``: batch norm, then ``drop``, then
    ``act``) is read at its ``drop``'s input, before the activation, where its bias is added.
    ``exact_types``: only modules whose type is exactly ``nn.Conv2d`` or ``nn.BatchNorm2d`` and that have a
    bias parameter, as pytorch-grad-cam selects them (it skips timm's ``BatchNormAct2d``).
    """
    sites = []
    for name, module in model.named_modules():
        if exact_types and (type(module) not in (nn.Conv2d, nn.BatchNorm2d) or module.bias is None):
            continue
        bias = effective_bias(module)
        if bias is None:
            continue
        inner = isinstance(module, nn.BatchNorm2d) and isinstance(getattr(module, "drop", None), nn.Module)
        inner = inner and hasattr(module, "act")
        sites.append(BiasSite(name, module.drop if inner else module, bias, before_activation=inner))
    return sites


class BiasGradients:
    """Gradient hooks on each bias site's tensor during a forward pass; each gradient that a backward pass
    brings there goes to ``on_gradient(site, gradient)`` (set by the caller before each backward pass).

    A hook put on a tensor before an in-place activation overwrites it still receives the gradient with
    respect to the tensor as it was (before the activation), which is where the bias was added.
    """

    def __init__(self, sites: list[BiasSite]) -> None:
        self.sites = sites
        self.on_gradient = None

    def _hook(self, site: BiasSite):
        def hook(_module: nn.Module, inputs: tuple, output: object = None) -> None:
            tensor = inputs[0] if site.before_activation else output
            if isinstance(tensor, torch.Tensor) and tensor.requires_grad:
                tensor.register_hook(lambda grad: self._arrived(site, grad))

        return hook

    def _arrived(self, site: BiasSite, grad: torch.Tensor) -> None:
        if self.on_gradient is not None:
            self.on_gradient(site, grad)  # returns nothing: the gradient flows on unchanged

    @contextmanager
    def installed(self) -> Iterator[BiasGradients]:
        forward = [(s.module, self._hook(s)) for s in self.sites if not s.before_activation]
        pre = [(s.module, self._hook(s)) for s in self.sites if s.before_activation]
        with installed(forward=forward, pre=pre):
            yield self

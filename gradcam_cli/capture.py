"""What the engine records during a forward pass, as context managers that leave nothing behind.

- `ActivationCapture`: each hooked layer's output, made the leaf of the autograd
  graph when only layer gradients are needed, so nothing before it is recorded (a
  feature pyramid's dict of levels kept as one flat tensor, `Levels`).
- `frozen_parameters`: no parameter records gradients inside the block (no ``.grad``
  is ever written); the caller's flags come back after.
- `AttentionCapture`: every attention block's per-head probabilities (timm attention run unfused inside the
  block, ``nn.MultiheadAttention`` asked for its weights), kept in the autograd graph when their gradients are
  needed.
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
from .model.attention import MHA, TIMM, AttentionSite
from .model.hooks import installed
from .model.layout import Levels

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
        self.stopped = False

    def stop(self) -> None:
        """The forward pass is over: later calls of a hooked module (LeGrad's block scores run the final norm
        and the head again) are not its output in the pass."""
        self.stopped = True

    def _hook(self, path: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> object:
            if self.stopped:
                return None
            levels = Levels.of(output)
            if not isinstance(output, torch.Tensor) and levels is None:
                raise MethodError(
                    f"--layer {path!r}: returns {type(output).__name__}, not a tensor or a dict of feature levels"
                )
            if path in self.outputs:
                raise MethodError(
                    f"--layer {path!r}: runs more than once per forward pass; pick a block that runs once"
                )
            # A dict of levels is kept as one flat tensor, and the model goes on with views of it.
            kept = output if levels is None else levels.flatten(output)
            if self.make_leaf and not kept.requires_grad:
                # Recording starts here: nothing before this layer enters the graph.
                kept = kept.detach().requires_grad_(True)
            self.outputs[path] = kept
            if levels is not None:
                return levels.unflatten(kept, output)
            return kept if kept is not output else None

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


@dataclass
class AttentionCall:
    """One attention module's call in a forward pass."""

    site: AttentionSite
    probabilities: torch.Tensor  # (B, H, T, T)
    target: torch.Tensor  # what its gradients are taken with respect to: the probabilities, or MHA's output
    value: torch.Tensor | None = None  # MHA: the value input, batch first (to turn output gradients into ones of A)
    block_output: torch.Tensor | None = None  # (B, T, C) the tokens of the block the attention belongs to


class AttentionCapture:
    """Every attention module's per-head probabilities in one forward pass, in the order the modules ran.

    timm attention runs unfused inside the block, the only way it forms the probabilities: each module's
    ``fused_attn`` flag is switched off and comes back after, whatever is raised. ``nn.MultiheadAttention`` is
    asked for per-head weights and returns what its caller asked for. With ``graph`` the probabilities stay in the
    autograd graph; where nothing before the first attention records gradients, that attention's probabilities
    (timm) or input (MHA) become the graph's leaf, so nothing before is recorded and no parameter is touched.
    With ``blocks`` the output tokens of each attention's block are kept too (LeGrad scores them).
    """

    def __init__(self, sites: list[AttentionSite], graph: bool, blocks: bool) -> None:
        self.sites, self.graph, self.blocks = sites, graph, blocks
        self.calls: list[AttentionCall] = []
        self._requests: dict[int, tuple[bool, bool]] = {}  # an MHA module's caller's (need_weights, average)

    def _timm_hook(self, site: AttentionSite):
        def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor | None:
            probabilities = output
            if self.graph and not probabilities.requires_grad:
                probabilities = probabilities.detach().requires_grad_(True)
            self.calls.append(AttentionCall(site, probabilities, probabilities))
            return probabilities if probabilities is not output else None

        return hook

    def _mha_pre_hook(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        args, kwargs = list(args), dict(kwargs)
        names = ("query", "key", "value", "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights")
        given = {name: args[i] if i < len(args) else kwargs.get(name) for i, name in enumerate(names)}
        self._requests[id(module)] = (given["need_weights"] is not False, given["average_attn_weights"] is not False)
        for i, name, value in ((4, "need_weights", True), (6, "average_attn_weights", False)):
            if i < len(args):
                args[i] = value
            else:
                kwargs[name] = value
        query, key, value = given["query"], given["key"], given["value"]
        if not (query is key and key is value) or query.dim() != 3:
            raise MethodError("attention methods need batched self-attention (the same query, key and value)")
        if self.graph and not query.requires_grad:
            leaf = query.detach().requires_grad_(True)
            for i, name in enumerate(names[:3]):
                if i < len(args):
                    args[i] = leaf
                else:
                    kwargs[name] = leaf
        return tuple(args), kwargs

    def _mha_hook(self, site: AttentionSite):
        def hook(module: nn.Module, args: tuple, kwargs: dict, output: tuple) -> tuple:
            out, weights = output
            value = args[2] if len(args) > 2 else kwargs["value"]
            batch_first = getattr(module, "batch_first", False)
            value = value if batch_first else value.transpose(0, 1)
            self.calls.append(AttentionCall(site, weights, out, value.detach()))
            need, average = self._requests.pop(id(module))
            return out, ((weights.mean(dim=1) if average else weights) if need else None)

        return hook

    def _block_hook(self, module: nn.Module, _inputs: object, output: object) -> None:
        tokens = output[0] if isinstance(output, (tuple, list)) else output
        for call in reversed(self.calls):
            if call.site.block is module and call.block_output is None:
                call.block_output = tokens
                return

    @contextmanager
    def installed(self) -> Iterator[AttentionCapture]:
        timm_sites = [s for s in self.sites if s.kind == TIMM]
        mha_sites = [s for s in self.sites if s.kind == MHA]
        flags = [(s.module, s.module.fused_attn) for s in timm_sites]
        forward = [(s.module.attn_drop, self._timm_hook(s)) for s in timm_sites]
        if self.blocks:
            blocks = {id(s.block): s.block for s in self.sites}  # a block holding two attentions is hooked once
            forward += [(block, self._block_hook) for block in blocks.values()]
        try:
            for module, _ in flags:
                module.fused_attn = False
            with (
                installed(forward=forward),
                installed(
                    forward=[(s.module, self._mha_hook(s)) for s in mha_sites],
                    pre=[(s.module, self._mha_pre_hook) for s in mha_sites],
                    with_kwargs=True,
                ),
            ):
                yield self
        finally:
            for module, flag in flags:
                module.fused_attn = flag
            self.calls.clear()
            self._requests.clear()


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

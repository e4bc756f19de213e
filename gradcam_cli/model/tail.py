"""Running only the part of a network after one layer, for replaced copies of that layer's output.

Ablation-CAM asks for the class scores of hundreds of copies of one image whose hooked
layer output differs in one channel each. Re-running the whole network for every copy
repeats the part before the layer for nothing. `LayerTail` traces the model
with ``torch.fx`` (the hooked layer kept as one call), takes the nodes that depend on
the layer's output, and runs just those. Values from before the layer that the tail
still reads (a residual that skips over the layer, say) are computed once per batch
by the matching head graph and handed in.

Tracing fails on models with data-dependent Python control flow, and a traced tail can
mis-handle the batch size (a reshape that read it before the layer). Both are caught:
a tail that cannot be built, or that does not reproduce the model's own logits on the
first batch, is replaced by `WholeNetworkTail`, which re-runs the full network
with the layer's output swapped in by a hook: slower, never wrong.
"""

from __future__ import annotations

import inspect

import torch
import torch.fx as fx
from torch import nn

from .hooks import installed
from .outputs import logits_of


class _LayerTracer(fx.Tracer):
    """The default tracer, keeping ``path`` and the modules timm marks untraceable as single calls."""

    def __init__(self, path: str) -> None:
        try:
            from timm.layers import get_notrace_functions, get_notrace_modules

            self._leaf_types = tuple(get_notrace_modules())
            functions = tuple(f for f in get_notrace_functions() if callable(f))
        except ImportError:
            self._leaf_types, functions = (), ()
        super().__init__(autowrap_functions=functions)
        self.path = path

    def call_module(self, m: nn.Module, forward, args, kwargs):
        # Trace the module's own forward, not its __call__: hooks the caller put on the model must
        # not run on proxies. A hook that changes an output makes the tail disagree with the model,
        # and build_tail's check then falls back to whole forward passes.
        return super().call_module(m, m.forward, args, kwargs)

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if qualname == self.path or (self._leaf_types and isinstance(m, self._leaf_types)):
            return True
        return super().is_leaf_module(m, qualname)


def _closure(starts, neighbours) -> set[fx.Node]:
    """Every node reached from ``starts`` by following ``neighbours`` (``starts`` included)."""
    found: set[fx.Node] = set()
    stack = list(starts)
    while stack:
        node = stack.pop()
        if node not in found:
            found.add(node)
            stack.extend(neighbours(node))
    return found


def _reachable(starts: list[fx.Node]) -> set[fx.Node]:
    """Every node that reads, directly or not, one of ``starts`` (``starts`` excluded)."""
    return _closure([u for n in starts for u in n.users], lambda n: n.users)


def _ancestors(nodes: list[fx.Node]) -> set[fx.Node]:
    """``nodes`` and every node they read, directly or not."""
    return _closure(nodes, lambda n: n.all_input_nodes)


def _split(graph: fx.Graph, path: str) -> tuple[fx.Node, set[fx.Node], list[fx.Node]]:
    """The layer's node, the nodes the tail runs, and the earlier input-dependent values they read.

    Nodes that do not depend on the input at all (a parameter reshaped, say) are
    recomputed in the tail rather than handed in.
    """
    layer = [n for n in graph.nodes if n.op == "call_module" and n.target == path]
    if len(layer) != 1:
        raise ValueError(f"{path} is called {len(layer)} times in the traced graph")
    downstream = _reachable(layer)
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    dependent = _reachable(placeholders) | set(placeholders)
    constants = {n for n in _ancestors(list(downstream)) if n not in dependent and n.op != "get_attr"}
    tail = downstream | constants
    frontier = [
        n
        for n in graph.nodes
        if n not in tail and n is not layer[0] and n in dependent and any(u in downstream for u in n.users)
    ]
    return layer[0], tail, frontier


def _subgraph(graph: fx.Graph, inputs: list[fx.Node], keep: set[fx.Node], outputs: list[fx.Node] | None) -> fx.Graph:
    """A graph with ``inputs`` as placeholders and the ``keep`` nodes copied in order.

    No dead-code elimination: an in-place operation whose result nobody reads still matters.
    """
    sub = fx.Graph()
    env: dict[fx.Node, fx.Node] = {n: sub.placeholder(f"in_{i}") for i, n in enumerate(inputs)}
    for node in graph.nodes:
        if node in env:
            continue
        if node.op == "placeholder":
            if node in keep:  # keeping the default of an optional argument (timm's attn_mask=None, ...)
                default = node.args[0] if node.args else inspect.Signature.empty
                env[node] = sub.placeholder(node.name, default_value=default)
        elif node.op == "output":
            if outputs is None:
                sub.output(fx.map_arg(node.args[0], lambda a: env[a]))
        elif node in keep or node.op == "get_attr":
            env[node] = sub.node_copy(node, lambda a: env[a])
    if outputs is not None:
        sub.output(tuple(env[n] for n in outputs))
    return sub


class LayerTail:
    """The network after ``path``, as a traced graph sharing the model's modules (nothing is copied)."""

    def __init__(self, model: nn.Module, path: str, batch_dim: int = 0) -> None:
        self.batch_dim = batch_dim
        graph = _LayerTracer(path).trace(model)
        layer, tail, frontier = _split(graph, path)
        self.tail = fx.GraphModule(model, _subgraph(graph, [layer, *frontier], tail, None))
        self.head = fx.GraphModule(model, _subgraph(graph, [], _ancestors(frontier), frontier)) if frontier else None

    def frontier(self, inputs: torch.Tensor) -> tuple:
        """The earlier values the tail reads, for a whole input batch (one partial forward)."""
        return tuple(self.head(inputs)) if self.head is not None else ()

    def __call__(self, layer_output: torch.Tensor, frontier: tuple, image: int | None) -> torch.Tensor:
        """Logits for ``layer_output`` (n copies); ``image`` picks one image's frontier values, repeated.

        Frontier values are copied for every call: the tail may change them in place.
        """
        n = layer_output.shape[self.batch_dim]
        values = [_copies(v, image, n) for v in frontier]
        return self.tail(layer_output, *values)


def _copies(value: object, image: int | None, n: int) -> object:
    if not isinstance(value, torch.Tensor) or value.dim() == 0:
        return value
    if image is None:
        return value.clone()
    return value[image : image + 1].expand(n, *value.shape[1:]).clone()


class WholeNetworkTail:
    """The fallback: the full network on the image repeated, with the layer's output replaced by a hook."""

    def __init__(self, model: nn.Module, path: str, batch_dim: int = 0) -> None:
        self.model = model
        self.layer = model.get_submodule(path)
        self.batch_dim = batch_dim

    def frontier(self, inputs: torch.Tensor) -> tuple:
        return (inputs,)

    def __call__(self, layer_output: torch.Tensor, frontier: tuple, image: int | None) -> torch.Tensor:
        (inputs,) = frontier
        n = layer_output.shape[self.batch_dim]
        x = inputs if image is None else inputs[image : image + 1].expand(n, *inputs.shape[1:])
        with installed(forward=[(self.layer, lambda _m, _i, _o: layer_output)]):
            return self.model(x)


def build_tail(
    model: nn.Module,
    path: str,
    inputs: torch.Tensor,
    layer_output: torch.Tensor,
    logits: torch.Tensor,
    batch_dim: int = 0,
) -> LayerTail | WholeNetworkTail:
    """The fastest tail that reproduces ``logits`` from ``layer_output`` (for the batch ``inputs``).

    ``batch_dim`` is where the layer's output keeps the batch (1 for sequence-first tokens).
    """
    try:
        tail = LayerTail(model, path, batch_dim)
        frontier = tail.frontier(inputs)
        scale = logits.abs().max().item() + 1e-6
        whole = logits_of(tail(layer_output.clone(), frontier, None)).float()
        first = layer_output.narrow(batch_dim, 0, 1)
        pair = logits_of(tail(torch.cat([first, first], dim=batch_dim), frontier, 0)).float()
        close = (whole - logits).abs().max().item() <= 1e-4 * scale
        if close and (pair - logits[:1]).abs().max().item() <= 1e-4 * scale:
            return tail
    except Exception:  # untraceable model, or a tail that fails on the copies: fall back, never fail
        pass
    return WholeNetworkTail(model, path, batch_dim)

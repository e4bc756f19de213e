"""Guided Backpropagation (Springenberg et al. 2015) without touching the user's modules.

Instead of swapping activation modules, a forward hook puts a gradient hook on each
activation's output. While the gates are open, the gradient flowing back into an
activation is gated as ``max(grad, 0) * [y > 0]`` and then passes through the
activation's own derivative. For ReLU this is exactly the classic rule
``grad * [x > 0] * [grad > 0]``. For smooth activations (SiLU, GELU, Hardswish, Mish,
...) the same gate is applied, so negative gradients and negative inputs are
blocked there too; captum instead silently falls back to the plain gradient. Since
``sign(act(x)) == sign(x)`` for every gated activation, the output's sign stands in
for the input's, which in-place activations overwrite.

Activations called as functions (``F.relu`` inside a ``forward``) are not modules and
are not gated; pytorch-grad-cam and captum share that limit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

GATED_ACTIVATIONS = frozenset({
    "ReLU", "ReLU6", "LeakyReLU", "ELU", "CELU", "SELU", "SiLU", "Swish", "GELU", "GELUTanh",
    "QuickGELU", "Hardswish", "HardSwish", "Mish", "HardMish", "Softplus",
})
# Their derivative is already zero wherever the input is <= 0, so no mask is needed.
_SELF_MASKING = frozenset({"ReLU", "ReLU6"})


class GuidedGates:
    """Gradient gates on every activation of one forward pass; closed (inert) until opened."""

    def __init__(self) -> None:
        self.open = False
        self.gated = 0  # activations that carry a gate in this pass

    def _gate_output(self, module: nn.Module, _inputs: object, output: object) -> None:
        if not isinstance(output, torch.Tensor) or not output.requires_grad:
            return
        mask = None if type(module).__name__ in _SELF_MASKING else output.detach() > 0

        def gate(grad: torch.Tensor) -> torch.Tensor | None:
            if not self.open:
                return None
            gated = grad.clamp(min=0)
            return gated if mask is None else gated * mask

        output.register_hook(gate)
        self.gated += 1


def is_gated_activation(module: nn.Module) -> bool:
    """Whether Guided Backprop gates this module's output."""
    return type(module).__name__ in GATED_ACTIVATIONS


@contextmanager
def guided_gates(model: nn.Module) -> Iterator[GuidedGates]:
    """Install gates for the forward passes run inside the block; removes every hook on exit."""
    gates = GuidedGates()
    handles = [m.register_forward_hook(gates._gate_output) for m in model.modules() if is_gated_activation(m)]
    try:
        yield gates
    finally:
        for h in handles:
            h.remove()


@contextmanager
def gates_open(gates: GuidedGates) -> Iterator[None]:
    """Apply the guided rule to backward passes run inside the block."""
    gates.open = True
    try:
        yield
    finally:
        gates.open = False

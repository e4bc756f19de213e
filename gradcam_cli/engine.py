"""One forward and the backward passes it needs: activations, gradients, class maps.

The graph is recorded only from where gradients are needed: parameters are frozen
for the call and the hooked layer's output becomes the leaf of the graph (or the
input does, when a guided image is asked for). Hooks are removed and the graph is
released before returning.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from . import cam_math
from .errors import MethodError
from .guided import gates_open, guided_gates

METHODS = ("gradcam", "cam")
# Autocast dtypes for the forward pass; maps and gradients are reduced in float32 either way.
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass
class BatchExplanation:
    """What one batch yields; every tensor is detached and on the model's device."""

    logits: torch.Tensor  # (B, N) pre-softmax scores
    classes: torch.Tensor  # (B, K) explained class indices
    maps: dict[str, torch.Tensor]  # layer path -> (B, K, h, w) ReLU'd maps, not normalised
    guided: torch.Tensor | None  # (B, K, 3, H, W) guided-backprop input gradients


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


class _ActivationCapture:
    """Forward hooks that keep each hooked layer's output (and make it a graph leaf when needed)."""

    def __init__(self, layers: dict[str, nn.Module], make_leaf: bool) -> None:
        self.layers = layers
        self.make_leaf = make_leaf
        self.outputs: dict[str, torch.Tensor] = {}

    def _hook(self, path: str):
        def hook(_module: nn.Module, _inputs: object, output: object) -> object:
            if not isinstance(output, torch.Tensor):
                raise MethodError(f"--layer {path!r}: returns {type(output).__name__}, not a tensor")
            if path in self.outputs:
                raise MethodError(f"--layer {path!r}: runs more than once per forward pass; pick a block that runs once")
            if self.make_leaf and not output.requires_grad:
                # Recording starts here: nothing before this layer enters the graph.
                output = output.detach().requires_grad_(True)
                self.outputs[path] = output
                return output
            self.outputs[path] = output
            return None

        return hook

    @contextmanager
    def installed(self) -> Iterator["_ActivationCapture"]:
        handles = [m.register_forward_hook(self._hook(p)) for p, m in self.layers.items()]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()


def find_classifier(model: nn.Module, num_logits: int) -> nn.Linear:
    """The final fully connected layer: the last ``nn.Linear`` that produces the logits."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Linear) and head.out_features == num_logits:
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == num_logits]
    if not linears:
        raise MethodError("--method cam: the model has no linear classifier layer")
    return linears[-1]


def cam_class_weights(model: nn.Module, path: str, activations: torch.Tensor, logits: torch.Tensor,
                      classes: torch.Tensor) -> torch.Tensor:
    """Classifier rows for CAM, after checking that logits really are ``fc(mean(A))``.

    The check is numerical, so it holds for any architecture whose head is global
    average pooling then one linear layer, and refuses every other head.
    """
    fc = find_classifier(model, logits.shape[1])
    if activations.shape[1] != fc.in_features:
        raise MethodError(
            f"--method cam: layer {path!r} has {activations.shape[1]} channels but the classifier takes "
            f"{fc.in_features} features; CAM needs the layer right before global pooling"
        )
    with torch.no_grad():
        pooled = activations.float().mean(dim=(2, 3))
        predicted = nn.functional.linear(pooled, fc.weight.float(), None if fc.bias is None else fc.bias.float())
        gap = (predicted - logits.float()).abs().max().item()
        scale = logits.float().abs().max().item() + 1e-6
    # Under fp16/bf16 autocast the logits carry only a few significant digits.
    rel = max(1e-3, 8 * torch.finfo(logits.dtype).eps) if logits.dtype.is_floating_point else 1e-3
    if not gap <= rel * scale + 1e-4:
        raise MethodError(
            f"--method cam: the head after layer {path!r} is not global-average-pooling -> linear "
            f"(logits differ from fc(mean(A)) by up to {gap:.3g}); use --method gradcam"
        )
    return fc.weight[classes].to(activations.dtype)  # (B, C)


def check_cam_applies(model: nn.Module, layers: dict[str, nn.Module], input_size: tuple[int, int]) -> None:
    """Refuse ``--method cam`` up front, from one probe forward pass on a random image."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    probe = torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(0)).to(device)
    capture = _ActivationCapture(layers, make_leaf=False)
    with capture.installed(), torch.no_grad():
        logits = model(probe)
    zero = torch.zeros(1, dtype=torch.long, device=device)
    for path in layers:
        cam_class_weights(model, path, capture.outputs[path], logits, zero)


def input_memory_format(model: nn.Module) -> torch.memory_format:
    """The layout the model's first convolution weight uses, so the input can match it."""
    for p in model.parameters():
        if p.dim() == 4:
            if p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
                return torch.channels_last
            return torch.contiguous_format
    return torch.contiguous_format


def autocast_for(device: torch.device, precision: str):
    """The autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision not in PRECISIONS:
        raise MethodError(f"--precision {precision}: unknown; choose from {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    if not torch.amp.is_autocast_available(device.type):
        raise MethodError(f"--precision {precision}: mixed precision is not available on {device.type}")
    return torch.autocast(device_type=device.type, dtype=dtype)


def choose_classes(logits: torch.Tensor, classes: Sequence[int] | None, top_k: int) -> torch.Tensor:
    """``(B, K)`` class indices: the given ones for every image, else each image's top-k."""
    if classes:
        return torch.tensor(list(classes), device=logits.device).expand(logits.shape[0], -1)
    return logits.topk(min(top_k, logits.shape[1]), dim=1).indices


def explain_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: dict[str, nn.Module],
    *,
    classes: Sequence[int] | None = None,
    top_k: int = 1,
    method: str = "gradcam",
    guided: bool = False,
    precision: str = "fp32",
) -> BatchExplanation:
    """Class maps at ``layers`` for a ``(B, 3, H, W)`` batch from one forward pass.

    Backward passes: one per class to the hooked layers (Grad-CAM), plus one per class
    to the input under the guided rule when ``guided`` is set. ``model`` must be in eval mode.
    With ``precision`` ``fp16`` or ``bf16`` the forward pass runs under autocast; the
    map is still computed in float32 from the (lower precision) activations and gradients.
    """
    if method not in METHODS:
        raise MethodError(f"--method {method}: unknown; choose from {', '.join(METHODS)}")
    autocast = autocast_for(inputs.device, precision)
    inputs = inputs.contiguous(memory_format=input_memory_format(model))
    needs_layer_grads = method == "gradcam"
    capture = _ActivationCapture(layers, make_leaf=needs_layer_grads and not guided)
    with ExitStack() as stack:
        stack.enter_context(frozen_parameters(model))
        stack.enter_context(capture.installed())
        gates = stack.enter_context(guided_gates(model)) if guided else None
        stack.enter_context(torch.enable_grad() if (needs_layer_grads or guided) else torch.no_grad())
        x = inputs.detach().requires_grad_(True) if guided else inputs
        with autocast:
            logits = model(x)
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            raise MethodError("the model must return a (batch, classes) tensor of logits")
        chosen = choose_classes(logits.detach(), classes, top_k)
        acts = [capture.outputs[p] for p in layers]
        per_layer: dict[str, list[torch.Tensor]] = {p: [] for p in layers}
        guided_grads: list[torch.Tensor] = []
        k_count = chosen.shape[1]
        for k in range(k_count):
            score = logits.gather(1, chosen[:, k:k + 1]).sum()  # images are independent in eval mode
            last = k == k_count - 1
            if needs_layer_grads:
                grads = torch.autograd.grad(score, acts, retain_graph=guided or not last)
                for path, a, g in zip(layers, acts, grads):
                    per_layer[path].append(cam_math.grad_cam(a.detach().float(), g.float()))
            else:
                for path, a in zip(layers, acts):
                    weights = cam_class_weights(model, path, a.detach(), logits.detach(), chosen[:, k])
                    per_layer[path].append(cam_math.cam(a.detach().float(), weights.float()))
            if gates is not None:
                with gates_open(gates):
                    (g_in,) = torch.autograd.grad(score, x, retain_graph=not last)
                guided_grads.append(g_in.float())
        result = BatchExplanation(
            logits=logits.detach().float(),
            classes=chosen,
            maps={p: torch.stack(v, dim=1) for p, v in per_layer.items()},
            guided=torch.stack(guided_grads, dim=1) if guided else None,
        )
    capture.outputs.clear()
    return result

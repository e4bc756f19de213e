"""The passes of one batch: one forward pass, the backward passes it needs, then every requested method.

The forward pass records a graph only from where gradients are needed: parameters are
frozen for the call and the hooked layer's output becomes the leaf of the graph (or
the input does, when a guided image is asked for); with no gradient method and no
guided image it runs under ``torch.inference_mode``. What is explained is a *target*
(``targets/``: the class logit by default): its slots are chosen from the forward pass's
output, and one backward pass of each slot's score to the hooked layers serves every
gradient method. The methods then run under inference
mode on the recorded activations and gradients; those that need more forward passes
(Score-CAM, Ablation-CAM, occlusion) get them from `_Passes`, batched. Hooks are
removed and the graph is released before returning.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch
from torch import nn

from .capture import ActivationCapture, frozen_parameters, gates_open, guided_gates
from .errors import MethodError
from .maps.scale import normalize_minmax
from .methods import CLASSIFIER, GRADIENTS, INPUT_LAYER, get_method
from .methods.base import Evidence, to_map
from .model.device import autocast_for, input_memory_format, model_device, model_dtype
from .model.layout import CONV, one_image
from .model.outputs import logits_of
from .model.tail import build_tail
from .targets.base import Request, Slots, Target, as_target
from .targets.class_logit import ClassLogit

# pytorch-grad-cam's test-time augmentation: a horizontal flip times three input scalings.
AUGMENTATIONS = tuple((flip, factor) for flip in (False, True) for factor in (0.9, 1.0, 1.1))


@dataclass
class BatchExplanation:
    """What one batch yields; every tensor is detached and on the model's device."""

    logits: torch.Tensor | None  # (B, N) pre-softmax scores; None when the output has no class logits
    classes: torch.Tensor  # (B, K) explained class indices (-1: the slot explains no class)
    maps: dict[tuple[str, str], torch.Tensor]  # (method, layer) -> (B, K, h, w) ReLU'd maps, not normalised
    guided: torch.Tensor | None  # (B, K, 3, H, W) guided-backprop input gradients
    slots: Slots | None = None  # what the target explains in each image (counts, record fields)
    values: torch.Tensor | None = None  # (B, K) the target's score of each slot on the unperturbed batch
    probabilities: torch.Tensor | None = None  # (B, K) the probability a record shows, where the target has one
    target: str = "class"  # the target's name


@dataclass
class PassState:
    """What an explainer keeps between batches: the tails built for Ablation-CAM, per layer."""

    tails: dict = field(default_factory=dict)


def working_precision(t: torch.Tensor) -> torch.Tensor:
    """The methods' arithmetic: float32, or float64 for a float64 model (half precisions are widened)."""
    return t if t.dtype == torch.float64 else t.float()


def choose_classes(logits: torch.Tensor, classes: Sequence[int] | torch.Tensor | None, top_k: int) -> torch.Tensor:
    """``(B, K)`` class indices: a given ``(B, K)`` tensor, the given indices for every image, or the top-k."""
    if isinstance(classes, torch.Tensor):
        return classes
    if classes:
        return torch.tensor(list(classes), device=logits.device).expand(logits.shape[0], -1)
    return logits.topk(min(top_k, logits.shape[1]), dim=1).indices


def gradients_of(score: torch.Tensor, tensors: list[torch.Tensor], retain: bool) -> list[torch.Tensor]:
    """``d score / d tensor`` for each tensor; zero where the score does not depend on it (a detection that no
    longer matches, an empty mask)."""
    if not score.requires_grad:
        return [torch.zeros_like(t) for t in tensors]
    found = torch.autograd.grad(score, tensors, retain_graph=retain, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, found)]


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


def cam_class_weights(
    model: nn.Module, path: str, activations: torch.Tensor, logits: torch.Tensor, classes: torch.Tensor
) -> torch.Tensor:
    """Classifier rows ``(B, K, C)`` for CAM, after checking that logits really are ``fc(mean(A))``.

    The check is numerical, so it holds for any architecture whose head is global
    average pooling then one linear layer over this grid, and refuses every other head.
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
            f"--method cam: the head after layer {path!r} is not global-average-pooling -> linear"
            f"{_class_token_head(model)} (logits differ from fc(mean(A)) by up to {gap:.3g}); use --method gradcam"
        )
    return fc.weight.detach().float()[classes].to(activations.dtype)


def _class_token_head(model: nn.Module) -> str:
    """The reason a transformer's head is no GAP -> linear over the grid, when the model says it."""
    pool = getattr(model, "global_pool", None)
    reads_token = pool == "token" or (pool is None and isinstance(getattr(model, "class_token", None), torch.Tensor))
    return ": it reads the class token, not the mean of the grid tokens" if reads_token else ""


def cam_failures(
    model: nn.Module, layers: dict[str, nn.Module], input_size: tuple[int, int], layouts: dict | None = None
) -> dict[str, str]:
    """Why CAM does not apply at each layer where it does not (layer -> reason), from one probe forward pass on
    a random image."""
    device = model_device(model)
    probe = torch.randn(1, 3, *input_size, generator=torch.Generator().manual_seed(0)).to(device, model_dtype(model))
    capture = ActivationCapture(layers, make_leaf=False)
    failures = {}
    with capture.installed(), torch.inference_mode():
        logits = logits_of(model(probe))
        zero = torch.zeros(1, 1, dtype=torch.long, device=device)
        for path in layers:
            grid = (layouts or {}).get(path, CONV).to_grid(capture.outputs[path])
            try:
                cam_class_weights(model, path, grid, logits, zero)
            except MethodError as err:
                failures[path] = str(err)
    return failures


class _Passes:
    """The extra forward passes of Score-CAM, Ablation-CAM and occlusion, ``batch_size`` copies at a time."""

    def __init__(
        self,
        model: nn.Module,
        inputs: torch.Tensor,
        raw: dict[str, torch.Tensor],
        logits: torch.Tensor,
        layouts: dict,
        state: PassState,
        batch_size: int,
        precision: str,
        target: Target | None = None,
        slots: Slots | None = None,
    ) -> None:
        self.model, self.inputs, self.raw, self.logits = model, inputs, raw, logits
        self.layouts, self.state, self.batch_size, self.precision = layouts, state, batch_size, precision
        self.target, self.slots = target or ClassLogit(), slots
        self._frontiers: dict[str, tuple] = {}

    def _forward(self, fn, *args) -> torch.Tensor:
        with autocast_for(self.inputs.device, self.precision):
            return working_precision(logits_of(fn(*args)))

    def logits_for_inputs(self, x: torch.Tensor) -> torch.Tensor:
        fmt = input_memory_format(self.model)
        chunks = [
            self._forward(self.model, x[i : i + self.batch_size].contiguous(memory_format=fmt))
            for i in range(0, x.shape[0], self.batch_size)
        ]
        return torch.cat(chunks)

    def _scores(self, output: object, image: int, probability: bool) -> torch.Tensor:
        target = self.target.probability() if probability else self.target
        n = len(output) if isinstance(output, (list, tuple)) else _rows(output)
        return target.scores(output, self.slots, torch.full((n,), image, dtype=torch.long))

    def scores_for_inputs(self, x: torch.Tensor, image: int, probability: bool = False) -> torch.Tensor:
        """``(n, 3, H, W)`` copies of image ``image`` -> ``(n, K)`` the target's scores of its slots, in batches."""
        fmt = input_memory_format(self.model)
        outputs = []
        for i in range(0, x.shape[0], self.batch_size):
            with autocast_for(self.inputs.device, self.precision):
                output = self.model(x[i : i + self.batch_size].contiguous(memory_format=fmt))
            outputs.append(working_precision(self._scores(output, image, probability)))
        return torch.cat(outputs)

    def scores_after_layer(self, layer: str, image: int, grids: torch.Tensor) -> torch.Tensor:
        """``(n, C, h, w)`` replacements for ``layer``'s output on image ``image`` -> ``(n, K)`` target scores."""
        return torch.cat(
            [working_precision(self._scores(o, image, False)) for o in self._tail_outputs(layer, image, grids)]
        )

    def logits_after_layer(self, layer: str, image: int, grids: torch.Tensor) -> torch.Tensor:
        return torch.cat([working_precision(logits_of(o)) for o in self._tail_outputs(layer, image, grids)])

    def _tail_outputs(self, layer: str, image: int, grids: torch.Tensor) -> list:
        """The model's outputs for replaced copies of ``layer``'s output, ``batch_size`` at a time."""
        tail = self.state.tails.get(layer)
        layout = self.layouts.get(layer, CONV)
        if tail is None:
            tail = build_tail(self.model, layer, self.inputs, self.raw[layer], self.logits, layout.batch_dim)
            self.state.tails[layer] = tail
        if layer not in self._frontiers:
            self._frontiers[layer] = tail.frontier(self.inputs)
        original = one_image(layout, self.raw[layer], image)  # its prefix tokens are kept as they were
        raw = layout.from_grid(grids, original).to(self.raw[layer].dtype)
        b = layout.batch_dim
        outputs = []
        for i in range(0, raw.shape[b], self.batch_size):
            with autocast_for(self.inputs.device, self.precision):
                outputs.append(
                    tail(raw.narrow(b, i, min(self.batch_size, raw.shape[b] - i)), self._frontiers[layer], image)
                )
        return outputs


def _rows(output: object) -> int:
    """How many images an output is of: its first tensor's batch size (a tensor, a dict of tensors, a tuple)."""
    if isinstance(output, torch.Tensor):
        return output.shape[0]
    values = output.values() if isinstance(output, dict) else getattr(output, "values", lambda: [output])()
    for value in values:
        if isinstance(value, torch.Tensor):
            return value.shape[0]
    return logits_of(output).shape[0]


@dataclass
class _Forward:
    """What the recorded forward pass yields: the target's slots and scores, activations and gradients."""

    logits: torch.Tensor | None  # (B, N), where the output has class logits
    slots: Slots
    values: torch.Tensor  # (B, K) each slot's score, detached
    probabilities: torch.Tensor | None  # (B, K)
    raw: dict[str, torch.Tensor]
    grads: dict[str, list[torch.Tensor]]
    guided: torch.Tensor | None


def _record_forward(model, inputs, layers, infos, guided, target, request, precision, slots=None) -> _Forward:
    """The one forward pass and its backward passes: the target's slots (chosen here unless given) and
    scores, raw activations and gradients."""
    needs_grads = any(i.needs == GRADIENTS for i in infos)
    capture = ActivationCapture(layers, make_leaf=needs_grads and not guided)
    with ExitStack() as stack:
        stack.enter_context(frozen_parameters(model))
        stack.enter_context(capture.installed())
        gates = stack.enter_context(guided_gates(model)) if guided else None
        stack.enter_context(torch.enable_grad() if (needs_grads or guided) else torch.inference_mode())
        x = inputs.detach().requires_grad_(True) if guided else inputs
        with autocast_for(inputs.device, precision):
            output = model(x)
        if slots is None:
            slots = target.select(_detached(output), request)
        missing = [p for p in layers if p not in capture.outputs]
        if missing:
            raise MethodError(f"--layer {missing[0]!r}: did not run in the forward pass")
        raw = {p: capture.outputs[p] for p in layers}  # in the caller's order, not the order they ran
        values = target.scores(output, slots, torch.arange(inputs.shape[0]))  # (B, K)
        grads: dict[str, list[torch.Tensor]] = {p: [] for p in layers}
        guided_grads: list[torch.Tensor] = []
        for k in range(slots.per_image):
            score = values[:, k].sum()  # images are independent in eval mode
            last = k == slots.per_image - 1
            if needs_grads:
                for path, g in zip(layers, gradients_of(score, list(raw.values()), guided or not last)):
                    grads[path].append(g)
            if gates is not None:
                with gates_open(gates):
                    (g_in,) = gradients_of(score, [x], not last)
                guided_grads.append(g_in.float())
    detached = _detached(output)
    logits = target.logits(detached)
    return _Forward(
        working_precision(logits) if logits is not None else None,
        slots,
        working_precision(values.detach()),
        target.probabilities(detached, slots),
        {p: a.detach() for p, a in raw.items()},
        grads if needs_grads else {},
        torch.stack(guided_grads, dim=1) if guided and guided_grads else None,
    )


def _detached(output: object) -> object:
    """The model's output with every tensor in it detached (tensors, and lists, tuples and dicts of them)."""
    if isinstance(output, torch.Tensor):
        return output.detach()
    if isinstance(output, dict):
        return {k: _detached(v) for k, v in output.items()}
    if isinstance(output, (list, tuple)) and not hasattr(output, "_fields"):
        return type(output)(_detached(v) for v in output)
    return output


def _run_methods(
    model,
    inputs,
    layers,
    infos,
    forward: _Forward,
    target,
    layouts,
    state,
    settings,
    smooth,
    batch_size,
    precision,
    skip=frozenset(),
) -> dict[tuple[str, str], torch.Tensor]:
    """Every method on every layer (or on the input), under inference mode."""
    maps = {}
    logits, chosen = forward.logits, forward.slots.classes
    with torch.inference_mode():
        acts = {p: working_precision(layouts.get(p, CONV).to_grid(a)) for p, a in forward.raw.items()}
        grids = {
            p: torch.stack([working_precision(layouts.get(p, CONV).to_grid(g)) for g in gs], dim=1)
            for p, gs in forward.grads.items()
        }
        passes = _Passes(
            model, inputs, forward.raw, logits, layouts, state, batch_size, precision, target, forward.slots
        )
        for info in infos:
            for path in layers if info.uses_layer else [None]:
                if (info.name, path) in skip:
                    continue
                evidence = Evidence(
                    classes=chosen,
                    logits=logits,
                    layer=path,
                    activations=acts.get(path),
                    gradients=grids.get(path),
                    passes=passes,
                    settings=settings,
                    classifier_rows=(lambda p=path: cam_class_weights(model, p, acts[p], logits, chosen)),
                    scores=forward.values,
                )
                result = info.implementation().compute(evidence)
                smooth_eigen = smooth == "eigen" and info.channel_weighted
                maps[info.name, path or INPUT_LAYER] = to_map(result, acts.get(path), smooth_eigen)
    return maps


def explain_batch(
    model: nn.Module,
    inputs: torch.Tensor,
    layers: dict[str, nn.Module],
    *,
    classes: Sequence[int] | None = None,
    top_k: int = 1,
    methods: Sequence[str] = ("gradcam",),
    guided: bool = False,
    precision: str = "fp32",
    smooth: str | None = None,
    settings: dict | None = None,
    layouts: dict | None = None,
    batch_size: int = 32,
    state: PassState | None = None,
    skip: frozenset[tuple[str, str]] = frozenset(),
    target: Target | object | None = None,
    boxes: torch.Tensor | None = None,
) -> BatchExplanation:
    """Maps for a ``(B, 3, H, W)`` batch: every method at every layer, from one forward pass.

    ``model`` must be in eval mode. ``target`` is what is explained (``gradcam_cli.targets``; a `Target`, or a
    function of the model's output returning one score per image); by default the class logit of ``classes``
    (or of the ``top_k`` most likely classes). ``boxes``: ``(B, K, 4)`` boxes a detection target explains.
    ``smooth="aug"`` averages the maps over six augmented
    copies (flip x three input scalings), each brought back to the original geometry;
    ``smooth="eigen"`` takes the first principal component of the weighted activations
    instead of their sum. ``batch_size`` bounds the perturbed copies per extra forward pass.
    ``layouts`` maps a layer path to how its output is laid out (``model/layout.py``;
    ``model.layers.layer_layouts`` detects them); a layer without one is read as ``(B, C, h, w)``.
    ``skip``: (method, layer) pairs not to compute (CAM at a layer its head does not follow).
    """
    infos = [get_method(m) for m in dict.fromkeys(methods)]
    target = ClassLogit() if target is None else as_target(target)
    autocast_for(inputs.device, precision)  # refuses an unknown or unsupported precision before any work
    if any(i.uses_layer for i in infos) and not layers:
        raise MethodError("no layer to hook: give at least one layer")
    _check_target(target, infos, smooth)
    inputs = inputs.contiguous(memory_format=input_memory_format(model))
    layers = layers if any(i.uses_layer for i in infos) else {}
    common = dict(layers=layers, infos=infos, precision=precision, target=target)
    run = dict(
        layouts=layouts or {},
        state=state or PassState(),
        settings=settings or {},
        smooth=smooth,
        batch_size=batch_size,
        skip=skip,
    )
    with target.around(model):
        forward = _record_forward(model, inputs, guided=guided, request=Request(classes, top_k, boxes), **common)
        maps = _run_methods(model, inputs, forward=forward, **common, **run) if forward.slots.per_image else {}
        if smooth == "aug" and maps:
            maps = _augmented_average(model, inputs, forward.slots, maps, common, run)
    return BatchExplanation(
        logits=forward.logits,
        classes=forward.slots.classes,
        maps=maps,
        guided=forward.guided,
        slots=forward.slots,
        values=forward.values,
        probabilities=forward.probabilities,
        target=target.name,
    )


def _check_target(target: Target, infos, smooth: str | None) -> None:
    """Refuse the methods and smoothing that the target cannot serve."""
    if any(i.needs == CLASSIFIER for i in infos) and not target.class_logit:
        raise MethodError(
            f"--method cam: its classifier weights explain a class logit (--target class), not the {target.name} target"
        )
    if smooth == "aug" and target.geometric:
        raise MethodError(
            f"--smooth aug: the {target.name} target's boxes and masks would not follow the flipped copies"
        )


def _augmented_average(model, inputs, slots, plain, common, run) -> dict[tuple[str, str], torch.Tensor]:
    """Test-time augmentation: each augmented map min-max scaled, flipped back, averaged."""
    total = {key: torch.zeros_like(m) for key, m in plain.items()}
    for flip, factor in AUGMENTATIONS:
        if flip or factor != 1.0:
            x = inputs * factor
            x = x.flip(-1) if flip else x
            forward = _record_forward(model, x, guided=False, request=Request(), slots=slots, **common)
            maps = _run_methods(model, x, forward=forward, **common, **run)
        else:
            maps = plain
        for key, m in maps.items():
            total[key] += normalize_minmax(m.flip(-1) if flip else m)[0]
    return {key: t / len(AUGMENTATIONS) for key, t in total.items()}

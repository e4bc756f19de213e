"""The passes of one batch: one forward pass, the backward passes it needs, then every requested method.

The forward pass records a graph only from where gradients are needed: parameters are
frozen for the call and the hooked layer's output becomes the leaf of the graph (or
the input does, when a guided image is asked for); with no gradient method and no
guided image it runs under ``torch.inference_mode``. What is explained is a *target*
(``targets/``: the class logit by default): its slots are chosen from the forward pass's
output, and one backward pass of each slot's score to the hooked layers serves every
gradient method. The transformer-native methods and Input x Gradient take their attention
probabilities and gradients from the same pass (`PassExtras`). The methods then run under
inference mode on the recorded activations and gradients; those that need more passes get
them from `_Passes`: forward passes of perturbed copies (Score-CAM, SS-CAM, IS-CAM,
Ablation-CAM, occlusion), batched; forward and backward passes of copies of the input
(Integrated Gradients, SmoothGrad, VarGrad, Smooth Grad-CAM++); backward passes of their own
on the shared forward pass's graph, which is then kept until the methods are done (Finer-CAM's
score, Shapley-CAM's Hessian-vector products); a pass through the whole network with the
gradient at every bias (FullGrad). Hooks are removed and the graph is released before
returning.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from .capture import ActivationCapture, BiasGradients, bias_sites, frozen_parameters, gates_open, guided_gates
from .errors import MethodError
from .maps.scale import normalize_minmax
from .methods import (
    ATTENTION_LAYER,
    CLASS_SCORE_NEEDS,
    CLASSIFIER,
    FULL_GRADIENTS,
    GRADIENTS,
    OWN_SCORE_GRADIENTS,
    SECOND_ORDER,
    fused_layer,
    get_method,
)
from .methods.base import Evidence, gaussian_noise, to_map
from .model.device import autocast_for, input_memory_format, model_device, model_dtype
from .model.layout import CONV, Tokens, one_image
from .model.outputs import logits_of
from .model.tail import build_tail
from .pass_extras import PassExtras
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
    layouts: dict = field(default_factory=dict)  # the token layout of maps on no hooked layer ("attention")


@dataclass
class RecordedGraph:
    """The shared forward pass's autograd graph, kept for methods that run backward passes of their own."""

    logits: torch.Tensor  # (B, N) as the model returned them, with their graph
    classes: torch.Tensor  # (B, K) the explained classes
    activations: dict[str, torch.Tensor]  # each hooked layer's output as recorded (the graph's leaves)
    inputs: torch.Tensor | None = None  # the input, a leaf, when the graph reaches it (FullGrad's)
    biases: BiasGradients | None = None  # the gradient hooks at every bias site, then


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
    """The methods' own passes: forward passes of perturbed copies (``batch_size`` at a time), forward and
    backward passes of copies of the input (the input attributions), backward passes on the shared forward pass's
    graph, passes of noisy copies, and FullGrad's pass through the whole network."""

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
        layers: dict[str, nn.Module] | None = None,
        graph: RecordedGraph | None = None,
    ) -> None:
        self.model, self.inputs, self.raw, self.logits = model, inputs, raw, logits
        self.layouts, self.state, self.batch_size, self.precision = layouts, state, batch_size, precision
        self.target, self.slots = target or ClassLogit(), slots
        self.layers, self.graph = layers or {}, graph
        self._frontiers: dict[str, tuple] = {}
        self._noisy: dict[tuple, dict[str, list]] = {}

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

    def input_gradients(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` inputs, ``(n, K)`` classes -> ``(n, K, 3, H, W)`` gradients of each class's logit with
        respect to the input: per batch one forward and K backward passes of the whole network, parameters frozen
        (no ``.grad`` is written, no weight gradient computed)."""
        fmt, chunks = input_memory_format(self.model), []
        with torch.inference_mode(False), torch.enable_grad(), frozen_parameters(self.model):
            for i in range(0, x.shape[0], self.batch_size):
                # A clone outside inference mode is an ordinary tensor, which autograd can differentiate.
                xi = x[i : i + self.batch_size].clone().contiguous(memory_format=fmt).requires_grad_(True)
                ci = classes[i : i + self.batch_size].clone()
                logits, last = self._forward(self.model, xi), ci.shape[1] - 1
                scores = [logits.gather(1, ci[:, k : k + 1]).sum() for k in range(ci.shape[1])]
                grads = [torch.autograd.grad(score, xi, retain_graph=k < last)[0] for k, score in enumerate(scores)]
                chunks.append(working_precision(torch.stack(grads, dim=1)))
        return torch.cat(chunks)

    def _grid(self, layer: str, t: torch.Tensor) -> torch.Tensor:
        return working_precision(self.layouts.get(layer, CONV).to_grid(t))

    def layer_gradients(self, layer: str, directions: torch.Tensor) -> torch.Tensor:
        """``(B, K, N)`` -> ``(B, K, C, h, w)``: the gradient of ``sum_n directions[b, k, n] y_n`` at ``layer``
        (one backward pass per k, from the logits, on the kept graph)."""
        graph = self.graph
        grads = []
        with torch.inference_mode(False), torch.enable_grad():
            for k in range(directions.shape[1]):
                weights = directions[:, k].clone().to(graph.logits.dtype)
                (g,) = torch.autograd.grad(graph.logits, graph.activations[layer], weights, retain_graph=True)
                grads.append(self._grid(layer, g))
        return torch.stack(grads, dim=1)

    def hessian_vector_products(self, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g, H A)`` per explained class, each ``(B, K, C, h, w)``, on the kept graph. Where the score is
        linear in the layer (a ReLU network's logit) the gradient has no graph and the product is zero."""
        graph, live = self.graph, self.graph.activations[layer]
        grads, products = [], []
        with torch.inference_mode(False), torch.enable_grad():
            for k in range(graph.classes.shape[1]):
                score = graph.logits.gather(1, graph.classes[:, k : k + 1]).sum()
                (g,) = torch.autograd.grad(score, live, create_graph=True, retain_graph=True)
                hvp = None
                if g.requires_grad:
                    (hvp,) = torch.autograd.grad(g, live, live.detach(), retain_graph=True, allow_unused=True)
                grads.append(self._grid(layer, g.detach()))
                products.append(self._grid(layer, hvp) if hvp is not None else torch.zeros_like(grads[-1]))
        return torch.stack(grads, dim=1), torch.stack(products, dim=1)

    def full_gradients(self, classes: torch.Tensor, on_bias_gradient: Callable, exact_types: bool = False):
        """``(B, K, 3, H, W)`` input gradients of each class's score; ``on_bias_gradient(k, bias, gradient)`` for
        every bias site (``capture.bias_sites``) as the backward pass of class k reaches it. On the shared forward
        pass's graph where it reaches the input (no other method made a layer its leaf), else from a pass of its
        own."""
        wanted = {site.name for site in bias_sites(self.model, exact_types)}
        grads = []
        with ExitStack() as stack:
            for context in (torch.inference_mode(False), torch.enable_grad(), frozen_parameters(self.model)):
                stack.enter_context(context)
            classes = classes.clone()  # not an inference tensor: gather saves it for the backward pass
            if self.graph is not None and self.graph.inputs is not None:
                x, logits, capture = self.graph.inputs, self.graph.logits, self.graph.biases
            else:
                capture = stack.enter_context(BiasGradients(bias_sites(self.model)).installed())
                x = self.inputs.detach().clone().requires_grad_(True)
                with autocast_for(x.device, self.precision):
                    logits = logits_of(self.model(x))
            for k in range(classes.shape[1]):

                def arrived(site, gradient, k=k) -> None:
                    if site.name in wanted:  # the convention's sites: every site is hooked, for either
                        on_bias_gradient(k, site.bias, gradient)

                capture.on_gradient = arrived
                score = logits.gather(1, classes[:, k : k + 1]).sum()
                (g,) = torch.autograd.grad(score, x, retain_graph=k < classes.shape[1] - 1)
                grads.append(working_precision(g))
        return torch.stack(grads, dim=1)

    def noisy_gradients(self, layer: str, classes: torch.Tensor, samples: int, std: float, seed: int) -> list:
        """For each noisy copy of the batch (the input plus ``std`` times `gaussian_noise` keyed by the sample,
        the same for every image), ``layer``'s ``(B, C, h, w)`` activations and ``(B, K, C, h, w)`` gradients
        of each class's score. One forward and K backward passes per copy serve every hooked layer."""
        key = (samples, std, seed)
        if key not in self._noisy:
            self._noisy[key] = self._noisy_passes(classes, samples, std, seed)
        return self._noisy[key][layer]

    def _noisy_passes(self, classes: torch.Tensor, samples: int, std: float, seed: int) -> dict[str, list]:
        capture = ActivationCapture(self.layers, make_leaf=True)
        out: dict[str, list] = {p: [] for p in self.layers}
        with ExitStack() as stack:
            for context in (torch.inference_mode(False), torch.enable_grad(), frozen_parameters(self.model)):
                stack.enter_context(context)
            stack.enter_context(capture.installed())
            classes = classes.clone()  # not an inference tensor: gather saves it for the backward pass
            for sample in range(samples):
                noise = gaussian_noise(seed, (sample,), tuple(self.inputs.shape[1:])) * std
                with autocast_for(self.inputs.device, self.precision):
                    logits = logits_of(self.model(self.inputs + noise.to(self.inputs.device, self.inputs.dtype)))
                acts = dict(capture.outputs)
                capture.outputs.clear()  # the next copy's forward pass records its own
                grads = [
                    torch.autograd.grad(
                        logits.gather(1, classes[:, k : k + 1]).sum(),
                        list(acts.values()),
                        retain_graph=k < classes.shape[1] - 1,
                    )
                    for k in range(classes.shape[1])
                ]
                for i, (path, a) in enumerate(acts.items()):
                    g = torch.stack([self._grid(path, per_class[i]) for per_class in grads], dim=1)
                    out[path].append((self._grid(path, a.detach()), g))
        return out

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
    found: dict = field(default_factory=dict)  # what `PassExtras` recorded: attention, input gradients
    graph: RecordedGraph | None = None  # kept for the methods that run backward passes of their own


def _record_forward(model, inputs, layers, infos, guided, target, request, precision, slots=None) -> _Forward:
    """The one forward pass and its backward passes: the target's slots (chosen here unless given) and
    scores, raw activations and gradients, and the graph itself when a method runs backward passes of its own."""
    needs_grads = any(i.needs == GRADIENTS for i in infos)
    extras = PassExtras(model, infos)  # attention and input gradients, for the methods that take no layer
    keep = any(i.needs in (OWN_SCORE_GRADIENTS, SECOND_ORDER) for i in infos)
    # FullGrad back-propagates to the input: this pass serves it where no layer is made the graph's leaf.
    whole = any(i.needs == FULL_GRADIENTS for i in infos) and not (needs_grads or keep or guided)
    capture = ActivationCapture(layers, make_leaf=(needs_grads or keep) and not guided)
    with ExitStack() as stack:
        stack.enter_context(frozen_parameters(model))
        stack.enter_context(capture.installed())
        stack.enter_context(extras.installed())
        gates = stack.enter_context(guided_gates(model)) if guided else None
        biases = stack.enter_context(BiasGradients(bias_sites(model)).installed()) if whole else None
        recording = needs_grads or guided or keep or whole or extras.graph
        stack.enter_context(torch.enable_grad() if recording else torch.inference_mode())
        if any(i.needs == SECOND_ORDER for i in infos):
            stack.enter_context(_differentiable_twice())
        x = inputs.detach().requires_grad_(True) if (guided or extras.input_leaf) else inputs
        x = inputs.detach().clone().requires_grad_(True) if whole else x
        with autocast_for(inputs.device, precision):
            output = model(x)
        capture.stop()  # later passes over parts of the model (LeGrad's head) are not this forward pass
        if slots is None:
            slots = target.select(_detached(output), request)
        if infos_need_class_scores(infos):
            extras.record(x, logits_of(output), slots.classes)  # keeps the graph for the layer gradients below
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
                for path, g in zip(layers, gradients_of(score, list(raw.values()), guided or keep or not last)):
                    grads[path].append(g)
            if gates is not None:
                with gates_open(gates):
                    (g_in,) = gradients_of(score, [x], keep or not last)
                guided_grads.append(g_in.float())
        graph = RecordedGraph(logits_of(output), slots.classes, dict(raw)) if keep else None
        graph = RecordedGraph(logits_of(output), slots.classes, {}, inputs=x, biases=biases) if whole else graph
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
        extras.evidence(working_precision),
        graph,
    )


def _differentiable_twice():
    """Scaled dot-product attention by its plain formula for this pass: the fused CPU kernels have no second
    derivative, which Shapley-CAM's Hessian-vector products need. A context of torch's; the model is not touched."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


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
    """Every method on every layer (or on the input, the attention, or all the layers at once), under inference
    mode."""
    maps = {}
    with torch.inference_mode():
        acts = {p: working_precision(layouts.get(p, CONV).to_grid(a)) for p, a in forward.raw.items()}
        grids = {
            p: torch.stack([working_precision(layouts.get(p, CONV).to_grid(g)) for g in gs], dim=1)
            for p, gs in forward.grads.items()
        }
        passes = _Passes(
            model, inputs, forward.raw, forward.logits, layouts, state, batch_size, precision, target,
            forward.slots, layers, forward.graph,
        )  # fmt: skip
        evidence = _EvidenceOf(model, forward, acts, grids, passes, settings)
        for info in infos:
            for path in _method_paths(info, layers):
                if (info.name, path) in skip:
                    continue
                given = evidence(path)
                if info.fuses_layers:
                    given = replace(given, layer_evidence=[evidence(p) for p in layers])
                result = info.implementation().compute(given)
                smooth_eigen = smooth == "eigen" and info.channel_weighted
                maps[info.name, path or info.map_layer] = to_map(result, acts.get(path), smooth_eigen)
    return maps


@dataclass
class _EvidenceOf:
    """What a method is given at one layer (or None: the input or the attention), from one recorded pass."""

    model: nn.Module
    forward: _Forward
    activations: dict[str, torch.Tensor]
    gradients: dict[str, torch.Tensor]
    passes: _Passes
    settings: dict

    def __call__(self, path: str | None) -> Evidence:
        model, logits, chosen, acts = self.model, self.forward.logits, self.forward.slots.classes, self.activations
        return Evidence(
            classes=chosen,
            logits=logits,
            layer=path,
            activations=acts.get(path),
            gradients=self.gradients.get(path),
            passes=self.passes,
            settings=self.settings,
            classifier_rows=(lambda p=path: cam_class_weights(model, p, acts[p], logits, chosen)),
            scores=self.forward.values,
            **self.forward.found,
        )


def _method_paths(info, layers: dict) -> list[str | None]:
    """Where a method's maps go: every layer, the input or the attention (None), or one map fused from all the
    layers."""
    if not info.uses_layer:
        return [None]
    return [fused_layer(layers)] if info.fuses_layers else list(layers)


def infos_need_class_scores(infos) -> bool:
    """Whether any method takes what `PassExtras` records (attention, input gradients)."""
    return any(i.needs in CLASS_SCORE_NEEDS and not i.uses_layer for i in infos)


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
    _check_request(target, infos, layers, smooth, inputs, precision)
    inputs = inputs.contiguous(memory_format=input_memory_format(model))
    layers = layers if any(i.uses_layer for i in infos) else {}
    common = dict(layers=layers, infos=infos, precision=precision, target=target)
    run = dict(layouts=layouts or {}, state=state or PassState(), settings=settings or {}, smooth=smooth)
    run.update(batch_size=batch_size, skip=skip)
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
        layouts=_found_layouts(forward.found),
    )


def _found_layouts(found: dict) -> dict:
    """The token layout of the attention maps, where there are any."""
    attention = found.get("attention")
    return {ATTENTION_LAYER: Tokens(attention.grid, attention.prefix)} if attention is not None else {}


def _check_request(target: Target, infos, layers, smooth: str | None, inputs: torch.Tensor, precision: str) -> None:
    """Refuse, before any work, an unknown precision, layer methods without a layer, and the methods and
    smoothing that the target cannot serve."""
    autocast_for(inputs.device, precision)  # refuses an unknown or unsupported precision
    if any(i.uses_layer for i in infos) and not layers:
        raise MethodError("no layer to hook: give at least one layer")
    if any(i.needs == CLASSIFIER for i in infos) and not target.class_logit:
        raise MethodError(
            f"--method cam: its classifier weights explain a class logit (--target class), not the {target.name} target"
        )
    own = [i.name for i in infos if i.needs in CLASS_SCORE_NEEDS]
    if own and not target.class_logit:
        raise MethodError(
            f"--method {own[0]}: its own passes explain a class logit (--target class), not the {target.name} target"
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

"""What the transformer-native and input-gradient methods take from the shared forward pass.

Rollout needs every block's attention probabilities; Chefer's rule also needs the gradient of each explained
class score with respect to them; LeGrad the gradient of each block's own class score (the model's head applied
to the mean of the block's tokens) with respect to that block's probabilities; Input x Gradient the gradient of
each class score with respect to the input. All of them come from the one forward pass the other methods use,
and their backward passes run before the layer gradients', which may release the graph.

The class score is the explained class's pre-softmax logit, as for every gradient method of the passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import nn

from .capture import AttentionCall, AttentionCapture
from .errors import MethodError
from .methods import ATTENTION_GRADIENTS, ATTENTION_NEEDS, BLOCK_SCORE_GRADIENTS, INPUT_GRADIENTS, MethodInfo
from .methods.base import AttentionEvidence
from .model.attention import (
    MHA,
    check_multihead,
    mha_probability_gradients,
    reads_class_token,
    require_sites,
    token_layout,
    token_scores,
)


class PassExtras:
    """The attention capture and input leaf of one forward pass, and the backward passes they need."""

    def __init__(self, model: nn.Module, infos: list[MethodInfo]) -> None:
        needs = {i.needs for i in infos}
        attention = [i.name for i in infos if i.needs in ATTENTION_NEEDS]
        self.model = model
        self.method = attention[0] if attention else None  # named in messages
        self.score_gradients = ATTENTION_GRADIENTS in needs
        self.block_gradients = BLOCK_SCORE_GRADIENTS in needs
        self.input_leaf = INPUT_GRADIENTS in needs
        self.capture = None
        if attention:
            sites = require_sites(model, self.method)
            for site in sites:
                if site.kind == MHA:
                    check_multihead(site.module, site.path, self.method)
            self.capture = AttentionCapture(sites, graph=self.graph, blocks=self.block_gradients)
        self.found: dict = {}

    @property
    def graph(self) -> bool:
        """Whether the forward pass must record an autograd graph for these methods."""
        return self.score_gradients or self.block_gradients or self.input_leaf

    @contextmanager
    def installed(self) -> Iterator[PassExtras]:
        with self.capture.installed() if self.capture is not None else nullcontext():
            yield self

    def record(self, x: torch.Tensor, logits: torch.Tensor, chosen: torch.Tensor) -> None:
        """The probabilities and gradients, detached, while the graph lives (call inside `installed`)."""
        if self.capture is None and not self.input_leaf:
            return
        calls = self._checked_calls(logits.shape[0]) if self.capture is not None else []
        per_class: list[list[torch.Tensor]] = []
        for k in range(chosen.shape[1]):
            score = logits.gather(1, chosen[:, k : k + 1]).sum()  # images are independent in eval mode
            targets = ([x] if self.input_leaf else []) + ([c.target for c in calls] if self.score_gradients else [])
            if targets:
                grads = torch.autograd.grad(score, targets, retain_graph=True, allow_unused=True)
                per_class.append([_zero_if_none(g, t) for g, t in zip(grads, targets)])
        if self.input_leaf:
            self.found["input_gradients"] = torch.stack([g[0] for g in per_class], dim=1)
        if calls:
            skip = int(self.input_leaf)
            score_grads = [[_of_probabilities(c, g[skip + i]) for g in per_class] for i, c in enumerate(calls)]
            self.found["attention"] = self._attention(calls, x, score_grads if self.score_gradients else None, chosen)

    def _checked_calls(self, batch: int) -> list[AttentionCall]:
        calls = list(self.capture.calls)
        if not calls:
            raise MethodError(f"--method {self.method}: no attention module ran in the forward pass")
        tokens = calls[0].probabilities.shape[-1]
        for c in calls:
            shape = tuple(c.probabilities.shape)
            if len(shape) != 4 or shape[0] != batch or shape[-2:] != (tokens, tokens):
                raise MethodError(
                    f"--method {self.method}: attention {c.site.path!r} gives probabilities of shape {shape}; it "
                    f"needs one sequence of {tokens} tokens per image through every block (a ViT-style transformer, "
                    "not windows or pooled stages)"
                )
        return calls

    def _attention(self, calls, x, score_grads, chosen) -> AttentionEvidence:
        layout = token_layout(self.model, calls[0].probabilities.shape[-1], tuple(x.shape[-2:]), self.method)
        return AttentionEvidence(
            probabilities=[c.probabilities.detach() for c in calls],
            grid=layout.grid,
            prefix=layout.prefix,
            class_token=reads_class_token(self.model) and layout.prefix > 0,
            gradients=[torch.stack(g, dim=1) for g in score_grads] if score_grads is not None else None,
            layer_gradients=self._block_score_gradients(calls, chosen) if self.block_gradients else None,
        )

    def _block_score_gradients(self, calls: list[AttentionCall], chosen: torch.Tensor) -> list[torch.Tensor]:
        """Per block, ``(B, K, H, T, T)``: d (the block's own score of class k) / d its probabilities."""
        project = token_scores(self.model)
        if project is None:
            raise MethodError(
                f"--method {self.method}: the model's head cannot score a block's tokens (needs timm's forward_head "
                "and norm, or torchvision ViT's encoder.ln and heads)"
            )
        found = []
        for c in calls:
            if c.block_output is None or c.block_output.dim() != 3:
                raise MethodError(f"--method {self.method}: the block of {c.site.path!r} returns no (B, T, C) tokens")
            scores = project(c.block_output)
            per_class = []
            for k in range(chosen.shape[1]):
                (g,) = torch.autograd.grad(
                    scores.gather(1, chosen[:, k : k + 1]).sum(), [c.target], retain_graph=True, allow_unused=True
                )
                per_class.append(_of_probabilities(c, _zero_if_none(g, c.target)))
            found.append(torch.stack(per_class, dim=1))
        return found

    def evidence(self, precision: Callable[[torch.Tensor], torch.Tensor]) -> dict:
        """``Evidence`` fields (``attention``, ``input_gradients``), in the methods' working ``precision``."""
        out = dict(self.found)
        if "input_gradients" in out:
            out["input_gradients"] = precision(out["input_gradients"])
        attention = out.get("attention")
        if attention is not None:
            attention.probabilities = [precision(p) for p in attention.probabilities]
            for name in ("gradients", "layer_gradients"):
                values = getattr(attention, name)
                if values is not None:
                    setattr(attention, name, [precision(v) for v in values])
        return out


def _zero_if_none(gradient: torch.Tensor | None, target: torch.Tensor) -> torch.Tensor:
    """A target the score does not depend on has a zero gradient."""
    return (torch.zeros_like(target) if gradient is None else gradient).detach()


def _of_probabilities(call: AttentionCall, gradient: torch.Tensor) -> torch.Tensor:
    """``(B, H, T, T)`` the gradient with respect to the probabilities, from that with respect to the call's
    target (the probabilities themselves, or ``nn.MultiheadAttention``'s output)."""
    if call.site.kind != MHA:
        return gradient
    batch_first = gradient if getattr(call.site.module, "batch_first", False) else gradient.transpose(0, 1)
    with torch.no_grad():
        return mha_probability_gradients(call.site.module, batch_first, call.value)

"""Ablation-CAM (Desai & Ramaswamy 2020): the weight of channel k is the relative drop of the class
score (the target's score) when channel k of the layer's output is set to zero, ``(y^c - y^c_k) / y^c``.

Only the part of the network after the layer runs for the ablated copies (see
``model/tail.py``), ``batch_size`` copies at a time, so memory is bounded by the batch,
not by the number of channels. pytorch-grad-cam deviates where a layer's output has
negative values: it writes ``min - 1e7`` instead of zero; ``ablation_value="min-1e7"``
reproduces that for a single ablated copy.
"""

from __future__ import annotations

import torch

from .base import ChannelWeights, Evidence


def ablated_copies(activations: torch.Tensor, channels: torch.Tensor, value: str = "zero") -> torch.Tensor:
    """``(C, h, w)`` -> ``(n, C, h, w)``: one copy per entry of ``channels`` with that channel ablated."""
    copies = activations[None].repeat(channels.shape[0], 1, 1, 1)
    fill = 0.0
    if value == "min-1e7" and activations.min() != 0:
        fill = activations.min().item() - 1e7
    copies[torch.arange(channels.shape[0]), channels] = fill
    return copies


def ablated_scores(evidence: Evidence, image: int, value: str = "zero") -> torch.Tensor:
    """``(C, K)`` target scores of the image with each channel ablated in turn."""
    passes = evidence.passes
    acts = evidence.activations[image]
    classes = evidence.classes[image]
    channels = acts.shape[0]
    out = torch.empty(channels, classes.shape[0], device=acts.device, dtype=acts.dtype)
    for start in range(0, channels, passes.batch_size):
        index = torch.arange(start, min(start + passes.batch_size, channels), device=acts.device)
        scores = passes.scores_after_layer(evidence.layer, image, ablated_copies(acts, index, value))
        out[index] = scores.to(out.dtype)
    return out


def weights(evidence: Evidence, value: str = "zero") -> torch.Tensor:
    """``(B, K, C)`` relative score drops; zero where the class score itself is zero."""
    ablated = torch.stack([ablated_scores(evidence, b, value) for b in range(evidence.classes.shape[0])])
    original = evidence.scores[:, None, :]  # (B, 1, K): the target's scores of the unperturbed images
    drop = (original - ablated) / torch.where(original != 0, original, 1.0)
    drop = torch.where(original != 0, drop, 0.0)
    return drop.transpose(1, 2)


def compute(evidence: Evidence) -> ChannelWeights:
    return ChannelWeights(weights(evidence, evidence.settings.get("ablation_value", "zero")))

"""FEM, the Feature Explanation Method (Fuad et al. 2020): a channel's weight is the share of its positions
that stand out, above ``mean + k * std`` of that channel (k = 2, the k-sigma rule); the map is the weighted
channel sum. It needs no gradient and no class: every class of an image gets the same map.

The mean and the (population) standard deviation are taken over each channel's positions, as in
pytorch-grad-cam, in float64: a position within rounding of the threshold would otherwise flip.
"""

from __future__ import annotations

import torch

from .base import ChannelWeights, Evidence, Saliency, to_map

SIGMAS = 2.0


def weights(activations: torch.Tensor, k: float = SIGMAS) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, C)``: the share of each channel's positions above its mean plus k deviations."""
    a = activations.double().flatten(2)
    threshold = a.mean(dim=2, keepdim=True) + k * a.std(dim=2, correction=0, keepdim=True)
    return (a > threshold).double().mean(dim=2).to(activations.dtype)


def compute(evidence: Evidence) -> Saliency:
    """One map per image (the channel sum, as for channel weights), the same for each of its classes."""
    acts = evidence.activations
    w = weights(acts, evidence.settings.get("fem_sigmas", SIGMAS))
    return Saliency(to_map(ChannelWeights(w[:, None]), acts).expand(-1, evidence.classes.shape[1], -1, -1))

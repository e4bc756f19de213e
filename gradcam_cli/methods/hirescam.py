"""HiResCAM (Draelos & Carin 2020): the gradient times the activation, element-wise, summed over channels."""

from __future__ import annotations

import torch

from .base import Evidence, WeightedActivations


def weighted(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)``, ``(B, K, C, h, w)`` -> ``(B, K, C, h, w)``."""
    return gradients * activations[:, None]


def compute(evidence: Evidence) -> WeightedActivations:
    return WeightedActivations(weighted(evidence.activations, evidence.gradients))

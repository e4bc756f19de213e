"""LayerCAM (Jiang et al. 2021): ReLU(gradient) times the activation at every position, summed over channels.

The positive gradient weighs each position separately, so shallow layers give fine maps too.
"""

from __future__ import annotations

import torch

from .base import Evidence, WeightedActivations


def weighted(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)``, ``(B, K, C, h, w)`` -> ``(B, K, C, h, w)``."""
    return torch.relu(gradients) * activations[:, None]


def compute(evidence: Evidence) -> WeightedActivations:
    return WeightedActivations(weighted(evidence.activations, evidence.gradients))

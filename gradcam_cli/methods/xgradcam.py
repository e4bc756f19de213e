"""XGrad-CAM (Fu et al. 2020): w_k = sum_ij (A_k,ij / sum_ab A_k,ab) * d y^c / d A_k,ij.

A channel whose activations sum to zero gets weight zero (the paper leaves it
undefined); pytorch-grad-cam adds ``eps = 1e-7`` to the sum instead, which ``eps``
reproduces. On layers with signed activations (ConvNeXt, linear bottlenecks) that sum
nearly cancels, so the division is done in float64: in float32 the map drifts by up to
1e-4 from a float64 evaluation.
"""

from __future__ import annotations

import torch

from .base import ChannelWeights, Evidence


def weights(activations: torch.Tensor, gradients: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """``(B, C, h, w)`` activations, ``(B, K, C, h, w)`` gradients -> ``(B, K, C)`` weights."""
    a, g = activations.double(), gradients.double()
    total = a.sum(dim=(-2, -1))[:, None] + eps  # (B, 1, C)
    numerator = (g * a[:, None]).sum(dim=(-2, -1))
    weights = torch.where(total != 0, numerator / torch.where(total != 0, total, 1.0), 0.0)
    return weights.to(activations.dtype)


def compute(evidence: Evidence) -> ChannelWeights:
    eps = evidence.settings.get("xgradcam_eps", 0.0)
    return ChannelWeights(weights(evidence.activations, evidence.gradients, eps))

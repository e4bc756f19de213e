"""Grad-CAM++ (Chattopadhay et al. 2018), the closed form with the exponential-score trick.

With ``Y = exp(S)`` the second and third derivatives of ``Y`` are ``exp(S)`` times the
gradient's square and cube, so (eq. 19)
``alpha_ij = g_ij^2 / (2 g_ij^2 + sum_ab A_ab g_ij^3)`` and ``w = sum_ij alpha_ij ReLU(g_ij)``;
the factor ``exp(S)`` scales the whole map and cancels in the normalisation.
Where the gradient is zero, alpha is zero. pytorch-grad-cam adds ``eps = 1e-6`` to the
denominator, which shifts the weights when gradients are small; ``eps`` reproduces it.
torchcam 0.5 weighs by ``g^2 ReLU(g)``: its division of alpha lands on a temporary copy;
``alpha="torchcam"`` reproduces that, for comparison only.
"""

from __future__ import annotations

import torch

from .base import ChannelWeights, Evidence


def weights(activations: torch.Tensor, gradients: torch.Tensor, eps: float = 0.0, alpha: str = "paper") -> torch.Tensor:
    """``(B, C, h, w)`` activations, ``(B, K, C, h, w)`` gradients -> ``(B, K, C)`` weights."""
    g2 = gradients.square()
    if alpha == "torchcam":
        return (g2 * torch.relu(gradients)).sum(dim=(-2, -1))
    g3 = g2 * gradients
    sum_a = activations.sum(dim=(-2, -1), keepdim=True)[:, None]  # (B, 1, C, 1, 1)
    denominator = 2 * g2 + sum_a * g3 + eps
    usable = (gradients != 0) & (denominator != 0)
    alpha = torch.where(usable, g2 / torch.where(usable, denominator, 1.0), 0.0)
    return (alpha * torch.relu(gradients)).sum(dim=(-2, -1))


def compute(evidence: Evidence) -> ChannelWeights:
    settings = evidence.settings
    return ChannelWeights(
        weights(
            evidence.activations,
            evidence.gradients,
            settings.get("gradcampp_eps", 0.0),
            settings.get("gradcampp_alpha", "paper"),
        )
    )

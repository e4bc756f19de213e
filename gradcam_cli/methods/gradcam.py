"""Grad-CAM (Selvaraju et al. 2017): alpha_k = spatial mean of d y^c / d A^k."""

from __future__ import annotations

import torch

from .base import ChannelWeights, Evidence


def weights(gradients: torch.Tensor) -> torch.Tensor:
    """``(..., C, h, w)`` gradients -> ``(..., C)`` channel weights."""
    return gradients.mean(dim=(-2, -1))


def compute(evidence: Evidence) -> ChannelWeights:
    return ChannelWeights(weights(evidence.gradients))

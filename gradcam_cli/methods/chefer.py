"""Chefer et al.'s relevance for self-attention (ICCV 2021, "Generic Attention-model Explainability for
Interpreting Bi-Modal and Encoder-Decoder Transformers"): the attention weighted by the class score's gradient.

Per block, ``Ā = mean_h ReLU(∇A ⊙ A)`` with ``∇A = ∂y^c / ∂A`` the gradient of the explained class's pre-softmax
score with respect to the block's attention probabilities; the relevance starts at the identity and accumulates
``R ← R + Ā R`` from the first block to the last. The map is the class token's row of ``R`` over the grid tokens
(the mean of the grid tokens' rows for a model whose head pools them), as rollout reads it.
"""

from __future__ import annotations

import torch

from .base import Evidence, Saliency
from .rollout import token_map


def relevance(probabilities: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    """``(B, H, T, T)`` probabilities and ``(B, K, H, T, T)`` gradients per block -> ``(B, K, T, T)``."""
    b, k, _, t, _ = gradients[0].shape
    eye = torch.eye(t, dtype=gradients[0].dtype, device=gradients[0].device)
    r = eye.expand(b, k, t, t)
    for a, g in zip(probabilities, gradients):
        weighted = (g * a[:, None]).clamp_min(0).mean(dim=2)  # (B, K, T, T)
        r = r + weighted @ r
    return r


def compute(evidence: Evidence) -> Saliency:
    attention = evidence.attention
    return Saliency(token_map(relevance(attention.probabilities, attention.gradients), attention))

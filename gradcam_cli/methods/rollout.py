"""Attention rollout (Abnar & Zuidema 2020): how much each input token flows into the explained token through
every block's attention, with the residual connection counted.

Per block the heads are fused (``mean``, as in the paper, or ``max`` / ``min``), the optional ``discard`` share of
the smallest fused weights of each image is set to zero, the identity is added for the residual connection and
each row is renormalised to sum to 1 (``0.5 A + 0.5 I`` for the mean of row-stochastic heads). The blocks'
matrices are multiplied from the first block to the last, ``R = Ã_L ··· Ã_1``. The map is the class token's row
of ``R`` over the grid tokens, or, for a model whose head pools the grid tokens, the mean of the grid tokens' rows.
It does not depend on the class: every class of an image gets the same map.
"""

from __future__ import annotations

import torch

from .base import AttentionEvidence, Evidence, Saliency

FUSIONS = ("mean", "max", "min")
DEFAULT_FUSION = "mean"
DEFAULT_DISCARD = 0.0


def fuse_heads(probabilities: torch.Tensor, fusion: str) -> torch.Tensor:
    """``(B, H, T, T) -> (B, T, T)``."""
    if fusion == "mean":
        return probabilities.mean(dim=1)
    if fusion == "max":
        return probabilities.amax(dim=1)
    if fusion == "min":
        return probabilities.amin(dim=1)
    raise ValueError(f"unknown head fusion {fusion!r}; choose from {', '.join(FUSIONS)}")


def discard_smallest(fused: torch.Tensor, share: float) -> torch.Tensor:
    """Zero the ``floor(share * T * T)`` smallest weights of each ``(T, T)`` matrix (ties: the first in order)."""
    count = int(share * fused.shape[-1] * fused.shape[-2])
    if count == 0:
        return fused
    flat = fused.flatten(1).clone()
    smallest = flat.topk(count, dim=1, largest=False).indices
    flat.scatter_(1, smallest, 0.0)
    return flat.view_as(fused)


def rollout(probabilities: list[torch.Tensor], fusion: str = DEFAULT_FUSION, discard: float = 0.0) -> torch.Tensor:
    """``(B, T, T)``: the rolled-out attention of the blocks, first block first."""
    first = probabilities[0]
    eye = torch.eye(first.shape[-1], dtype=first.dtype, device=first.device)
    result = eye.expand(first.shape[0], -1, -1)
    for block in probabilities:
        fused = discard_smallest(fuse_heads(block, fusion), discard) + eye
        result = (fused / fused.sum(dim=-1, keepdim=True)) @ result
    return result


def token_map(relevance: torch.Tensor, attention: AttentionEvidence) -> torch.Tensor:
    """``(..., T, T)`` token-to-token relevance -> ``(..., h, w)``: the class token's row (or the mean of the grid
    tokens' rows) over the grid tokens."""
    p = attention.prefix
    rows = relevance[..., 0, p:] if attention.class_token else relevance[..., p:, p:].mean(dim=-2)
    return rows.reshape(*rows.shape[:-1], *attention.grid)


def compute(evidence: Evidence) -> Saliency:
    attention = evidence.attention
    fusion = evidence.settings.get("rollout_fusion", DEFAULT_FUSION)
    discard = evidence.settings.get("rollout_discard", DEFAULT_DISCARD)
    rolled = token_map(rollout(attention.probabilities, fusion, discard), attention)  # (B, h, w)
    return Saliency(rolled[:, None].expand(-1, evidence.classes.shape[1], -1, -1))

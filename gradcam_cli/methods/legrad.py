"""LeGrad (Bousselham et al. 2024), as torchcam 0.5 defines it: each block's own class score is the model's head
applied to the mean of the block's output tokens (after the final norm); its gradient with respect to the block's
attention probabilities is kept where positive, averaged over heads and query tokens, and read at the grid tokens'
keys (the prefix tokens' keys dropped). The map is the mean of these per-block maps over the blocks. The
attention itself is not multiplied in.
"""

from __future__ import annotations

import torch

from .base import Evidence, Saliency


def block_maps(layer_gradients: list[torch.Tensor], prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """Per block ``(B, K, H, T, T)`` -> ``(L, B, K, h, w)``."""
    maps = [g.clamp_min(0).mean(dim=(2, 3))[..., prefix:] for g in layer_gradients]
    return torch.stack(maps).reshape(len(maps), *maps[0].shape[:-1], *grid)


def compute(evidence: Evidence) -> Saliency:
    attention = evidence.attention
    return Saliency(block_maps(attention.layer_gradients, attention.prefix, attention.grid).mean(dim=0))

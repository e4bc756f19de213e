"""Pure CAM arithmetic on tensors: no hooks, no models, no I/O.

Every function works on a batch and keeps the caller's device and dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def grad_cam_weights(grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM channel weights: alpha_k = spatial mean of dy/dA_k. ``(B, C, H, W) -> (B, C)``."""
    return grads.mean(dim=(-2, -1))


def weighted_activation_map(weights: torch.Tensor, activations: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k w_k A_k)``: the class map at the layer's own resolution. ``-> (B, H, W)``."""
    return torch.relu(torch.einsum("bc,bchw->bhw", weights, activations))


def grad_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at layer resolution, before normalisation."""
    return weighted_activation_map(grad_cam_weights(grads), activations)


def cam(activations: torch.Tensor, class_weights: torch.Tensor) -> torch.Tensor:
    """CAM (Zhou et al. 2016): classifier rows as channel weights, kept positive like Grad-CAM.

    The ReLU makes CAM and Grad-CAM comparable: on a GAP->FC head Grad-CAM's
    weights are the same rows divided by H*W, so both agree after min-max scaling.
    """
    return weighted_activation_map(class_weights, activations)


def normalize_minmax(maps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale each ``(H, W)`` map of a ``(..., H, W)`` stack to [0, 1].

    Returns ``(scaled, empty)``: a map with no range (all zero, or constant)
    becomes all zeros instead of being divided by zero, and ``empty`` flags it.
    NaN/Inf entries count as zero evidence.
    """
    maps = torch.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
    flat = maps.flatten(-2)
    low = flat.min(dim=-1).values[..., None, None]
    high = flat.max(dim=-1).values[..., None, None]
    span = high - low
    empty = (span <= 0).squeeze(-1).squeeze(-1)
    scaled = torch.where(span > 0, (maps - low) / torch.where(span > 0, span, 1.0), torch.zeros_like(maps))
    return scaled, empty


def upsample_to(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear upsampling of ``(B, H, W)`` maps to ``size=(h, w)`` (half-pixel centres)."""
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]

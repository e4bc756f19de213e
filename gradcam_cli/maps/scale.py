"""Scaling maps: min-max normalisation and upsampling, on tensors, batched.

Every function keeps the caller's device and dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def upsample_to(maps: torch.Tensor, size: tuple[int, int], align_corners: bool = False) -> torch.Tensor:
    """Bilinear resampling of ``(..., h, w)`` maps to ``size=(H, W)`` (half-pixel centres by default)."""
    lead = maps.shape[:-2]
    flat = maps.reshape(-1, 1, *maps.shape[-2:])
    out = F.interpolate(flat, size=size, mode="bilinear", align_corners=align_corners)
    return out.reshape(*lead, *size)

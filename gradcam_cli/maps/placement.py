"""Putting maps computed on the model's crop back onto the original photo.

One bilinear resampling goes straight from the layer's grid (or the crop) to the
photo's pixels, through the resize and crop the preprocessing applied. Pixels that
the center crop cut away were never seen by the model: they get ``fill`` (zero
evidence), so a heatmap never claims anything about them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .preprocess import CropGeometry


def _axis_grid(n_out: int, scale: float, offset: int, span: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    # Pixel centre x+0.5 in the photo -> continuous coordinate in the crop -> [-1, 1].
    crop = (torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * scale - offset
    return 2.0 * crop / span - 1.0, (crop >= 0) & (crop <= span)


def place_on_original(maps: torch.Tensor, geometry: CropGeometry, fill: float = 0.0) -> torch.Tensor:
    """``(N, C, h, w)`` maps over the model's crop -> ``(N, C, H, W)`` over the original photo."""
    width, height = geometry.original_size
    rw, rh = geometry.resized_size
    left, top, cw, ch = geometry.crop_box
    gx, inside_x = _axis_grid(width, rw / width, left, cw, maps.device)
    gy, inside_y = _axis_grid(height, rh / height, top, ch, maps.device)
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), dim=-1)  # (H, W, 2) as (x, y)
    grid = grid.unsqueeze(0).expand(maps.shape[0], -1, -1, -1).to(maps.dtype)
    placed = F.grid_sample(maps, grid, mode="bilinear", padding_mode="border", align_corners=False)
    inside = (inside_y[:, None] & inside_x[None, :]).to(maps.dtype)
    return placed * inside + fill * (1 - inside)

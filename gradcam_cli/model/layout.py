"""How a hooked layer's output is laid out, and the reshape to and from ``(B, C, h, w)`` grids.

Methods work on channel-first grids. A layout converts a layer's own output to that
form (and back, for methods that replace the output); the conversion is a pure
reshape, so gradients convert the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ChannelsFirst:
    """``(B, C, h, w)``: convolutional feature maps, used as they are."""

    name: str = "channels_first"

    def to_grid(self, output: torch.Tensor) -> torch.Tensor:
        return output

    def from_grid(self, grid: torch.Tensor) -> torch.Tensor:
        return grid


CONV = ChannelsFirst()

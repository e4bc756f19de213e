"""Occlusion sensitivity (Zeiler & Fergus 2014): how much the class score (the target's score) drops when a square patch
of the model's input is replaced by the image's mean colour.

The window slides with ``stride`` over the preprocessed input; windows at the right and
bottom edges are cut off at the border, as captum places them. Each pixel gets the
mean drop over the windows that cover it.
"""

from __future__ import annotations

import math

import torch

from .base import Evidence, Saliency

DEFAULT_WINDOW = 32
DEFAULT_STRIDE = 16


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Where the windows along one axis begin: ``ceil((length - window) / stride) + 1`` of them."""
    window = min(window, length)
    return [i * stride for i in range(math.ceil((length - window) / stride) + 1)]


def window_count(size: tuple[int, int], window: int, stride: int) -> int:
    return len(window_starts(size[0], window, stride)) * len(window_starts(size[1], window, stride))


def window_masks(size: tuple[int, int], window: int, stride: int, device: torch.device) -> torch.Tensor:
    """``(n, H, W)`` masks, 1 inside each window."""
    h, w = size
    boxes = [(y, x) for y in window_starts(h, window, stride) for x in window_starts(w, window, stride)]
    masks = torch.zeros(len(boxes), h, w, device=device)
    for i, (y, x) in enumerate(boxes):
        masks[i, y : y + window, x : x + window] = 1.0
    return masks


def saliency(evidence: Evidence, window: int, stride: int) -> torch.Tensor:
    """``(B, K, H, W)``: the mean score drop over the windows covering each pixel."""
    passes = evidence.passes
    inputs = passes.inputs.float()
    masks = window_masks(tuple(inputs.shape[-2:]), window, stride, inputs.device)
    coverage = masks.sum(dim=0)
    maps = []
    for b in range(inputs.shape[0]):
        x = inputs[b]
        baseline = x.mean(dim=(1, 2), keepdim=True)  # the image's mean colour
        drops = []
        for start in range(0, masks.shape[0], passes.batch_size):
            m = masks[start : start + passes.batch_size, None]  # (n, 1, H, W)
            scores = passes.scores_for_inputs(x * (1 - m) + baseline * m, b)
            drops.append(evidence.scores[b][None] - scores.float())
        drop = torch.cat(drops)  # (n, K)
        maps.append(torch.einsum("nk,nhw->khw", drop, masks) / coverage)
    return torch.stack(maps)


def compute(evidence: Evidence) -> Saliency:
    window = evidence.settings.get("occlusion_window", DEFAULT_WINDOW)
    stride = evidence.settings.get("occlusion_stride", DEFAULT_STRIDE)
    return Saliency(saliency(evidence, window, stride))

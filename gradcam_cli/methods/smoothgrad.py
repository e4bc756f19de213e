"""SmoothGrad (Smilkov et al. 2017): the mean of the class score's input gradients over ``samples`` noisy copies of
the input, ``mean_n ∂y^c/∂x (x + ε_n)``, ``ε_n ~ N(0, σ²)`` with ``σ = level · (max x − min x)`` per image (the
paper's noise level). The map is the sum over colour channels of the absolute values (`channel_magnitude`).

The noise is seeded: every image gets the same ``samples`` standard normal draws (scaled by its own σ), so its map
does not depend on the run or on the batch it is in.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import Evidence, Saliency, channel_magnitude

NOISE_SEED = 0
DEFAULT_SAMPLES = 25
DEFAULT_LEVEL = 0.15


def noise_draws(samples: int, shape: tuple[int, ...], seed: int = NOISE_SEED) -> torch.Tensor:
    """``(samples, *shape)`` standard normal draws, float64 on the CPU, the same for a given seed everywhere."""
    return torch.randn(samples, *shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def noise_scale(x: torch.Tensor, level: float) -> torch.Tensor:
    """``(B,)`` the noise's standard deviation per image: ``level`` times the image's input range."""
    return level * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))


def reduced_noisy_gradients(evidence: Evidence, reduce: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``(B, K, 3, H, W)``: ``reduce`` applied to each image's ``(N, K, 3, H, W)`` class-score input gradients at
    its ``N`` noisy copies. One image's copies at a time, so memory grows with ``N`` times the classes, not with
    the batch too."""
    x, classes = evidence.passes.inputs, evidence.classes
    samples = evidence.settings.get("noise_samples", DEFAULT_SAMPLES)
    level = evidence.settings.get("noise_level", DEFAULT_LEVEL)
    noise = noise_draws(samples, tuple(x.shape[1:])).to(device=x.device, dtype=x.dtype)
    scale = noise_scale(x, level)
    out = []
    for b in range(x.shape[0]):
        noisy = x[b] + scale[b] * noise  # (N, 3, H, W)
        out.append(reduce(evidence.passes.input_gradients(noisy, classes[b : b + 1].expand(samples, -1))))
    return torch.stack(out)


def compute(evidence: Evidence) -> Saliency:
    return Saliency(channel_magnitude(reduced_noisy_gradients(evidence, lambda g: g.mean(dim=0))))

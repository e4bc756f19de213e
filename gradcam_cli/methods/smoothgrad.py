"""SmoothGrad (Smilkov et al. 2017): the mean of the class score's input gradients over ``samples`` noisy copies of
the input, ``mean_n ∂y^c/∂x (x + ε_n)``, ``ε_n ~ N(0, σ²)`` with ``σ = level · (max x − min x)`` per image (the
paper's noise level). The map is the sum over colour channels of the absolute values (`channel_magnitude`).

The noise is seeded: every image gets the same ``samples`` standard normal draws (scaled by its own σ), so its map
does not depend on the run or on the batch it is in.
"""

from __future__ import annotations

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


def noisy_gradients(evidence: Evidence) -> torch.Tensor:
    """``(B, N, K, 3, H, W)`` the class scores' input gradients at the ``N`` noisy copies of each image."""
    x, classes = evidence.passes.inputs, evidence.classes
    samples = evidence.settings.get("noise_samples", DEFAULT_SAMPLES)
    level = evidence.settings.get("noise_level", DEFAULT_LEVEL)
    noise = noise_draws(samples, tuple(x.shape[1:])).to(device=x.device, dtype=x.dtype)
    noisy = x[:, None] + noise_scale(x, level)[:, None, None, None, None] * noise[None]  # (B, N, 3, H, W)
    grads = evidence.passes.input_gradients(noisy.flatten(0, 1), classes.repeat_interleave(samples, dim=0))
    return grads.view(x.shape[0], samples, *grads.shape[1:])


def compute(evidence: Evidence) -> Saliency:
    return Saliency(channel_magnitude(noisy_gradients(evidence).mean(dim=1)))

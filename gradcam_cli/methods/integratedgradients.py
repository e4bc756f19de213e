"""Integrated Gradients (Sundararajan et al. 2017): ``(x - x') ⊙ ∫_0^1 ∂y^c/∂x (x' + α (x - x')) dα`` on the
model's input, the integral by Gauss-Legendre quadrature with ``steps`` nodes on [0, 1] (captum's default
``method="gausslegendre"``). The map is the sum over colour channels of the absolute values (`channel_magnitude`).

Baselines ``x'``:

- ``black``: the model input of an all-black photo: pixel value 0, normalised with the model's mean and std;
- ``blur``: the input blurred by a Gaussian of sigma = 1/20 of its longer side (edges reflected);
- ``mean``: the input's mean colour, per channel, everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import Evidence, Saliency, channel_magnitude

BASELINES = ("black", "blur", "mean")
DEFAULT_BASELINE = "black"
DEFAULT_STEPS = 50
BLUR_SIGMA_SHARE = 1 / 20  # of the input's longer side


def gauss_legendre(steps: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``steps`` nodes in (0, 1) and their weights (summing to 1)."""
    nodes, weights = np.polynomial.legendre.leggauss(steps)
    as_tensor = lambda v: torch.as_tensor(v, dtype=like.dtype, device=like.device)  # noqa: E731
    return as_tensor(0.5 * (nodes + 1)), as_tensor(0.5 * weights)


def blurred(x: torch.Tensor) -> torch.Tensor:
    """``x`` blurred by a Gaussian of sigma = `BLUR_SIGMA_SHARE` of the longer side, the kernel cut at 3 sigma
    (and at the image's size, which reflected edges need)."""
    from torchvision.transforms.v2.functional import gaussian_blur

    sigma = BLUR_SIGMA_SHARE * max(x.shape[-2:])
    side = min(2 * math.ceil(3 * sigma) + 1, 2 * min(x.shape[-2:]) - 1)
    return gaussian_blur(x, [side, side], [sigma, sigma])


def baseline(x: torch.Tensor, kind: str, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> torch.Tensor:
    """The ``(B, 3, H, W)`` baseline of ``kind`` for inputs ``x`` normalised with ``mean`` and ``std``."""
    if kind == "black":
        black = torch.tensor([-m / s for m, s in zip(mean, std)], dtype=x.dtype, device=x.device)
        return black[None, :, None, None].expand_as(x)
    if kind == "blur":
        return blurred(x)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    raise ValueError(f"unknown baseline {kind!r}; choose from {', '.join(BASELINES)}")


def attributions(evidence: Evidence, steps: int, kind: str) -> torch.Tensor:
    """``(B, K, 3, H, W)`` Integrated Gradients of every explained class. One image's path at a time, so memory
    grows with ``steps`` times the classes, not with the batch too."""
    x, classes = evidence.passes.inputs, evidence.classes
    settings = evidence.settings
    start = baseline(x, kind, settings.get("input_mean", (0.0, 0.0, 0.0)), settings.get("input_std", (1.0, 1.0, 1.0)))
    alphas, weights = gauss_legendre(steps, x)
    out = []
    for b in range(x.shape[0]):
        path = start[b] + alphas[:, None, None, None] * (x[b] - start[b])  # (S, 3, H, W)
        grads = evidence.passes.input_gradients(path, classes[b : b + 1].expand(steps, -1))  # (S, K, 3, H, W)
        out.append(torch.einsum("s,skchw->kchw", weights.to(grads.dtype), grads))
    return (x - start).to(out[0].dtype)[:, None] * torch.stack(out)


def compute(evidence: Evidence) -> Saliency:
    steps = evidence.settings.get("ig_steps", DEFAULT_STEPS)
    kind = evidence.settings.get("ig_baseline", DEFAULT_BASELINE)
    return Saliency(channel_magnitude(attributions(evidence, steps, kind)))

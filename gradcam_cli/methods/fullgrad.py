"""FullGrad (Srinivas & Fleuret 2019): the input-gradient times the input, plus the bias-gradients of every
layer, each channel post-processed by ``psi`` (absolute value, min-max scaling to [0, 1], bilinear
upsampling to the input) and summed: ``S = psi(|dy/dx * x|) + sum_layers sum_channels psi(|b_c * dy/dz_c|)``.

``z`` is the output of a layer that adds a bias ``b``: every 2-D convolution with a bias, and every
BatchNorm, whose bias in eval mode is ``beta - mean * gamma / sqrt(var + eps)``; a BatchNorm with its own
activation inside (timm's ``BatchNormAct2d``) is read before that activation (`capture.bias_sites`). The
gradients come from a pass of its own through the whole network, one backward pass per class; each layer's
channels are scaled at the layer's resolution, summed, and upsampled once (upsampling is linear, so this
equals upsampling every channel first). The map is on the model's input: the record's layer is ``input``.

pytorch-grad-cam 1.5.7 (``FullGrad``) differs in two ways, both reproduced by
``fullgrad_convention="pytorch-grad-cam"``: it adds 1e-7 to each channel's range when it scales it, and it
takes only modules whose type is exactly ``nn.Conv2d`` or ``nn.BatchNorm2d`` with a bias parameter, so it
leaves out timm's ``BatchNormAct2d`` (all of EfficientNet's BatchNorms). The authors' own code scales each
layer's channels together, not one by one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..maps.scale import upsample_to
from .base import Evidence, Saliency


@dataclass(frozen=True)
class Convention:
    eps: float = 0.0  # added to each channel's range when it is scaled
    exact_types: bool = False  # only nn.Conv2d / nn.BatchNorm2d exactly, with a bias parameter


CONVENTIONS = {"paper": Convention(), "pytorch-grad-cam": Convention(eps=1e-7, exact_types=True)}


def scaled_channels(values: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """``(..., h, w)`` maps, each scaled to [0, 1] by its own range (plus ``eps``); a constant map becomes 0."""
    flat = values.flatten(-2)
    low = flat.min(dim=-1).values[..., None, None]
    span = flat.max(dim=-1).values[..., None, None] - low + eps
    return torch.where(span > 0, (values - low) / torch.where(span > 0, span, 1.0), 0.0)


def saliency(evidence: Evidence, convention: Convention) -> torch.Tensor:
    """``(B, K, H, W)`` FullGrad maps, in float64."""
    passes, classes = evidence.passes, evidence.classes
    size = tuple(passes.inputs.shape[-2:])
    bias_terms: dict[int, torch.Tensor] = {}

    def on_bias_gradient(k: int, bias: torch.Tensor, gradient: torch.Tensor) -> None:
        term = (gradient.double() * bias.double()[None, :, None, None]).abs()
        summed = scaled_channels(term, convention.eps).sum(dim=1)  # (B, h, w)
        summed = summed if tuple(summed.shape[-2:]) == size else upsample_to(summed, size)
        bias_terms[k] = summed if k not in bias_terms else bias_terms[k] + summed

    input_gradients = passes.full_gradients(classes, on_bias_gradient, convention.exact_types)  # (B, K, 3, H, W)
    total = scaled_channels((input_gradients.double() * passes.inputs.double()[:, None]).abs(), convention.eps)
    total = total.sum(dim=2)
    for k, term in bias_terms.items():
        total[:, k] += term
    return total


def compute(evidence: Evidence) -> Saliency:
    convention = CONVENTIONS[evidence.settings.get("fullgrad_convention", "paper")]
    dtype = evidence.logits.dtype
    return Saliency(saliency(evidence, convention).to(dtype))

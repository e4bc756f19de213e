"""Smooth Grad-CAM++ (Omeiza et al. 2019): Grad-CAM++ with its derivatives averaged over noisy copies of the
input (SmoothGrad): ``noise_samples`` copies (default 4), each the input plus Gaussian noise of standard
deviation ``noise_std`` (default 0.3, in the model's normalised input units), as torchcam's
``SmoothGradCAMpp``.

With ``D1, D2, D3`` the means over the copies of ``g, g^2, g^3``:
``alpha_ij = D2_ij / (2 D2_ij + sum_ab A_ab D3_ij)`` (0 where D2 is 0), ``w_k = sum_ij alpha_ij ReLU(D1_ij)``,
and the map is ``ReLU(sum_k w_k A_k)`` on the unperturbed activations A. This is Grad-CAM++'s closed form
(``gradcampp.py``) with averaged derivatives, and it is Grad-CAM++ for noise 0; the paper writes the first
derivative in alpha's numerator, which torchcam, like this file, reads as the second.
At the layer right before global pooling and a linear head the gradient is the head's weight row over h*w,
whatever the input: the noise changes nothing there, and the map is Grad-CAM++'s (explain an earlier layer).

torchcam 0.5 differs, reproduced by ``smoothgradcampp_convention="torchcam"``: its denominator sums
``A_ab D3_ab`` over the positions (one value per channel), it adds 1e-8 to it, weighs by the ReLU of the
last copy's gradient, and makes the map from the last copy's activations. The noise is `gaussian_noise`
keyed by the copy: the same for every image, whatever the batch.
"""

from __future__ import annotations

import torch

from .base import ChannelWeights, Evidence, WeightedActivations

SAMPLES = 4
STD = 0.3
SEED = 0


def moments(copies: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """The means over the copies of ``g``, ``g^2`` and ``g^3``, each ``(B, K, C, h, w)``, in float64."""
    grads = [g.double() for _, g in copies]
    return tuple(sum(g**p for g in grads) / len(grads) for p in (1, 2, 3))


def paper_weights(activations: torch.Tensor, copies: list) -> torch.Tensor:
    d1, d2, d3 = moments(copies)
    sum_a = activations.double().sum(dim=(-2, -1), keepdim=True)[:, None]  # (B, 1, C, 1, 1)
    denominator = 2 * d2 + sum_a * d3
    usable = (d2 != 0) & (denominator != 0)
    alpha = torch.where(usable, d2 / torch.where(usable, denominator, 1.0), 0.0)
    return (alpha * torch.relu(d1)).sum(dim=(-2, -1))


def torchcam_weights(activations: torch.Tensor, copies: list, eps: float = 1e-8) -> torch.Tensor:
    _, d2, d3 = moments(copies)
    spread = (d3 * activations.double()[:, None]).sum(dim=(-2, -1), keepdim=True)
    alpha = d2 / (2 * d2 + spread + eps)
    return (alpha * torch.relu(copies[-1][1].double())).sum(dim=(-2, -1))


def compute(evidence: Evidence) -> ChannelWeights | WeightedActivations:
    settings = evidence.settings
    copies = evidence.passes.noisy_gradients(
        evidence.layer,
        evidence.classes,
        settings.get("smoothgradcampp_samples", SAMPLES),
        settings.get("smoothgradcampp_std", STD),
        settings.get("noise_seed", SEED),
    )
    acts = evidence.activations
    if settings.get("smoothgradcampp_convention", "paper") != "torchcam":
        return ChannelWeights(paper_weights(acts, copies).to(acts.dtype))
    weights = torchcam_weights(acts, copies).to(acts.dtype)
    last = copies[-1][0]  # torchcam's map weighs the last noisy copy's activations
    return WeightedActivations(weights[..., None, None] * last[:, None])

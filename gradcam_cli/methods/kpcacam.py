"""KPCA-CAM (Karmani et al. 2024): the activations projected on their first kernel principal component.

Positions are the samples and channels the features, centred over positions, as in Eigen-CAM; the kernel
matrix of the positions (``kpca_kernel``: sigmoid by default, as pytorch-grad-cam; rbf, poly, linear, cosine)
is centred in feature space and its leading eigenvector, times the square root of its eigenvalue, is the map
(scikit-learn's ``KernelPCA.fit_transform``, which pytorch-grad-cam calls, computes the same). The kernels
take scikit-learn's parameters: ``gamma = 1 / C`` unless ``kpca_gamma`` is given, ``coef0 = 1``, degree 3.
Everything is in float64. Like Eigen-CAM the component's sign is chosen so that the projection correlates
positively with the channel sum (scikit-learn makes the largest entry positive instead); the tests compare
up to that sign. It needs no class: every class of an image gets the same map.
"""

from __future__ import annotations

import torch

from . import KPCA_KERNELS
from .base import Evidence, Saliency


def kernel_matrix(x: torch.Tensor, kernel: str, gamma: float | None = None) -> torch.Tensor:
    """``(n, P, C)`` samples -> ``(n, P, P)`` kernel values between the positions of each stack."""
    gamma = 1.0 / x.shape[-1] if gamma is None else gamma
    dots = x @ x.transpose(1, 2)
    if kernel == "linear":
        return dots
    if kernel == "sigmoid":
        return torch.tanh(gamma * dots + 1.0)
    if kernel == "poly":
        return (gamma * dots + 1.0) ** 3
    if kernel == "rbf":
        norms = dots.diagonal(dim1=1, dim2=2)
        return torch.exp(-gamma * (norms[:, :, None] + norms[:, None, :] - 2 * dots).clamp_min(0))
    if kernel == "cosine":
        lengths = x.norm(dim=-1).clamp_min(torch.finfo(x.dtype).tiny)
        return dots / (lengths[:, :, None] * lengths[:, None, :])
    raise ValueError(f"unknown kernel {kernel!r}; choose from {', '.join(KPCA_KERNELS)}")


def projection(activations: torch.Tensor, kernel: str = "sigmoid", gamma: float | None = None) -> torch.Tensor:
    """``(B, C, h, w)`` -> ``(B, h, w)``: each image's positions on their first kernel principal component."""
    b, c, h, w = activations.shape
    x = torch.nan_to_num(activations.double()).reshape(b, c, h * w).transpose(1, 2)  # (B, hw, C)
    x = x - x.mean(dim=1, keepdim=True)
    k = kernel_matrix(x, kernel, gamma)
    k = k - k.mean(dim=1, keepdim=True) - k.mean(dim=2, keepdim=True) + k.mean(dim=(1, 2), keepdim=True)
    eigenvalues, vectors = torch.linalg.eigh(k)  # ascending: the last is the largest
    component = vectors[..., -1] * eigenvalues[:, -1:].clamp_min(0).sqrt()  # (B, hw)
    agree = (component * x.sum(dim=2)).sum(dim=1, keepdim=True)
    component = torch.where(agree < 0, -component, component)
    return component.reshape(b, h, w).to(activations.dtype)


def compute(evidence: Evidence) -> Saliency:
    settings = evidence.settings
    projected = projection(evidence.activations, settings.get("kpca_kernel", "sigmoid"), settings.get("kpca_gamma"))
    return Saliency(projected[:, None].expand(-1, evidence.classes.shape[1], -1, -1))

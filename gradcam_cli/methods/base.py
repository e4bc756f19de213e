"""What a method receives and what it returns; the arithmetic every method shares.

A method is a pure function from `Evidence` to one of three results, as in
the papers: channel weights ``w`` (the map is ``ReLU(sum_k w_k A_k)``), element-wise
weighted activations (summed over channels), or a finished saliency map. The
passes turn any of them into maps with `to_map`, where ``--smooth eigen``
replaces the channel sum by the first principal component.

Shapes: ``B`` images, ``K`` explained slots per image (classes, or what the target explains), ``C`` channels, ``h x w``
the layer's grid. Everything is float32 (float64 for a float64 model) on the model's device, detached.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch


class ForwardPasses(Protocol):
    """Extra forward passes for the methods that perturb the input or a layer (passes.py runs them)."""

    inputs: torch.Tensor  # (B, 3, H, W) the model's input batch
    batch_size: int  # how many perturbed copies go through the network at once

    def logits_for_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` inputs -> ``(n, N)`` logits of the whole network, in batches."""

    def logits_after_layer(self, layer: str, image: int, grids: torch.Tensor) -> torch.Tensor:
        """``(n, C, h, w)`` replacements for ``layer``'s output on image ``image`` -> ``(n, N)`` logits,
        running only the part of the network after the layer."""

    def input_gradients(self, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``(n, 3, H, W)`` inputs and ``(n, K)`` classes -> ``(n, K, 3, H, W)`` gradients of each class score with
        respect to the input, one forward and K backward passes of the whole network per batch."""

    def layer_gradients(self, layer: str, directions: torch.Tensor) -> torch.Tensor:
        """``(B, K, N)`` directions -> ``(B, K, C, h, w)``: the gradient at ``layer`` of each image's score
        ``sum_n directions[b, k, n] y_n``, one backward pass per k on the shared forward pass's graph."""

    def hessian_vector_products(self, layer: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(g, H A)``, each ``(B, K, C, h, w)``: the gradient of each explained class's score at ``layer``
        and its Hessian there times the layer's activations, on the shared forward pass's graph."""

    def full_gradients(
        self, classes: torch.Tensor, on_bias_gradient: Callable, exact_types: bool = False
    ) -> torch.Tensor:
        """``(B, K, 3, H, W)`` gradients of each ``(B, K)`` class's score at the input, from a forward and
        backward pass through the whole network; ``on_bias_gradient(k, bias, gradient)`` gets, for class k,
        every bias-carrying layer's ``(C,)`` bias and the ``(B, C, h, w)`` gradient at its output, as the
        backward pass reaches it."""

    def noisy_gradients(self, layer: str, classes: torch.Tensor, samples: int, std: float, seed: int) -> list[tuple]:
        """For each of ``samples`` noisy copies of the batch (the input plus Gaussian noise of ``std``,
        `gaussian_noise` keyed by the sample), the layer's ``(B, C, h, w)`` activations and the
        ``(B, K, C, h, w)`` gradients of each ``(B, K)`` class's score."""

    def scores_for_inputs(self, x: torch.Tensor, image: int, probability: bool = False) -> torch.Tensor:
        """``(n, 3, H, W)`` copies of image ``image`` -> ``(n, K)``: the target's score of each of its slots
        (``probability``: the target's probability form, for the methods that weigh by probability)."""

    def scores_after_layer(self, layer: str, image: int, grids: torch.Tensor) -> torch.Tensor:
        """``(n, C, h, w)`` replacements for ``layer``'s output on image ``image`` -> ``(n, K)`` target scores."""


@dataclass
class AttentionEvidence:
    """A transformer's attention in one forward pass, one entry per attention block in the order they ran.

    ``T`` tokens: ``prefix`` class/distillation/register tokens, then the ``grid`` of patch tokens in raster order.
    """

    probabilities: list[torch.Tensor]  # (B, H, T, T) post-softmax attention, rows are queries
    grid: tuple[int, int]
    prefix: int
    class_token: bool  # the head reads the class token (row 0); otherwise a pooling of the grid tokens
    gradients: list[torch.Tensor] | None = None  # (B, K, H, T, T) d score_k / d probabilities (Chefer's rule)
    layer_gradients: list[torch.Tensor] | None = None  # (B, K, H, T, T) d (the block's own score_k) / d its
    # probabilities, the block's score being the head applied to the mean of its output tokens (LeGrad)


@dataclass
class Evidence:
    """Everything one method may use for one layer (or the input) and a batch of images."""

    classes: torch.Tensor  # (B, K) explained class indices (-1: the slot explains no class)
    logits: torch.Tensor | None  # (B, N) pre-softmax scores of the unperturbed batch (None: no class logits)
    layer: str | None = None  # hooked layer path; None for methods on the input
    activations: torch.Tensor | None = None  # (B, C, h, w)
    gradients: torch.Tensor | None = None  # (B, K, C, h, w): d score_k / d activations
    passes: ForwardPasses | None = None
    classifier_rows: Callable[[], torch.Tensor] | None = None  # -> (B, K, C) CAM weights, head checked
    settings: dict = field(default_factory=dict)  # per-method options (occlusion window, ...)
    attention: AttentionEvidence | None = None  # transformer-native methods
    input_gradients: torch.Tensor | None = None  # (B, K, 3, H, W) d score_k / d input, from the main pass
    layer_evidence: list[Evidence] = field(default_factory=list)  # each hooked layer's, for refinecam
    scores: torch.Tensor | None = None  # (B, K) the target's score of each slot on the unperturbed batch


@dataclass
class ChannelWeights:
    """``(B, K, C)`` one weight per channel: the map is ``ReLU(sum_k w_k A_k)``."""

    weights: torch.Tensor


@dataclass
class WeightedActivations:
    """``(B, K, C, h, w)`` activations weighted per position: the map is ``ReLU(sum_k ...)``."""

    values: torch.Tensor


@dataclass
class Saliency:
    """``(B, K, h, w)`` a finished map (before the final ReLU), at any resolution."""

    map: torch.Tensor


MethodResult = ChannelWeights | WeightedActivations | Saliency


def channel_magnitude(attributions: torch.Tensor) -> torch.Tensor:
    """``(..., 3, H, W)`` per-pixel, per-colour attributions -> ``(..., H, W)`` maps: the sum over the colour
    channels of the absolute values (captum's ``visualize_image_attr(sign="absolute_value")``). Evidence for and
    against the class both count: the map says where the score is sensitive, not in which direction."""
    return attributions.abs().sum(dim=-3)


def gaussian_noise(seed: int, key: tuple[int, ...], shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise of ``shape`` (float32, on the CPU), the same for the same ``seed`` and ``key``
    whatever else was drawn before, on any device: a method's noisy maps do not depend on the batch, the
    perturbation batch size or the order of the work."""
    import numpy as np

    state = np.random.SeedSequence([seed, *key]).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator().manual_seed(int(state))
    return torch.randn(shape, generator=generator)


def first_component(values: torch.Tensor) -> torch.Tensor:
    """Projection of each ``(C, h, w)`` stack on its first principal component: ``(..., C, h, w) -> (..., h, w)``.

    Positions are the samples and channels the features; features are centred over
    positions, as in Eigen-CAM. The component comes from the eigenvectors of the smaller
    Gram matrix (positions x positions, or channels x channels) in float64: the same
    vector an SVD gives, several times faster for a layer's few positions and many
    channels, on a GPU above all. A component is fixed only up to its sign: the sign is
    chosen so that the projection correlates positively with the channel sum (the
    component points where the layer is active), which makes the map deterministic.
    """
    lead, (c, h, w) = values.shape[:-3], values.shape[-3:]
    x = torch.nan_to_num(values.reshape(-1, c, h * w).transpose(1, 2).double())  # (n, hw, C)
    x = x - x.mean(dim=1, keepdim=True)
    if h * w <= c:
        eigenvalues, vectors = torch.linalg.eigh(x @ x.transpose(1, 2))  # ascending; the last is the largest
        projection = vectors[..., -1:] * eigenvalues[:, -1:, None].clamp_min(0).sqrt()  # X v = sigma u
    else:
        _, vectors = torch.linalg.eigh(x.transpose(1, 2) @ x)
        projection = x @ vectors[..., -1:]
    total = x.sum(dim=2, keepdim=True)
    agree = (projection * total).sum(dim=1, keepdim=True)
    projection = torch.where(agree < 0, -projection, projection)
    return projection.reshape(*lead, h, w).to(values.dtype)


def to_map(result: MethodResult, activations: torch.Tensor | None, smooth_eigen: bool = False) -> torch.Tensor:
    """The ``(B, K, h, w)`` map of a method's result: ReLU of the channel sum (or first component).

    The channel sum is accumulated in float64: on layers with signed activations its
    terms nearly cancel, and a float32 sum then drifts by several percent of the map.
    """
    if isinstance(result, Saliency):
        return torch.relu(result.map)
    if isinstance(result, ChannelWeights):
        if not smooth_eigen:
            summed = torch.einsum("bkc,bchw->bkhw", result.weights.double(), activations.double())
            return torch.relu(summed).to(activations.dtype)
        weighted = result.weights[..., None, None] * activations[:, None]
    else:
        weighted = result.values
    if smooth_eigen:
        return torch.relu(first_component(weighted))
    return torch.relu(weighted.double().sum(dim=2)).to(weighted.dtype)

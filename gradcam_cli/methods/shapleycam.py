"""Shapley-CAM (Cai et al. 2025): Grad-CAM's weights with a second-order term, read as a Shapley value.

``w_k = mean_ij (g - (H A) / 2)^k_ij``, where ``g`` is the gradient of the class score at the layer and
``H A`` its Hessian there times the activations (a Hessian-vector product, one double backward pass on the
shared forward pass's graph), as pytorch-grad-cam computes it. Where the score is piecewise linear in the
layer (a ReLU network's logit) the Hessian vanishes almost everywhere and Shapley-CAM is Grad-CAM; smooth
activations (SiLU, GELU) make the term count. The paper pairs it with a softmax-based score (ReST), which is
a choice of target, not of method: here the score is the logit, as in every other method.
"""

from __future__ import annotations

from .base import ChannelWeights, Evidence


def compute(evidence: Evidence) -> ChannelWeights:
    gradients, products = evidence.passes.hessian_vector_products(evidence.layer)
    return ChannelWeights((gradients - 0.5 * products).mean(dim=(-2, -1)))

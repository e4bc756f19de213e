"""Finer-CAM (Zhang et al. 2025): Grad-CAM of the difference between the explained class's score and the
scores of the classes it is most easily confused with, so that what the classes share cancels.

For class c the comparison classes are the ``finer_similar`` (default 3) classes whose logits are closest to
``y^c`` (c itself left out). With several of them, each difference ``y^c - alpha y^j`` is weighted by the
comparison class's softmax probability, normalised over the comparison classes: the score is
``y^c - alpha sum_j p_j y^j / sum_j p_j``, alpha = 1. The gradient of that score at the layer comes from one
backward pass per class on the shared forward pass (its direction in logit space, ``directions``, is
computed here). The paper defines the difference for one comparison class; its weights for several are
held fixed here, so the map is the weighted mean of the single-class Finer-CAM maps' weights.
pytorch-grad-cam (``FinerWeightedTarget``) also differentiates through the softmax weights and adds 1e-9 to
their sum: ``finer_weights="pytorch-grad-cam"`` reproduces it.
"""

from __future__ import annotations

import torch

from .base import ChannelWeights, Evidence
from .gradcam import weights as gradcam_weights

SIMILAR = 3
ALPHA = 1.0


def comparison_classes(logits: torch.Tensor, classes: torch.Tensor, count: int) -> torch.Tensor:
    """``(B, N)`` logits, ``(B, K)`` classes -> ``(B, K, m)`` the m <= count classes with the closest logits."""
    distance = (logits[:, None, :] - logits.gather(1, classes)[:, :, None]).abs()  # (B, K, N)
    distance = distance.scatter(2, classes[:, :, None], float("inf"))  # never the class itself
    m = min(count, logits.shape[1] - 1)
    return distance.topk(m, dim=2, largest=False).indices


def directions(logits: torch.Tensor, classes: torch.Tensor, count: int, alpha: float, convention: str):
    """``(B, K, N)``: the gradient of each class's Finer-CAM score with respect to the logits."""
    compared = comparison_classes(logits, classes, count)
    z = logits.detach().double()
    onehot = torch.zeros(*classes.shape, z.shape[1], dtype=z.dtype, device=z.device)
    onehot.scatter_(2, classes[:, :, None], 1.0)
    if compared.shape[2] == 0:  # a one-class model: nothing to compare with
        return onehot
    if convention != "pytorch-grad-cam":
        p = torch.softmax(z, dim=1)[:, None, :].expand(-1, classes.shape[1], -1).gather(2, compared)
        return onehot.scatter_add(2, compared, -alpha * p / p.sum(dim=2, keepdim=True))
    with torch.inference_mode(False), torch.enable_grad():
        compared, classes = compared.clone(), classes.clone()  # gather saves them for the backward pass
        out = []
        for k in range(classes.shape[1]):
            zk = z.clone().requires_grad_(True)
            p = torch.softmax(zk, dim=1).gather(1, compared[:, k])  # (B, m)
            main = zk.gather(1, classes[:, k : k + 1])
            score = (p * (main - alpha * zk.gather(1, compared[:, k]))).sum(1) / (p.sum(1) + 1e-9)
            (g,) = torch.autograd.grad(score.sum(), zk)
            out.append(g)
    return torch.stack(out, dim=1)


def compute(evidence: Evidence) -> ChannelWeights:
    settings = evidence.settings
    towards = directions(
        evidence.logits,
        evidence.classes,
        settings.get("finer_similar", SIMILAR),
        settings.get("finer_alpha", ALPHA),
        settings.get("finer_weights", "paper"),
    )
    return ChannelWeights(gradcam_weights(evidence.passes.layer_gradients(evidence.layer, towards)))

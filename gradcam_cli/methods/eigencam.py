"""Eigen-CAM (Muhammad & Yeasin 2020): the activations projected on their first principal component.

Needs no gradient and no class: every class of an image gets the same map.
"""

from __future__ import annotations

from .base import Evidence, Saliency, first_component


def compute(evidence: Evidence) -> Saliency:
    projection = first_component(evidence.activations)  # (B, h, w)
    k = evidence.classes.shape[1]
    return Saliency(projection[:, None].expand(-1, k, -1, -1))

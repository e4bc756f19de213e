"""Eigen-Grad-CAM: the first principal component of gradient times activation (class-specific Eigen-CAM)."""

from __future__ import annotations

from .base import Evidence, Saliency, first_component


def compute(evidence: Evidence) -> Saliency:
    return Saliency(first_component(evidence.gradients * evidence.activations[:, None]))

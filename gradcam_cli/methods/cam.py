"""CAM (Zhou et al. 2016): the classifier's rows as channel weights, on GAP -> linear heads only.

The map is kept positive like Grad-CAM's: on such a head Grad-CAM's weights are the
same rows divided by h*w, so the two agree after min-max scaling.
"""

from __future__ import annotations

from .base import ChannelWeights, Evidence


def compute(evidence: Evidence) -> ChannelWeights:
    return ChannelWeights(evidence.classifier_rows())

"""RefineCAM (pytorch-grad-cam's ``RefineCAM``): one map from several layers, the product of their Grad-CAM++
maps, each brought bilinearly (half-pixel centres) to the finest layer's grid and min-max scaled to [0, 1] there.

A position stays bright only where every layer agrees, so the deep layers' coarse maps suppress the noise of
the shallow ones while these sharpen the result. Give it the layers with ``--layer stages`` or several
``--layer``s; its record's layer names them all, joined by ``+``. The Grad-CAM++ maps follow that method's
own settings (``gradcampp_eps`` for pytorch-grad-cam's epsilon). pytorch-grad-cam scales by
``max + 1e-7`` (a constant factor per map, which the final scaling removes), scales each map before and after
bringing it to the common size (the same as scaling after: bilinear weights sum to 1) and multiplies at the
input's resolution; here the product is taken at the finest layer's grid and the map is then placed on the
photo like every other.
"""

from __future__ import annotations

import torch

from ..maps.scale import normalize_minmax, upsample_to
from . import gradcampp
from .base import Evidence, Saliency, to_map


def fused(maps: list[torch.Tensor]) -> torch.Tensor:
    """``(B, K, h_l, w_l)`` maps -> ``(B, K, h, w)``: their scaled product at the grid with the most positions."""
    size = max((tuple(m.shape[-2:]) for m in maps), key=lambda hw: hw[0] * hw[1])
    product = None
    for m in maps:
        m = m.double() if tuple(m.shape[-2:]) == size else upsample_to(m.double(), size)
        scaled = normalize_minmax(m)[0]
        product = scaled if product is None else product * scaled
    return product.to(maps[0].dtype)


def compute(evidence: Evidence) -> Saliency:
    maps = [to_map(gradcampp.compute(e), e.activations) for e in evidence.layer_evidence]
    return Saliency(fused(maps))

"""Input x Gradient (Shrikumar et al. 2016): the model's input times the gradient of the class score with respect
to it, ``x ⊙ ∂y^c/∂x``, on the model's (normalised) input; the map is the sum over colour channels of the absolute
values (`channel_magnitude`). The gradient comes from the shared forward pass: one backward pass to the input per
class."""

from __future__ import annotations

from .base import Evidence, Saliency, channel_magnitude


def compute(evidence: Evidence) -> Saliency:
    x = evidence.passes.inputs.to(evidence.input_gradients.dtype)
    return Saliency(channel_magnitude(x[:, None] * evidence.input_gradients))

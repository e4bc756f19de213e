"""VarGrad (Adebayo et al. 2018): the variance, over the noisy copies of SmoothGrad (same noise, same seed), of
the class score's input gradients, ``mean_n (g_n − mean g)²`` (captum's ``nt_type="vargrad"``: E[g²] − E[g]²,
computed here from the deviations). The map is the sum over colour channels (`channel_magnitude`; the variance is
never negative)."""

from __future__ import annotations

from .base import Evidence, Saliency, channel_magnitude
from .smoothgrad import reduced_noisy_gradients


def compute(evidence: Evidence) -> Saliency:
    return Saliency(channel_magnitude(reduced_noisy_gradients(evidence, lambda g: g.var(dim=0, correction=0))))

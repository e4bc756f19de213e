"""IS-CAM (Naidu et al. 2020): Score-CAM with its weights integrated along a path of growing masks. For
step i = 1..S (``iscam_steps``, default 10) the input is multiplied by ``c_i`` times the channel's mask,
``c_i = sum_{j<=i} j / S``, and the channel's weight is the mean class score over the steps (torchcam's
``ISCAM`` schedule, whose cumulative coefficient ends at ``(S + 1) / 2``).

The scores, masks and conventions are Score-CAM's (``scorecam.py``), with ``scorecam_convention`` as for
SS-CAM: by default masks scaled at the input's resolution, constant ones skipped, the class probability;
``"torchcam"`` reproduces torchcam's (scaling at the layer's resolution, softmax over channels of the mean
logit).
"""

from __future__ import annotations

import torch

from .base import ChannelWeights, Evidence
from .scorecam import CONVENTIONS
from .sscam import weights

STEPS = 10


def coefficients(steps: int) -> list[float]:
    """The mask's multiplier at each step, accumulated as torchcam does (the same floating-point sums)."""
    out, total = [], 0.0
    for i in range(steps):
        total += (i + 1) / steps
        out.append(total)
    return out


def compute(evidence: Evidence) -> ChannelWeights:
    settings = evidence.settings
    convention = CONVENTIONS[settings.get("scorecam_convention", "paper")]
    steps = settings.get("iscam_steps", STEPS)
    scale = coefficients(steps)

    def masked(step: int, _channels: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return scale[step] * (x[None] * mask[:, None])

    return ChannelWeights(weights(evidence, convention, steps, masked))

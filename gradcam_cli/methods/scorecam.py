"""Score-CAM (Wang et al. 2020): each activation channel, upsampled and min-max scaled, masks the input;
its weight is the class probability the network gives the masked input (for another target, the
probability form of its score, or the score itself when it has none).

As in the authors' code, masks are upsampled bilinearly (half-pixel centres) and scaled
to [0, 1]; a channel whose mask is constant carries no location and is skipped (weight
0), which also saves its forward pass. The peers differ: pytorch-grad-cam upsamples
with ``align_corners=True`` and weighs channels by a softmax over channels of the raw
scores, torchcam scales before upsampling and does the same softmax. Each is available
as a `Convention` so that the tests can compare like with like.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..maps.scale import upsample_to
from .base import ChannelWeights, Evidence


@dataclass(frozen=True)
class Convention:
    scale_at_input: bool = True  # min-max each mask after upsampling (else at the layer's resolution)
    align_corners: bool = False
    mask_eps: float = 0.0  # added to (max - min); with it a constant mask becomes zero instead of skipped
    channel_softmax: bool = False  # weights = softmax over channels of raw scores (else class probabilities)


PAPER = Convention()
PYTORCH_GRAD_CAM = Convention(align_corners=True, mask_eps=1e-8, channel_softmax=True)
TORCHCAM = Convention(scale_at_input=False, mask_eps=1e-8, channel_softmax=True)
CONVENTIONS = {"paper": PAPER, "pytorch-grad-cam": PYTORCH_GRAD_CAM, "torchcam": TORCHCAM}


def _scaled(maps: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Min-max scaled ``(n, H, W)`` maps and which of them are constant."""
    flat = maps.flatten(1)
    low = flat.min(dim=1).values[:, None, None]
    span = flat.max(dim=1).values[:, None, None] - low
    constant = span[:, 0, 0] <= 0
    return (maps - low) / torch.where(span + eps > 0, span + eps, 1.0), constant


def masks(
    activations: torch.Tensor, size: tuple[int, int], convention: Convention
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(C, h, w)`` activations of one image -> ``(C, H, W)`` masks in [0, 1] and which are constant."""
    if convention.scale_at_input:
        up = upsample_to(activations, size, convention.align_corners)
        return _scaled(up, convention.mask_eps)
    scaled, constant = _scaled(activations, convention.mask_eps)
    return upsample_to(scaled, size, convention.align_corners), constant


def channel_scores(evidence: Evidence, image: int, convention: Convention) -> torch.Tensor:
    """``(C, K)`` scores of the masked inputs of one image for its explained slots (the target's scores).

    The masks are built and run ``batch_size`` channels at a time, so memory is bounded
    by the batch however many channels the layer has.
    """
    passes = evidence.passes
    x = passes.inputs[image]  # (3, H, W)
    acts = evidence.activations[image]
    classes = evidence.classes[image]
    out = torch.zeros(acts.shape[0], classes.shape[0], device=acts.device, dtype=acts.dtype)
    size = tuple(x.shape[-2:])
    pending_constant = []
    for start in range(0, acts.shape[0], passes.batch_size):
        chunk = slice(start, start + passes.batch_size)
        mask, constant = masks(acts[chunk], size, convention)
        run = torch.nonzero(~constant).flatten()
        if run.numel():
            out[start + run] = target_scores(passes, x[None] * mask[run, None], image, convention)
        pending_constant += (start + torch.nonzero(constant).flatten()).tolist()
    # The peers turn a constant mask into an all-zero one: one forward pass serves every such channel.
    if pending_constant and convention.mask_eps > 0:
        out[pending_constant] = target_scores(passes, torch.zeros_like(x)[None], image, convention)
    return out


def target_scores(passes, masked: torch.Tensor, image: int, convention: Convention) -> torch.Tensor:
    """The target's scores of the masked copies: as probabilities (the paper's class probability), or raw."""
    return passes.scores_for_inputs(masked, image, probability=not convention.channel_softmax)


def weights(evidence: Evidence, convention: Convention = PAPER) -> torch.Tensor:
    """``(B, K, C)`` Score-CAM channel weights."""
    per_image = [channel_scores(evidence, b, convention) for b in range(evidence.classes.shape[0])]
    scores = torch.stack(per_image).transpose(1, 2)  # (B, K, C)
    return torch.softmax(scores, dim=-1) if convention.channel_softmax else scores


def compute(evidence: Evidence) -> ChannelWeights:
    convention = CONVENTIONS[evidence.settings.get("scorecam_convention", "paper")]
    return ChannelWeights(weights(evidence, convention))

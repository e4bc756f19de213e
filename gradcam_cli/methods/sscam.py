"""SS-CAM (Wang et al. 2020): Score-CAM with its weights averaged over noisy masks. Each channel's mask, as
Score-CAM builds it, gets Gaussian noise of standard deviation ``noise_std`` (default 2.0, the masks being in
[0, 1]) added, ``noise_samples`` times (default 35), and the channel's weight is the mean class score of
the input times those masks. Defaults as torchcam's ``SSCAM``.

The scores, masks and conventions are Score-CAM's (``scorecam.py``): by default masks upsampled with
half-pixel centres and scaled at the input's resolution, constant masks skipped, the score the class
probability; ``scorecam_convention="torchcam"`` scales at the layer's resolution first (plus 1e-8), keeps
constant masks (all zero, plus noise) and takes the softmax over channels of the mean logit, as torchcam.
The noise is `gaussian_noise` keyed by (sample, channel): the same for every image, whatever the batch.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .base import ChannelWeights, Evidence, gaussian_noise
from .scorecam import CONVENTIONS, Convention, masks, target_scores

SAMPLES = 35
STD = 2.0
SEED = 0

# (sample, channel indices, masks (n, H, W), input (3, H, W)) -> the n inputs of that sample
MaskedInputs = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def averaged_scores(
    evidence: Evidence, image: int, convention: Convention, samples: int, masked: MaskedInputs
) -> torch.Tensor:
    """``(C, K)``: each channel's target scores averaged over ``samples`` inputs made by ``masked``, run
    ``batch_size`` channels at a time; a constant mask is skipped (score 0) unless the convention keeps it."""
    passes = evidence.passes
    x, acts, classes = passes.inputs[image], evidence.activations[image], evidence.classes[image]
    out = torch.zeros(acts.shape[0], classes.shape[0], device=acts.device, dtype=torch.float64)
    for start in range(0, acts.shape[0], passes.batch_size):
        mask, constant = masks(acts[start : start + passes.batch_size], tuple(x.shape[-2:]), convention)
        run = torch.arange(mask.shape[0], device=mask.device)
        run = run if convention.mask_eps > 0 else run[~constant]
        for sample in range(samples):
            if run.numel():
                scores = target_scores(passes, masked(sample, start + run, mask[run], x), image, convention)
                out[start + run] += scores.double()
    return (out / samples).to(acts.dtype)


def weights(evidence: Evidence, convention: Convention, samples: int, masked: MaskedInputs) -> torch.Tensor:
    """``(B, K, C)`` channel weights from the averaged scores (softmax over channels in torchcam's convention)."""
    per_image = [averaged_scores(evidence, b, convention, samples, masked) for b in range(evidence.classes.shape[0])]
    scores = torch.stack(per_image).transpose(1, 2)
    return torch.softmax(scores, dim=-1) if convention.channel_softmax else scores


def mask_noise(seed: int, sample: int, channels: torch.Tensor, size: tuple[int, int], std: float) -> torch.Tensor:
    """``(n, H, W)`` the noise added to the masks of ``channels`` in ``sample``."""
    return torch.stack([gaussian_noise(seed, (sample, int(c)), size) for c in channels]) * std


def compute(evidence: Evidence) -> ChannelWeights:
    settings = evidence.settings
    convention = CONVENTIONS[settings.get("scorecam_convention", "paper")]
    std, seed = settings.get("sscam_std", STD), settings.get("noise_seed", SEED)

    def masked(sample: int, channels: torch.Tensor, mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        noise = mask_noise(seed, sample, channels, tuple(mask.shape[-2:]), std).to(mask.device, mask.dtype)
        return x[None] * (mask + noise)[:, None]

    return ChannelWeights(weights(evidence, convention, settings.get("sscam_samples", SAMPLES), masked))

"""A detector's transform that normalises each image but keeps its size (see ``model/detectors.py``)."""

from __future__ import annotations

from torch import nn
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class KeptSizeTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform without its resize: the input was resized as the photo was prepared."""

    def resize(self, image, target=None):
        return image, target


def kept_size(transform: nn.Module) -> KeptSizeTransform:
    """``transform``'s settings (normalisation, sizes, size divisor) in a `KeptSizeTransform`."""
    return KeptSizeTransform(
        transform.min_size,
        transform.max_size,
        transform.image_mean,
        transform.image_std,
        size_divisible=transform.size_divisible,
        fixed_size=transform.fixed_size,
    )

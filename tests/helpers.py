"""Small models and comparison helpers shared by several test files."""

import functools

import torch
from torch import nn


@functools.lru_cache(maxsize=None)
def oracle_model(name: str) -> nn.Module:
    """A model for oracle comparisons: timm's ``name`` at random init (seed 0), or ``lite0``, the bundled
    EfficientNet-Lite0 with its real weights, unfolded and contiguous (as timm builds it)."""
    torch.manual_seed(0)
    if name == "lite0":
        from gradcam_cli import load_model

        return load_model(fold_bn=False, memory_format="contiguous").model
    import timm

    return timm.create_model(name, pretrained=False).eval()


def scaled(maps: torch.Tensor) -> torch.Tensor:
    """Min-max scaled maps; an empty map would make a comparison vacuous, so it fails the test."""
    from gradcam_cli.maps.scale import normalize_minmax

    out, empty = normalize_minmax(maps.float())
    assert not empty.any(), "an empty map would make the comparison vacuous"
    return out


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.double() - b.double()).abs().max().item()


class BrightnessNet(nn.Module):
    """Full-resolution 'features' = input brightness; the map is where the photo is bright."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(3, 4, 1)
        nn.init.constant_(self.features.weight, 1.0)
        nn.init.zeros_(self.features.bias)
        self.fc = nn.Linear(4, 2)
        nn.init.constant_(self.fc.weight, 1.0)

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))

"""Deep Feature Factorization (Collins et al., ECCV 2018, arXiv:1806.10206): the concepts a layer sees in a set
of photos, found without any class.

The layer's activations of every photo, at every position, are the columns of one ``(C, N*h*w)`` matrix,
which non-negative matrix factorisation splits into K concepts: ``A ~ W H``, ``W`` ``(C, K)`` the concepts
(each a channel vector), ``H`` ``(K, N*h*w)`` how much of each concept every position holds, so each concept
has a map on every photo. A concept votes for the classes the network gives when the layer outputs that
concept at every position (for a global-pool + linear head: the classifier applied to the concept vector).

NMF needs non-negative values. The paper factorises activations after a ReLU. pytorch-grad-cam (``dff``)
subtracts each channel's minimum over the set before factorising and adds it back to the concepts, which
keeps a signed layer's (a linear bottleneck's) information: that is ``convention="pytorch-grad-cam"``.
``convention="paper"`` clips negative values to 0. For a layer after a ReLU both are the same. The
factorisation is scikit-learn's ``NMF`` (coordinate descent, random initialisation seeded by ``seed``),
which pytorch-grad-cam also uses: the same seed gives the same concepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .errors import UsageError
from .model.hooks import installed
from .model.outputs import logits_of

CONVENTIONS = ("pytorch-grad-cam", "paper")


@dataclass
class Factorization:
    concepts: np.ndarray  # (C, K) each concept's channel vector
    maps: np.ndarray  # (N, K, h, w) how much of each concept each position of each photo holds


def factorize(activations: np.ndarray, k: int, convention: str = "pytorch-grad-cam", seed: int = 0) -> Factorization:
    """``(N, C, h, w)`` activations -> K concepts and their maps, in float64."""
    try:
        from sklearn.decomposition import NMF
    except ImportError:
        raise UsageError("concepts need scikit-learn's NMF: pip install scikit-learn") from None

    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose from {', '.join(CONVENTIONS)}")
    n, c, h, w = activations.shape
    columns = np.nan_to_num(activations.astype(np.float64)).transpose(1, 0, 2, 3).reshape(c, -1)
    offset = columns.min(axis=1) if convention == "pytorch-grad-cam" else np.zeros(c)
    columns = columns - offset[:, None] if convention == "pytorch-grad-cam" else np.maximum(columns, 0.0)
    nmf = NMF(n_components=k, init="random", random_state=seed)
    concepts = nmf.fit_transform(columns)  # (C, K)
    maps = nmf.components_.reshape(k, n, h, w).transpose(1, 0, 2, 3)
    return Factorization(concepts + offset[:, None], np.ascontiguousarray(maps))


def concept_logits(model: nn.Module, layer: nn.Module, inputs: torch.Tensor, concepts: np.ndarray) -> torch.Tensor:
    """``(K, classes)``: the network's logits when ``layer`` outputs one concept at every position of its grid.

    One forward pass of a photo gives the layer's grid; the pass is run again with the layer's output replaced
    by each concept vector spread over that grid (K copies in one batch)."""
    vectors = torch.from_numpy(concepts.T.copy())  # (K, C)

    def replace(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        spread = vectors.to(output.device, output.dtype)[:, :, None, None]
        return spread.expand(-1, -1, *output.shape[-2:]).contiguous()

    x = inputs[:1].expand(vectors.shape[0], *inputs.shape[1:])
    with torch.inference_mode(), installed(forward=[(layer, replace)]):
        return logits_of(model(x)).double()


@dataclass
class Votes:
    classes: list[list[int]]  # per concept, its top classes, most probable first
    probabilities: list[list[float]]  # their softmax probabilities


def votes(logits: torch.Tensor, top: int) -> Votes:
    """Each concept's ``top`` classes by softmax probability (pytorch-grad-cam's ``create_labels_legend``)."""
    probabilities = torch.softmax(logits, dim=1)
    best = probabilities.topk(min(top, probabilities.shape[1]), dim=1)
    return Votes(best.indices.tolist(), best.values.tolist())


def layer_activations(model: nn.Module, layer: nn.Module, inputs: torch.Tensor) -> np.ndarray:
    """``(N, C, h, w)``: the layer's output for a batch of model inputs."""
    captured = []

    def keep(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        captured.append(output.detach())

    with torch.inference_mode(), installed(forward=[(layer, keep)]):
        model(inputs)
    out = captured[0]
    if out.ndim != 4:
        raise ValueError(f"concepts need a layer with a (N, C, h, w) output; this one gives {tuple(out.shape)}")
    return out.double().cpu().numpy()


def scaled_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(K, h, w)`` concept maps of one photo -> ``(K, H, W)``, each brought bilinearly (half-pixel centres) to
    ``size`` and min-max scaled to [0, 1] (a map that is 0 everywhere stays 0)."""
    from .maps.scale import normalize_minmax, upsample_to

    up = upsample_to(torch.from_numpy(maps), size)
    return normalize_minmax(up)[0].numpy()

"""Similarity to a reference: the cosine similarity between the photo's embedding and a reference's.

For embedding and retrieval models: what in this photo makes it look like the reference? The
embedding is the model's output (a timm model with its head removed, ``num_classes=0``, or any
model that returns one vector per image), or, for a classifier, its pooled features: the input of
its final linear layer, which a hook hands on as the model's output while the passes run
(``features="pooled"``), so nothing of the model changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import MethodError
from ..model.hooks import installed
from .base import Request, Slots, Target, working

OUTPUT, POOLED = "output", "pooled"


def classifier_layer(model: nn.Module) -> nn.Linear:
    """The classifier's final linear layer: timm's ``get_classifier()``, else the model's last ``nn.Linear``."""
    get = getattr(model, "get_classifier", None)
    head = get() if callable(get) else None
    if isinstance(head, nn.Linear):
        return head
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise MethodError("--similar-to: the model has no final linear layer to take pooled features from")
    return linears[-1]


@contextmanager
def pooled_features(model: nn.Module) -> Iterator[None]:
    """Inside the block the model returns its pooled features (what its classifier layer reads), not logits."""
    with installed(forward=[(classifier_layer(model), lambda _m, inputs, _out: inputs[0])]):
        yield


def embedding(output: object) -> torch.Tensor:
    """``(n, D)``: one vector per image (a tensor's trailing dimensions flattened, or the first tensor of a tuple)."""
    if isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor) or output.dim() < 2:
        raise MethodError(
            f"--similar-to: the model must return one embedding per image; it returned {type(output).__name__}"
        )
    return working(output.flatten(1))


class Similarity(Target):
    """``cos(e(x), r)``: the cosine similarity of the image's embedding ``e(x)`` to the reference ``r``."""

    name = "similarity"

    def __init__(self, reference: torch.Tensor, features: str = OUTPUT, reference_name: str = "reference") -> None:
        if features not in (OUTPUT, POOLED):
            raise ValueError(f"features: {OUTPUT!r} or {POOLED!r}, not {features!r}")
        self.reference = reference.detach().reshape(-1)
        self.features = features
        self.reference_name = reference_name

    @classmethod
    def of_input(
        cls, model: nn.Module, reference: torch.Tensor, features: str = OUTPUT, reference_name: str = "reference"
    ) -> Similarity:
        """The target for the reference image ``reference``, a ``(3, H, W)`` model input: its embedding, once."""
        target = cls(torch.zeros(1), features, reference_name)
        with target.around(model), torch.no_grad():
            target.reference = embedding(model(reference[None]))[0].detach()
        return target

    def select(self, output: object, request: Request) -> Slots:
        found = embedding(output)
        if found.shape[1] != self.reference.numel():
            raise MethodError(
                f"--similar-to: the photo's embedding has {found.shape[1]} values, "
                f"the reference's {self.reference.numel()}"
            )
        n = found.shape[0]
        classes = torch.full((n, 1), -1, dtype=torch.long, device=found.device)
        return Slots(classes, [1] * n, {}, [[{"reference": self.reference_name}] for _ in range(n)], [["sim"]] * n)

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        found = embedding(output)
        reference = self.reference.to(found.device, found.dtype)
        return F.cosine_similarity(found, reference[None], dim=1)[:, None]

    def around(self, model: nn.Module) -> AbstractContextManager:
        return pooled_features(model) if self.features == POOLED else nullcontext()

"""Semantic segmenters: per class, its logits summed over the pixels predicted as that class.

pytorch-grad-cam's ``SemanticSegmentationTarget``: the mask is fixed from the unperturbed
photo's prediction (the pixels whose most likely class it is), and the score of a slot on any
output is ``sum(y^c * mask)``. The slots: every class present in the prediction, the largest
first (the background only when nothing else is present), or the requested classes.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import MethodError
from .base import Request, Slot, Slots, Target, stack, working

ABSENT = "class {c} is predicted nowhere in the photo: its mask is empty, and so is the map"


def pixel_logits(output: object) -> torch.Tensor:
    """``(n, C, H, W)`` per-pixel class logits: a segmenter's ``out`` (torchvision), or a 4-D output itself."""
    found = output.get("out") if isinstance(output, Mapping) else output
    if not isinstance(found, torch.Tensor) or found.dim() != 4:
        raise MethodError(
            "a segmentation target needs per-pixel class logits (n, C, H, W), as the model's output or its 'out'; "
            f"the model returned {type(output).__name__}"
        )
    return working(found)


class SegmentClass(Target):
    """Each class present (or requested) explained by its logits summed over its predicted mask."""

    name = "segmentation"
    geometric = True

    def __init__(self, background: int | None = 0) -> None:
        self.background = background  # a class never explained unless alone or asked for

    def select(self, output: object, request: Request) -> Slots:
        logits = pixel_logits(output)
        predicted = logits.argmax(dim=1)
        per_image = []
        for b in range(logits.shape[0]):
            if isinstance(request.classes, torch.Tensor):
                classes = request.classes[b].tolist()
            else:
                classes = list(request.classes) if request.classes else self._present(predicted[b])
            per_image.append([self._slot(predicted[b], c, logits.dtype) for c in dict.fromkeys(classes)])
        return stack(per_image, logits.device)

    def _present(self, predicted: torch.Tensor) -> list[int]:
        values, counts = predicted.flatten().unique(return_counts=True)
        ranked = [int(v) for v in values[counts.argsort(descending=True)]]
        kept = [c for c in ranked if c != self.background]
        return kept or ranked[:1]

    @staticmethod
    def _slot(predicted: torch.Tensor, c: int, dtype: torch.dtype) -> Slot:
        mask = (predicted == c).to(dtype)
        area = float(mask.mean())
        detail = {"mask_area": area, **({} if area > 0 else {"warning": ABSENT.format(c=c)})}
        return Slot(int(c), {"masks": mask}, detail, f"c{c}")

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        logits = pixel_logits(output)
        mine = slots.of_images(images)
        columns = []
        for k in range(mine.classes.shape[1]):  # one class at a time: a (n, K, H, W) gather would be K times larger
            index = mine.classes[:, k].to(logits.device)[:, None, None, None].expand(-1, 1, *logits.shape[2:])
            chosen = logits.gather(1, index)[:, 0]
            columns.append((chosen * mine.data["masks"][:, k].to(chosen)).sum(dim=(1, 2)))
        return torch.stack(columns, dim=1)

    def probabilities(self, output: object, slots: Slots) -> torch.Tensor | None:
        """The class's mean softmax probability over its mask."""
        probabilities = torch.softmax(pixel_logits(output), dim=1)
        masks = slots.data["masks"]
        index = slots.classes[:, :, None, None].expand(-1, -1, *probabilities.shape[2:])
        chosen = probabilities.gather(1, index)
        return (chosen * masks).sum(dim=(2, 3)) / masks.sum(dim=(2, 3)).clamp_min(1)

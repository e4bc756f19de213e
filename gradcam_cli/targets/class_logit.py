"""The class logit (the default): the pre-softmax score ``y^c`` of each explained class, as Grad-CAM defines it."""

from __future__ import annotations

import torch

from .base import Slots, Target, class_logits
from .class_slots import ClassSlots
from .probability import SoftmaxProbability


class ClassLogit(ClassSlots):
    """``y^c``: column ``c`` of the logits; slots are the requested classes, or the top-k."""

    name = "class"
    class_logit = True

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        logits = class_logits(output)
        return logits.gather(1, slots.classes[images.to(slots.classes.device)].to(logits.device))

    def probability(self) -> Target:
        return SoftmaxProbability()

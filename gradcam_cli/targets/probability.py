"""The softmax probability of each explained class, ``softmax(y)_c`` (pytorch-grad-cam's
``ClassifierOutputSoftmaxTarget``): its gradient also pushes the other classes down."""

from __future__ import annotations

import torch

from .base import Slots, Target, class_logits
from .class_slots import ClassSlots


class SoftmaxProbability(ClassSlots):
    """``softmax(y)_c``; the slots are chosen as for the class logit (the requested classes, or the top-k)."""

    name = "probability"
    class_logit = False

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        probabilities = torch.softmax(class_logits(output), dim=1)
        return probabilities.gather(1, slots.classes[images.to(slots.classes.device)].to(probabilities.device))

    def probability(self) -> Target:
        return self

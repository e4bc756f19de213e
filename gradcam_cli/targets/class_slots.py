"""What the classifier targets share: one slot per explained class (the requested classes, or the top-k), the
logits and softmax probabilities the records show."""

from __future__ import annotations

import torch

from .base import Request, Slots, Target, class_logits

SOFTMAX = "softmax"  # the head these targets assume: one class per image, probabilities by softmax


def choose_classes(logits: torch.Tensor, request: Request) -> torch.Tensor:
    """``(B, K)`` class indices: a given ``(B, K)`` tensor, the given indices for every image, or the top-k."""
    classes = request.classes
    if isinstance(classes, torch.Tensor):
        return classes.to(logits.device)
    if classes:
        return torch.tensor(list(classes), device=logits.device).expand(logits.shape[0], -1)
    return logits.topk(min(request.top_k, logits.shape[1]), dim=1).indices


class ClassSlots(Target):
    """Slots are the requested classes, or the top-k; the record's probability is the softmax's."""

    def select(self, output: object, request: Request) -> Slots:
        logits = class_logits(output)
        chosen = choose_classes(logits, request)
        details = [[{"head": SOFTMAX}] * chosen.shape[1] for _ in range(chosen.shape[0])]
        return Slots(chosen, [chosen.shape[1]] * chosen.shape[0], details=details)

    def logits(self, output: object) -> torch.Tensor | None:
        return class_logits(output)

    def probabilities(self, output: object, slots: Slots) -> torch.Tensor | None:
        return torch.softmax(class_logits(output), dim=1).gather(1, slots.classes)

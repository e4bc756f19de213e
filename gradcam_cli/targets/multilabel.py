"""Sigmoid heads: multi-label classifiers (each label its own yes/no) and binary classifiers (one output).

Multi-label: every label whose sigmoid reaches the threshold is explained by its own logit ``y^c``
(the most likely label when none does, with a warning); ``--class`` picks labels instead.
Binary (a one-output head): the predicted side is explained, ``+y`` for the positive class 1 and
``-y`` for the negative class 0, as pytorch-grad-cam's ``BinaryClassifierOutputTarget`` defines it.
"""

from __future__ import annotations

import torch

from .base import Request, Slot, Slots, Target, class_logits, stack

NONE_ABOVE = "no label reaches --label-threshold {threshold:g}: the most likely label explained"


def signed_logits(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``(n, K)`` scores: ``y^c`` of a multi-label head; ``+y`` (class 1) or ``-y`` (class 0) of a binary head."""
    if logits.shape[1] == 1:
        return logits * (2 * classes.to(logits.dtype) - 1)
    return logits.gather(1, classes)


class SigmoidLabels(Target):
    """Each label above ``threshold`` (or each requested one) explained by its logit; a one-output head's
    predicted side by ``+-y``."""

    name = "class"
    class_logit = False

    def __init__(self, threshold: float = 0.5) -> None:
        self.threshold = threshold

    def head(self, logits: torch.Tensor) -> str:
        return "binary" if logits.shape[1] == 1 else "sigmoid"

    def select(self, output: object, request: Request) -> Slots:
        logits = class_logits(output)
        head = self.head(logits)
        if isinstance(request.classes, torch.Tensor):
            chosen = request.classes.tolist()
        elif request.classes:
            chosen = [list(request.classes)] * logits.shape[0]
        else:
            chosen = [self._above(row) for row in logits]
        per_image = []
        for row, classes in zip(logits, chosen):
            note = {} if request.classes or self._reaches(row, classes) else {"warning": self._none_above()}
            per_image.append([Slot(int(c), detail={"head": head, **note}) for c in classes])
        return stack(per_image, logits.device)

    def _above(self, row: torch.Tensor) -> list[int]:
        """The labels (sides) of one image to explain, most likely first; at least one."""
        if row.shape[0] == 1:
            return [int(torch.sigmoid(row[0]) >= self.threshold)]
        probabilities = torch.sigmoid(row)
        order = probabilities.argsort(descending=True)
        above = [int(i) for i in order if probabilities[i] >= self.threshold]
        return above or [int(order[0])]

    def _reaches(self, row: torch.Tensor, classes: list[int]) -> bool:
        return row.shape[0] == 1 or bool((torch.sigmoid(row[classes]) >= self.threshold).all())

    def _none_above(self) -> str:
        return NONE_ABOVE.format(threshold=self.threshold)

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        logits = class_logits(output)
        return signed_logits(logits, slots.classes[images.to(slots.classes.device)].to(logits.device))

    def logits(self, output: object) -> torch.Tensor | None:
        return class_logits(output)

    def probabilities(self, output: object, slots: Slots) -> torch.Tensor | None:
        return torch.sigmoid(signed_logits(class_logits(output), slots.classes))

    def probability(self) -> Target:
        return SigmoidProbability(self.threshold)


class SigmoidProbability(SigmoidLabels):
    """The sigmoid of each label's (signed) logit: the probability form of `SigmoidLabels`."""

    name = "probability"

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(super().scores(output, slots, images))

    def probability(self) -> Target:
        return self

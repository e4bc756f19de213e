"""Why class A rather than class B: the logit difference ``y^A - y^B`` (Finer-CAM's contrast, with one
comparison class and weight 1; pytorch-grad-cam's ``FinerWeightedTarget`` weighs several by probability).

B is a given class, or ``auto``: for each explained class, the most likely other class.
"""

from __future__ import annotations

import torch

from .base import Request, Slots, Target, class_logits
from .class_slots import SOFTMAX, choose_classes

AUTO = "auto"
SAME_CLASS = "the explained class is the --versus class: the difference is zero, so the map is empty"


def runner_up(logits: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
    """``(B, K)``: for each chosen class, the most likely class other than it."""
    top2 = logits.topk(2, dim=1).indices  # (B, 2)
    first, second = top2[:, :1], top2[:, 1:]
    return torch.where(chosen == first, second, first)


class Contrastive(Target):
    """``y^A - y^B`` for each explained class A against ``versus`` (an index, or `AUTO`)."""

    name = "contrastive"

    def __init__(self, versus: int | str = AUTO) -> None:
        self.versus = versus

    def select(self, output: object, request: Request) -> Slots:
        logits = class_logits(output)
        chosen = choose_classes(logits, request)
        if self.versus == AUTO:
            versus = runner_up(logits, chosen)
        else:
            versus = torch.full_like(chosen, int(self.versus))
        details = [
            [
                {"head": SOFTMAX, "versus_index": v, **({"warning": SAME_CLASS} if v == c else {})}
                for c, v in zip(cs, vs)
            ]
            for cs, vs in zip(chosen.tolist(), versus.tolist())
        ]
        names = [[f"c{int(c)}-vs-{int(v)}" for c, v in zip(cs, vs)] for cs, vs in zip(chosen.tolist(), versus.tolist())]
        return Slots(chosen, [chosen.shape[1]] * chosen.shape[0], {"versus": versus}, details, names)

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        logits = class_logits(output)
        mine = slots.of_images(images)
        return logits.gather(1, mine.classes.to(logits.device)) - logits.gather(
            1, mine.data["versus"].to(logits.device)
        )

    def logits(self, output: object) -> torch.Tensor | None:
        return class_logits(output)

    def probabilities(self, output: object, slots: Slots) -> torch.Tensor | None:
        return torch.softmax(class_logits(output), dim=1).gather(1, slots.classes)

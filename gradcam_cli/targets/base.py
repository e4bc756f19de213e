"""What a map explains: a *target*, a differentiable scalar per image computed from the model's output.

A target answers two questions (`Target`):

- `Target.select`: from the unperturbed output of a batch, what to explain in each image. The
  answer is K *slots* per image (`Slots`): a class, a class against another, a detection, a
  segment, ... with the data its score reads (a second class, a box, a mask) and the fields its
  record gets. Images may have fewer than K real slots (detections, labels above a threshold);
  the rest pad the batch to one ``(B, K)`` shape and are never reported.
- `Target.scores`: the score of every slot on *any* output of the model: ``(n, K)`` for ``n`` outputs,
  row ``i`` an output of image ``images[i]``: the batch itself, or perturbed copies of one image.
  The score is differentiable: the gradient methods back-propagate it, and Score-CAM, Ablation-CAM
  and occlusion read it on their extra forward passes.

A target may also change what the model returns while the passes run (`Target.around`: the
similarity target reads a classifier's pooled features), say which probability a record shows
(`Target.probabilities`), and give the probability form of its score for the methods that weigh
by probability (`Target.probability`: Score-CAM as its paper defines it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import torch

from ..errors import MethodError
from ..model.outputs import logits_of


@dataclass(frozen=True)
class Request:
    """What the caller asked for, before the model's output is known."""

    classes: Sequence[int] | torch.Tensor | None = None  # the same indices for every image, or (B, K) per image
    top_k: int = 1
    boxes: torch.Tensor | None = None  # (B, K, 4) boxes in the model's input pixels (detectors); -1 rows: padding


@dataclass
class Slots:
    """What is explained in each image of a batch: K slots per image, the first ``counts[b]`` of image b real."""

    classes: torch.Tensor  # (B, K) long: the class (label) each slot explains; -1 where it explains none
    counts: list[int]  # real slots per image; the others repeat a real slot so that the batch has one shape
    data: dict[str, torch.Tensor] = field(default_factory=dict)  # (B, K, ...) what the score reads
    details: list[list[dict]] = field(default_factory=list)  # per image, per real slot: the record's fields
    names: list[list[str]] = field(default_factory=list)  # per image, per real slot: its part of file names

    @property
    def per_image(self) -> int:
        return int(self.classes.shape[1])

    def detail(self, image: int, slot: int) -> dict:
        return self.details[image][slot] if self.details else {}

    def name(self, image: int, slot: int) -> str:
        if self.names:
            return self.names[image][slot]
        c = int(self.classes[image, slot])
        return f"c{c}" if c >= 0 else f"t{slot + 1}"

    def of_images(self, images: torch.Tensor) -> Slots:
        """The slots of the images that the rows of an output belong to: ``(n, K)`` classes and data."""
        images = images.to(self.classes.device)
        return Slots(self.classes[images], [], {k: v[images.to(v.device)] for k, v in self.data.items()})


@dataclass
class Slot:
    """One thing to explain in one image, before the batch is stacked (see `stack`)."""

    index: int  # class or label; -1: none
    data: dict[str, torch.Tensor] = field(default_factory=dict)
    detail: dict = field(default_factory=dict)
    name: str = ""


def stack(per_image: Sequence[Sequence[Slot]], device: torch.device) -> Slots:
    """One `Slots` from each image's list; a shorter list is padded with a copy of a real slot.

    A batch where no image has a slot has K = 0: nothing is explained.
    """
    counts = [len(s) for s in per_image]
    width = max(counts, default=0)
    spare = next((s[0] for s in per_image if s), None)
    rows = [list(s) + [s[0] if s else spare] * (width - len(s)) for s in per_image]
    classes = torch.tensor([[slot.index for slot in row] for row in rows], dtype=torch.long, device=device)
    classes = classes.reshape(len(rows), width)
    keys = spare.data.keys() if spare is not None else ()
    data = {
        key: torch.stack([torch.stack([slot.data[key] for slot in row]) for row in rows]).to(device) for key in keys
    }
    details = [[slot.detail for slot in s] for s in per_image]
    names = [
        [slot.name or (f"c{slot.index}" if slot.index >= 0 else f"t{k + 1}") for k, slot in enumerate(s)]
        for s in per_image
    ]
    return Slots(classes, counts, data, details, names)


class Target:
    """The base of every target: override `select` and `scores`; the rest has defaults."""

    name = "custom"
    class_logit = False  # the score is a classifier's class logit (what CAM's classifier weights explain)
    geometric = False  # slots are places in the input (boxes, masks), which a flipped copy would not keep

    def select(self, output: object, request: Request) -> Slots:
        raise NotImplementedError

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        """``(n, K)``: the score of each slot of image ``images[i]`` on row ``i`` of ``output``."""
        raise NotImplementedError

    def logits(self, output: object) -> torch.Tensor | None:
        """The ``(B, N)`` class logits in the output, where it has them (records' scores, non-finite checks)."""
        return None

    def probabilities(self, output: object, slots: Slots) -> torch.Tensor | None:
        """``(B, K)`` the probability a record shows for each slot (None: the target has none)."""
        return None

    def probability(self) -> Target:
        """This target's score as a probability, for the methods that weigh by probability (itself if none)."""
        return self

    def around(self, model: torch.nn.Module) -> AbstractContextManager:
        """What the model returns while the passes run is the model's own output, unless a target says otherwise."""
        return nullcontext()


def working(t: torch.Tensor) -> torch.Tensor:
    """The targets' arithmetic: float32, or float64 for a float64 model (half precisions are widened)."""
    return t if t.dtype == torch.float64 else t.float()


def class_logits(output: object) -> torch.Tensor:
    """The ``(n, N)`` logits of a classifier's output, in working precision."""
    return working(logits_of(output))


class FunctionTarget(Target):
    """A caller's function of the model's output: ``fn(output) -> (n,)`` one score per image (or ``(n, K)``)."""

    name = "custom"

    def __init__(self, fn: Callable[[object], torch.Tensor], name: str = "custom") -> None:
        self.fn = fn
        self.name = name

    def _values(self, output: object) -> torch.Tensor:
        values = self.fn(output)
        if not isinstance(values, torch.Tensor) or values.dim() not in (1, 2):
            raise MethodError(
                "a target function must return a tensor of one score per image (n,) or (n, K); "
                f"it returned {type(values).__name__} {tuple(getattr(values, 'shape', ()))}"
            )
        return working(values if values.dim() == 2 else values[:, None])

    def select(self, output: object, request: Request) -> Slots:
        with torch.no_grad():
            values = self._values(output)
        count = values.shape[1]
        classes = torch.full((values.shape[0], count), -1, dtype=torch.long, device=values.device)
        return Slots(classes, [count] * values.shape[0])

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        return self._values(output)

    def logits(self, output: object) -> torch.Tensor | None:
        try:
            return class_logits(output)
        except MethodError:
            return None


def as_target(target: object) -> Target:
    """A `Target` from what a caller gave: a `Target` (a subclass's object), or a function of the model's output."""
    if isinstance(target, Target):
        return target
    if callable(target):
        return FunctionTarget(target)
    raise TypeError(f"a target is a Target or a function of the model's output, not {type(target).__name__}")

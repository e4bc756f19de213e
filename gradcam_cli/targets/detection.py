"""Object detectors: one explanation per detection, its score the detection's, matched by IoU.

The score of a slot (a box ``b`` with label ``l``) on any output of the detector is
pytorch-grad-cam's ``FasterRCNNBoxScoreTarget``: among the output's detections, take the one whose
box overlaps ``b`` most; when that overlap is above the IoU threshold and its label is ``l``, the
score is the overlap plus the detection's score, else 0. On the unperturbed photo a detection
matches itself, so its score there is 1 + its confidence; on a perturbed copy the score falls as
the detection moves, changes class, or disappears.

The slots: every detection scoring at least the score threshold (the most confident first, at
most ``max_detections``), those of the requested classes only when classes are given; or one per
given box, labelled with the class of the detection that overlaps it most (or the given class).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from ..errors import MethodError
from .base import Request, Slot, Slots, Target, stack, working

NO_MATCH = "no detection overlaps the given box: the score is 0 and the map empty"


def detections(output: object) -> list[Mapping]:
    """The per-image detections (``boxes``, ``labels``, ``scores``) in a detector's output."""
    if isinstance(output, (list, tuple)) and all(isinstance(o, Mapping) and "boxes" in o for o in output):
        return list(output)
    raise MethodError(
        "a detection target needs a detector's output: one dict of boxes, labels and scores per image; "
        f"the model returned {type(output).__name__}"
    )


def box_scores(found: Mapping, boxes: torch.Tensor, labels: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """``(K,)``: for each box and label, the best-overlapping detection's IoU + score, or 0 (no match)."""
    from torchvision.ops import box_iou

    candidates = found["boxes"]
    if candidates.shape[0] == 0:
        return torch.zeros(boxes.shape[0], dtype=working(candidates).dtype, device=candidates.device)
    ious = box_iou(boxes.to(candidates.device, candidates.dtype), candidates)  # (K, M)
    best, index = ious.max(dim=1)
    match = (best > iou_threshold) & (found["labels"][index] == labels.to(candidates.device))
    value = best + found["scores"][index]
    return working(torch.where(match, value, torch.zeros_like(value)))


class DetectionScore(Target):
    """Each detection (or given box) explained by its IoU-matched score."""

    name = "detection"
    geometric = True

    def __init__(self, score_threshold: float = 0.5, iou_threshold: float = 0.5, max_detections: int = 20) -> None:
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections

    def select(self, output: object, request: Request) -> Slots:
        found = detections(output)
        device = found[0]["boxes"].device if found else torch.device("cpu")
        if request.boxes is not None:
            per_image = [self._given(f, request.boxes[b], self._classes(request, b)) for b, f in enumerate(found)]
        else:
            per_image = [self._found(f, self._classes(request, b)) for b, f in enumerate(found)]
        return stack(per_image, device)

    @staticmethod
    def _classes(request: Request, image: int) -> list[int] | None:
        if isinstance(request.classes, torch.Tensor):
            return request.classes[image].tolist()
        return list(request.classes) if request.classes else None

    def _found(self, found: Mapping, classes: list[int] | None) -> list[Slot]:
        scores, labels = found["scores"].detach(), found["labels"]
        keep = scores >= self.score_threshold
        if classes is not None:
            keep &= torch.isin(labels, torch.tensor(classes, device=labels.device))
        order = [int(i) for i in torch.nonzero(keep).flatten()[scores[keep].argsort(descending=True)]]
        return [self._slot(found, i, k) for k, i in enumerate(order[: self.max_detections])]

    def _slot(self, found: Mapping, i: int, k: int) -> Slot:
        box = found["boxes"][i].detach()
        detail = {
            "detection": {"box": box.tolist(), "label": int(found["labels"][i]), "score": float(found["scores"][i])}
        }
        return Slot(int(found["labels"][i]), {"boxes": working(box)}, detail, f"d{k + 1}")

    def _given(self, found: Mapping, boxes: torch.Tensor, classes: list[int] | None) -> list[Slot]:
        """One slot per given box (rows of -1: padding), labelled by ``classes`` or the best-overlapping detection."""
        from torchvision.ops import box_iou

        slots = []
        for k, box in enumerate(b for b in boxes if not (b < 0).all()):
            box = box.to(found["boxes"].device, found["boxes"].dtype)
            ious = box_iou(box[None], found["boxes"].detach())[0] if found["boxes"].shape[0] else torch.zeros(0)
            best = int(ious.argmax()) if ious.numel() else -1
            label = classes[k] if classes is not None else (int(found["labels"][best]) if best >= 0 else 0)
            matched = best >= 0 and float(ious[best]) > self.iou_threshold and int(found["labels"][best]) == label
            detection = {
                "box": box.tolist(),
                "label": label,
                "score": float(found["scores"][best]) if matched else None,
            }
            note = {} if matched else {"warning": NO_MATCH}
            slots.append(
                Slot(label, {"boxes": working(box)}, {"detection": {**detection, "given": True}, **note}, f"b{k + 1}")
            )
        return slots

    def scores(self, output: object, slots: Slots, images: torch.Tensor) -> torch.Tensor:
        found = detections(output)
        mine = slots.of_images(images)
        rows = [box_scores(f, mine.data["boxes"][i], mine.classes[i], self.iou_threshold) for i, f in enumerate(found)]
        return torch.stack(rows)

    def probabilities(self, output: object, slots: Slots) -> torch.Tensor | None:
        values = [[float((d.get("detection") or {}).get("score") or 0.0) for d in row] for row in slots.details]
        width = slots.per_image
        return torch.tensor([row + row[:1] * (width - len(row)) if row else [0.0] * width for row in values])


class AnnotatedObjects(DetectionScore):
    """One slot per annotated object (``gradcam evaluate`` on a detector): the detection explaining it.

    The request's boxes (``(B, K, 4)``, rows of -1 padding) are the annotated objects and its classes ``(B, K)``
    their classes. Each object is matched to the detection of its class (scoring at least the score threshold)
    that overlaps its box most, at any overlap, and that detection is explained as ``gradcam explain`` explains
    it. An object no detection of its class overlaps is explained as ``--box`` explains a box: the detection
    overlapping it most is scored only when above the IoU threshold with the object's class, so its map is
    empty (it points nowhere: a miss) unless that holds.
    """

    name = "detection"

    def select(self, output: object, request: Request) -> Slots:
        found = detections(output)
        device = found[0]["boxes"].device if found else torch.device("cpu")
        classes = torch.as_tensor(request.classes)
        per_image = [self._matched(f, request.boxes[b], classes[b].tolist()) for b, f in enumerate(found)]
        return stack(per_image, device)

    def _matched(self, found: Mapping, boxes: torch.Tensor, classes: list[int]) -> list[Slot]:
        from torchvision.ops import box_iou

        slots = []
        for k, box in enumerate(b for b in boxes if not (b < 0).all()):
            box = box.to(found["boxes"].device, found["boxes"].dtype)
            mine = (found["labels"] == classes[k]) & (found["scores"].detach() >= self.score_threshold)
            ious = box_iou(box[None], found["boxes"].detach())[0].masked_fill(~mine, 0)
            best = int(ious.argmax()) if ious.numel() else -1
            if best < 0 or float(ious[best]) <= 0:
                slot = self._given(found, box[None], [classes[k]])[0]
                slot.detail["annotated_box"], slot.detail["match_iou"] = box.tolist(), 0.0
            else:
                slot = self._slot(found, best, k)
                slot.detail["annotated_box"], slot.detail["match_iou"] = box.tolist(), float(ious[best])
            slot.name = f"o{k + 1}"
            slots.append(slot)
        return slots

"""What `gradcam evaluate` measured: per sample (an image and an annotated class), its localisation and
faithfulness per (method, layer), and the box checks of its images; gathered batch by batch into one
`Measurements`. Data only: `measure.py` measures a classifier's batch and `detections.py` a detector's."""

from __future__ import annotations

from dataclasses import dataclass, field

from .annotations import Box
from .faithfulness import Curves
from .localisation import SampleLocalisation
from .sanity import SanityCurve

Key = tuple[str, str]  # (method, layer)


@dataclass
class Sample:
    """One (image, annotated class)."""

    image: str
    class_index: int
    predicted: int  # the image's top-1 class
    probability: float  # of class_index


@dataclass
class BoxCheck:
    """An image's annotated boxes against its photo: how many, and which reach outside it."""

    image: str
    size: tuple[int, int]  # the photo's (width, height)
    boxes: int
    outside: list[Box] = field(default_factory=list)  # wholly outside: left out of every metric
    clipped: list[Box] = field(default_factory=list)  # partly outside: cut at the photo's border

    def note(self) -> str | None:
        """A one-line warning for the terminal, or None when every box lies inside the photo."""
        if not (self.outside or self.clipped):
            return None
        width, height = self.size
        parts = [
            f"{len(found)} of {self.boxes} annotated boxes {what} (e.g. {','.join(f'{v:g}' for v in found[0])})"
            for found, what in (
                (self.outside, "lie outside the photo and are left out"),
                (self.clipped, "reach outside the photo and are cut at its border"),
            )
            if found
        ]
        return f"{self.image}: {'; '.join(parts)}; the photo is {width}x{height}"


@dataclass
class BatchMeasurements:
    """What one batch (or one image of it) measured: its samples and, per (method, layer), each sample's
    metrics in sample order; and its images' box checks."""

    samples: list[Sample]
    localisation: dict[Key, list[SampleLocalisation]]
    faithfulness: dict[Key, list[Curves]]
    box_checks: list[BoxCheck] = field(default_factory=list)

    def of_image(self, image: str) -> BatchMeasurements:
        picks = [i for i, s in enumerate(self.samples) if s.image == image]
        return BatchMeasurements(
            [self.samples[i] for i in picks],
            {k: [v[i] for i in picks] for k, v in self.localisation.items()},
            {k: [v[i] for i in picks] for k, v in self.faithfulness.items() if v},
            [c for c in self.box_checks if c.image == image],
        )


@dataclass
class Measurements:
    """Everything measured, per (method, layer), each list in sample order."""

    keys: list[Key]
    view: str
    threshold: float  # the operating box threshold (--bbox-threshold) of the samples' `iou`
    samples: list[Sample] = field(default_factory=list)
    localisation: dict[Key, list[SampleLocalisation]] = field(default_factory=dict)
    faithfulness: dict[Key, list[Curves]] = field(default_factory=dict)
    sanity: dict[Key, SanityCurve] = field(default_factory=dict)
    boxes: int = 0  # annotated boxes of the measured images
    boxes_outside: int = 0  # wholly outside their photo (left out of every metric)
    boxes_clipped: int = 0  # reaching outside their photo (cut at its border)

    @classmethod
    def of(cls, explainer) -> Measurements:
        """Nothing measured yet, for every (method, layer) of ``explainer``."""
        state = cls(explainer.map_keys(), explainer.view, explainer.options.bbox_threshold)
        for key in state.keys:
            state.localisation[key], state.faithfulness[key] = [], []
        return state

    def add(self, measured: BatchMeasurements) -> None:
        self.samples += measured.samples
        for check in measured.box_checks:
            self.boxes += check.boxes
            self.boxes_outside += len(check.outside)
            self.boxes_clipped += len(check.clipped)
        for key in self.keys:
            self.localisation[key] += measured.localisation.get(key, [])
            self.faithfulness[key] += measured.faithfulness.get(key, [])

    def images(self) -> dict[str, list[int]]:
        """Sample indices by image, in order."""
        out: dict[str, list[int]] = {}
        for i, s in enumerate(self.samples):
            out.setdefault(s.image, []).append(i)
        return out

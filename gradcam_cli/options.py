"""Every option of a run, its default and its validation: one home, shared by the CLI and the Python API.

Checks that need nothing but the values run in :meth:`validate` before any model is
loaded (this module imports no heavy library); checks that need the model (layer
names, class names, CAM's head) run right after it loads, before any image is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

from .errors import UsageError
from .methods import METHODS, SMOOTHING, get_method
from .model.labels import imagenet_labels, read_label_names, read_labels, resolve_class
from .model.weight_file import check_weight_file
from .output.colormaps import COLORMAPS, DEFAULT_COLORMAP
from .output.files import KINDS

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
BBOX_MODES = ("largest", "all")
PRECISIONS = ("fp32", "fp16", "bf16")
# crop: the model's eval transform (resize, center crop); full: the whole photo at the same scale, no crop
# (models that take other input sizes only); auto: full where the model takes it, crop otherwise.
VIEWS = ("auto", "crop", "full")
MANIFEST = "results.jsonl"


def default_of(cls: type, name: str) -> object:
    """A dataclass field's default, so the CLI's ``--help`` shows the same value the API uses."""
    f = next(f for f in fields(cls) if f.name == name)
    return f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]


@dataclass
class ModelOptions:
    """Which classifier, with which weights, on which device and in which layout."""

    name: str | None = None  # None: the bundled EfficientNet-Lite0
    pretrained: bool = True
    weights: str | os.PathLike | None = None
    num_classes: int | None = None
    labels: str | os.PathLike | None = None
    device: str = "auto"
    memory_format: str = "auto"
    fold_bn: bool = True

    def validate(self) -> None:
        if self.memory_format not in MEMORY_FORMATS:
            raise UsageError(f"--memory-format {self.memory_format}: unknown; choose from {', '.join(MEMORY_FORMATS)}")
        if self.num_classes is not None and self.num_classes < 1:
            raise UsageError(f"--num-classes {self.num_classes}: must be at least 1")
        if self.weights is not None:
            check_weight_file(self.weights)
        self.known_labels()  # a --labels file that cannot be read, or has the wrong count for a known model

    def known_class_count(self) -> int | None:
        """How many classes the model has, where that is known before it is built."""
        if self.num_classes is not None:
            return self.num_classes
        return 1000 if self.name is None else None  # the bundled EfficientNet-Lite0 is an ImageNet-1k classifier

    def known_labels(self) -> list[str] | None:
        """The class names, where they are known before the model is built: --labels, or ImageNet's."""
        count = self.known_class_count()
        if self.labels is not None:
            return read_labels(self.labels, count) if count is not None else read_label_names(self.labels)
        return imagenet_labels() if count == 1000 else None


@dataclass
class ExplainOptions:
    """What each explanation is: methods, layers, classes, outputs."""

    layers: Sequence[str] = ()  # empty: the model's default layer
    classes: Sequence[str | int] = ()  # empty: the top-k predictions
    top_k: int = 1
    methods: Sequence[str] = ("gradcam",)
    smooth: str | None = None  # "aug" or "eigen"
    occlusion_window: int = 32  # pixels of the model's input
    occlusion_stride: int = 16
    outputs: Sequence[str] = KINDS
    alpha: float = 0.5
    # 0.2 and the full view: measured with `gradcam evaluate` on the labelled sample photos
    # (benchmarks/quality.py): the box accuracy over methods and IoU 0.3/0.5/0.7 peaks near 0.2 and is
    # half as high at 0.5; the full view localises better than the crop (README, "How good are the maps?").
    bbox_threshold: float = 0.2
    bbox_mode: str = "largest"  # or "all": every region above the threshold
    save_raw: bool = False
    sheet: bool = False  # one PNG per image and class: every method at every layer
    caption: bool | None = None  # None: on for sheets, off for heatmap/overlay files
    colorbar: bool | None = None  # None: on for sheets, off for heatmap/overlay files
    colormap: str = DEFAULT_COLORMAP
    overwrite: bool = False
    batch_size: int = 1  # images per forward pass
    perturbation_batch_size: int = 32  # perturbed copies per extra forward pass (scorecam, ablationcam, occlusion)
    precision: str = "fp32"
    # Photos above this many pixels are scaled down while they are decoded, and their maps
    # and pictures made at that size (boxes stay in the original's pixels): this bounds
    # memory and time per image. 16 Mpx is 4896x3264, a full-frame camera's photo.
    max_output_pixels: int = 16_000_000
    view: str = "auto"

    def validate(self) -> None:
        """Every check that needs no model; raises :class:`UsageError` with a one-line message."""
        for name in self.methods:
            get_method(name)
        self._check_method_combinations()
        unknown = [k for k in self.outputs if k not in KINDS]
        if unknown:
            raise UsageError(f"--outputs {','.join(unknown)}: unknown; choose from {', '.join(KINDS)}")
        if self.top_k < 1:
            raise UsageError(f"--top-k {self.top_k}: must be at least 1")
        if self.classes and self.top_k != 1:
            raise UsageError("--class and --top-k conflict: give one or the other")
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"--alpha {self.alpha}: must be between 0 and 1")
        if not 0.0 < self.bbox_threshold <= 1.0:
            raise UsageError(f"--bbox-threshold {self.bbox_threshold}: must be in (0, 1]")
        if self.bbox_mode not in BBOX_MODES:
            raise UsageError(f"--bbox-mode {self.bbox_mode}: unknown; choose from {', '.join(BBOX_MODES)}")
        counts = (("--batch-size", self.batch_size), ("--perturbation-batch-size", self.perturbation_batch_size),
                  ("--occlusion-window", self.occlusion_window), ("--occlusion-stride", self.occlusion_stride))
        for flag, value in counts:
            if value < 1:
                raise UsageError(f"{flag} {value}: must be at least 1")
        if self.occlusion_stride > self.occlusion_window:
            raise UsageError(f"--occlusion-stride {self.occlusion_stride}: larger than the window "
                             f"({self.occlusion_window}), so some pixels would never be occluded")
        if self.colormap not in COLORMAPS:
            raise UsageError(f"--colormap {self.colormap}: unknown; choose from {', '.join(COLORMAPS)}")
        if self.max_output_pixels < 1:
            raise UsageError(f"--max-output-pixels {self.max_output_pixels}: must be at least 1")
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision}: unknown; choose from {', '.join(PRECISIONS)}")
        if self.view not in VIEWS:
            raise UsageError(f"--view {self.view}: unknown; choose from {', '.join(VIEWS)}")

    def _check_method_combinations(self) -> None:
        infos = [METHODS[m] for m in self.methods]
        if not infos:
            raise UsageError("--method: give at least one method")
        if self.layers and not any(i.uses_layer for i in infos):
            names = ", ".join(i.name for i in infos)
            raise UsageError(f"--layer: {names} works on the model's input and takes no layer; drop --layer")
        if self.smooth is not None and self.smooth not in SMOOTHING:
            raise UsageError(f"--smooth {self.smooth}: unknown; choose from {', '.join(SMOOTHING)}")
        if self.smooth == "eigen" and not any(i.channel_weighted for i in infos):
            raise UsageError(f"--smooth eigen: applies to channel-weighted methods, not to {', '.join(self.methods)}")

    @property
    def method_settings(self) -> dict:
        """The per-method parameters the engine hands to the methods."""
        return {"occlusion_window": self.occlusion_window, "occlusion_stride": self.occlusion_stride}


def check_request(model: ModelOptions, options: ExplainOptions) -> None:
    """Every check of a request that needs no model: each option's own, then ``--class`` against the class
    names and count known before the model is built (the rest is checked right after it loads)."""
    model.validate()
    options.validate()
    count, labels = model.known_class_count(), model.known_labels()
    if count is None and labels is not None:
        count = len(labels)
    if count is not None:
        for spec in options.classes:
            resolve_class(spec, labels, count)


@dataclass
class EvaluateOptions:
    """What ``gradcam evaluate`` measures, on top of the explanations' own options."""

    annotations: str | os.PathLike = ""  # CSV, a folder of Pascal VOC XML files, or a COCO instances JSON
    faithfulness: bool = False  # deletion/insertion, ROAD, Average Drop: extra forward passes
    faithfulness_steps: int = 20  # points per perturbation curve, each one batched forward pass
    sanity: bool = False  # cascading model randomisation
    sanity_images: int = 16  # the first N evaluated images go through the randomised models
    pointing_tolerance: int = 15  # pixels (Zhang et al. 2016)
    overwrite: bool = False

    def validate(self) -> None:
        if not str(self.annotations):
            raise UsageError("--annotations: give a CSV, a folder of Pascal VOC XML files or a COCO JSON")
        if self.faithfulness_steps < 2:
            raise UsageError(f"--faithfulness-steps {self.faithfulness_steps}: must be at least 2")
        if self.sanity_images < 1:
            raise UsageError(f"--sanity-images {self.sanity_images}: must be at least 1")
        if self.pointing_tolerance < 0:
            raise UsageError(f"--pointing-tolerance {self.pointing_tolerance}: must be 0 or more")


@dataclass
class JobOptions:
    """How a job over many images runs, as opposed to what each explanation is."""

    workers: int = 2  # threads for decoding and for encoding; 0 = all inline
    skip_existing: bool = False
    fail_fast: bool = False
    shard: tuple[int, int] | None = None  # (index, count)
    checkpoint_s: float = 10.0  # how often the manifest is rewritten during a long job
    manifest_name: str = field(default=MANIFEST)

    def __post_init__(self) -> None:
        if self.shard is not None and self.manifest_name == MANIFEST:
            self.manifest_name = f"results.{self.shard[0]}-of-{self.shard[1]}.jsonl"

    def validate(self, overwrite: bool = False) -> None:
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers}: must be 0 or more")
        if overwrite and self.skip_existing:
            raise UsageError("--overwrite and --skip-existing conflict: give one or the other")


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N``."""
    try:
        left, right = spec.split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise UsageError(f"--shard {spec}: expected I/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {spec}: need 0 <= I < N")
    return index, count


ENGINES = ("local", "ray")


@dataclass
class EngineOptions:
    """Where a job's batches run: in this process (``local``), or on a Ray cluster's actors (``ray``)."""

    engine: str = "local"
    ray_address: str | None = None  # None: start a Ray instance on this machine
    actors: int | None = None  # None: one per GPU with --gpus-per-actor, else one
    gpus_per_actor: float = 0.0

    def validate(self) -> None:
        if self.engine not in ENGINES:
            raise UsageError(f"--engine {self.engine}: unknown; choose from {', '.join(ENGINES)}")
        if self.engine != "ray":
            given = [flag for flag, value in (("--ray-address", self.ray_address), ("--actors", self.actors),
                                              ("--gpus-per-actor", self.gpus_per_actor or None)) if value is not None]
            if given:
                raise UsageError(f"{given[0]}: applies to --engine ray only")
        if self.actors is not None and self.actors < 1:
            raise UsageError(f"--actors {self.actors}: must be at least 1")
        if self.gpus_per_actor < 0:
            raise UsageError(f"--gpus-per-actor {self.gpus_per_actor}: must be 0 or more")

"""Every option of a run, declared once: its default, its flag, its help and its check.

The dataclasses below are the Python API's options and, through the metadata of their
fields (`option`), the command line's: ``cli/params.py`` turns each field into a
flag, so a default or a help text lives in one place. Checks that need nothing but the
values run in ``validate`` before any model is loaded (this module imports no heavy
library); checks that need the model (layer names, class names, CAM's head) run right
after it loads, before any image is read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import MISSING, dataclass, field, fields

from .errors import UsageError
from .methods import KPCA_KERNELS, METHODS, SMOOTHING, get_method
from .model.labels import imagenet_labels, read_label_file, read_label_names, read_labels, resolve_classes
from .model.tasks import model_kind
from .model.weight_file import check_weight_file
from .output.colormaps import COLORMAPS, DEFAULT_COLORMAP
from .output.files import KINDS
from .targets import check_declared_head, check_for_model
from .targets import check_options as check_target_options

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
BBOX_MODES = ("largest", "all")
PRECISIONS = ("fp32", "fp16", "bf16")
# crop: the model's own eval transform (resize, center crop), what it sees when deployed; full: the whole
# photo at the same scale, uncropped, which changes what the model sees and so its predictions;
# auto: full where the model takes other input sizes, crop otherwise.
VIEWS = ("crop", "full", "auto")
ENGINES = ("local", "ray")
IG_BASELINES = ("black", "blur", "mean")  # methods/integratedgradients.py (not imported: it loads torch)
ROLLOUT_FUSIONS = ("mean", "max", "min")  # methods/rollout.py
MANIFEST = "results.jsonl"


def option(
    default=None,
    *flags: str,
    help: str,
    type: type | None = None,
    metavar: str | None = None,
    repeatable: bool = False,
    comma_list: bool = False,
    split: bool = True,
):
    """A dataclass field that is also a command-line option.

    ``flags``: the option's names (``"--top-k", "-k"``; a boolean's ``"--caption/--no-caption"``).
    ``repeatable``: given several times, and each value may also be a comma-separated list (``split``: split
    here; otherwise where the values are resolved, as class names may hold commas).
    ``comma_list``: one value, a comma-separated list. A field without flags is API-only.
    """
    meta = {
        "flags": flags,
        "help": help,
        "type": type,
        "metavar": metavar,
        "repeatable": repeatable,
        "comma_list": comma_list,
        "split": split,
    }
    return field(default=default, metadata=meta)


def default_of(cls: type, name: str) -> object:
    """A dataclass field's default, so the CLI's ``--help`` shows the same value the API uses."""
    f = next(f for f in fields(cls) if f.name == name)
    if f.default is not MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def split_list(values: Sequence[str] | str) -> tuple[str, ...]:
    """``("gradcam,layercam", "cam")`` -> ``("gradcam", "layercam", "cam")``: a repeatable flag's values, each of
    which may be a comma-separated list; blanks dropped."""
    if isinstance(values, str):
        values = (values,)
    return tuple(part.strip() for value in values for part in str(value).split(",") if part.strip())


def _at_least(flag: str, value: int, low: int) -> None:
    if value < low:
        raise UsageError(f"{flag} {value}: must be at least {low}")


def _one_of(flag: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise UsageError(f"{flag} {value}: unknown; choose from {', '.join(choices)}")


@dataclass
class ModelOptions:
    """Which classifier, with which weights, on which device and in which layout."""

    name: str | None = option(
        None,
        "--model",
        "-m",
        metavar="NAME",
        help="timm name (resnet50), or torchvision/NAME, or a torchvision detector or segmenter "
        "(fasterrcnn_resnet50_fpn, deeplabv3_resnet50). Default: the bundled EfficientNet-Lite0 "
        "with its ImageNet weights.",
    )
    pretrained: bool = option(
        True,
        "--pretrained/--no-pretrained",
        help="Download the model's pretrained weights (through its library's cache), or use random init.",
    )
    weights: str | os.PathLike | None = option(
        None,
        "--weights",
        metavar="FILE",
        help="Local checkpoint (.safetensors, or .pt/.pth read with weights_only=True).",
    )
    num_classes: int | None = option(
        None,
        "--num-classes",
        type=int,
        metavar="N",
        help="Classifier width for fine-tuned heads; 0: no head, the model returns embeddings (with --similar-to).",
    )
    labels: str | os.PathLike | None = option(
        None,
        "--labels",
        metavar="FILE",
        help="Class names: one per line, or JSON (a list, an object of index: name, or one with labels or id2label "
        "that may declare the head: head, multi_label or problem_type).",
    )
    device: str = option(
        "auto",
        "--device",
        metavar="DEVICE",
        help="auto (CUDA, then Apple MPS, then the CPU), cpu, cuda, cuda:N or mps.",
    )
    memory_format: str = option(
        "auto",
        "--memory-format",
        metavar="FORMAT",
        help="Layout of the model's weights: auto, channels_last or contiguous.",
    )
    fold_bn: bool = option(
        True,
        "--fold-bn/--no-fold-bn",
        help="Fold BatchNorm into the convolution before it (faster; same maps to float rounding).",
    )

    def validate(self) -> None:
        _one_of("--memory-format", self.memory_format, MEMORY_FORMATS)
        if self.num_classes is not None:
            _at_least("--num-classes", self.num_classes, 0)  # 0: no head, the model returns embeddings
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

    def declared_head(self) -> str | None:
        """The head (sigmoid or softmax) the --labels file says the model was trained with; None: not said."""
        return read_label_file(self.labels).head if self.labels is not None else None


@dataclass
class ExplainOptions:
    """What each explanation is: methods, layers, classes, pictures."""

    layers: Sequence[str] = option(
        (),
        "--layer",
        "-l",
        repeatable=True,
        metavar="PATH",
        help="Module path as `gradcam layers` prints it; repeatable or comma-separated; `stages` = each stage's last "
        "block. Default: the model's last spatial block.",
    )
    classes: Sequence[str | int] = option(
        (),
        "--class",
        "-c",
        repeatable=True,
        split=False,
        metavar="CLASS",
        help="Class index or name to explain; repeatable or comma-separated. Default: the top prediction.",
    )
    top_k: int = option(1, "--top-k", "-k", metavar="K", help="Explain the K most likely classes.")
    methods: Sequence[str] = option(
        ("gradcam",),
        "--method",
        repeatable=True,
        metavar="METHOD",
        help="Repeatable or comma-separated; `gradcam methods` lists them.",
    )
    smooth: str | None = option(
        None,
        "--smooth",
        metavar="aug|eigen",
        help="aug: average over flips and scalings; eigen: first principal component.",
    )
    occlusion_window: int = option(
        32, "--occlusion-window", metavar="PX", help="Occlusion: patch side in the model's input pixels."
    )
    occlusion_stride: int = option(16, "--occlusion-stride", metavar="PX", help="Occlusion: step between patches.")
    ig_steps: int = option(
        50, "--ig-steps", metavar="N", help="integratedgradients: points of the path integral (Gauss-Legendre)."
    )
    ig_baseline: str = option(
        "black",
        "--ig-baseline",
        metavar="BASELINE",
        help="integratedgradients: black (a black photo), blur (the input blurred) or mean (its mean colour).",
    )
    noise_level: float = option(
        0.15,
        "--noise-level",
        metavar="S",
        help="smoothgrad, vargrad: the noise's standard deviation as a share of the input's range (0..1].",
    )
    rollout_fusion: str = option(
        "mean", "--rollout-fusion", metavar="HOW", help="rollout: how the heads are fused: mean, max or min."
    )
    rollout_discard: float = option(
        0.0,
        "--rollout-discard",
        metavar="SHARE",
        help="rollout: the share [0, 1) of the smallest fused attention weights set to zero in each block.",
    )
    outputs: Sequence[str] = option(
        KINDS,
        "--outputs",
        comma_list=True,
        metavar="KINDS",
        help="Comma-separated subset of heatmap,overlay,guided,bbox.",
    )
    alpha: float = option(0.5, "--alpha", metavar="A", help="Heatmap weight in the overlay (0..1).")
    # 0.2: measured with `gradcam evaluate` on the labelled sample photos (benchmarks/quality.py): the box
    # accuracy over methods and IoU 0.3/0.5/0.7 peaks near 0.2 and is half as high at 0.5.
    bbox_threshold: float = option(
        0.2, "--bbox-threshold", metavar="T", help="A box surrounds a region where the normalised map >= T (0..1]."
    )
    bbox_mode: str = option(
        "largest",
        "--bbox-mode",
        metavar="MODE",
        help="largest: one box; all: every region above the threshold, each with its share.",
    )
    save_raw: bool = option(False, "--save-raw", help="Also write the float map (and the guided gradient) as .npy.")
    sheet: bool = option(
        False,
        "--sheet",
        help="Also write one PNG per image and class: the photo, then every layer (columns) for every method (rows).",
    )
    caption: bool | None = option(
        None,
        "--caption/--no-caption",
        help="Class, probability, method and layer above the picture. Default: on for "
        "sheets, off for heatmap and overlay.",
    )
    colorbar: bool | None = option(
        None,
        "--colorbar/--no-colorbar",
        help="The colour map's scale beside the picture. Default: on for sheets, off for heatmap and overlay.",
    )
    colormap: str = option(
        DEFAULT_COLORMAP,
        "--colormap",
        metavar="NAME",
        help="jet; perceptually uniform viridis, inferno, magma, plasma, cividis; turbo.",
    )
    overwrite: bool = option(False, "--overwrite", help="Replace existing output files.")
    batch_size: int = option(1, "--batch-size", "-b", metavar="N", help="Images per forward/backward pass.")
    perturbation_batch_size: int = option(
        32,
        "--perturbation-batch-size",
        metavar="N",
        help="Perturbed copies per extra forward pass (scorecam, ablationcam, occlusion).",
    )
    precision: str = option(
        "fp32",
        "--precision",
        metavar="P",
        help="fp32, or fp16/bf16 autocast for the forward pass (for GPUs; maps stay float32).",
    )
    # Photos above this many pixels are scaled down while they are decoded, and their maps and pictures
    # made at that size (boxes stay in the original's pixels): this bounds memory and time per image.
    # 16 Mpx is 4896x3264, a full-frame camera's photo.
    max_output_pixels: int = option(
        16_000_000,
        "--max-output-pixels",
        metavar="N",
        help="Larger photos are scaled down as they are decoded (aspect kept); maps and pictures are made at that "
        "size, boxes stay in the original's pixels.",
    )
    view: str = option(
        "crop",
        "--view",
        metavar="VIEW",
        help="crop: the model's own resize and center crop, what it sees when deployed. "
        "full: the whole photo at the same scale, uncropped, for models that take any input "
        "size; this changes what the model sees, and so its predictions. auto: full where the "
        "model takes it.",
    )
    # The CAM family's own settings (each method's file says what it does with them).
    noise_samples: int | None = option(
        None,
        "--noise-samples",
        type=int,
        metavar="N",
        help="smoothgrad, vargrad, sscam, smoothgradcampp: noisy copies per image (seeded noise). "
        "Default: 25 for smoothgrad and vargrad, 35 for sscam, 4 for smoothgradcampp.",
    )
    noise_std: float | None = option(
        None,
        "--noise-std",
        type=float,
        metavar="S",
        help="Noise level: sscam on the [0, 1] masks (default 2.0), smoothgradcampp on the model's normalised "
        "input (default 0.3).",
    )
    iscam_steps: int = option(10, "--iscam-steps", metavar="S", help="iscam: integration steps.")
    kpca_kernel: str = option(
        "sigmoid", "--kpca-kernel", metavar="KERNEL", help="kpcacam: sigmoid, rbf, poly, linear or cosine."
    )
    finer_similar: int = option(
        3,
        "--finer-similar",
        metavar="N",
        help="finercam: compare each class with the N classes whose scores are closest to its own.",
    )
    noise_seed: int = 0  # the noise of sscam and smoothgradcampp: the same maps on every run
    # What each map explains (gradcam_cli/targets/): the class logit unless these say otherwise.
    target: str | object = option(
        "class",
        "--target",
        metavar="class|probability",
        help="What each map explains: class, the class's pre-softmax logit; probability, its softmax probability. "
        "(Python API: also a Target, or a function of the model's output giving one score per image.)",
    )
    versus: str | None = option(
        None,
        "--versus",
        metavar="CLASS|auto",
        help="Why the explained class rather than CLASS: the logit difference. auto: the next most likely class.",
    )
    head: str = option(
        "auto",
        "--head",
        metavar="auto|softmax|sigmoid",
        help="The classifier's head. sigmoid: multi-label, each label above --label-threshold explained by its own "
        "logit. auto: sigmoid for a one-output (binary) head, softmax otherwise.",
    )
    label_threshold: float = option(
        0.5, "--label-threshold", metavar="P", help="With a sigmoid head: explain each label of probability >= P."
    )
    similar_to: str | None = option(
        None,
        "--similar-to",
        metavar="FILE",
        help="Explain the cosine similarity of each photo's embedding to this reference photo's (a classifier's "
        "pooled features; the output of a --num-classes 0 model).",
    )
    score_threshold: float = option(
        0.5, "--score-threshold", metavar="S", help="Detectors: explain each detection scoring >= S."
    )
    max_detections: int = option(
        20, "--max-detections", metavar="N", help="Detectors: at most N detections per image, the most confident first."
    )
    boxes: Sequence[str] = option(
        (),
        "--box",
        repeatable=True,
        split=False,
        metavar="x0,y0,x1,y1",
        help="Detectors: explain the detection at this box (photo pixels) instead; repeatable.",
    )

    def validate(self) -> None:
        """Every check that needs no model; raises `UsageError` with a one-line message."""
        for name in self.methods:
            get_method(name)
        check_target_options(self)
        self._check_method_combinations()
        self._check_cam_family()
        unknown = [k for k in self.outputs if k not in KINDS]
        if unknown:
            raise UsageError(f"--outputs {','.join(unknown)}: unknown; choose from {', '.join(KINDS)}")
        _at_least("--top-k", self.top_k, 1)
        if self.classes and self.top_k != 1:
            raise UsageError("--class and --top-k conflict: give one or the other")
        if not 0.0 <= self.alpha <= 1.0:
            raise UsageError(f"--alpha {self.alpha}: must be between 0 and 1")
        if not 0.0 < self.bbox_threshold <= 1.0:
            raise UsageError(f"--bbox-threshold {self.bbox_threshold}: must be in (0, 1]")
        self._check_counts()
        for flag, value, choices in (
            ("--bbox-mode", self.bbox_mode, BBOX_MODES),
            ("--colormap", self.colormap, COLORMAPS),
            ("--precision", self.precision, PRECISIONS),
            ("--view", self.view, VIEWS),
        ):
            _one_of(flag, value, choices)
        self._check_attribution_settings()

    def _check_counts(self) -> None:
        for flag, value in (
            ("--batch-size", self.batch_size),
            ("--perturbation-batch-size", self.perturbation_batch_size),
            ("--occlusion-window", self.occlusion_window),
            ("--occlusion-stride", self.occlusion_stride),
            ("--max-output-pixels", self.max_output_pixels),
        ):
            _at_least(flag, value, 1)
        if self.occlusion_stride > self.occlusion_window:
            raise UsageError(
                f"--occlusion-stride {self.occlusion_stride}: larger than the window "
                f"({self.occlusion_window}), so some pixels would never be occluded"
            )

    def _check_attribution_settings(self) -> None:
        _at_least("--ig-steps", self.ig_steps, 1)
        _one_of("--ig-baseline", self.ig_baseline, IG_BASELINES)
        _one_of("--rollout-fusion", self.rollout_fusion, ROLLOUT_FUSIONS)
        if not 0.0 < self.noise_level <= 1.0:
            raise UsageError(f"--noise-level {self.noise_level}: must be in (0, 1]")
        if not 0.0 <= self.rollout_discard < 1.0:
            raise UsageError(f"--rollout-discard {self.rollout_discard}: must be in [0, 1)")

    def _check_method_combinations(self) -> None:
        infos = [METHODS[m] for m in self.methods]
        if not infos:
            raise UsageError("--method: give at least one method")
        if self.layers and not any(i.uses_layer for i in infos):
            names = ", ".join(i.name for i in infos)
            where = " or ".join(dict.fromkeys(i.map_layer for i in infos))
            raise UsageError(f"--layer: {names} works on the model's {where} and takes no layer; drop --layer")
        if self.smooth is not None:
            _one_of("--smooth", self.smooth, SMOOTHING)
        if self.smooth == "eigen" and not any(i.channel_weighted for i in infos):
            raise UsageError(f"--smooth eigen: applies to channel-weighted methods, not to {', '.join(self.methods)}")

    def _check_cam_family(self) -> None:
        for flag, value in (("--noise-samples", self.noise_samples), ("--iscam-steps", self.iscam_steps)):
            if value is not None:
                _at_least(flag, value, 1)
        _at_least("--finer-similar", self.finer_similar, 1)
        if self.noise_std is not None and not self.noise_std >= 0:
            raise UsageError(f"--noise-std {self.noise_std}: must be 0 or more")
        _one_of("--kpca-kernel", self.kpca_kernel, KPCA_KERNELS)

    @property
    def method_settings(self) -> dict:
        """The per-method parameters the passes hand to the methods."""
        noise = {}
        if self.noise_samples is not None:
            noise.update(
                noise_samples=self.noise_samples,
                sscam_samples=self.noise_samples,
                smoothgradcampp_samples=self.noise_samples,
            )
        if self.noise_std is not None:
            noise.update(sscam_std=self.noise_std, smoothgradcampp_std=self.noise_std)
        return {
            "occlusion_window": self.occlusion_window,
            "occlusion_stride": self.occlusion_stride,
            "ig_steps": self.ig_steps,
            "ig_baseline": self.ig_baseline,
            "noise_level": self.noise_level,
            "rollout_fusion": self.rollout_fusion,
            "rollout_discard": self.rollout_discard,
            "iscam_steps": self.iscam_steps,
            "kpca_kernel": self.kpca_kernel,
            "finer_similar": self.finer_similar,
            "noise_seed": self.noise_seed,
            **noise,
        }


def check_request(model: ModelOptions, options: ExplainOptions) -> None:
    """Every check of a request that needs no model: each option's own, then ``--class`` against the class
    names and count known before the model is built (the rest is checked right after it loads)."""
    model.validate()
    options.validate()
    kind = model_kind(model.name, model.num_classes)
    check_for_model(kind, options)
    check_declared_head(kind, model.declared_head(), options, model.labels)
    count, labels = model.known_class_count(), model.known_labels()
    if count is None and labels is not None:
        count = len(labels)
    if count is not None:
        resolve_classes(options.classes, labels, count)


@dataclass
class EvaluateOptions:
    """What ``gradcam evaluate`` measures, on top of the explanations' own options."""

    annotations: str | os.PathLike = option(
        "",
        "--annotations",
        "-a",
        metavar="FILE",
        help="Ground-truth boxes: CSV (file,class,x0,y0,x1,y1; x1/y1 exclusive), a folder of Pascal VOC XML files, "
        "or a COCO instances JSON.",
    )
    faithfulness: bool = option(
        False,
        "--faithfulness/--no-faithfulness",
        help="Also deletion/insertion, ROAD, Average Drop (extra forward passes).",
    )
    faithfulness_steps: int = option(
        20,
        "--faithfulness-steps",
        metavar="N",
        help="Points per perturbation curve; a batch costs at most this many forward "
        "passes (fewer: faster, coarser AUC).",
    )
    sanity: bool = option(False, "--sanity", help="Cascading model randomisation on a copy of the model.")
    sanity_images: int = option(16, "--sanity-images", metavar="N", help="How many images the sanity check uses.")
    pointing_tolerance: int = option(
        15, "--pointing-tolerance", metavar="PX", help="Pointing game: pixels the maximum may lie outside a box."
    )
    overwrite: bool = option(False, "--overwrite", help="Replace an earlier evaluation's files.")

    def validate(self) -> None:
        if not str(self.annotations):
            raise UsageError("--annotations: give a CSV, a folder of Pascal VOC XML files or a COCO JSON")
        _at_least("--faithfulness-steps", self.faithfulness_steps, 2)
        _at_least("--sanity-images", self.sanity_images, 1)
        _at_least("--pointing-tolerance", self.pointing_tolerance, 0)


@dataclass
class JobOptions:
    """How a job over many images runs, as opposed to what each explanation is."""

    workers: int = option(
        2, "--workers", "-w", metavar="N", help="Threads for decoding and for writing pictures; 0 = inline."
    )
    threads: int | None = option(
        None,
        "--threads",
        type=int,
        metavar="N",
        help="Threads for the model's arithmetic (also GRADCAM_THREADS). Default: the cores not busy with other "
        "work when the run starts.",
    )
    skip_existing: bool = option(
        False, "--skip-existing", help="Skip images whose requested outputs all exist (resume a job)."
    )
    fail_fast: bool = option(False, "--fail-fast", help="Stop taking new work at the first failed image.")
    shard: str | tuple[int, int] | None = option(
        None, "--shard", metavar="I/N", help="Process a deterministic 1/N of the inputs (writes results.I-of-N.jsonl)."
    )
    recursive: bool = option(False, "--recursive", "-r", help="Descend into sub-folders.")
    null_separated: bool = option(False, "-0", "--null", help="Paths on stdin are NUL-separated (find -print0).")
    checkpoint_s: float = 10.0  # how often the manifest is compacted during a long job

    def validate(self, overwrite: bool = False) -> None:
        _at_least("--workers", self.workers, 0)
        if self.threads is not None:
            _at_least("--threads", self.threads, 1)
        if overwrite and self.skip_existing:
            raise UsageError("--overwrite and --skip-existing conflict: give one or the other")
        self.shard_spec()

    def shard_spec(self) -> tuple[int, int] | None:
        """``"I/N"`` -> ``(I, N)`` with ``0 <= I < N`` (None: no shard)."""
        return None if self.shard is None else parse_shard(self.shard)

    @property
    def manifest_name(self) -> str:
        """``results.jsonl``, or a shard's ``results.I-of-N.jsonl``."""
        shard = self.shard_spec()
        return MANIFEST if shard is None else f"results.{shard[0]}-of-{shard[1]}.jsonl"


def parse_shard(spec: str | tuple[int, int]) -> tuple[int, int]:
    """``"I/N"`` (or ``(I, N)``) -> ``(I, N)`` with ``0 <= I < N``."""
    if isinstance(spec, tuple):
        spec = "/".join(map(str, spec))
    try:
        left, right = str(spec).split("/")
        index, count = int(left), int(right)
    except ValueError:
        raise UsageError(f"--shard {spec}: expected I/N, e.g. 0/4") from None
    if count < 1 or not 0 <= index < count:
        raise UsageError(f"--shard {spec}: need 0 <= I < N")
    return index, count


@dataclass
class EngineOptions:
    """Where a job's batches run: in this process (``local``), or on a Ray cluster's actors (``ray``)."""

    engine: str = option(
        "local",
        "--engine",
        metavar="ENGINE",
        help='local: this process; ray: actors on a Ray cluster (pip install "gradcam-cli[ray]").',
    )
    ray_address: str | None = option(
        None,
        "--ray-address",
        metavar="ADDR",
        help="With --engine ray: join this cluster (ray start --head prints it). Default: start Ray here.",
    )
    actors: int | None = option(
        None,
        "--actors",
        type=int,
        metavar="N",
        help="With --engine ray: model copies working in parallel. Default: one per GPU share, else one.",
    )
    gpus_per_actor: float = option(
        0.0,
        "--gpus-per-actor",
        metavar="G",
        help="With --engine ray: GPUs each actor gets (1: one actor per GPU; 0.5: two share one).",
    )

    def validate(self) -> None:
        _one_of("--engine", self.engine, ENGINES)
        if self.engine != "ray":
            given = [
                flag
                for flag, value in (
                    ("--ray-address", self.ray_address),
                    ("--actors", self.actors),
                    ("--gpus-per-actor", self.gpus_per_actor or None),
                )
                if value is not None
            ]
            if given:
                raise UsageError(f"{given[0]}: applies to --engine ray only")
        if self.actors is not None:
            _at_least("--actors", self.actors, 1)
        if self.gpus_per_actor < 0:
            raise UsageError(f"--gpus-per-actor {self.gpus_per_actor}: must be 0 or more")

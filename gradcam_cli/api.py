"""The Python API: ``explain(model, images, ...)`` returns maps and record fields, writes nothing;
``evaluate(model, images, annotations, ...)`` measures the maps against ground truth.

``model`` is a name (as on the command line) or an ``nn.Module`` you built. A module of
yours is used as it is and left exactly as it was: no BatchNorm folding, no layout
change, no module swapped, and its train/eval flags, ``requires_grad`` flags, hooks and
``.grad`` fields are as before the call. Both run on the same job layer as the command
line: ``engine="local"`` in this process, ``engine="ray"`` on a Ray cluster's actors.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

import numpy as np
import torch
from torch import nn

from .errors import ImageError
from .explainer import Explanation
from .maps.preprocess import PreprocessConfig
from .model.loading import LoadedModel, infer_num_classes, load_model
from .options import EngineOptions, EvaluateOptions, ExplainOptions, JobOptions, ModelOptions

ImageLike = str | os.PathLike | np.ndarray | torch.Tensor | object  # object: a PIL image


@dataclass
class ImageResult:
    """The explanations of one image: every (method, layer, class), maps at the image's resolution."""

    source: str
    explanations: list[Explanation]
    records: list[dict] = field(default_factory=list)  # the JSON record fields, without files

    def map(self, method: str = "gradcam", layer: str | None = None, rank: int = 1) -> np.ndarray:
        """The ``(H, W)`` map in [0, 1] of ``method`` at ``layer`` (the first one by default) for the rank-th class."""
        for e in self.explanations:
            if e.method == method and (layer is None or e.layer == layer) and e.rank == rank:
                return e.map
        raise KeyError(f"no map for method {method!r}, layer {layer!r}, rank {rank}")

    @property
    def maps(self) -> dict[tuple[str, str], np.ndarray]:
        """``(method, layer) -> (K, H, W)`` maps, classes in rank order."""
        out: dict[tuple[str, str], list[np.ndarray]] = {}
        for e in sorted(self.explanations, key=lambda e: e.rank):
            out.setdefault((e.method, e.layer), []).append(e.map)
        return {k: np.stack(v) for k, v in out.items()}


@dataclass
class Evaluation:
    """What `evaluate` measured: one summary per (method, layer), and the measurements behind them."""

    summaries: list[dict]
    measurements: object  # gradcam_cli.metrics.measurements.Measurements
    failed: list[str] = field(default_factory=list)  # one line per image that could not be measured

    def summary(self, method: str = "gradcam", layer: str | None = None) -> dict:
        return next(s for s in self.summaries if s["method"] == method and (layer is None or s["layer"] == layer))


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Every module in eval mode inside the block; each module's own flag comes back after."""
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag


def _user_model(model: nn.Module, preprocess: PreprocessConfig | None, labels: Sequence[str] | None) -> LoadedModel:
    """A module of the caller's, wrapped as it is."""
    if preprocess is None:
        preprocess = _timm_preprocess(model) or PreprocessConfig(input_size=(224, 224), resize=256)
    classes = infer_num_classes(model)
    if labels is None and classes == 1000:
        from .model.labels import imagenet_labels

        labels = imagenet_labels()
    return LoadedModel(
        model,
        f"custom/{type(model).__name__}",
        preprocess,
        classes,
        list(labels) if labels else None,
        "the caller's module",
    )


def _timm_preprocess(model: nn.Module) -> PreprocessConfig | None:
    if not hasattr(model, "pretrained_cfg"):
        return None
    from timm.data import resolve_data_config

    return PreprocessConfig.from_timm(resolve_data_config({}, model=model))


def _as_input(image: ImageLike, index: int):
    """One image as a job's input: a file (decoded as the command line does), or an image held in memory."""
    from .io.inputs import InputImage
    from .job.task import MemoryImage

    if isinstance(image, (str, os.PathLike)):
        return InputImage(str(image), PurePosixPath(os.path.basename(image) or "image"))
    name = PurePosixPath(f"image{index}.png")
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(
                f"image {index}: a tensor must be a preprocessed (3, H, W) input, got {tuple(image.shape)}"
            )
        return MemoryImage(f"<tensor {index}>", name, tensor=image.detach().cpu())
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {index}: an array must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
        return MemoryImage(f"<array {index}>", name, photo=image)
    if hasattr(image, "convert"):  # a PIL image
        return MemoryImage(f"<image {index}>", name, photo=np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
    raise TypeError(f"image {index}: expected a path, PIL image, (H, W, 3) uint8 array or (3, H, W) tensor")


def _model_for(model, images: list, preprocess, labels, load_options: dict, engine: EngineOptions):
    """What the job's workers load: the caller's module (wrapped), a name's options (Ray's actors load it), or
    the model loaded here."""
    if preprocess is None and images and all(isinstance(i, torch.Tensor) for i in images):
        h, w = images[0].shape[-2:]
        preprocess = PreprocessConfig(input_size=(h, w), resize=(h, w))  # the tensors are the model's input
    if isinstance(model, nn.Module):
        return _user_model(model, preprocess, labels)
    if engine.engine == "ray":
        return ModelOptions(name=model, **load_options)
    return load_model(model, **load_options)


def explain(
    model: str | nn.Module | None,
    images: ImageLike | Sequence[ImageLike],
    *,
    methods: Sequence[str] = ("gradcam",),
    layers: Sequence[str] = (),
    classes: Sequence[str | int] = (),
    top_k: int = 1,
    guided: bool = False,
    target: str | object = "class",
    preprocess: PreprocessConfig | None = None,
    labels: Sequence[str] | None = None,
    options: ExplainOptions | None = None,
    engine: str = "local",
    **load_options,
) -> list[ImageResult]:
    """Explain ``images`` with ``model``; one `ImageResult` per image, nothing written.

    ``images``: paths (photos above ``options.max_output_pixels`` are scaled down while
    decoded, and their maps made at that size), PIL images, ``(H, W, 3)`` uint8 RGB arrays
    (preprocessed with the model's own transform, maps placed back on the photo), or ``(3, H, W)``
    tensors that are already the model's input (maps at the tensor's resolution). ``target``: what each map
    explains: ``"class"`` (the logit), ``"probability"``, a `gradcam_cli.targets.base.Target`, or a function of
    the model's output returning one score per image (``lambda output: output[:, 3] - output[:, 5]``);
    ``options`` (an `ExplainOptions`) has the other targets' settings (``versus``, ``similar_to``, ...).
    ``load_options``
    go to `gradcam_cli.load_model` when ``model`` is a name (``pretrained``, ``weights``,
    ``device``, ...). ``options`` overrides the keyword options wholesale. ``engine="ray"`` runs the
    images on a Ray cluster's actors (``ray_address=``, ``actors=``, ``gpus_per_actor=`` choose it).
    An image that cannot be read raises `ImageError`.
    """
    from .job.bookkeeper import Bookkeeper
    from .job.explain import ExplainTask
    from .job.run import run_job

    opts = options or ExplainOptions(
        layers=tuple(layers),
        classes=tuple(classes),
        top_k=top_k,
        methods=tuple(methods),
        outputs=("guided",) if guided else (),
        target=target,
    )
    opts.validate()
    engine_opts = _engine(engine, load_options)
    batch = list(images) if isinstance(images, (list, tuple)) else [images]
    items = [_as_input(image, i) for i, image in enumerate(batch)]
    loaded = _model_for(model, batch, preprocess, labels, load_options, engine_opts)
    results: dict[int, ImageResult] = {}

    def collect(outcome) -> None:
        results[outcome.index] = ImageResult(outcome.source, outcome.payload or [], outcome.records)

    book = Bookkeeper(len(items), None, on_outcome=collect)
    in_eval = _eval_mode(loaded.model) if isinstance(loaded, LoadedModel) else nullcontext()
    with in_eval:
        task = ExplainTask(loaded, opts, None, keep_explanations=True)
        run_job(task, items, book, engine=engine_opts, batch_size=opts.batch_size, workers=0)
    return [_result(results[i]) for i in range(len(items))]


def _result(result: ImageResult) -> ImageResult:
    errors = [r["error"] for r in result.records if "error" in r]
    if errors:
        raise ImageError(errors[0])
    return result


def _engine(engine: str, load_options: dict) -> EngineOptions:
    """The engine options, taken out of ``load_options`` (``ray_address``, ``actors``, ``gpus_per_actor``)."""
    keys = ("ray_address", "actors", "gpus_per_actor")
    chosen = EngineOptions(engine=engine, **{k: load_options.pop(k) for k in keys if k in load_options})
    chosen.validate()
    return chosen


def evaluate(
    model: str | nn.Module | None,
    images: str | os.PathLike | Sequence[str | os.PathLike],
    annotations: str | os.PathLike,
    *,
    methods: Sequence[str] = ("gradcam",),
    layers: Sequence[str] = (),
    options: ExplainOptions | None = None,
    measure: EvaluateOptions | None = None,
    faithfulness: bool = False,
    sanity: bool = False,
    recursive: bool = False,
    preprocess: PreprocessConfig | None = None,
    labels: Sequence[str] | None = None,
    engine: str = "local",
    **load_options,
) -> Evaluation:
    """Measure the maps of ``images`` (files, folders, glob patterns) against the boxes in ``annotations``
    (a CSV, a folder of Pascal VOC XML files or a COCO JSON): localisation, and with ``faithfulness`` and
    ``sanity`` the model-based metrics. ``engine="ray"`` measures on a Ray cluster's actors, with the same
    results as in this process. Nothing is written.
    """
    from .explainer import Explainer
    from .job.evaluate import evaluate_job
    from .job.run import job_inputs
    from .metrics.annotations import read_annotations
    from .metrics.report import summarise

    opts = replace(options or ExplainOptions(methods=tuple(methods), layers=tuple(layers)), outputs=())
    measure = measure or EvaluateOptions(annotations=annotations, faithfulness=faithfulness, sanity=sanity)
    for checked in (opts, measure):
        checked.validate()
    engine_opts = _engine(engine, load_options)
    paths = [str(images)] if isinstance(images, (str, os.PathLike)) else [str(i) for i in images]
    items = job_inputs(paths, JobOptions(recursive=recursive), None)
    truth = read_annotations(measure.annotations)
    remote = (
        ModelOptions(name=model, **load_options)
        if engine_opts.engine == "ray" and not isinstance(model, nn.Module)
        else None
    )
    if remote is not None:
        load_options = {**load_options, "device": "cpu"}  # the model here checks the request and runs the sanity
    loaded = _model_for(model, [], preprocess, labels, load_options, EngineOptions())
    failed: list[str] = []
    with _eval_mode(loaded.model):
        explainer = Explainer(loaded, opts)
        truth.resolve(explainer.loaded.labels, explainer.loaded.num_classes)
        measured, _ = evaluate_job(
            explainer, items, truth, measure, JobOptions(workers=0), engine_opts, model=remote, on_message=failed.append
        )
    return Evaluation([summarise(measured, key) for key in measured.keys], measured, failed)

"""The Python API: ``explain(model, images, ...)`` returns maps and record fields, writes nothing.

``model`` is a name (as on the command line) or an ``nn.Module`` you built. A module of
yours is used as it is and left exactly as it was: no BatchNorm folding, no layout
change, no module swapped, and its train/eval flags, ``requires_grad`` flags, hooks and
``.grad`` fields are as before the call (``tests/test_api.py`` checks it bit for bit).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .explainer import Explainer, Explanation
from .job.images import load_photo
from .job.records import explanation_record
from .maps.preprocess import CropGeometry, PreprocessConfig
from .model.loading import LoadedModel, infer_num_classes, load_model
from .options import ExplainOptions

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
    return LoadedModel(model, f"custom/{type(model).__name__}", preprocess, classes,
                       list(labels) if labels else None, "the caller's module")


def _timm_preprocess(model: nn.Module) -> PreprocessConfig | None:
    if not hasattr(model, "pretrained_cfg"):
        return None
    from timm.data import resolve_data_config

    return PreprocessConfig.from_timm(resolve_data_config({}, model=model))


def _as_photo(image: ImageLike, index: int, max_pixels: int) -> tuple[str, np.ndarray | None, torch.Tensor | None, tuple | None]:
    """``(source, RGB photo or None, ready input tensor or None, original size or None)`` for one image.

    A file is decoded at most ``max_pixels`` large, as the CLI does (the last item is then
    its full size); arrays, PIL images and tensors are used at the size given.
    """
    if isinstance(image, (str, os.PathLike)):
        photo, full_size = load_photo(image, max_pixels)
        return str(image), photo, None, full_size
    if isinstance(image, torch.Tensor):
        if image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"image {index}: a tensor must be a preprocessed (3, H, W) input, got {tuple(image.shape)}")
        return f"<tensor {index}>", None, image, None
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image {index}: an array must be (H, W, 3) uint8 RGB, got {image.dtype} {image.shape}")
        return f"<array {index}>", image, None, None
    if hasattr(image, "convert"):  # a PIL image
        return f"<image {index}>", np.asarray(image.convert("RGB"), dtype=np.uint8).copy(), None, None
    raise TypeError(f"image {index}: expected a path, PIL image, (H, W, 3) uint8 array or (3, H, W) tensor")


def _prepared(explainer: Explainer, photo: np.ndarray | None, tensor: torch.Tensor | None):
    if tensor is not None:
        h, w = tensor.shape[-2:]
        return tensor.detach().float().cpu(), CropGeometry((w, h), (w, h), (0, 0, w, h))
    return explainer.prepare(photo)


def explain(
    model: str | nn.Module | None,
    images: ImageLike | Sequence[ImageLike],
    *,
    methods: Sequence[str] = ("gradcam",),
    layers: Sequence[str] = (),
    classes: Sequence[str | int] = (),
    top_k: int = 1,
    guided: bool = False,
    preprocess: PreprocessConfig | None = None,
    labels: Sequence[str] | None = None,
    options: ExplainOptions | None = None,
    **load_options,
) -> list[ImageResult]:
    """Explain ``images`` with ``model``; one :class:`ImageResult` per image, nothing written.

    ``images``: paths (photos above ``options.max_output_pixels`` are scaled down while
    decoded, and their maps made at that size), PIL images, ``(H, W, 3)`` uint8 RGB arrays
    (preprocessed with the model's own transform, maps placed back on the photo), or ``(3, H, W)`` tensors that
    are already the model's input (maps at the tensor's resolution). ``load_options`` go
    to :func:`gradcam_cli.load_model` when ``model`` is a name (``pretrained``,
    ``weights``, ``device``, ...). ``options`` overrides the keyword options wholesale.
    """
    opts = options or ExplainOptions(layers=tuple(layers), classes=tuple(classes), top_k=top_k,
                                     methods=tuple(methods), outputs=("guided",) if guided else ())
    opts.validate()
    batch = list(images) if isinstance(images, (list, tuple)) else [images]
    if preprocess is None and batch and all(isinstance(i, torch.Tensor) for i in batch):
        h, w = batch[0].shape[-2:]
        preprocess = PreprocessConfig(input_size=(h, w), resize=(h, w))  # the tensors are the model's input
    loaded = _user_model(model, preprocess, labels) if isinstance(model, nn.Module) else load_model(model, **load_options)
    with _eval_mode(loaded.model):
        explainer = Explainer(loaded, opts)
        decoded = [_as_photo(image, i, opts.max_output_pixels) for i, image in enumerate(batch)]
        results = []
        for start in range(0, len(decoded), opts.batch_size):
            chunk = decoded[start:start + opts.batch_size]
            prepared = [_prepared(explainer, photo, tensor) for _, photo, tensor, _ in chunk]
            explained = explainer.explain_prepared([t for t, _ in prepared], [g for _, g in prepared])
            for (source, photo, tensor, full_size), exps in zip(chunk, explained):
                shape = photo if photo is not None else np.empty((*tensor.shape[-2:], 3), np.uint8)
                records = [explanation_record(loaded.name, loaded.weights, source, shape, e, {}, 0.0, full_size)
                           for e in exps]
                results.append(ImageResult(source, exps, records))
    return results

"""The target a run's options ask for, built on the loaded model (the reference embedding computed, the
``--versus`` class resolved, a detector's own score threshold lowered to ``--score-threshold``)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..errors import MethodError
from ..model.tasks import CLASSIFIER, DETECTOR
from . import target_name
from .base import Target, as_target


def target_for(options, loaded, prepare: Callable[[np.ndarray], tuple[torch.Tensor, object]]) -> Target:
    """The target of ``options`` (an `ExplainOptions`) for ``loaded`` (a `LoadedModel`); ``prepare`` makes a
    photo the model's input (for the reference photo of ``--similar-to``)."""
    if not isinstance(options.target, str):
        return as_target(options.target)
    kind = loaded.kind
    head = options.head
    if head == "auto" and kind == CLASSIFIER:
        # What the --labels file declares; otherwise a one-output head is a binary (sigmoid) classifier.
        head = loaded.head or ("sigmoid" if loaded.num_classes == 1 else "auto")
    name = target_name(kind, target=options.target, versus=options.versus, head=head, similar_to=options.similar_to)
    build = {
        "class": lambda: _load("class_logit", "ClassLogit")(),
        "probability": lambda: _load("probability", "SoftmaxProbability")(),
        "contrastive": lambda: _contrastive(options, loaded),
        "sigmoid": lambda: _sigmoid(options),
        "similarity": lambda: _similarity(options, loaded, prepare),
        "detection": lambda: _detection(options, loaded),
        "segmentation": lambda: _load("segmentation", "SegmentClass")(background=_background(loaded.labels)),
    }
    return build[name]()


def _load(module: str, name: str) -> type:
    from importlib import import_module

    return getattr(import_module(f".{module}", __package__), name)


def _contrastive(options, loaded) -> Target:
    from ..model.labels import resolve_class
    from .contrastive import AUTO, Contrastive

    if str(options.versus).strip().lower() == AUTO:
        return Contrastive(AUTO)
    try:
        return Contrastive(resolve_class(options.versus, loaded.labels, loaded.num_classes))
    except MethodError:
        raise
    except Exception as err:  # resolve_class words its errors for --class
        raise type(err)(str(err).replace("--class", "--versus", 1)) from None


def _sigmoid(options) -> Target:
    from .multilabel import SigmoidLabels, SigmoidProbability

    kind = SigmoidProbability if options.target == "probability" else SigmoidLabels
    return kind(options.label_threshold)


def _similarity(options, loaded, prepare) -> Target:
    from ..io.images import load_photo
    from ..model.device import model_device
    from .similarity import OUTPUT, POOLED, Similarity

    photo, _ = load_photo(str(options.similar_to), options.max_output_pixels)
    tensor, _ = prepare(photo)
    features = POOLED if loaded.num_classes > 0 else OUTPUT
    model = loaded.model
    return Similarity.of_input(model, tensor.to(model_device(model)), features, str(options.similar_to))


def _detection(options, loaded) -> Target:
    from ..model.detectors import lower_score_threshold
    from .detection import DetectionScore

    if loaded.kind == DETECTOR and not loaded.name.startswith("custom/"):
        lower_score_threshold(loaded.model, options.score_threshold)  # a model we built: its own cut-off
    return DetectionScore(options.score_threshold, max_detections=options.max_detections)


def _background(labels) -> int | None:
    """The class a segmenter predicts where there is nothing: index 0 when it is named so."""
    return 0 if labels and labels[0].strip("_ ").lower() in ("background", "__background__") else None

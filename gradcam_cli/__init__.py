"""gradcam-cli: explanations for timm and torchvision classifiers (the CAM family, occlusion, guided images).

Python API (the CLI is a thin layer over it)::

    from gradcam_cli import explain
    [result] = explain("resnet50", "dog.jpg", methods=["gradcam", "scorecam"], pretrained=False)
    result.maps["gradcam", "layer4"]   # (K, H, W) float32 in [0, 1], one map per class, aligned with the photo
    result.map("gradcam")              # (H, W): the top class

    from gradcam_cli import load_model, Explainer, ExplainOptions, load_rgb
    explainer = Explainer(load_model("resnet50", pretrained=False), ExplainOptions(top_k=2))
    [explanations] = explainer.explain_arrays([load_rgb("dog.jpg")])

    from gradcam_cli import evaluate
    evaluation = evaluate("resnet50", "photos/", "boxes.csv", methods=["gradcam", "layercam"], engine="ray")
    evaluation.summary("layercam")["pointing_game"]

    from gradcam_cli import compare   # two `gradcam explain --save-raw` folders, paired and judged
    result = compare("golden/", "candidate/", fail_under={"spearman": 0.9})
    result.passed, result.failed_pairs, result.summary()["means"]

Lower level: ``explain_batch`` (the passes of one batch) on a preprocessed tensor (pass
``layouts=layer_layouts(model, layers, input_size)`` for transformer layers), and the
methods' pure functions on tensors in ``gradcam_cli.methods.<name>``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from .version import __version__

_EXPORTS = {
    "explain": "api",
    "evaluate": "api",
    "compare": "comparison.api",
    "CompareResult": "comparison.result",
    "ImageResult": "api",
    "Evaluation": "api",
    "load_model": "model.loading",
    "LoadedModel": "model.loading",
    "DEFAULT_MODEL": "model.loading",
    "Explainer": "explainer",
    "Explanation": "explainer",
    "ExplainOptions": "options",
    "ModelOptions": "options",
    "JobOptions": "options",
    "METHODS": "methods",
    "EvaluateOptions": "options",
    "EngineOptions": "options",
    "explain_batch": "passes",
    "BatchExplanation": "passes",
    "load_rgb": "io.images",
    "trace_layers": "model.layers",
    "default_layer": "model.layers",
    "resolve_layer": "model.layers",
    "layer_layouts": "model.layers",
    "resolve_device": "model.device",
    "keep_freed_memory": "allocator",
    "GradcamError": "errors",
    "UsageError": "errors",
    "ImageError": "errors",
    "MethodError": "errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .allocator import keep_freed_memory
    from .api import Evaluation, ImageResult, evaluate, explain
    from .comparison.api import compare
    from .comparison.result import CompareResult
    from .errors import GradcamError, ImageError, MethodError, UsageError
    from .explainer import Explainer, Explanation
    from .io.images import load_rgb
    from .methods import METHODS
    from .model.device import resolve_device
    from .model.layers import default_layer, layer_layouts, resolve_layer, trace_layers
    from .model.loading import DEFAULT_MODEL, LoadedModel, load_model
    from .options import EngineOptions, EvaluateOptions, ExplainOptions, JobOptions, ModelOptions
    from .passes import BatchExplanation, explain_batch


def __getattr__(name: str):
    # Lazy, so that `import gradcam_cli` (and `gradcam --help`) does not pay for torch.
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

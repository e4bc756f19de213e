"""gradcam-cli: Grad-CAM explanations for timm and torchvision classifiers.

Python API (the CLI is a thin layer over it)::

    from gradcam_cli import load_model, Explainer, ExplainOptions, load_rgb
    explainer = Explainer(load_model("resnet50", pretrained=False), ExplainOptions(top_k=2))
    [explanations] = explainer.explain_arrays([load_rgb("dog.jpg")])
    explanations[0].map        # (H, W) float32 in [0, 1], aligned with the photo
    explanations[0].bbox       # (x0, y0, x1, y1) in photo pixels

Lower level: ``explain_batch`` (engine) on a preprocessed tensor and the pure
functions in ``gradcam_cli.cam_math``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "models",
    "LoadedModel": "models",
    "DEFAULT_MODEL": "models",
    "Explainer": "pipeline",
    "ExplainOptions": "pipeline",
    "Explanation": "pipeline",
    "explain_batch": "engine",
    "BatchExplanation": "engine",
    "load_rgb": "images",
    "trace_layers": "layers",
    "default_layer": "layers",
    "resolve_layer": "layers",
    "resolve_device": "device",
    "keep_freed_memory": "allocator",
    "GradcamError": "errors",
    "UsageError": "errors",
    "ImageError": "errors",
    "MethodError": "errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from .allocator import keep_freed_memory
    from .device import resolve_device
    from .engine import BatchExplanation, explain_batch
    from .errors import GradcamError, ImageError, MethodError, UsageError
    from .images import load_rgb
    from .layers import default_layer, resolve_layer, trace_layers
    from .models import DEFAULT_MODEL, LoadedModel, load_model
    from .pipeline import Explainer, ExplainOptions, Explanation


def __getattr__(name: str):
    # Lazy, so that `import gradcam_cli` (and `gradcam --help`) does not pay for torch.
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

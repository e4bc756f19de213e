"""torchvision's detectors and segmenters by name: built, made to take the input as we prepare it, and
the layer their maps default to.

A detector runs its own transform: it normalises each image, resizes it (shorter side to ``min_size``,
longer side at most ``max_size``) and pads the batch to a multiple of 32. Here the resize and the
padding happen while the photo is prepared, as for classifiers (``maps/preprocess.py``, the full view
with ``max_size`` and sides rounded to multiples of 32), and the detector's transform is replaced by
one that only normalises (`KeptSizeTransform`): so the hooked layers' grids cover exactly the input,
and the input exactly the photo, and every map and box lands on the photo. Boxes come back in the
input's pixels. A segmenter takes the normalised photo at any size (shorter side 520, as its weights'
transform says) and returns per-pixel logits at the input's size.
"""

from __future__ import annotations

from torch import nn

from ..errors import UsageError
from ..maps.preprocess import PreprocessConfig
from .layers import LayerInfo, default_layer
from .tasks import DETECTORS, SEGMENTER

DETECTION_MULTIPLE = 32  # the detectors' size_divisible: inputs are made multiples of it, so nothing is padded
SEGMENTATION_MULTIPLE = 16  # the segmenters' largest output stride (8 or 16): their grids then cover the input exactly


def build(arch: str, pretrained: bool, num_classes: int | None) -> tuple[nn.Module, PreprocessConfig, str, list[str]]:
    """torchvision's detector or segmenter ``arch``: the model (eval mode not yet set), its preprocessing,
    where its weights came from, and its class names."""
    from torchvision import models as tvm

    weights = tvm.get_model_weights(arch).DEFAULT
    categories = list(weights.meta["categories"])
    if pretrained:
        if num_classes not in (None, len(categories)):
            raise UsageError(
                f"--model torchvision/{arch}: its pretrained weights have {len(categories)} classes; with "
                "--num-classes give --weights FILE or --no-pretrained"
            )
        model = _pretrained(arch, weights)
        source = f"pretrained ({weights})"
    else:
        kwargs = {} if num_classes is None else {"num_classes": num_classes}
        model = tvm.get_model(arch, weights=None, weights_backbone=None, **kwargs)
        source = "random init"
        if num_classes not in (None, len(categories)):
            categories = [str(i) for i in range(num_classes)]
    if arch in DETECTORS:
        from .kept_size import kept_size

        model.transform = kept_size(model.transform)
        return model, detection_preprocess(model.transform), source, categories
    if getattr(model, "aux_classifier", None) is not None:
        model.aux_classifier = None  # a training aid: its output is never read here
    return model, segmentation_preprocess(weights), source, categories


def _pretrained(arch: str, weights) -> nn.Module:
    from torchvision import models as tvm

    from . import hub

    if not hub.cache_path_of(weights.url).is_file():
        hub.require_download(f"torchvision/{arch}", weights.url, hub.torch_cache_dir())
    try:
        return tvm.get_model(arch, weights=weights)
    except Exception as err:
        raise hub.download_failed(f"torchvision/{arch}", hub.torch_cache_dir(), err) from None


def detection_preprocess(transform: nn.Module) -> PreprocessConfig:
    """The detector's own resize rule, with [0, 1] pixels (its transform normalises them)."""
    if transform.fixed_size is not None:
        height, width = transform.fixed_size[1], transform.fixed_size[0]
        return PreprocessConfig((height, width), (height, width), "bilinear", (0.0,) * 3, (1.0,) * 3)
    short = int(transform.min_size[-1])
    return PreprocessConfig(
        (short, short),
        short,
        "bilinear",
        (0.0,) * 3,
        (1.0,) * 3,
        size_multiple=(DETECTION_MULTIPLE, DETECTION_MULTIPLE),
        max_size=int(transform.max_size),
    )


def segmentation_preprocess(weights) -> PreprocessConfig:
    """The segmenter's weights' transform: shorter side to its resize size, normalised, nothing cropped."""
    t = weights.transforms()
    short = int(t.resize_size[0]) if t.resize_size else 520
    multiple = (SEGMENTATION_MULTIPLE, SEGMENTATION_MULTIPLE)
    return PreprocessConfig((short, short), short, "bilinear", tuple(t.mean), tuple(t.std), size_multiple=multiple)


def view_of(preprocess: PreprocessConfig) -> str:
    """The view these models take: the whole photo (a fixed-size detector's squashed to its size)."""
    return "crop" if isinstance(preprocess.resize, tuple) else "full"


def lower_score_threshold(model: nn.Module, threshold: float) -> None:
    """Let the detector keep every detection scoring at least ``threshold`` (its own cut-off is 0.05 or so)."""
    owner = getattr(model, "roi_heads", model)
    if hasattr(owner, "score_thresh"):
        owner.score_thresh = min(float(owner.score_thresh), float(threshold))


def task_default_layer(model: nn.Module, layers: list[LayerInfo], kind: str) -> str:
    """The last spatial block of the backbone's feature extractor: ``backbone.body.layer4`` (ResNet FPN
    detectors), ``backbone.layer4`` (segmenters), the last of ``backbone.features`` (SSD). Its grid is
    coarse and its features the most semantic; every head reads them (through the FPN's top-down path)."""
    names = dict(model.named_modules())
    for prefix in ("backbone.body", "backbone.features", "backbone"):
        if prefix in names:
            inside = [layer for layer in layers if layer.path.startswith(prefix + ".")]
            if any(layer.spatial for layer in inside):
                return default_layer(model, inside)
    what = "segmenter" if kind == SEGMENTER else "detector"
    raise UsageError(f"this {what} has no backbone layer with a spatial output; choose one with --layer")

"""What kind of model a name is, before it is built: a classifier, an embedding model, a detector or a segmenter.

Imports nothing heavy, so a request that does not fit its model (a detector with ``--versus``) is
refused before torch loads. The detectors and segmenters are torchvision's, by name.
"""

from __future__ import annotations

CLASSIFIER, EMBEDDING, DETECTOR, SEGMENTER = "classifier", "embedding", "detector", "segmenter"

DETECTORS = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn",
    "retinanet_resnet50_fpn_v2",
    "fcos_resnet50_fpn",
    "ssd300_vgg16",
    "ssdlite320_mobilenet_v3_large",
    "maskrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
)
SEGMENTERS = (
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "fcn_resnet50",
    "fcn_resnet101",
    "lraspp_mobilenet_v3_large",
)
_TORCHVISION_PREFIXES = ("torchvision/", "tv/")


def torchvision_task_arch(name: str | None) -> str | None:
    """The torchvision architecture a name means when it is a detector or segmenter (bare or prefixed), else None."""
    if not name:
        return None
    lowered = name.lower()
    for prefix in _TORCHVISION_PREFIXES:
        if lowered.startswith(prefix):
            name = name[len(prefix) :]
            break
    return name if name in DETECTORS or name in SEGMENTERS else None


def model_kind(name: str | None, num_classes: int | None = None) -> str:
    """`DETECTOR`, `SEGMENTER`, `EMBEDDING` (a head of zero classes) or `CLASSIFIER`."""
    arch = torchvision_task_arch(name)
    if arch is not None:
        return DETECTOR if arch in DETECTORS else SEGMENTER
    return EMBEDDING if num_classes == 0 else CLASSIFIER

"""The method family, behind one extension point.

Each method is a file in this package with a ``compute(evidence)`` function (see
``base.py``) and one line in `METHODS` saying what it needs. Adding a method is
adding a file and a line. This module imports nothing heavy, so options can be
checked before torch loads; the method's own file is imported when it first runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module
from types import ModuleType

from ..errors import UsageError
from ..suggest import close_names, did_you_mean

GRADIENTS = "gradients"  # one backward pass per class to the hooked layer, shared by all gradient methods
CLASSIFIER = "classifier weights"  # the rows of a GAP -> linear head
ACTIVATIONS = "activations only"
FORWARD_PASSES = "extra forward passes"


@dataclass(frozen=True)
class MethodInfo:
    name: str
    title: str
    paper: str
    needs: str  # one of the four above
    class_specific: bool
    uses_layer: bool = True  # False: the map is computed on the input (occlusion)
    channel_weighted: bool = True  # a weighted channel sum, so --smooth eigen applies

    @property
    def gradient_free(self) -> bool:
        return self.needs != GRADIENTS

    def cost(self, channels: int | None = None, windows: int | None = None) -> str:
        """Its passes for one batch, for a layer with ``channels`` channels (or occlusion ``windows``)."""
        if self.needs == GRADIENTS:
            return "1 forward + 1 backward to the layer per class (shared by all gradient methods)"
        if self.needs != FORWARD_PASSES:
            return "1 forward (shared)"
        c, w = channels or "C", windows or "W"
        return {
            "scorecam": f"1 forward + {c} forwards of the whole network per image (constant channels skipped)",
            "ablationcam": f"1 forward + {c} runs of the network after the layer per image",
            "occlusion": f"1 forward + {w} forwards of the whole network per image",
        }[self.name]

    def implementation(self) -> ModuleType:
        return import_module(f".{self.name}", __name__)


METHODS: dict[str, MethodInfo] = {
    m.name: m
    for m in (
        MethodInfo("gradcam", "Grad-CAM", "Selvaraju et al., ICCV 2017 (arXiv:1610.02391)", GRADIENTS, True),
        MethodInfo("gradcampp", "Grad-CAM++", "Chattopadhay et al., WACV 2018 (arXiv:1710.11063)", GRADIENTS, True),
        MethodInfo("xgradcam", "XGrad-CAM", "Fu et al., BMVC 2020 (arXiv:2008.02312)", GRADIENTS, True),
        MethodInfo("hirescam", "HiResCAM", "Draelos & Carin, 2020 (arXiv:2011.08891)", GRADIENTS, True),
        MethodInfo("layercam", "LayerCAM", "Jiang et al., IEEE TIP 2021", GRADIENTS, True),
        MethodInfo(
            "eigencam",
            "Eigen-CAM",
            "Muhammad & Yeasin, IJCNN 2020 (arXiv:2008.00299)",
            ACTIVATIONS,
            False,
            channel_weighted=False,
        ),
        MethodInfo(
            "eigengradcam",
            "Eigen-Grad-CAM",
            "after Muhammad & Yeasin 2020, on gradient x activation",
            GRADIENTS,
            True,
            channel_weighted=False,
        ),
        MethodInfo("scorecam", "Score-CAM", "Wang et al., CVPR-W 2020 (arXiv:1910.01279)", FORWARD_PASSES, True),
        MethodInfo("ablationcam", "Ablation-CAM", "Desai & Ramaswamy, WACV 2020", FORWARD_PASSES, True),
        MethodInfo("cam", "CAM", "Zhou et al., CVPR 2016 (arXiv:1512.04150)", CLASSIFIER, True),
        MethodInfo(
            "occlusion",
            "Occlusion",
            "Zeiler & Fergus, ECCV 2014 (arXiv:1311.2901)",
            FORWARD_PASSES,
            True,
            uses_layer=False,
            channel_weighted=False,
        ),
    )
}

SMOOTHING = ("aug", "eigen")
INPUT_LAYER = "input"  # the "layer" of maps computed on the input


def get_method(name: str) -> MethodInfo:
    """The method called ``name``; an unknown name is a usage error with the closest names."""
    info = METHODS.get(name)
    if info is None:
        hint = did_you_mean(close_names(name, METHODS, n=3, cutoff=0.5)) or f"; choose from {', '.join(METHODS)}"
        raise UsageError(f"--method {name}: unknown{hint}")
    return info

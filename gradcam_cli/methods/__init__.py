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
OWN_SCORE_GRADIENTS = "gradients of its own score"  # a backward pass per class of its own, on the shared forward
SECOND_ORDER = "gradients and Hessian-vector products"  # a double backward per class on the shared forward
FULL_GRADIENTS = "input and bias gradients"  # its own forward and backward through the whole network
NOISY_GRADIENTS = "gradients of noisy copies"  # forward and backward passes of noisy copies of the input
# Needs that record the autograd graph of the shared forward pass from the hooked layers on.
GRAPH_NEEDS = (GRADIENTS, OWN_SCORE_GRADIENTS, SECOND_ORDER)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    title: str
    paper: str
    needs: str  # one of the needs above
    class_specific: bool
    uses_layer: bool = True  # False: the map is computed on the input (occlusion)
    channel_weighted: bool = True  # a weighted channel sum, so --smooth eigen applies
    fuses_layers: bool = False  # one map from all the hooked layers together (refinecam), not one per layer

    @property
    def gradient_free(self) -> bool:
        return self.needs in (ACTIVATIONS, CLASSIFIER, FORWARD_PASSES)

    def cost(self, channels: int | None = None, windows: int | None = None) -> str:
        """Its passes for one batch, for a layer with ``channels`` channels (or occlusion ``windows``)."""
        if self.needs == GRADIENTS:
            shared = "1 forward + 1 backward to the layer per class (shared by all gradient methods)"
            return shared + (", at every hooked layer" if self.fuses_layers else "")
        c, w = channels or "C", windows or "W"
        return _OWN_COSTS.get(self.name, "1 forward (shared)").format(c=c, w=w)

    def implementation(self) -> ModuleType:
        return import_module(f".{self.name}", __name__)


# The passes of the methods that run passes of their own; C channels, W windows.
_OWN_COSTS = {
    "scorecam": "1 forward + {c} forwards of the whole network per image (constant channels skipped)",
    "ablationcam": "1 forward + {c} runs of the network after the layer per image",
    "occlusion": "1 forward + {w} forwards of the whole network per image",
    "sscam": "1 forward + N x {c} forwards of the whole network per image (N = --noise-samples, default 35)",
    "iscam": "1 forward + S x {c} forwards of the whole network per image (S = --iscam-steps, default 10)",
    "smoothgradcampp": "1 forward + N forwards and N x 1 backward to the layer per class "
    "(N = --noise-samples, default 4)",
    "finercam": "1 forward (shared) + 1 backward to the layer per class, of its own score",
    "shapleycam": "1 forward (shared) + 1 backward to the layer that records its graph + 1 Hessian-vector "
    "product per class",
    "fullgrad": "1 forward (shared, unless a gradient method runs: then its own) + 1 backward through the whole "
    "network per class",
}

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
        MethodInfo(
            "fullgrad",
            "FullGrad",
            "Srinivas & Fleuret, NeurIPS 2019 (arXiv:1905.00780)",
            FULL_GRADIENTS,
            True,
            uses_layer=False,
            channel_weighted=False,
        ),
        MethodInfo(
            "kpcacam",
            "KPCA-CAM",
            "Karmani et al., 2024 (arXiv:2410.00267)",
            ACTIVATIONS,
            False,
            channel_weighted=False,
        ),
        MethodInfo("shapleycam", "Shapley-CAM", "Cai et al., 2025 (arXiv:2501.06261)", SECOND_ORDER, True),
        MethodInfo("finercam", "Finer-CAM", "Zhang et al., CVPR 2025 (arXiv:2501.11309)", OWN_SCORE_GRADIENTS, True),
        MethodInfo("fem", "FEM", "Fuad et al., IPTA 2020 (hal-02963298)", ACTIVATIONS, False, channel_weighted=False),
        MethodInfo(
            "refinecam",
            "RefineCAM",
            "Grad-CAM++ maps of several layers multiplied (pytorch-grad-cam's RefineCAM)",
            GRADIENTS,
            True,
            channel_weighted=False,
            fuses_layers=True,
        ),
        MethodInfo("sscam", "SS-CAM", "Wang et al., 2020 (arXiv:2006.14255)", FORWARD_PASSES, True),
        MethodInfo("iscam", "IS-CAM", "Naidu et al., 2020 (arXiv:2010.03023)", FORWARD_PASSES, True),
        MethodInfo(
            "smoothgradcampp",
            "Smooth Grad-CAM++",
            "Omeiza et al., 2019 (arXiv:1908.01224)",
            NOISY_GRADIENTS,
            True,
        ),
    )
}


def fused_layer(paths) -> str:
    """The record's layer of a map fused from several layers: their paths joined by ``+``."""
    return "+".join(paths)


KPCA_KERNELS = ("sigmoid", "rbf", "poly", "linear", "cosine")  # kpcacam's kernels
SMOOTHING = ("aug", "eigen")
INPUT_LAYER = "input"  # the "layer" of maps computed on the input


def get_method(name: str) -> MethodInfo:
    """The method called ``name``; an unknown name is a usage error with the closest names."""
    info = METHODS.get(name)
    if info is None:
        hint = did_you_mean(close_names(name, METHODS, n=3, cutoff=0.5)) or f"; choose from {', '.join(METHODS)}"
        raise UsageError(f"--method {name}: unknown{hint}")
    return info

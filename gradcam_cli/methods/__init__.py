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
ATTENTION = "attention probabilities"  # every attention block's, captured in the shared forward pass
ATTENTION_GRADIENTS = "attention probabilities and the class score's gradients to them"
BLOCK_SCORE_GRADIENTS = "each block's own class score's gradients to its attention probabilities"
INPUT_GRADIENTS = "gradients to the input"  # one backward pass per class to the input, in the shared pass
INPUT_PASSES = "extra forward and backward passes"  # of the whole network, on copies of the input
ATTENTION_NEEDS = (ATTENTION, ATTENTION_GRADIENTS, BLOCK_SCORE_GRADIENTS)
TRANSFORMERS = "transformers with attention probabilities (timm ViT/DeiT/EVA/BEiT, torchvision ViT)"
OWN_SCORE_GRADIENTS = "gradients of its own score"  # a backward pass per class of its own, on the shared forward
SECOND_ORDER = "gradients and Hessian-vector products"  # a double backward per class on the shared forward
FULL_GRADIENTS = "input and bias gradients"  # its own forward and backward through the whole network
NOISY_GRADIENTS = "gradients of noisy copies"  # forward and backward passes of noisy copies of the input
# Needs that record the autograd graph of the shared forward pass from the hooked layers on.
GRAPH_NEEDS = (GRADIENTS, OWN_SCORE_GRADIENTS, SECOND_ORDER)
# Needs met by passes of the method's own that score the class logit: these methods explain the class target only.
CLASS_SCORE_NEEDS = (
    *ATTENTION_NEEDS,
    INPUT_GRADIENTS,
    INPUT_PASSES,
    OWN_SCORE_GRADIENTS,
    SECOND_ORDER,
    FULL_GRADIENTS,
    NOISY_GRADIENTS,
)


@dataclass(frozen=True)
class MethodInfo:
    name: str
    title: str
    paper: str
    needs: str  # one of the kinds above
    class_specific: bool
    uses_layer: bool = True  # False: the map is computed on the input (occlusion) or on the attention
    channel_weighted: bool = True  # a weighted channel sum, so --smooth eigen applies
    applies_to: str = "any classifier"
    fuses_layers: bool = False  # one map from all the hooked layers together (refinecam), not one per layer

    @property
    def gradient_free(self) -> bool:
        return self.needs in (ACTIVATIONS, CLASSIFIER, FORWARD_PASSES)

    @property
    def map_layer(self) -> str | None:
        """The record's layer of a method that takes no ``--layer``: ``attention`` or ``input``."""
        if self.uses_layer:
            return None
        return ATTENTION_LAYER if self.needs in ATTENTION_NEEDS else INPUT_LAYER

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
    "rollout": "1 forward (shared), attention computed unfused",
    "chefer": "1 forward + 1 backward to the first attention block per class (shared with inputxgradient)",
    "legrad": "1 forward + 1 backward through each block from its own score, per block and class",
    "inputxgradient": "1 forward + 1 backward to the input per class (shared with chefer)",
    "integratedgradients": "1 forward + S forwards and S x K backwards of the whole network per image (S: --ig-steps)",
    "smoothgrad": "1 forward + N forwards and N x K backwards of the whole network per image (N: --noise-samples)",
    "vargrad": "1 forward + N forwards and N x K backwards of the whole network per image (N: --noise-samples)",
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
            "rollout",
            "Attention rollout",
            "Abnar & Zuidema, ACL 2020 (arXiv:2005.00928)",
            ATTENTION,
            False,
            uses_layer=False,
            channel_weighted=False,
            applies_to=TRANSFORMERS,
        ),
        MethodInfo(
            "chefer",
            "Gradient-weighted attention relevance",
            "Chefer, Gur & Wolf, ICCV 2021 (arXiv:2103.15679)",
            ATTENTION_GRADIENTS,
            True,
            uses_layer=False,
            channel_weighted=False,
            applies_to=TRANSFORMERS,
        ),
        MethodInfo(
            "legrad",
            "LeGrad",
            "Bousselham et al., 2024 (arXiv:2404.03214)",
            BLOCK_SCORE_GRADIENTS,
            True,
            uses_layer=False,
            channel_weighted=False,
            applies_to=TRANSFORMERS,
        ),
        MethodInfo(
            "inputxgradient",
            "Input x Gradient",
            "Shrikumar et al., 2016 (arXiv:1605.01713)",
            INPUT_GRADIENTS,
            True,
            uses_layer=False,
            channel_weighted=False,
        ),
        MethodInfo(
            "integratedgradients",
            "Integrated Gradients",
            "Sundararajan, Taly & Yan, ICML 2017 (arXiv:1703.01365)",
            INPUT_PASSES,
            True,
            uses_layer=False,
            channel_weighted=False,
        ),
        MethodInfo(
            "smoothgrad",
            "SmoothGrad",
            "Smilkov et al., 2017 (arXiv:1706.03825)",
            INPUT_PASSES,
            True,
            uses_layer=False,
            channel_weighted=False,
        ),
        MethodInfo(
            "vargrad",
            "VarGrad",
            "Adebayo et al., 2018 (arXiv:1810.03307)",
            INPUT_PASSES,
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
ATTENTION_LAYER = "attention"  # the "layer" of maps computed from every attention block


def get_method(name: str) -> MethodInfo:
    """The method called ``name``; an unknown name is a usage error with the closest names."""
    info = METHODS.get(name)
    if info is None:
        hint = did_you_mean(close_names(name, METHODS, n=3, cutoff=0.5)) or f"; choose from {', '.join(METHODS)}"
        raise UsageError(f"--method {name}: unknown{hint}")
    return info

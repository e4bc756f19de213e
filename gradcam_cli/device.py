"""Choosing the torch device: the best available one by default."""

from __future__ import annotations

import torch

from .errors import UsageError


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

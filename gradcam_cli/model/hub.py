"""Pretrained weights from the model hubs: the local cache first, then a quick check that the hub can be reached.

Without this, a machine with no network spends about 50 s in the Hugging Face client's
retries before timm gives up. Here a cached checkpoint is read without any network
access, and a missing one is only downloaded after a short TCP connect to the hub (or
the proxy) succeeds; ``HF_HUB_OFFLINE`` is honoured at once. Every failure is one full
line that says what to do instead.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import UsageError

CONNECT_TIMEOUT_S = 3.0  # a reachable hub answers a TCP connect in well under a second
_HF_NAMES = ("model.safetensors", "pytorch_model.bin")  # what timm looks for, in its order


def hf_cache_dir() -> str:
    """Where the Hugging Face client keeps downloads (``HF_HUB_CACHE``, ``HF_HOME``/hub, ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def torch_cache_dir() -> str:
    """Where torch.hub keeps downloaded checkpoints (torchvision's, and timm's older URL weights)."""
    import torch

    return os.path.join(torch.hub.get_dir(), "checkpoints")


def cached_timm_weights(arch: str) -> tuple[str, str] | None:
    """``(path, hub id)`` of a cached checkpoint for timm's ``arch`` (its default pretrained tag), or None."""
    from huggingface_hub import try_to_load_from_cache
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(arch)
    except RuntimeError:  # an unknown pretrained tag: timm itself will say so
        return None
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        for name in (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HF_NAMES:
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str):
                return found, cfg.hf_hub_id
    if cfg.url and cache_path_of(cfg.url).is_file():
        return str(cache_path_of(cfg.url)), cfg.url
    return None


def timm_source(arch: str) -> tuple[str, str]:
    """``(url, cache folder)`` that timm downloads ``arch``'s pretrained weights from and into."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(arch)
    except RuntimeError:
        cfg = None
    if cfg is not None and not cfg.hf_hub_id and cfg.url:
        return cfg.url, torch_cache_dir()
    return hf_endpoint(), hf_cache_dir()


def hf_endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def require_download(name: str, url: str, cache: str) -> None:
    """Raise the one-line `UsageError` if ``url`` cannot be downloaded from here, right now.

    ``HF_HUB_OFFLINE`` (for the Hugging Face hub) answers at once; otherwise one TCP
    connect to the host, or to the proxy the environment names, with a short timeout.
    """
    if _is_hf(url) and _hf_offline():
        raise weights_unavailable(name, cache, "HF_HUB_OFFLINE is set")
    why = unreachable(url)
    if why is not None:
        raise weights_unavailable(name, cache, why)


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> str | None:
    """Why a TCP connection to ``url``'s host (or to the proxy for it) fails, or None when it opens."""
    host = urlsplit(url).hostname or url
    proxy = _proxy_for(url)
    target = urlsplit(proxy or url)
    port = target.port or (443 if target.scheme == "https" else 80)
    where = f"{host} cannot be reached" + (f" through the proxy {target.hostname}:{port}" if proxy else "")
    try:
        with socket.create_connection((target.hostname or "", port), timeout=timeout):
            return None
    except TimeoutError:
        return f"{where}: no answer within {timeout:g} s"
    except OSError as err:
        return f"{where}: {err.strerror or ' '.join(str(err).split()) or type(err).__name__}"


def weights_unavailable(name: str, cache: str, why: str) -> UsageError:
    """The one full line for pretrained weights that are neither cached nor downloadable."""
    return UsageError(
        f"--model {name}: its pretrained weights are not in the cache ({cache}) and cannot be downloaded "
        f"({why}). Pass --weights FILE with a local checkpoint, use --no-pretrained for random weights, "
        f"or put the checkpoint in that cache while online."
    )


def download_failed(name: str, cache: str, err: BaseException) -> UsageError:
    """The one full line for a download that started and failed (the library's first line, whole)."""
    text = " ".join(str(err).split()) or type(err).__name__
    first = text.split(". ")[0].rstrip(".")
    return weights_unavailable(name, cache, f"download failed: {first}")


def _is_hf(url: str) -> bool:
    return urlsplit(url).hostname == urlsplit(hf_endpoint()).hostname


def _hf_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _proxy_for(url: str) -> str | None:
    """The proxy the environment sets for ``url``, as the HTTP clients would use it (None: direct)."""
    import urllib.request

    host = urlsplit(url).hostname or ""
    if urllib.request.proxy_bypass(host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(urlsplit(url).scheme) or proxies.get("all")


def cache_path_of(url: str) -> Path:
    """Where torch.hub caches the checkpoint at ``url``."""
    return Path(torch_cache_dir()) / os.path.basename(urlsplit(url).path)

"""An on-disk cache of ``gradcam layers`` tables, so a second listing needs neither torch nor timm.

Listing a model's layers means importing torch and timm and tracing the model: about
5 s on a 2-core machine, nearly all of it imports. The table depends only on the model
name, the class count and the versions of the libraries and of this package, which
form the cache key. This module imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import json
import os
from importlib import metadata
from pathlib import Path

from ..output.files import write_bytes_atomic

_FORMAT = 2  # 2: rows carry their layout and grid
_PACKAGES = ("torch", "torchvision", "timm", "gradcam-cli")


def cache_dir() -> Path:
    """``$GRADCAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/gradcam-cli``, else ``~/.cache/gradcam-cli``."""
    explicit = os.environ.get("GRADCAM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gradcam-cli"


def _versions() -> dict[str, str]:
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "none"
    # An editable install keeps its version while its code changes: the sources count too.
    package = Path(__file__).parents[1]
    found["sources"] = str(max((p.stat().st_mtime_ns for p in package.rglob("*.py")), default=0))
    return found


def table_key(model: str | None, num_classes: int | None) -> str:
    """The cache key of one listing: model, class count, library versions."""
    payload = json.dumps(
        {"format": _FORMAT, "model": model, "num_classes": num_classes, "versions": _versions()}, sort_keys=True
    )
    return hashlib.sha1(payload.encode()).hexdigest()


def read_table(key: str) -> dict | None:
    """The cached table for ``key``, or None (missing, unreadable or from another format)."""
    try:
        data = json.loads((cache_dir() / f"layers-{key}.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("format") == _FORMAT else None


def write_table(key: str, table: dict) -> None:
    """Store ``table`` atomically; a cache that cannot be written is silently skipped.

    With the umask's mode, like the outputs: the table holds layer names and shapes only,
    and a cache folder shared by a team (``GRADCAM_CACHE_DIR``) must be readable by it.
    """
    try:
        write_bytes_atomic(cache_dir() / f"layers-{key}.json", json.dumps({**table, "format": _FORMAT}).encode())
    except OSError:
        pass

"""The ``gradcam`` command: parses arguments, calls the library, prints. Nothing else.

Heavy libraries (torch, timm, OpenCV) are imported inside the commands so that
``gradcam --help`` stays instant.
"""

from __future__ import annotations

from . import evaluate, explain, layers, methods, report  # noqa: F401  (each registers its command)
from .app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point."""
    from ..allocator import keep_freed_memory

    keep_freed_memory()  # process-wide, so only here, before any tensor exists (see allocator.py)
    app()


if __name__ == "__main__":
    main()

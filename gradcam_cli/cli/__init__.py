"""The ``gradcam`` command: parses arguments, calls the library, prints. Nothing else.

Heavy libraries (torch, timm, OpenCV) are imported inside the commands so that
``gradcam --help`` stays instant.
"""

from __future__ import annotations

import sys

from . import compare, concepts, evaluate, explain, layers, methods, report  # noqa: F401  (each registers its command)
from .app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console entry point."""
    from ..allocator import keep_freed_memory
    from ..threads import prepare_process

    keep_freed_memory()  # process-wide, so only here, before any tensor exists (see allocator.py)
    prepare_process()  # OpenMP's wait policy must be set before torch loads (see threads.py)
    try:
        app()
    except KeyboardInterrupt:  # Ctrl-C before a job's own handlers are installed (loading, start-up)
        print("gradcam: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

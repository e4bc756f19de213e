"""The checks on a ``--weights`` file that need no torch: it exists, is a readable, non-empty regular file.

Run before the model is built (a bad path is a bad request, answered in a fraction of a
second) and again by `gradcam_cli.model.weights.read_state_dict` when it reads the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..errors import UsageError


def check_weight_file(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or a one-line `UsageError` naming ``--weights`` and the cause."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"--weights {p}: no such file") from None
    except OSError as err:
        cause = err.strerror or " ".join(str(err).split()) or type(err).__name__
        raise UsageError(f"--weights {p}: cannot access ({cause})") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"--weights {p}: is a directory, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"--weights {p}: not a regular file")
    if st.st_size == 0:
        raise UsageError(f"--weights {p}: empty file (0 bytes)")
    if not os.access(p, os.R_OK):
        raise UsageError(f"--weights {p}: permission denied")
    return p

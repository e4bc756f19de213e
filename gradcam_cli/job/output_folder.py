"""The output folder of a job: checked before the model loads, then created, locked and described.

Order matters: the folder is checked (it can be created and written) before anything is
loaded; when the job starts, the manifest is opened first (taking the folder's lock and
folding in what a killed run left) and only then is ``run.json`` written, so a run that
cannot write its records does not describe itself either.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import UsageError
from ..io.manifest import Manifest
from ..output.runinfo import run_info, write_run_info
from ..output.store import LOCAL, open_folder


def is_uri(destination: str) -> bool:
    return "://" in str(destination)


def check_output_dir(output_dir: str | os.PathLike) -> None:
    """Fail early if ``output_dir`` cannot be created or written; creates nothing."""
    if not str(output_dir).strip():
        raise UsageError("--output-dir: empty; give a folder (it is created if needed)")
    if is_uri(str(output_dir)):
        return
    probe = Path(output_dir)
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"--output-dir {output_dir}: cannot create it, {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--output-dir {output_dir}: not a writable directory ({probe} is not writable)")


def open_output(destination: str, manifest_name: str, explainer, option_sets: dict) -> Manifest:
    """Create the folder, open its manifest (the lock taken, a killed run's records folded in), then write
    ``run.json`` (not for a URI: object stores have no lock and get no ``run.json``)."""
    try:
        files, root = open_folder(destination)
        files.make_dir(root)
    except (OSError, ValueError) as err:  # unreachable, not writable, or a URI scheme pyarrow does not know
        raise UsageError(
            f"--output-dir {destination}: cannot create ({getattr(err, 'strerror', None) or err})"
        ) from None
    manifest = Manifest(root / manifest_name, files).open()
    if files is LOCAL:
        try:
            write_run_info(Path(root), manifest_name, run_info(explainer, option_sets, Path(destination)))
        except OSError as err:
            manifest.close()
            raise UsageError(f"--output-dir {destination}: cannot write ({err.strerror or err})") from None
    return manifest

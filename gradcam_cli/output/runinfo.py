"""``run.json``: how a run into an output folder was made (command, model, options, versions).

Written next to the manifest at the start of every ``gradcam explain`` run (a shard writes
``run.I-of-N.json`` next to its ``results.I-of-N.jsonl``); the report shows it at the top.
"""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from .files import write_bytes_atomic

VERSIONED = ("torch", "torchvision", "timm", "numpy", "pillow", "opencv-python-headless")


def run_info_name(manifest_name: str) -> str:
    """``results.jsonl`` -> ``run.json``; ``results.0-of-4.jsonl`` -> ``run.0-of-4.json``."""
    middle = manifest_name.removeprefix("results").removesuffix(".jsonl")
    return f"run{middle}.json"


def versions() -> dict[str, str]:
    """Python, the platform and the installed versions of the libraries a result depends on (nothing imported)."""
    from ..version import __version__

    found = {"gradcam-cli": __version__, "python": platform.python_version(), "platform": platform.platform(terse=True)}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def command_line() -> list[str] | None:
    """The ``gradcam`` command as typed, when this process is the command (not a test runner or another program)."""
    program = Path(sys.argv[0]).name if sys.argv else ""
    return ["gradcam", *sys.argv[1:]] if program in ("gradcam", "__main__.py") else None


def run_info(explainer, option_sets: dict[str, object], output_dir: Path) -> dict:
    """What the report's header shows about a run: the model as loaded and every option."""
    return {
        "started": datetime.now(timezone.utc).astimezone().isoformat(timespec="seconds"),
        "command": command_line(),
        "output_dir": str(output_dir),
        "model": explainer.loaded.name,
        "weights": explainer.loaded.weights,
        "device": str(explainer.device),
        "threads": _torch_threads(),
        "layers": list(explainer.layers),
        "view": explainer.view,
        "preprocess": asdict(explainer.preprocess),
        "options": {name: asdict(opts) if is_dataclass(opts) else opts for name, opts in option_sets.items()},
        "versions": versions(),
    }


def _torch_threads() -> int | None:
    """The threads torch's CPU arithmetic uses in this run (None where torch is not loaded)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def write_run_info(output_dir: Path, manifest_name: str, info: dict) -> Path:
    path = output_dir / run_info_name(manifest_name)
    write_bytes_atomic(path, json.dumps(info, indent=1, ensure_ascii=False, default=str).encode("utf-8"))
    return path


def read_run_info(output_dir: Path, manifest_name: str) -> dict | None:
    """The run's information, or None when the file is missing or unreadable (a report still works without it)."""
    try:
        info = json.loads((output_dir / run_info_name(manifest_name)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None

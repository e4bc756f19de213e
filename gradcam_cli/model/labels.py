"""Class names: built-in ImageNet-1k names, a user's --labels file, and --class lookup."""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from ..errors import UsageError
from ..suggest import close_names, did_you_mean


@lru_cache(maxsize=1)
def imagenet_descriptions() -> tuple[str, ...]:
    """The 1000 ImageNet-1k descriptions in class-index order ("tabby, tabby cat", ...)."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(1000))


def imagenet_labels() -> list[str]:
    """Short ImageNet names: the first synonym of each description ("tabby")."""
    return [d.split(",")[0].strip() for d in imagenet_descriptions()]


def read_labels(path: str | os.PathLike, num_classes: int) -> list[str]:
    """Class names from a text file (one per line) or JSON (a list, or ``{index: name}``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--labels {p}: cannot read ({err.strerror if isinstance(err, OSError) else err})") from None
    names: list[str]
    if p.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{")):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise UsageError(f"--labels {p}: invalid JSON ({err})") from None
        if isinstance(data, dict):
            try:
                by_index = {int(k): str(v) for k, v in data.items()}
            except ValueError:
                raise UsageError(f"--labels {p}: JSON object keys must be class indices") from None
            if sorted(by_index) != list(range(len(by_index))):
                raise UsageError(f"--labels {p}: JSON object keys must be 0..N-1")
            names = [by_index[i] for i in range(len(by_index))]
        elif isinstance(data, list):
            names = [str(x) for x in data]
        else:
            raise UsageError(f"--labels {p}: JSON must be a list of names or an object of index: name")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if len(names) != num_classes:
        raise UsageError(f"--labels {p}: has {len(names)} names but the model has {num_classes} classes")
    return names


def resolve_class(spec: str | int, labels: list[str] | None, num_classes: int) -> int:
    """A ``--class`` value (index or name, case-insensitive) to a class index."""
    text = str(spec).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < num_classes:
            raise UsageError(f"--class {index}: out of range, the model has classes 0..{num_classes - 1}")
        return index
    if not labels:
        raise UsageError(f"--class {text!r}: this model has no class names; give an index or --labels FILE")
    wanted = text.lower()
    aliases: dict[str, int] = {}
    for index, name in enumerate(labels):
        aliases.setdefault(name.lower(), index)
    if num_classes == 1000 and len(labels) == 1000 and labels == imagenet_labels():
        for index, description in enumerate(imagenet_descriptions()):
            for alias in description.split(","):
                aliases.setdefault(alias.strip().lower(), index)
    if wanted in aliases:
        return aliases[wanted]
    hint = did_you_mean(close_names(wanted, aliases, n=4), quote=True)
    raise UsageError(f"--class {text!r}: no class of that name{hint}")

"""Class names: built-in ImageNet-1k names, a user's --labels file, and --class lookup.

Imports nothing heavy: ``--class`` is checked before any model is built. The ImageNet
names and their WordNet hypernyms come from ``imagenet_classes.json`` (written by
``scripts/make_imagenet_classes.py`` from timm's class list and WordNet 3.0).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UsageError
from ..suggest import close_names, did_you_mean, ranked_names

_IMAGENET_FILE = Path(__file__).resolve().parents[1] / "imagenet_classes.json"


@lru_cache(maxsize=1)
def _imagenet() -> dict:
    return json.loads(_IMAGENET_FILE.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def imagenet_descriptions() -> tuple[str, ...]:
    """The 1000 ImageNet-1k descriptions in class-index order ("tabby, tabby cat", ...), as timm gives them."""
    return tuple(description for _, description, _ in _imagenet()["classes"])


def imagenet_kinds_of(word: str) -> list[int]:
    """ImageNet classes that mean a kind of ``word``, closest in meaning first.

    A class counts when ``word`` names one of its WordNet hypernyms (``cat``: domestic
    cats through "cat, true cat", lions through "big cat, cat") or is a whole word of one
    of its names ("tabby cat", "cat bear"). Both at once rank first, then hypernyms by
    distance, then names alone; ties keep class order.
    """
    wanted = " ".join(word.lower().split())
    data = _imagenet()
    meant = {
        i
        for i, (_, lemmas) in enumerate(data["hypernyms"])
        if wanted in (lemma.strip().lower() for lemma in lemmas.split(","))
    }
    ranked = []
    for index, (_, description, up) in enumerate(data["classes"]):
        named = any(f" {wanted} " in f" {name.strip().lower()} " for name in description.split(","))
        distance = min((up[k] for k in range(0, len(up), 2) if up[k + 1] in meant), default=None)
        if named or distance is not None:
            tier = 0 if named and distance is not None else 1 if distance is not None else 2
            ranked.append((tier, distance or 0, index))
    return [index for *_, index in sorted(ranked)]


def imagenet_labels() -> list[str]:
    """Short ImageNet names: the first synonym of each description ("tabby")."""
    return [d.split(",")[0].strip() for d in imagenet_descriptions()]


def read_labels(path: str | os.PathLike, num_classes: int) -> list[str]:
    """Class names from a text file (one per line) or JSON (a list, or ``{index: name}``), one per class."""
    return check_label_count(read_label_names(path), path, num_classes)


def check_label_count(names: list[str], path: str | os.PathLike, num_classes: int) -> list[str]:
    """``names`` when there is one per class; a usage error naming the file otherwise."""
    if len(names) != num_classes:
        raise UsageError(f"--labels {path}: has {len(names)} names but the model has {num_classes} classes")
    return names


def read_label_names(path: str | os.PathLike) -> list[str]:
    """The names in a ``--labels`` file, not yet checked against the model's class count."""
    return read_label_file(path).names


@dataclass(frozen=True)
class LabelFile:
    """What a ``--labels`` file says: the class names, and the head the model was trained with where it says so
    (``sigmoid``: multi-label, ``softmax``: one class per image; None: not said)."""

    names: list[str]
    head: str | None = None


def read_label_file(path: str | os.PathLike) -> LabelFile:
    """A ``--labels`` file: one name per line; a JSON list or ``{index: name}``; or a JSON object with metadata,
    the names under ``labels`` (a list or ``{index: name}``) or ``id2label`` (a Hugging Face ``config.json``) and
    the head under ``head`` (``sigmoid``/``softmax``), ``multi_label`` (true/false) or ``problem_type``
    (``multi_label_classification``/``single_label_classification``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--labels {p}: cannot read ({err.strerror if isinstance(err, OSError) else err})") from None
    if not (p.suffix.lower() == ".json" or text.lstrip().startswith(("[", "{"))):
        return LabelFile([line.strip() for line in text.splitlines() if line.strip()])
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsageError(f"--labels {p}: invalid JSON ({err})") from None
    if isinstance(data, dict) and (NAME_KEYS & data.keys()):
        key = next(k for k in ("labels", "id2label") if k in data)
        return LabelFile(_json_names(data[key], p), _declared_head(data, p))
    return LabelFile(_json_names(data, p))


NAME_KEYS = frozenset({"labels", "id2label"})
PROBLEM_TYPES = {"multi_label_classification": "sigmoid", "single_label_classification": "softmax"}


def _json_names(data: object, p: Path) -> list[str]:
    if isinstance(data, list):
        return [str(x) for x in data]
    if not isinstance(data, dict):
        raise UsageError(f"--labels {p}: JSON must be a list of names or an object of index: name")
    try:
        by_index = {int(k): str(v) for k, v in data.items()}
    except ValueError:
        raise UsageError(f"--labels {p}: JSON object keys must be class indices") from None
    if sorted(by_index) != list(range(len(by_index))):
        raise UsageError(f"--labels {p}: JSON object keys must be 0..N-1")
    return [by_index[i] for i in range(len(by_index))]


def _declared_head(data: dict, p: Path) -> str | None:
    """The head a metadata object declares; a value it cannot mean is an error, not a silent softmax."""
    if "head" in data:
        head = str(data["head"]).strip().lower()
        if head not in ("sigmoid", "softmax"):
            raise UsageError(f"--labels {p}: head {data['head']!r}: expected sigmoid or softmax")
        return head
    if "multi_label" in data:
        if not isinstance(data["multi_label"], bool):
            raise UsageError(f"--labels {p}: multi_label must be true or false")
        return "sigmoid" if data["multi_label"] else "softmax"
    if "problem_type" in data and data["problem_type"] is not None:
        if data["problem_type"] not in PROBLEM_TYPES:
            choices = ", ".join(PROBLEM_TYPES)
            raise UsageError(f"--labels {p}: problem_type {data['problem_type']!r}: a classifier's is one of {choices}")
        return PROBLEM_TYPES[data["problem_type"]]
    return None


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
    imagenet = num_classes == 1000 and len(labels) == 1000 and labels == imagenet_labels()
    if imagenet:
        for index, description in enumerate(imagenet_descriptions()):
            for alias in description.split(","):
                aliases.setdefault(alias.strip().lower(), index)
    if wanted in aliases:
        return aliases[wanted]
    by_meaning = [labels[i] for i in imagenet_kinds_of(wanted)] if imagenet else []
    by_spelling = [labels[aliases[a]] for a in close_names(wanted, aliases, n=5)]
    hint = did_you_mean(ranked_names(by_meaning, by_spelling, n=5), quote=True)
    raise UsageError(f"--class {text!r}: no class of that name{hint}")


def resolve_classes(specs, labels: list[str] | None, num_classes: int) -> list[int]:
    """``--class`` values to class indices, in order, each once. A value may be a comma-separated list
    (``--class 243,tabby``), unless the whole value is itself a class's name (a label with a comma in it)."""
    indices = []
    for spec in specs:
        text = str(spec)
        try:
            indices.append(resolve_class(text, labels, num_classes))
        except UsageError:
            parts = [p.strip() for p in text.split(",") if p.strip()]
            if len(parts) < 2:
                raise
            indices += [resolve_class(p, labels, num_classes) for p in parts]
    return list(dict.fromkeys(indices))

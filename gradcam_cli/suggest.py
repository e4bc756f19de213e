"""The one "did you mean" helper: close names for a misspelt model, layer, method or class."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def _folded(name: str) -> str:
    """``Grad-CAM++`` and ``gradcampp`` alike: lower case, ``+`` read as ``p``, punctuation and spaces dropped."""
    return "".join(c for c in name.lower().replace("+", "p") if c.isalnum())


def close_names(word: str, candidates: Iterable[str], n: int = 5, cutoff: float = 0.6) -> list[str]:
    """Up to ``n`` candidates that look like ``word``, best first (case-insensitive).

    A candidate that differs only in case and punctuation (``Score-CAM`` for ``scorecam``)
    comes first, then the closest spellings.
    """
    pool = list(dict.fromkeys(candidates))
    same = [name for name in pool if _folded(name) == _folded(word)]
    by_lower: dict[str, str] = {}
    for name in pool:
        by_lower.setdefault(name.lower(), name)
    found = [by_lower[f] for f in difflib.get_close_matches(word.lower(), list(by_lower), n=n, cutoff=cutoff)]
    return list(dict.fromkeys(same + found))[:n]


def ranked_names(*rankings: Iterable[str], n: int = 5) -> list[str]:
    """Up to ``n`` names from several rankings, each ranking's names before the next's (e.g. meaning, then
    spelling), without repeats."""
    return list(dict.fromkeys(name for ranking in rankings for name in ranking))[:n]


def did_you_mean(names: Iterable[str], quote: bool = False) -> str:
    """``"; did you mean: a, b?"`` for a non-empty list, else ``""``."""
    names = [repr(n) if quote else n for n in names]
    return f"; did you mean: {', '.join(names)}?" if names else ""
